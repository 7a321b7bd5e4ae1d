//! Server selection within one upstream, per worker: round robin, or least connections
//! (fewest leases out from this worker, ties broken round robin so load still spreads).

use crate::config::Balance;

use super::Group;

/// Index of the server the next request should use.
pub(super) fn pick(balance: Balance, group: &Group) -> usize {
    let n = group.servers.len();
    let start = group.cursor.get();
    group.cursor.set((start + 1) % n);
    match balance {
        Balance::RoundRobin => start % n,
        Balance::LeastConn => (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&i| group.servers[i].active.get())
            .unwrap_or(0),
    }
}
