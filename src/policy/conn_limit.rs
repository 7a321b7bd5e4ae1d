//! ① Connection limits: `max_connections_per_ip` on a listener (nginx's `limit_conn`
//! keyed by `$binary_remote_addr`), exact across workers, checked at accept before any
//! TLS byte.
//!
//! One [`ConnTable`] per running listener, shared by every worker and every
//! configuration generation (connections outlive reloads; a reload changes only the
//! limit). Its [`table::Table`] maps the client's full IP address to one word — a tag
//! and the count of its open connections — bumped by compare-and-swap at accept and
//! taken down by the [`ConnGuard`] the connection task holds, so every way the task
//! ends (a close, an error, a panic caught by the worker, the runtime dropping it)
//! counts the connection out. A count at zero frees its slot for another address; the
//! tag, new at each take-over, keeps a late update meant for the slot's previous
//! address from landing on the next one. A refused connection is closed at once and
//! counted (`ringgate_policy_rejections_total{policy="conn_limit",
//! reason="max_connections_per_ip"}`). No I/O, no status: the connection just closes.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::policy::rate_limit::table::{Key, Occupancy, Step, Table, Updated};

/// Open connections per address, for one listener, across all workers.
pub struct ConnTable {
    table: Table,
    /// The next slot tag (high 32 bits of a word; never 0, so a word is never EMPTY).
    tags: AtomicU64,
}

/// Counts at zero may be taken over; a live count is never dropped.
struct Counts;

impl Occupancy for Counts {
    fn reclaimable(&self, word: u64) -> bool {
        count(word) == 0
    }

    fn keep_rank(&self, _word: u64) -> Option<u64> {
        None
    }
}

fn count(word: u64) -> u64 {
    word & 0xffff_ffff
}

/// The verdict at accept.
pub enum Admission {
    /// Serve it; hold the guard until the connection ends (`None`: no limit here).
    Admit(Option<ConnGuard>),
    /// Close it at once: the address holds `max_connections_per_ip` already (or the
    /// table has no room for one more address in its neighbourhood).
    Refuse,
}

impl ConnTable {
    /// A table for up to `addresses` distinct addresses at once (memory is touched only
    /// as addresses arrive).
    pub fn new(addresses: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            table: Table::new(addresses),
            tags: AtomicU64::new(1),
        })
    }

    /// Counts a new connection from `ip` unless it already holds `max`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, max: u32) -> Admission {
        let key = self.key(ip);
        let max = u64::from(max);
        let updated = self.table.update(key, &Counts, |word| match word {
            Some(w) if count(w) >= max => Step::Decline(()),
            Some(w) => Step::Store(w + 1, ()),
            None => {
                let mut tag = self.tags.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff;
                if tag == 0 {
                    tag = 1;
                }
                Step::Store(tag << 32 | 1, ())
            }
        });
        match updated {
            Updated::Stored { .. } => Admission::Admit(Some(ConnGuard {
                table: self.clone(),
                key,
            })),
            Updated::Declined(()) | Updated::Full => Admission::Refuse,
        }
    }

    /// Open connections counted for `ip` now.
    pub fn open(&self, ip: IpAddr) -> u64 {
        self.table.get(self.key(ip)).map_or(0, count)
    }

    /// The address's 16 bytes, exact (an IPv4 address as its IPv4-mapped form: the
    /// same client either way).
    fn key(&self, ip: IpAddr) -> Key {
        let o = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        Key {
            hi: u64::from_be_bytes([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]),
            lo: u64::from_be_bytes([o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15]]),
        }
    }

    fn release(&self, key: Key) {
        let _ = self.table.update(key, &Counts, |word| match word {
            Some(w) if count(w) > 0 => Step::Store(w - 1, ()),
            _ => Step::Decline(()),
        });
    }
}

/// One counted connection: dropping it counts the connection out.
pub struct ConnGuard {
    table: Arc<ConnTable>,
    key: Key,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn counts_each_address_up_to_its_limit_and_down_on_drop() {
        let t = ConnTable::new(100);
        let a: Vec<ConnGuard> = (0..3)
            .map(|_| match t.admit(ip("10.0.0.1"), 3) {
                Admission::Admit(Some(g)) => g,
                _ => panic!("under the limit"),
            })
            .collect();
        assert!(matches!(t.admit(ip("10.0.0.1"), 3), Admission::Refuse));
        // Another address, and the same address as IPv4-mapped IPv6, are told apart
        // and alike as they should be.
        assert!(matches!(
            t.admit(ip("10.0.0.2"), 3),
            Admission::Admit(Some(_))
        ));
        assert!(matches!(
            t.admit(ip("::ffff:10.0.0.1"), 3),
            Admission::Refuse
        ));
        assert_eq!(t.open(ip("10.0.0.1")), 3);
        drop(a);
        assert_eq!(t.open(ip("10.0.0.1")), 0);
        assert!(matches!(
            t.admit(ip("10.0.0.1"), 3),
            Admission::Admit(Some(_))
        ));
    }

    #[test]
    fn two_threads_never_exceed_the_limit_and_end_at_zero() {
        let t = ConnTable::new(100);
        let held = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (t, held) = (t.clone(), held.clone());
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..20_000 {
                        if i % 3 == 2 {
                            if let Some(g) = mine.pop() {
                                // Counted out here before the table counts it out.
                                held.fetch_sub(1, Ordering::SeqCst);
                                drop(g);
                            }
                        } else if let Admission::Admit(Some(g)) = t.admit(ip("10.9.9.9"), 4) {
                            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 4, "{now} connections held with a limit of 4");
                            mine.push(g);
                        }
                    }
                    held.fetch_sub(mine.len() as u64, Ordering::SeqCst);
                    drop(mine);
                })
            })
            .collect();
        for th in threads {
            th.join().expect("thread");
        }
        assert_eq!(t.open(ip("10.9.9.9")), 0);
    }
}
