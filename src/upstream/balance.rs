//! Server selection within one upstream, per worker: round robin, or least connections
//! (fewest leases out from this worker, ties broken round robin so load still spreads).
//! Public so `benches/upstream.rs` can measure it; the proxy reaches it through
//! [`super::Upstreams::acquire`].

use std::cell::Cell;

use crate::config::Balance;

/// Index (below `n`, which must be at least 1) of the server the next request should
/// use. `cursor` advances on every call; `active(i)` is how many leases server `i` has out
/// from this worker.
pub fn pick(
    balance: Balance,
    n: usize,
    cursor: &Cell<usize>,
    active: impl Fn(usize) -> usize,
) -> usize {
    let start = cursor.get();
    cursor.set((start + 1) % n);
    match balance {
        Balance::RoundRobin => start % n,
        Balance::LeastConn => (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&i| active(i))
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles_through_every_server() {
        let cursor = Cell::new(0);
        let got: Vec<usize> = (0..7)
            .map(|_| pick(Balance::RoundRobin, 3, &cursor, |_| 0))
            .collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn least_conn_takes_the_idlest_and_spreads_ties() {
        let cursor = Cell::new(0);
        let active = [3, 1, 1, 5];
        let got: Vec<usize> = (0..4)
            .map(|_| pick(Balance::LeastConn, 4, &cursor, |i| active[i]))
            .collect();
        // Servers 1 and 2 tie at 1 lease: the rotating start point alternates them.
        assert_eq!(got, [1, 1, 2, 1]);
    }
}
