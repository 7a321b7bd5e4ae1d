//! A worker's spare splice pipes: reused across exchanges so a spliced body does not
//! cost two `pipe2` calls, but bounded, so a burst cannot leave descriptors behind.
//!
//! A spliced exchange holds one pipe (two descriptors) from its first splice to its end;
//! a burst of large downloads to slow clients holds as many as there are downloads at
//! once. When they end, at most [`SPARE_PIPES_MAX`] go back to the pool and the rest are
//! closed; and every [`trim`](PipePool::trim) (once a second, from the worker's
//! housekeeping loop) closes the spares that no exchange took since the previous trim,
//! so a quiet worker keeps none. Only pipes that ended an exchange empty come back (the
//! splice code drops one after an error), so a spare never holds stale bytes.
//! Nothing here blocks or fails: a pipe that cannot be made is the caller's error (500).

use std::cell::{Cell, RefCell};

use monoio::net::Pipe;

use crate::observe::Local;

/// Spare pipes a worker keeps at most (two descriptors and, while in use, up to 64 KiB
/// of kernel buffer each): enough for the spliced bodies a worker typically has in
/// flight at once; more at once pay `pipe2` (cheap next to the body they move).
pub const SPARE_PIPES_MAX: usize = 8;

/// A splice pipe: (read end, write end).
pub type PipePair = (Pipe, Pipe);

/// One worker's spare pipes (used by that worker only).
pub struct PipePool {
    /// Most recently returned last (taken first: its pages are the warmest).
    spare: RefCell<Vec<PipePair>>,
    /// The fewest spares seen since the last trim: that many sat unused all along.
    low: Cell<usize>,
    metrics: Local,
}

impl PipePool {
    pub fn new(metrics: Local) -> PipePool {
        PipePool {
            spare: RefCell::default(),
            low: Cell::new(0),
            metrics,
        }
    }

    /// A spare pipe, if any (the caller makes a new one otherwise).
    pub fn take(&self) -> Option<PipePair> {
        let mut spare = self.spare.borrow_mut();
        let pipe = spare.pop();
        self.low.set(self.low.get().min(spare.len()));
        self.count(spare.len());
        pipe
    }

    /// Keeps an empty pipe for the next splice, or closes it when the pool is full.
    pub fn put(&self, pipe: PipePair) {
        let mut spare = self.spare.borrow_mut();
        if spare.len() < SPARE_PIPES_MAX {
            spare.push(pipe);
        }
        self.count(spare.len());
    }

    /// Closes the spares no exchange needed since the previous trim (the oldest first).
    pub fn trim(&self) {
        let mut spare = self.spare.borrow_mut();
        let idle = self.low.get().min(spare.len());
        spare.drain(..idle);
        self.low.set(spare.len());
        self.count(spare.len());
    }

    /// Spare pipes kept now.
    pub fn spare(&self) -> usize {
        self.spare.borrow().len()
    }

    fn count(&self, n: usize) {
        self.metrics.splice_pipes_spare.set(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> PipePair {
        monoio::net::unix::new_pipe().unwrap()
    }

    #[test]
    fn capped_and_trimmed_when_idle() {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(async {
                let metrics = crate::observe::Registry::new(1, 1).local(0);
                let pool = PipePool::new(metrics.clone());
                // A burst: more pipes in use at once than the pool keeps.
                let burst: Vec<PipePair> = (0..SPARE_PIPES_MAX + 5).map(|_| pipe()).collect();
                for p in burst {
                    pool.put(p);
                }
                assert_eq!(pool.spare(), SPARE_PIPES_MAX);
                assert_eq!(metrics.splice_pipes_spare.get(), SPARE_PIPES_MAX as u64);
                // Three in use during the next interval: the rest were idle all along.
                pool.trim();
                let used: Vec<PipePair> = (0..3).map(|_| pool.take().unwrap()).collect();
                for p in used {
                    pool.put(p);
                }
                pool.trim();
                assert_eq!(pool.spare(), 3);
                // A quiet interval: nothing is kept.
                pool.trim();
                assert_eq!(pool.spare(), 0);
                assert_eq!(metrics.splice_pipes_spare.get(), 0);
                assert!(pool.take().is_none());
            });
    }
}
