//! The shared key → word table behind the rate limits and the per-IP connection counts:
//! one table per limit, shared by `Arc` by every worker, exact per key, updates
//! lock-free.
//!
//! Layout: `2^k` slots of 32 bytes (two to a cache line), in segments of
//! [`SEGMENT_SLOTS`] allocated on first use, so a table sized for a million keys costs
//! memory only for the segments keys have landed in. A slot holds the key (128 bits:
//! [`Key`]) and one `AtomicU64` word whose meaning belongs to the caller (the rate
//! limiter packs nginx's `(last, excess)` into it, the connection table a tag and a
//! count). A key lives in one of the [`WINDOW`] slots after its home slot (linear
//! probing inside its segment).
//!
//! - **Update of a present key** (every request but a key's first): probe the window,
//!   read the slot's word (acquire), check the key, compute the new word, compare-and-swap.
//!   No lock; a failed CAS re-reads and recomputes. The caller's words must make an
//!   old occupant's word impossible to mistake for a later occupant's (the rate limiter's
//!   `last` never goes back in a slot and a slot is only taken over after its `last`;
//!   the connection table carries a tag bumped at each take-over), so a CAS that
//!   succeeds was computed from the key it read.
//! - **Insertion** (a key's first request, or its first after it was forgotten) takes
//!   its segment's mutex, looks again (another worker may have inserted it), then takes
//!   an empty slot of the window, or a reclaimable one (the caller says which: a rate
//!   key whose excess has leaked away, a connection count at zero), or else the one the
//!   caller ranks least worth keeping (nginx forgets its least recently used key when
//!   the zone is full). While a slot changes hands its word reads [`BUSY`] for a few
//!   stores; a reader that meets it waits (spins, then yields).
//!
//! Never blocks on I/O; the only lock is the insertion mutex of one segment.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Slots per segment (128 KiB at 32 bytes each): the unit allocated on first use.
pub const SEGMENT_SLOTS: usize = 4096;
/// Slots a key may live in after its home slot: 16 keeps a probe within one or two
/// 4 KiB pages and makes a window of live keys that is full rare at half load.
pub const WINDOW: usize = 16;
/// The word of a slot nobody has taken.
pub const EMPTY: u64 = 0;
/// The word of a slot changing hands (never a caller's word).
pub const BUSY: u64 = u64::MAX;

/// A key's identity: 128 bits compared exactly. Keys of up to 15 bytes are stored as
/// they are (an IP, a /64 prefix); longer ones as a keyed 128-bit digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub hi: u64,
    pub lo: u64,
}

#[repr(align(32))]
#[derive(Default)]
struct Slot {
    hi: AtomicU64,
    lo: AtomicU64,
    word: AtomicU64,
}

#[derive(Default)]
struct Segment {
    slots: OnceLock<Box<[Slot]>>,
    insert: Mutex<()>,
}

/// What an insertion does when it meets an occupied slot.
pub trait Occupancy {
    /// The occupant's word says it can go: taking its slot changes no answer.
    fn reclaimable(&self, word: u64) -> bool;
    /// How much the occupant is worth keeping when nothing is reclaimable (the
    /// lowest is evicted); `None`: never evict it.
    fn keep_rank(&self, word: u64) -> Option<u64>;
}

/// The outcome of [`Table::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated<R> {
    /// The closure's answer, its word stored (`previous` is what it replaced; `None`:
    /// the key was inserted).
    Stored {
        answer: R,
        previous: Option<u64>,
        word: u64,
    },
    /// The closure declined to store a word.
    Declined(R),
    /// The key is absent and its window holds no slot that may be taken.
    Full,
}

/// What the update closure decides.
pub enum Step<R> {
    Store(u64, R),
    Decline(R),
}

/// A fixed-size table of keys and words.
pub struct Table {
    segments: Box<[Segment]>,
    /// `slots - 1` (slots is a power of two).
    mask: usize,
    /// Two independently keyed hashers: the home slot, and the digest of long keys.
    home: RandomState,
    digest: (RandomState, RandomState),
}

impl Table {
    /// A table with room for about `keys` keys (twice as many slots, a power of two, at
    /// least one segment).
    pub fn new(keys: usize) -> Table {
        let slots = keys
            .saturating_mul(2)
            .max(SEGMENT_SLOTS)
            .checked_next_power_of_two()
            .unwrap_or(1 << 40);
        let segments = (0..slots / SEGMENT_SLOTS)
            .map(|_| Segment::default())
            .collect();
        Table {
            segments,
            mask: slots - 1,
            home: RandomState::new(),
            digest: (RandomState::new(), RandomState::new()),
        }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The identity of key bytes: exact up to 15 bytes, else a keyed 128-bit digest
    /// (top bit set, so the two kinds never meet).
    pub fn key(&self, bytes: &[u8]) -> Key {
        if bytes.len() < 16 {
            let mut b = [0u8; 16];
            b[0] = bytes.len() as u8;
            b[1..=bytes.len()].copy_from_slice(bytes);
            let hi = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            let lo = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
            Key { hi, lo }
        } else {
            Key {
                hi: self.digest.0.hash_one(bytes) | 1 << 63,
                lo: self.digest.1.hash_one(bytes),
            }
        }
    }

    fn segment(&self, key: Key) -> (&Segment, usize) {
        let h = self.home.hash_one(key) as usize & self.mask;
        (&self.segments[h / SEGMENT_SLOTS], h % SEGMENT_SLOTS)
    }

    fn slots<'a>(&self, seg: &'a Segment) -> &'a [Slot] {
        seg.slots
            .get_or_init(|| (0..SEGMENT_SLOTS).map(|_| Slot::default()).collect())
    }

    /// Runs `step` on `key`'s word (`None`: the key is absent) and stores what it
    /// returns, atomically for that key: `step` may run several times (after a lost
    /// race) and must be a pure function of its argument.
    pub fn update<R>(
        &self,
        key: Key,
        occupancy: &impl Occupancy,
        mut step: impl FnMut(Option<u64>) -> Step<R>,
    ) -> Updated<R> {
        let (seg, home) = self.segment(key);
        let slots = self.slots(seg);
        loop {
            match find(slots, home, key) {
                Some((slot, word)) => {
                    match step(Some(word)) {
                        Step::Decline(r) => return Updated::Declined(r),
                        Step::Store(new, answer) => {
                            if slot
                                .word
                                .compare_exchange(word, new, Ordering::AcqRel, Ordering::Acquire)
                                .is_ok()
                            {
                                return Updated::Stored {
                                    answer,
                                    previous: Some(word),
                                    word: new,
                                };
                            }
                            // Lost a race: read again (the slot may have changed hands).
                        }
                    }
                }
                None => {
                    let _guard = seg.insert.lock().unwrap_or_else(|p| p.into_inner());
                    // Another worker may have inserted it meanwhile: back to the CAS path.
                    if find(slots, home, key).is_some() {
                        continue;
                    }
                    let Some((slot, old)) = victim(slots, home, occupancy) else {
                        return Updated::Full;
                    };
                    match step(None) {
                        Step::Decline(r) => return Updated::Declined(r),
                        Step::Store(new, answer) => {
                            if slot
                                .word
                                .compare_exchange(old, BUSY, Ordering::AcqRel, Ordering::Acquire)
                                .is_err()
                            {
                                // The occupant was updated meanwhile: choose again.
                                continue;
                            }
                            slot.hi.store(key.hi, Ordering::Relaxed);
                            slot.lo.store(key.lo, Ordering::Relaxed);
                            slot.word.store(new, Ordering::Release);
                            return Updated::Stored {
                                answer,
                                previous: None,
                                word: new,
                            };
                        }
                    }
                }
            }
        }
    }

    /// Sets `key`'s word back from `ours` to `previous` if nobody changed it since;
    /// `false` when it changed (or the key is gone).
    pub fn restore(&self, key: Key, ours: u64, previous: u64) -> bool {
        let (seg, home) = self.segment(key);
        match find(self.slots(seg), home, key) {
            Some((slot, word)) if word == ours => slot
                .word
                .compare_exchange(ours, previous, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok(),
            _ => false,
        }
    }

    /// The key's current word, if present.
    pub fn get(&self, key: Key) -> Option<u64> {
        let (seg, home) = self.segment(key);
        find(self.slots(seg), home, key).map(|(_, w)| w)
    }
}

/// The slot holding `key` in the window at `home`, and the word read from it (the key
/// was read after the word, so the word belonged to it unless the slot changed hands —
/// which then fails the caller's CAS).
fn find(slots: &[Slot], home: usize, key: Key) -> Option<(&Slot, u64)> {
    for i in 0..WINDOW {
        let slot = &slots[(home + i) % SEGMENT_SLOTS];
        let word = wait_settled(slot);
        if word == EMPTY {
            continue;
        }
        if slot.hi.load(Ordering::Relaxed) == key.hi && slot.lo.load(Ordering::Relaxed) == key.lo {
            return Some((slot, word));
        }
    }
    None
}

/// The slot's word once it is not changing hands.
fn wait_settled(slot: &Slot) -> u64 {
    let mut spins = 0u32;
    loop {
        let word = slot.word.load(Ordering::Acquire);
        if word != BUSY {
            return word;
        }
        // Set and cleared under an insertion mutex a few stores apart: spin briefly,
        // then let the (possibly preempted) writer run.
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The slot an insertion takes (under the segment's mutex): the first empty one, else
/// the first reclaimable one, else the lowest ranked; with the word it held.
fn victim<'a>(
    slots: &'a [Slot],
    home: usize,
    occupancy: &impl Occupancy,
) -> Option<(&'a Slot, u64)> {
    let mut lowest: Option<(&Slot, u64, u64)> = None;
    for i in 0..WINDOW {
        let slot = &slots[(home + i) % SEGMENT_SLOTS];
        let word = wait_settled(slot);
        if word == EMPTY || occupancy.reclaimable(word) {
            return Some((slot, word));
        }
        if let Some(rank) = occupancy.keep_rank(word)
            && lowest.is_none_or(|(_, _, r)| rank < r)
        {
            lowest = Some((slot, word, rank));
        }
    }
    lowest.map(|(s, w, _)| (s, w))
}
