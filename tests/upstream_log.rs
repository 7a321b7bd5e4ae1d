//! An upstream failure is logged at the default level (warn), naming the upstream, the
//! server address, the route, the method and the path — so with two pools one can tell
//! which fails — and every failure is counted even when lines are rate-limited.

mod common;

use std::time::Duration;

use common::backend::refusing_addr;
use common::client::{Client, req};
use common::proxy::{ConfigBuilder, ProxyProcess};

const GUARD: Duration = Duration::from_secs(30);

#[test]
fn upstream_failures_name_the_upstream_server_route_method_and_path() {
    let (a, b) = (refusing_addr(), refusing_addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("ringgate.toml");
    let text = ConfigBuilder::new()
        .server("workers", "1")
        .plain_listener()
        .route(None, "/a/", false, "pool-a")
        .route(None, "/b/", false, "pool-b")
        .upstream("pool-a", &[a], &[])
        .upstream("pool-b", &[b], &[])
        .build();
    std::fs::write(&config, text).expect("write config");
    let mut proxy = ProxyProcess::spawn(&config, 1);
    let addr = proxy.addrs()[0];
    let mut client = Client::plain(addr).expect("connect");
    for path in ["/a/x?q=1", "/b/y", "/b/y", "/b/y"] {
        let resp = client.roundtrip(&req::get("app.test", path));
        assert_eq!(resp.status, 502, "{}", resp.describe());
    }
    proxy.signal("TERM");
    assert!(
        proxy.wait_for_output("ringgate: stopped", 1, GUARD),
        "{}",
        proxy.output()
    );
    let _ = proxy.wait_exit(GUARD);
    let out = proxy.output();
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("upstream failed"))
        .collect();
    let line_a = lines
        .iter()
        .find(|l| l.contains("upstream=\"pool-a\""))
        .unwrap_or_else(|| panic!("no warn line for pool-a:\n{out}"));
    assert!(line_a.contains(" WARN "), "{line_a}");
    for field in [
        format!("server={a} "),
        "route=/a/ ".to_string(),
        "method=GET ".to_string(),
        "path=\"/a/x?q=1\" ".to_string(),
        "kind=\"connect_failed\"".to_string(),
    ] {
        assert!(line_a.contains(&field), "{field} in {line_a}");
    }
    let b_lines: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("upstream=\"pool-b\""))
        .collect();
    assert!(!b_lines.is_empty(), "a line for pool-b:\n{out}");
    assert!(
        b_lines[0].contains(&format!("server={b} ")),
        "{}",
        b_lines[0]
    );
    assert!(b_lines[0].contains("route=/b/ "), "{}", b_lines[0]);
    // Rate-limited per upstream: never more lines than failures, and every failure is
    // counted whether or not it got a line.
    assert!(b_lines.len() <= 3, "{out}");
    assert!(out.contains("upstream_errors=4 "), "{out}");
}
