//! ⑥ Rate limits: nginx's `limit_req`, exact for the whole host.
//!
//! A route's `rate_limit = ["NAME", ...]` names `[rate_limit.NAME]` tables; [`check`]
//! charges the request to each in order, with nginx's arithmetic ([`algo`]): the
//! request is refused with the limit's `status` (429 by default; the exchange adds
//! `Retry-After`, whole seconds until the key's next request would pass, at least 1),
//! admitted at once, or admitted after a delay the caller waits on a timer
//! ([`Decision::Delay`]; never a busy wait, never holding the worker). As in nginx's
//! handler, several limits are all charged when the request passes them all; when one
//! refuses, the first refusal answers and the limits before it are refunded (nginx
//! charges none of them then), and the longest delay of the passing limits is waited.
//! A request without the limit's key (no such field, no client certificate, an empty
//! value) is not counted by that limit, as nginx skips an empty key. The key of a
//! `client_ip` limit is the IPv4 address or the IPv6 address's /64.
//!
//! **Exact across workers.** SO_REUSEPORT spreads one client's connections over every
//! worker, so the state is shared: one [`table::Table`] per limit, `Arc`-shared by all
//! workers, one 64-bit word per key packing nginx's `(last, excess)`, updated by
//! compare-and-swap with nginx's formula. Every request is one atomic step on its key,
//! so any interleaving of the workers' requests gives the answers nginx gives to some
//! order of the same requests — exact per key, like nginx's zone mutex, without a lock:
//! on a hot key a worker retries a failed CAS (a few ns) instead of sleeping on a mutex.
//! Keys are compared exactly (an IP is stored as it is, a long key as a keyed 128-bit
//! digest), so two clients are never merged by a 64-bit hash collision. Alternatives
//! set aside: per-worker buckets and approximate sketches (Pingora's count-min `Rate`)
//! are not exact; steering each key to an owner worker costs a cross-thread message
//! and a wake-up per request, more than a CAS on a shared line.
//!
//! **Memory.** `max_keys` sizes the table (twice as many 32-byte slots, allocated in
//! 128 KiB segments as keys arrive). A key whose excess has leaked away is
//! indistinguishable from a new key, so its slot is taken over freely; only when a
//! key's 16-slot neighbourhood holds no such key is the least recently admitted one
//! forgotten, as nginx forgets its oldest key when the zone is full. If every key in
//! the neighbourhood was admitted within the same millisecond, the new key is refused
//! (nginx: "could not allocate node", answered with the limit's status).
//!
//! **Reloads.** A limit whose name, key and `max_keys` are unchanged keeps its table
//! (the counts go on); a changed `rate`, `burst` or `delay` applies to the kept state,
//! as nginx keeps a zone whose name and size are unchanged.
//!
//! **Elsewhere.** The state is behind [`RateLimitStore`]; a store shared by a fleet (Redis)
//! can fill it. Nothing here does I/O or chooses a status number other than the one
//! configured.

pub mod algo;
pub mod table;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{LimitKey, RateLimitConfig};
use crate::message::Request;
use algo::{Charge, Params};
use table::{Occupancy, Step, Table, Updated};

/// What one request's rate limits decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted now.
    Continue,
    /// Admitted after waiting this long (nginx's delay).
    Delay(Duration),
    /// Refused.
    Refuse(Refusal),
}

/// A refusal, for the answer and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Index of the refusing limit in the generation's rate limits.
    pub limit: usize,
    /// The limit's `status`.
    pub status: u16,
    /// `Retry-After`, seconds (≥ 1).
    pub retry_after_secs: u64,
    pub reason: Reason,
}

/// Why a limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The key's excess would go over `burst`.
    Burst,
    /// The key is new and its neighbourhood in the table holds only keys admitted this
    /// millisecond.
    TableFull,
}

impl Reason {
    /// The `reason` label of `ringgate_policy_rejections_total`.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Burst => "burst_exceeded",
            Reason::TableFull => "table_full",
        }
    }
}

/// What charging one request to one key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charged {
    /// Admitted with this excess (milli-requests); the receipt takes it back.
    Admitted { excess: u64, receipt: Receipt },
    /// Refused with this excess; nothing charged.
    Refused { excess: u64 },
    /// The store has no room for a new key; nothing charged.
    Full,
}

/// What [`RateLimitStore::refund`] needs to take one admitted request back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The key's word before (`None`: the key was new).
    previous: Option<u64>,
    /// The word the charge stored.
    stored: u64,
}

/// Where the per-key state of one limit lives. [`LocalStore`] keeps it in this
/// process, shared by its workers; a store shared by several hosts (Redis, with the
/// same arithmetic in a script) can implement this too.
pub trait RateLimitStore: Send + Sync {
    /// Charges one request at `now_ms` to `key` (the key's bytes), atomically for the key.
    fn charge(&self, key: &[u8], now_ms: u64, params: &Params) -> Charged;
    /// Takes back a request [`RateLimitStore::charge`] admitted (a later limit refused
    /// it): exactly, when nothing touched the key since; else one request's excess
    /// off.
    fn refund(&self, key: &[u8], receipt: Receipt);
}

/// The in-process store: a lock-free [`Table`] shared by every worker.
pub struct LocalStore {
    table: Table,
}

impl LocalStore {
    pub fn new(max_keys: usize) -> LocalStore {
        LocalStore {
            table: Table::new(max_keys),
        }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// A key's state, for tests (`None`: absent).
    pub fn state(&self, key: &[u8]) -> Option<algo::State> {
        let word = self.table.get(self.table.key(key))?;
        (!algo::is_tombstone(word)).then(|| algo::unpack(word))
    }
}

/// Which keys a rate table may drop at `now_ms`.
struct Leaky<'a> {
    now_ms: u64,
    params: &'a Params,
}

impl Occupancy for Leaky<'_> {
    fn reclaimable(&self, word: u64) -> bool {
        let s = algo::unpack(word);
        if algo::is_tombstone(word) {
            // Taken over only after its `last`, like any other.
            return s.last_ms < self.now_ms;
        }
        algo::is_spent(s, self.now_ms, self.params)
    }

    fn keep_rank(&self, word: u64) -> Option<u64> {
        // The least recently admitted goes first, never one admitted this millisecond
        // (its `last` would not move forward: an old word could be mistaken for it).
        let last = algo::unpack(word).last_ms;
        (last < self.now_ms).then_some(last)
    }
}

impl RateLimitStore for LocalStore {
    fn charge(&self, key: &[u8], now_ms: u64, params: &Params) -> Charged {
        let key = self.table.key(key);
        let occupancy = Leaky { now_ms, params };
        let updated = self.table.update(key, &occupancy, |word| {
            // A tombstone is an absent key whose slot's `last` must not go back.
            let floor = word
                .filter(|w| algo::is_tombstone(*w))
                .map(|w| algo::unpack(w).last_ms);
            let prev = word.filter(|w| !algo::is_tombstone(*w)).map(algo::unpack);
            match algo::charge(prev, now_ms, params) {
                Charge::Admit(mut state) => {
                    state.last_ms = state.last_ms.max(floor.unwrap_or(0));
                    Step::Store(algo::pack(state), state.excess)
                }
                Charge::Refuse { excess } => Step::Decline(excess),
            }
        });
        match updated {
            Updated::Stored {
                answer,
                previous,
                word,
            } => Charged::Admitted {
                excess: answer,
                receipt: Receipt {
                    previous,
                    stored: word,
                },
            },
            Updated::Declined(excess) => Charged::Refused { excess },
            Updated::Full => Charged::Full,
        }
    }

    fn refund(&self, key: &[u8], receipt: Receipt) {
        let key = self.table.key(key);
        // A new key goes back to absent, as a tombstone: an EMPTY word could later be
        // followed by a new occupant's word equal to ours (same ms), and a worker still
        // holding ours would then charge that occupant.
        let stored_last = algo::unpack(receipt.stored).last_ms;
        let previous = receipt
            .previous
            .unwrap_or_else(|| algo::tombstone(stored_last));
        if self.table.restore(key, receipt.stored, previous) {
            return;
        }
        // Charged again since: take one request's excess off what is there now.
        let never = Leaky {
            now_ms: 0,
            params: &Params {
                rate: 1,
                burst: 0,
                delay: 0,
            },
        };
        let _ = self.table.update(key, &never, |word| match word {
            Some(w) if !algo::is_tombstone(w) => {
                let mut s = algo::unpack(w);
                s.excess = s.excess.saturating_sub(1000);
                Step::Store(algo::pack(s), ())
            }
            _ => Step::Decline(()),
        });
    }
}

/// One `[rate_limit.NAME]` of a generation: its settings and its (shared) state.
pub struct Limiter {
    pub config: RateLimitConfig,
    pub params: Params,
    pub store: Arc<dyn RateLimitStore>,
}

impl Limiter {
    /// A limiter for `config`, keeping `previous`'s state when it counts the same keys
    /// in a table of the same size.
    pub fn new(config: &RateLimitConfig, previous: Option<&Limiter>) -> Limiter {
        let kept = previous.filter(|p| {
            p.config.name == config.name
                && p.config.key == config.key
                && p.config.max_keys == config.max_keys
        });
        let store = match kept {
            Some(p) => p.store.clone(),
            None => Arc::new(LocalStore::new(config.max_keys)) as Arc<dyn RateLimitStore>,
        };
        Limiter {
            config: config.clone(),
            params: params(config),
            store,
        }
    }
}

/// nginx's units for `config`.
pub fn params(config: &RateLimitConfig) -> Params {
    Params {
        rate: config.rate,
        burst: config.burst * 1000,
        delay: config.delay.map_or(u64::MAX, |d| d * 1000),
    }
}

/// The process's rate-limit clock: ms since the first call, plus 1 (a stored `last` is
/// never 0). One clock for every table, so a table kept across a reload stays on it.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_millis() as u64 + 1
}

/// The bytes `key` takes from `req`, in `buf` when they are made here; `None`: the
/// request has no such key (not counted by this limit).
pub fn key_of<'a>(key: &LimitKey, req: &'a Request, buf: &'a mut [u8; 8]) -> Option<&'a [u8]> {
    let bytes: &[u8] = match key {
        LimitKey::ClientIp => match req.client.addr.ip().to_canonical() {
            std::net::IpAddr::V4(v4) => {
                buf[..4].copy_from_slice(&v4.octets());
                &buf[..4]
            }
            std::net::IpAddr::V6(v6) => {
                buf.copy_from_slice(&v6.octets()[..8]);
                &buf[..]
            }
        },
        LimitKey::Header(name) => req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.as_ref())?,
        LimitKey::ClientCertDn => req.tls.as_ref()?.client_identity.as_ref()?.subject.as_ref(),
    };
    (!bytes.is_empty()).then_some(bytes)
}

/// Charges `req` to the route's limits (`route`: indexes into `limiters`) at `now_ms`.
pub fn check(limiters: &[Arc<Limiter>], route: &[usize], req: &Request, now_ms: u64) -> Decision {
    /// Admitted charges so far, to refund after a refusal (a route names at most 8).
    const MAX: usize = 8;
    let mut charged: [Option<(usize, Receipt)>; MAX] = [None; MAX];
    let mut delay = 0u64;
    for (n, &i) in route.iter().enumerate().take(MAX) {
        let limiter = &limiters[i];
        let mut buf = [0u8; 8];
        let Some(key) = key_of(&limiter.config.key, req, &mut buf) else {
            continue;
        };
        let refused = |excess: u64, reason| Refusal {
            limit: i,
            status: limiter.config.status,
            retry_after_secs: algo::retry_after_secs(excess, &limiter.params),
            reason,
        };
        let refusal = match limiter.store.charge(key, now_ms, &limiter.params) {
            Charged::Admitted { excess, receipt } => {
                charged[n] = Some((i, receipt));
                delay = delay.max(algo::delay_ms(excess, &limiter.params));
                continue;
            }
            Charged::Refused { excess } => refused(excess, Reason::Burst),
            Charged::Full => refused(limiter.params.burst, Reason::TableFull),
        };
        for (j, receipt) in charged.iter().take(n).flatten() {
            let limiter = &limiters[*j];
            let mut buf = [0u8; 8];
            if let Some(key) = key_of(&limiter.config.key, req, &mut buf) {
                limiter.store.refund(key, *receipt);
            }
        }
        return Decision::Refuse(refusal);
    }
    if delay == 0 {
        Decision::Continue
    } else {
        Decision::Delay(Duration::from_millis(delay))
    }
}
