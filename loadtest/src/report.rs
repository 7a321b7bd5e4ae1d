//! Results: a summary (table and JSON) from the merged latency histogram, and an SVG
//! percentile plot with one curve per run, in the style of HdrHistogram's plotter
//! (x: percentile on a log scale of 1/(1-p), y: latency).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// One run, as printed and as written to JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub label: String,
    pub url: String,
    pub mode: String,
    pub connections: usize,
    pub requests: u64,
    pub errors: u64,
    pub errors_by_kind: Vec<(String, u64)>,
    pub duration_s: f64,
    pub rps: f64,
    pub throughput_bps: f64,
    pub resumed_handshakes: u64,
    /// KeyUpdates sent (--key-update-every).
    #[serde(default)]
    pub key_updates: u64,
    pub latency_us: Latency,
    /// (percentile, latency µs) pairs for plotting.
    pub spectrum: Vec<(f64, u64)>,
}

pub fn latency(h: &Histogram<u64>) -> Latency {
    Latency {
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

/// Percentiles from 0 to 99.9999 on a log-of-1/(1-p) grid.
pub fn spectrum(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    let mut tail = 1.0f64;
    while tail >= 1e-6 {
        for step in [1.0, 0.5, 0.25] {
            let q = 1.0 - tail * step;
            out.push((q * 100.0, h.value_at_quantile(q)));
        }
        tail /= 10.0;
    }
    out.push((100.0, h.max()));
    out
}

fn human_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

/// The human-readable table.
pub fn table(s: &Summary) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} — {} ({}, {} connections)",
        s.label, s.url, s.mode, s.connections
    );
    let _ = writeln!(
        t,
        "  requests {:>10}   errors {:>6}   duration {:.2}s",
        s.requests, s.errors, s.duration_s
    );
    let _ = writeln!(
        t,
        "  req/s    {:>10.0}   throughput {:.2} MB/s",
        s.rps,
        s.throughput_bps / 1e6
    );
    let l = &s.latency_us;
    let _ = writeln!(
        t,
        "  latency  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        human_us(l.p50),
        human_us(l.p90),
        human_us(l.p99),
        human_us(l.p999),
        human_us(l.max)
    );
    if s.key_updates > 0 {
        let _ = writeln!(t, "  key updates sent {}", s.key_updates);
    }
    if s.resumed_handshakes > 0 {
        let _ = writeln!(t, "  resumed handshakes {}", s.resumed_handshakes);
    }
    for (kind, n) in &s.errors_by_kind {
        let _ = writeln!(t, "  errors {kind}: {n}");
    }
    t
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// An SVG percentile plot with one curve per summary.
pub fn svg(runs: &[Summary]) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 520.0, 80.0, 220.0, 30.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    // x: log10(1/(1-p)) from 0 (p=0) to 6 (p=99.9999%).
    let x_of = |p: f64| {
        let tail = (1.0 - p / 100.0).max(1e-6);
        left + (-tail.log10()).min(6.0) / 6.0 * pw
    };
    let ymax = runs
        .iter()
        .flat_map(|r| r.spectrum.iter().map(|&(_, v)| v))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let y_of = |us: u64| top + ph - (us as f64 / ymax) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = left + i as f64 / 6.0 * pw;
        let _ = write!(
            s,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            top + ph,
            top + ph + 18.0
        );
    }
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = top + ph - ph * i as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0,
            human_us(v as u64)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency</text>"#,
        left + pw / 2.0,
        h - 15.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (i, r) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = r
            .spectrum
            .iter()
            .map(|&(p, v)| format!("{:.1},{:.1}", x_of(p), y_of(v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = top + 20.0 * i as f64 + 10.0;
        let _ = write!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{} ({:.0} req/s)</text>"#,
            left + pw + 15.0,
            left + pw + 40.0,
            left + pw + 46.0,
            ly + 4.0,
            xml_escape(&r.label),
            r.rps
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_plot() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let l = latency(&h);
        assert!((4990..=5010).contains(&l.p50), "{l:?}");
        assert!(l.p99 >= 9890 && l.max >= 9990, "{l:?}");
        let sp = spectrum(&h);
        assert!(
            sp.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
            "{sp:?}"
        );
        let s = Summary {
            label: "a<b".into(),
            url: "u".into(),
            mode: "closed".into(),
            connections: 1,
            requests: 1000,
            errors: 0,
            errors_by_kind: vec![],
            duration_s: 1.0,
            rps: 1000.0,
            throughput_bps: 0.0,
            resumed_handshakes: 0,
            key_updates: 0,
            latency_us: l,
            spectrum: sp,
        };
        let svg = svg(&[s.clone(), s]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b"));
    }
}
