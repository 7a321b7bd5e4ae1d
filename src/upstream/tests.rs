//! Pools across reloads: slots freed by a reload are reused for other servers without
//! growing the tables and without ever lending a connection to the wrong server.

use std::net::{SocketAddr, TcpListener};

use super::*;

fn config(server: SocketAddr) -> crate::config::Config {
    let text = format!(
        "[server]\nworkers = 1\n[[listener]]\naddr = \"127.0.0.1:0\"\n\
         [[route]]\nupstream = \"a\"\n[upstream.a]\nservers = [\"{server}\"]\n"
    );
    crate::config::from_toml_str(&text, "t.toml", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rotating_addresses_reuse_slots_and_never_cross_servers() {
    // Three real servers (connections complete in their backlogs; nothing reads).
    let servers: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|l| l.local_addr().unwrap()).collect();
    let live = Live::new(config(addrs[0])).unwrap();
    let metrics = crate::observe::Registry::new(1, 1).local(0);
    let upstreams = Upstreams::new(live.clone(), metrics);
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(async {
            // The upstream's one server moves at every reload (a name resolving to
            // rotating addresses). Each round's lease comes back two reloads later, after
            // its slot was freed and handed to another server (no sweep ran meanwhile),
            // and is pooled there; the next lease must still reach its own server.
            let mut held = std::collections::VecDeque::new();
            for round in 0..30 {
                let want = addrs[round % addrs.len()];
                if round > 0 {
                    live.reload_with(config(want), "test").unwrap();
                }
                if held.len() == 2 {
                    upstreams.release(held.pop_front().unwrap());
                }
                let generation = live.load_full();
                let mut lease = upstreams
                    .acquire(&generation, 0, false, None)
                    .await
                    .unwrap();
                let peer = lease.stream.tcp().unwrap().peer_addr().unwrap();
                assert_eq!(peer, want, "round {round}: a connection to another server");
                held.push_back(lease);
            }
        });
    let slots = upstreams.pool_slots();
    assert!(slots <= 2, "{slots} pool slots after 30 reloads");
}
