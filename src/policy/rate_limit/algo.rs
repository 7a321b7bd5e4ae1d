//! nginx's `limit_req` arithmetic, in its units, on one key's state: no I/O, no clock,
//! no table. `ngx_http_limit_req_lookup` / `_account` keep, per key, the time of the
//! last admitted request (ms) and the excess in milli-requests; a request computes
//! `excess = last_excess - rate * ms / 1000 + 1000` (`rate` in milli-requests per
//! second, `ms` since the last admitted request), clamps it at 0, is refused when it
//! exceeds `burst * 1000` (and then changes nothing), and otherwise stores it with
//! `last = now`. A key seen for the first time is admitted with excess 0. The admitted
//! excess beyond `delay * 1000` waits `(excess - delay * 1000) * 1000 / rate` ms.
//! Integer division throughout, as nginx's, so the same request times give the same
//! answers.

/// One limit's parameters in nginx's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Milli-requests per second (`10r/s` → 10,000; `600r/m` → 10,000; `1r/m` → 16).
    pub rate: u64,
    /// Milli-requests of excess allowed (`burst * 1000`).
    pub burst: u64,
    /// Milli-requests of excess admitted without waiting (`delay * 1000`; `nodelay`:
    /// [`u64::MAX`]).
    pub delay: u64,
}

/// One key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// When the last admitted request came, ms on the limiter's clock (≥ 1).
    pub last_ms: u64,
    /// Milli-requests.
    pub excess: u64,
}

/// What one request does to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Admitted: store `state`.
    Admit(State),
    /// Refused with this excess (nothing stored).
    Refuse { excess: u64 },
}

/// Bits of the packed word holding `excess` (up to 2^26 - 1 milli-requests: `burst`
/// up to [`MAX_BURST`]).
const EXCESS_BITS: u32 = 26;
/// The largest `burst` (and `delay`) the packed word can carry; the largest rate, in
/// requests per second (keeps `rate * ms` exact and makes a reclaimable key's `last`
/// older than the current millisecond). Defined with the settings `ringgate check`
/// bounds by them.
pub use crate::config::rate_limit::{MAX_BURST, MAX_RATE_PER_SECOND};

/// nginx's step for one request at `now_ms` on a key whose state is `prev` (`None`:
/// not seen, or forgotten).
///
/// One difference, only visible with several threads: when a worker's `now` is
/// behind the key's `last` (another worker read the clock later and stored first), the
/// elapsed time counts as 0 and `last` stays — as if this request came at `last`.
/// nginx (one clock read per event-loop turn per worker, under a mutex) clamps the
/// same case to 0 ms too.
pub fn charge(prev: Option<State>, now_ms: u64, p: &Params) -> Charge {
    let Some(s) = prev else {
        return Charge::Admit(State {
            last_ms: now_ms,
            excess: 0,
        });
    };
    let excess = leaked(s, now_ms, p) + 1000;
    let excess = excess.max(0) as u64;
    if excess > p.burst {
        return Charge::Refuse { excess };
    }
    Charge::Admit(State {
        last_ms: now_ms.max(s.last_ms),
        excess,
    })
}

/// `excess - rate * ms / 1000`, signed (what is left of the excess at `now_ms`).
fn leaked(s: State, now_ms: u64, p: &Params) -> i64 {
    let ms = now_ms.saturating_sub(s.last_ms);
    // Saturating: past the point where the product overflows the excess is gone anyway.
    let leak = p.rate.saturating_mul(ms) / 1000;
    s.excess as i64 - leak.min(i64::MAX as u64 / 2) as i64
}

/// How long an admitted request with `excess` waits (nginx's delay), in ms.
pub fn delay_ms(excess: u64, p: &Params) -> u64 {
    if excess <= p.delay {
        0
    } else {
        (excess - p.delay) * 1000 / p.rate
    }
}

/// After a refusal with `excess`: whole seconds until the same key's next request
/// would be admitted, at least 1 (`Retry-After`).
pub fn retry_after_secs(excess: u64, p: &Params) -> u64 {
    // Admitted once rate * ms / 1000 >= excess - burst.
    let ms = (excess - p.burst.min(excess)) * 1000;
    let ms = ms.div_ceil(p.rate);
    ms.div_ceil(1000).max(1)
}

/// The key behaves as one never seen: its next request would be admitted with excess
/// 0, exactly as a new key's. Such a key's slot can be taken without changing any
/// answer.
pub fn is_spent(s: State, now_ms: u64, p: &Params) -> bool {
    leaked(s, now_ms, p) + 1000 <= 0
}

/// `state` as one word: `last_ms` in the high 38 bits (8.7 years of ms), `excess` in the
/// low 26. Never 0 (`last_ms` ≥ 1) and never all ones.
pub fn pack(s: State) -> u64 {
    (s.last_ms << EXCESS_BITS) | s.excess
}

/// The word of a key taken back by a refund: absent, but its slot remembers `last_ms`
/// (an excess no limit can reach marks it), so the slot's `last` never goes back.
pub fn tombstone(last_ms: u64) -> u64 {
    (last_ms << EXCESS_BITS) | TOMBSTONE_EXCESS
}

/// Whether `word` is a [`tombstone`].
pub fn is_tombstone(word: u64) -> bool {
    word & ((1 << EXCESS_BITS) - 1) == TOMBSTONE_EXCESS
}

/// Above any `burst * 1000` ([`MAX_BURST`]), below the all-ones of a busy slot.
const TOMBSTONE_EXCESS: u64 = (1 << EXCESS_BITS) - 2;

pub fn unpack(word: u64) -> State {
    State {
        last_ms: word >> EXCESS_BITS,
        excess: word & ((1 << EXCESS_BITS) - 1),
    }
}
