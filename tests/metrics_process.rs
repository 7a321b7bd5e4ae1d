//! `/metrics` of a running proxy: the loaded configuration is one series whatever the
//! reloads (`ringgate_config_generation N` unlabelled, `ringgate_config_info{config_hash}`
//! always 1), and the `process_*` families Prometheus users expect are there with sane
//! values. Plain text checks of the scrape.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Fixture;
use common::proxy::ConfigBuilder;

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read /metrics");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// Every sample line of family `name` (the name alone or followed by `{`).
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .collect()
}

fn value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {line:?}"))
}

#[test]
fn the_loaded_configuration_is_one_series_across_reloads() {
    let f = Fixture::with(|c| c.admin());
    let admin = f.proxy.admin_addr();
    let before = scrape(admin);
    assert_eq!(
        samples(&before, "ringgate_config_generation"),
        ["ringgate_config_generation 1"]
    );
    let info = samples(&before, "ringgate_config_info");
    assert_eq!(info.len(), 1, "{before}");
    assert!(info[0].starts_with("ringgate_config_info{config_hash=\""));
    assert_eq!(value(info[0]), 1.0);

    // Two reloads with different files: still one series each, the info's hash changed.
    let parse = |text: &str| ringgate::config::from_toml_str(text, "test.toml", f.pki.dir());
    for keepalive in [1000, 999] {
        let text = ConfigBuilder::new()
            .admin()
            .tls_listener(&[&f.cert])
            .http("keepalive_requests", keepalive)
            .route(None, "/", false, "backend")
            .upstream("backend", &[f.backend.addr], &[])
            .build();
        f.proxy
            .live()
            .reload_with(parse(&text).expect("good config"), "test")
            .expect("reload applies");
    }
    let after = scrape(admin);
    assert_eq!(
        samples(&after, "ringgate_config_generation"),
        ["ringgate_config_generation 3"]
    );
    let info_after = samples(&after, "ringgate_config_info");
    assert_eq!(info_after.len(), 1, "{after}");
    assert_eq!(value(info_after[0]), 1.0);
    assert_ne!(info_after[0], info[0], "the hash label follows the file");
}

#[test]
fn process_metrics_are_exported() {
    let f = Fixture::with(|c| c.admin());
    let text = scrape(f.proxy.admin_addr());
    let one = |name: &str| -> f64 {
        let s = samples(&text, name);
        assert_eq!(s.len(), 1, "{name} once, unlabelled:\n{text}");
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} typed:\n{text}"
        );
        value(s[0])
    };
    assert!(one("process_cpu_seconds_total") >= 0.0);
    // Some time after 2020 (the value is Unix seconds, not ticks since boot).
    assert!(one("process_start_time_seconds") > 1.6e9);
    let rss = one("process_resident_memory_bytes");
    assert!(rss > 1e6, "rss {rss}");
    assert!(one("process_virtual_memory_bytes") >= rss);
    let open = one("process_open_fds");
    let max = one("process_max_fds");
    assert!(open >= 3.0 && open <= max, "open {open}, max {max}");
}
