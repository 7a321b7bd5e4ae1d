#!/usr/bin/env python3
"""Helper for loadtest/compare.sh: parses load-tool output into JSON lines and prints the
markdown tables. Not meant to be run by hand (but harmless: it only reads and appends).

  report.py record --results R.jsonl --tool wrk|h2load|ringgate-load --out OUT
                   [--h2log LOG] [--json J] --proxy P --scenario S --repeat I
                   --connections C --secs D --cpu-ticks-before 'U S' --cpu-ticks-after 'U S'
                   --clk-tck T [--backend origin|nginx] [--tls pinned|defaults]
  report.py idle   --results R.jsonl --proxy P --conns N --open O --failed F
                   --held H --fds-before A --fds-after B --rss-before-kb A
                   --rss-after-kb B [--mode sequential|concurrent] [--concurrency C]
                   [--backend origin|nginx] [--tls pinned|defaults]
  report.py table  R.jsonl

An idle row is valid only if the proxy held at least HELD_MIN (99%) of the N connections
at sampling time (--held: its established connections, counted by the caller with ss);
an invalid row is recorded with "valid": false, shown with ✗ in the table and left out
of every ratio.
"""
import argparse
import json
import re
import statistics
import sys
import time

PROXIES = ["ringgate", "nginx", "haproxy"]
IDLE_PROXIES = PROXIES + ["caddy"]
HELD_MIN = 0.99  # share of the N idle connections the proxy must hold when sampled
UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def wrk_time(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s)
    return float(m.group(1)) * UNIT_US[m.group(2)] if m else None


def parse_wrk(text):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    r["requests"] = int(m.group(1)) if m else 0
    r["duration_s"] = float(m.group(2)) * UNIT_US[m.group(3)] / 1e6 if m else None
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else 0.0
    errs = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errs += int(m.group(1))
    r["errors"] = errs
    for p in ("50", "90", "99"):
        m = re.search(rf"^\s*{p}%\s+(\S+)", text, re.M)
        r[f"p{p}_us"] = wrk_time(m.group(1)) if m else None
    return r


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return float(sorted_vals[i])


def parse_h2load(text, log):
    r = {}
    m = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", text)
    r["duration_s"] = float(m.group(1)) * UNIT_US[m.group(2)] / 1e6 if m else None
    r["rps"] = float(m.group(3)) if m else 0.0
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    r["requests"] = int(m.group(1)) if m else 0
    r["errors"] = sum(int(x) for x in m.groups()[1:]) if m else 0
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        r["errors"] += int(m.group(3)) + int(m.group(4))
    lat = []
    if log:
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]))
    lat.sort()
    for p, q in (("50", 0.50), ("90", 0.90), ("99", 0.99)):
        r[f"p{p}_us"] = percentile(lat, q)
    return r


def parse_rgl(path):
    with open(path) as f:
        j = json.load(f)
    lat = j.get("latency_us", {})
    return {
        "requests": j.get("requests", 0), "errors": j.get("errors", 0),
        "duration_s": j.get("duration_s"), "rps": j.get("rps", 0.0),
        "p50_us": lat.get("p50"), "p90_us": lat.get("p90"), "p99_us": lat.get("p99"),
        "throughput_bps": j.get("throughput_bps"),
    }


def record(a):
    with open(a.out) as f:
        text = f.read()
    if a.tool == "wrk":
        r = parse_wrk(text)
    elif a.tool == "h2load":
        r = parse_h2load(text, a.h2log)
    else:
        r = parse_rgl(a.json)
    # "utime stime" ticks (or one total, from older scripts)
    t0 = [int(x) for x in a.cpu_ticks_before.split()]
    t1 = [int(x) for x in a.cpu_ticks_after.split()]
    cpu_s = (sum(t1) - sum(t0)) / a.clk_tck
    dur = r.get("duration_s") or a.secs
    row = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": "load", "proxy": a.proxy,
        "backend": a.backend, "tls": a.tls, "scenario": a.scenario, "tool": a.tool, "repeat": a.repeat,
        "connections": a.connections, **r, "proxy_cpu_s": round(cpu_s, 3),
        "cpu_us_per_req": round(cpu_s * 1e6 / r["requests"], 2) if r["requests"] else None,
        "proxy_cpu_util": round(cpu_s / dur, 3) if dur else None,
    }
    if len(t0) == 2 and len(t1) == 2 and r["requests"]:
        for i, k in enumerate(("user", "sys")):
            row[f"{k}_us_per_req"] = round((t1[i] - t0[i]) / a.clk_tck * 1e6 / r["requests"], 2)
    # Whole cores from /proc/stat over the same window: CPU 0 holds the proxy, CPU 1 the
    # load generator and the backend. A busy client core bounds req/s for every proxy.
    for side, ticks in (("proxy_core", a.proxy_core), ("client_core", a.client_core)):
        if not ticks:
            continue
        busy0, total0, busy1, total1 = (int(x) for x in ticks.split())
        busy_s = (busy1 - busy0) / a.clk_tck
        row[f"{side}_util"] = round((busy1 - busy0) / (total1 - total0), 3) if total1 > total0 else None
        row[f"{side}_us_per_req"] = round(busy_s * 1e6 / r["requests"], 2) if r["requests"] else None
    with open(a.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"  {a.backend}/{a.tls} {a.proxy:<12} {a.tool:<13} {a.scenario:<28} {r['rps']:>10.0f} req/s  "
          f"p50 {fmt_us(r['p50_us'])} p99 {fmt_us(r['p99_us'])}  "
          f"cpu {fmt_num(row['cpu_us_per_req'])} µs/req ({fmt_pct(row['proxy_cpu_util'])})  "
          f"cores {fmt_pct(row.get('proxy_core_util'))}/{fmt_pct(row.get('client_core_util'))}  "
          f"errors {r['errors']}", file=sys.stderr)


def idle(a):
    valid = a.held >= HELD_MIN * a.conns
    # the kernel holds the connections the proxy's process pays for: divide by those
    per = (a.rss_after_kb - a.rss_before_kb) / a.held if a.held else None
    row = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": "idle", "proxy": a.proxy,
           "backend": a.backend, "tls": a.tls, "scenario": "idle TLS conns RSS",
           "mode": a.mode, "protocol": a.protocol, "concurrency": a.concurrency,
           "conns": a.conns, "open": a.open,
           "failed": a.failed, "held": a.held, "valid": valid,
           "fds_before": a.fds_before, "fds_after": a.fds_after,
           "rss_before_kb": a.rss_before_kb, "rss_after_kb": a.rss_after_kb,
           "kb_per_conn": round(per, 2) if per is not None else None}
    with open(a.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"  {a.backend}/{a.tls} {a.proxy:<8} idle {a.protocol} {a.conns} {a.mode}: "
          f"client {a.open} open "
          f"({a.failed} failed), proxy holds {a.held}, fds {a.fds_before} → {a.fds_after}, "
          f"RSS {a.rss_before_kb} → {a.rss_after_kb} kB = {fmt_num(row['kb_per_conn'])} kB/conn"
          + ("" if valid else f"  ✗ INVALID: fewer than {HELD_MIN:.0%} of {a.conns} held"),
          file=sys.stderr)


def fmt_us(v):
    if v is None:
        return "–"
    if v < 1000:
        return f"{v:.0f}µs"
    if v < 100_000:
        return f"{v / 1000:.2f}ms"
    return f"{v / 1000:.0f}ms"


def fmt_num(v, nd=1):
    return "–" if v is None else f"{v:.{nd}f}"


def fmt_pct(v):
    return "–" if v is None else f"{v * 100:.0f}%"


def fmt_rps(v):
    return "–" if v is None else f"{v:,.0f}"


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}"


def passes(rows):
    """(backend, tls) pairs in the order they were run; rows from before these labels
    existed count as origin/pinned."""
    out = []
    for r in rows:
        r.setdefault("backend", "origin")
        r.setdefault("tls", "pinned")
        k = (r["backend"], r["tls"])
        if k not in out:
            out.append(k)
    return out


def table(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    out = []
    for backend, tls in passes(rows):
        sel = [r for r in rows if r["backend"] == backend and r["tls"] == tls]
        out.append(f"### backend {backend}, TLS {tls}")
        out.append("")
        out += load_table(sel)
        out += idle_table(sel)
        out.append("")
    print("\n".join(out).rstrip())


def load_table(rows):
    load = [r for r in rows if r["kind"] == "load"]
    out = []
    if not load:
        return out
    keys = []
    for r in load:
        k = (r["scenario"], r["tool"])
        if k not in keys and r["proxy"] in PROXIES:
            keys.append(k)
    repeats = len({r["repeat"] for r in load})
    out.append(f"Medians of {repeats} alternating run(s) per cell. Latency p50/p99 as "
               "measured by the tool; CPU = proxy utime+stime per request "
               "(proxy CPU utilisation in brackets; 100% = the proxy's core was saturated).")
    out.append("")
    hdr = ["scenario", "tool"] + [f"{p} req/s" for p in PROXIES] + \
          ["rg/nginx", "rg/haproxy"] + [f"{p} p50/p99" for p in PROXIES] + \
          [f"{p} CPU µs/req" for p in PROXIES] + ["errors"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for scen, tool in keys:
        cell = cells(load, scen, tool)
        rps = {p: med(cell[p], "rps") for p in PROXIES}
        lat = [f"{fmt_us(med(cell[p], 'p50_us'))}/{fmt_us(med(cell[p], 'p99_us'))}"
               for p in PROXIES]
        cpu = [f"{fmt_num(med(cell[p], 'cpu_us_per_req'))} "
               f"({fmt_pct(med(cell[p], 'proxy_cpu_util'))})" for p in PROXIES]
        errs = sum(r["errors"] for p in PROXIES for r in cell[p])
        out.append("| " + " | ".join(
            [scen, tool] + [fmt_rps(rps[p]) for p in PROXIES] +
            [ratio(rps["ringgate"], rps["nginx"]), ratio(rps["ringgate"], rps["haproxy"])] +
            lat + cpu + [str(errs)]) + " |")

    out += bound_table(load, keys)
    out += split_table(load, keys)

    w2 = [r for r in load if r["proxy"] == "ringgate-w2"]
    if w2:
        out.append("")
        out.append("ringgate scaling: workers=1 (pinned to CPU 0) vs workers=2 (unpinned, "
                   "pin_workers=false; shares the 2 cores with backend + load generator)")
        out.append("")
        out.append("| scenario | tool | workers=1 req/s | workers=2 req/s | w2/w1 | "
                   "w1 CPU µs/req | w2 CPU µs/req | w2 p50/p99 |")
        out.append("|---|---|---|---|---|---|---|---|")
        for scen, tool in dict.fromkeys((r["scenario"], r["tool"]) for r in w2):
            c1 = [r for r in load if r["proxy"] == "ringgate" and r["scenario"] == scen
                  and r["tool"] == tool]
            c2 = [r for r in w2 if r["scenario"] == scen and r["tool"] == tool]
            r1, r2 = med(c1, "rps"), med(c2, "rps")
            out.append(f"| {scen} | {tool} | {fmt_rps(r1)} | {fmt_rps(r2)} | {ratio(r2, r1)} | "
                       f"{fmt_num(med(c1, 'cpu_us_per_req'))} | "
                       f"{fmt_num(med(c2, 'cpu_us_per_req'))} | "
                       f"{fmt_us(med(c2, 'p50_us'))}/{fmt_us(med(c2, 'p99_us'))} |")
    out.append("")
    return out


def cells(load, scen, tool):
    """One table row's runs, by proxy."""
    return {p: [r for r in load if r["scenario"] == scen and r["tool"] == tool
                and r["proxy"] == p] for p in PROXIES}


def bound_table(load, keys):
    """Which side bounded each row: both cores' utilisation, the client core's CPU per
    request, and the req/s at which that core would be saturated (req/s ÷ its
    utilisation) as a multiple of nginx's req/s: no proxy can show more than that."""
    if not any("client_core_util" in r for r in load):
        return []
    out = ["", "Which side bounds each row (whole cores from /proc/stat; CPU 0 = the proxy, "
           "CPU 1 = load generator + backend). Ceiling = req/s at which CPU 1 would be "
           "saturated, as a multiple of nginx's req/s: the most any proxy can show over "
           "nginx in that row.", ""]
    hdr = ["scenario", "tool"] + [f"{p} CPU0/CPU1 busy" for p in PROXIES] + \
          [f"{p} CPU0 µs/req" for p in PROXIES] + \
          [f"{p} CPU1 µs/req" for p in PROXIES] + ["ceiling ÷ nginx"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for scen, tool in keys:
        cell = cells(load, scen, tool)
        if not all(any("client_core_util" in r for r in cell[p]) for p in PROXIES):
            continue
        busy = [f"{fmt_pct(med(cell[p], 'proxy_core_util'))}/"
                f"{fmt_pct(med(cell[p], 'client_core_util'))}" for p in PROXIES]
        c0 = [fmt_num(med(cell[p], "proxy_core_us_per_req")) for p in PROXIES]
        c1 = [fmt_num(med(cell[p], "client_core_us_per_req")) for p in PROXIES]
        # the lowest client-core cost any proxy induced sets the highest reachable rate
        ceil = [r["rps"] / r["client_core_util"] for p in PROXIES for r in cell[p]
                if r.get("client_core_util")]
        best = max(ceil) if ceil else None
        out.append("| " + " | ".join([scen, tool] + busy + c0 + c1 +
                                     [ratio(best, med(cell["nginx"], "rps"))]) + " |")
    return out


def split_table(load, keys):
    """The proxy's CPU per request split into userspace and kernel (utime, stime), and
    ringgate's kernel time alone as a share of nginx's whole CPU per request: the ratio
    ringgate would reach if its userspace cost nothing."""
    if not any("sys_us_per_req" in r for r in load):
        return []
    out = ["", "User / kernel CPU µs per request of each proxy (utime / stime of its "
           "processes). Kernel floor = ringgate's stime ÷ nginx's utime + stime: its CPU "
           "ratio to nginx if its own userspace work cost nothing.", ""]
    hdr = ["scenario", "tool"] + [f"{p} user/kernel" for p in PROXIES] + ["kernel floor"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for scen, tool in keys:
        cell = cells(load, scen, tool)
        split = [f"{fmt_num(med(cell[p], 'user_us_per_req'))} / "
                 f"{fmt_num(med(cell[p], 'sys_us_per_req'))}" for p in PROXIES]
        out.append("| " + " | ".join([scen, tool] + split + [
            ratio(med(cell["ringgate"], "sys_us_per_req"), med(cell["nginx"], "cpu_us_per_req"))]) + " |")
    return out


def idle_cell(c):
    """kB/conn of the valid rows (median), with what the proxy held and its fds."""
    if not c:
        return "–", None
    last = c[-1]
    good = [r for r in c if r.get("valid", True)]
    if not good:
        return (f"✗ ({last.get('held', '?')} of {last['conns']} held)", None)
    k = med(good, "kb_per_conn")
    g = good[-1]
    return f"{fmt_num(k, 2)} ({g.get('held', '?')} held, {g.get('fds_after', '?')} fds)", k


def idle_table(rows):
    idl = [r for r in rows if r["kind"] == "idle"]
    out = []
    if not idl:
        return out
    present = [p for p in IDLE_PROXIES if any(r["proxy"] == p for r in idl)]
    others = [p for p in present if p != "ringgate"]
    out.append("RSS per idle TLS keep-alive connection, kB: (RSS while N are held − RSS of the "
               "fresh proxy) ÷ connections the proxy held, counted (ss, established on its "
               "port) at sampling time; fds = the proxy's open fds then. One request per "
               "connection (HTTP/2: preface, SETTINGS, one GET), then idle.")
    out.append("")
    hdr = ["protocol", "connections", "opened"] + [f"{p} kB/conn" for p in present] + \
          [f"ringgate ÷ {p}" for p in others]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    keys = list(dict.fromkeys((r.get("protocol", "http1"), r["conns"],
                               r.get("mode", "concurrent"), r.get("concurrency", 200))
                              for r in idl))
    bad = 0
    for proto, n, mode, conc in keys:
        cells, kb = [], {}
        for p in present:
            c = [r for r in idl if r["proxy"] == p and r["conns"] == n
                 and r.get("mode", "concurrent") == mode
                 and r.get("protocol", "http1") == proto]
            bad += sum(1 for r in c if not r.get("valid", True))
            text, kb[p] = idle_cell(c)
            cells.append(text)
        opened = "one at a time" if mode == "sequential" else f"{conc} at a time"
        out.append("| " + " | ".join(
            [{"http1": "HTTP/1.1", "h2": "HTTP/2"}.get(proto, proto), f"{n:,}", opened] + cells + [ratio(kb.get("ringgate"), kb[p]) for p in others]) + " |")
    if bad:
        out.append("")
        out.append(f"✗ {bad} idle run(s) INVALID: the proxy held fewer than {HELD_MIN:.0%} of "
                   "the connections when sampled; they are not measurements and are left "
                   "out of the ratios.")
    return out


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--results", required=True)
    r.add_argument("--tool", required=True, choices=["wrk", "h2load", "ringgate-load"])
    r.add_argument("--out", required=True)
    r.add_argument("--h2log")
    r.add_argument("--json")
    r.add_argument("--proxy", required=True)
    r.add_argument("--scenario", required=True)
    r.add_argument("--repeat", type=int, required=True)
    r.add_argument("--connections", type=int, required=True)
    r.add_argument("--secs", type=float, required=True)
    r.add_argument("--cpu-ticks-before", required=True, help='"utime stime" of the proxy')
    r.add_argument("--cpu-ticks-after", required=True)
    r.add_argument("--clk-tck", type=int, default=100)
    r.add_argument("--backend", default="origin")
    r.add_argument("--tls", default="pinned")
    r.add_argument("--proxy-core", help='"busy0 total0 busy1 total1" ticks of the proxy\'s CPU')
    r.add_argument("--client-core", help="the same for the load generator's and backend's CPU")
    i = sub.add_parser("idle")
    i.add_argument("--results", required=True)
    i.add_argument("--proxy", required=True)
    i.add_argument("--conns", type=int, required=True)
    i.add_argument("--open", type=int, required=True)
    i.add_argument("--failed", type=int, required=True)
    i.add_argument("--held", type=int, required=True,
                   help="connections the proxy holds at sampling time")
    i.add_argument("--fds-before", type=int, required=True)
    i.add_argument("--fds-after", type=int, required=True)
    i.add_argument("--mode", default="concurrent", choices=["sequential", "concurrent"])
    i.add_argument("--protocol", default="http1", choices=["http1", "h2"])
    i.add_argument("--concurrency", type=int, default=200)
    i.add_argument("--backend", default="origin")
    i.add_argument("--tls", default="pinned")
    i.add_argument("--rss-before-kb", type=int, required=True)
    i.add_argument("--rss-after-kb", type=int, required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    a = ap.parse_args()
    {"record": record, "idle": idle, "table": lambda a: table(a.results)}[a.cmd](a)


if __name__ == "__main__":
    main()
