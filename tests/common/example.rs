//! A file under `examples/` loaded as written: parsed with the `toml` crate and only what
//! ties it to a machine replaced — listen addresses (`127.0.0.1:0`, in the file's order),
//! certificate paths (a certificate of the test PKI for the same names), upstream servers
//! (in-process peers) and `[server]` (the test's worker count, no pinning: tests run
//! side by side).
//! Every route, policy, limit and protocol setting stays as the file says.

use std::net::SocketAddr;
use std::path::Path;

use super::pki::CertFiles;

/// `examples/NAME` with its machine-bound values replaced, one worker; `servers` names
/// every upstream of the file and the address that replaces its servers.
pub fn as_written(name: &str, cert: &CertFiles, servers: &[(&str, SocketAddr)]) -> String {
    as_written_with(name, cert, servers, 1)
}

/// [`as_written`] with `workers` workers.
pub fn as_written_with(
    name: &str,
    cert: &CertFiles,
    servers: &[(&str, SocketAddr)],
    workers: i64,
) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut doc: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{name} is not TOML: {e}"));
    assert!(
        !doc.contains_key("server"),
        "{name} sets [server]: merge the test's settings instead of replacing them"
    );
    let mut server = toml::Table::new();
    server.insert("workers".into(), workers.into());
    server.insert("pin_workers".into(), false.into());
    doc.insert("server".into(), server.into());
    let listeners = doc
        .get_mut("listener")
        .and_then(|v| v.as_array_mut())
        .unwrap_or_else(|| panic!("{name}: no [[listener]]"));
    for l in listeners.iter_mut() {
        let l = l.as_table_mut().expect("listener table");
        l.insert("addr".into(), "127.0.0.1:0".into());
        let Some(tls) = l.get_mut("tls").and_then(|t| t.as_table_mut()) else {
            continue;
        };
        let certificates = tls
            .get_mut("certificates")
            .and_then(|c| c.as_array_mut())
            .expect("certificates");
        for c in certificates.iter_mut() {
            let c = c.as_table_mut().expect("certificate entry");
            c.insert("cert".into(), cert.cert.to_string_lossy().as_ref().into());
            c.insert("key".into(), cert.key.to_string_lossy().as_ref().into());
        }
    }
    let upstreams = doc
        .get_mut("upstream")
        .and_then(|u| u.as_table_mut())
        .unwrap_or_else(|| panic!("{name}: no [upstream]"));
    let mut named: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    let mut given: Vec<&str> = servers.iter().map(|(n, _)| *n).collect();
    named.sort_unstable();
    given.sort_unstable();
    assert_eq!(named, given, "{name}: the upstreams the test replaces");
    for (upstream, addr) in servers {
        let u = upstreams
            .get_mut(*upstream)
            .and_then(|u| u.as_table_mut())
            .unwrap_or_else(|| panic!("[upstream.{upstream}]"));
        u.insert(
            "servers".into(),
            toml::Value::Array(vec![addr.to_string().into()]),
        );
    }
    toml::to_string(&doc).expect("serialise the config")
}
