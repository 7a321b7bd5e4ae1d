//! The worker's clock, read once per connection-task poll, and the one timer each
//! connection re-arms for its timed steps.
//!
//! A keep-alive request makes about five timed I/O steps (the idle wait, the head read,
//! the upstream write and read, the client write) and notes four instants (received,
//! connected, first byte, done). Read from the system clock each time and bounded by a
//! fresh monoio timer each (a wheel insert and remove, a 128-byte-aligned entry inside
//! every future that waits), that was about an eighth of the proxy's instructions per
//! request. nginx reads the clock once per event-loop turn and keeps one timer per
//! connection event; this module does the same within monoio:
//!
//! - [`now`] is the instant the current connection-task poll began ([`polled`] sets it;
//!   a poll never blocks, so it is at most one poll's CPU time old). Outside a connection
//!   task (accept loop, tests) it reads the clock.
//! - [`Deadline`] is one timer entry per connection. Arming it only records the instant;
//!   the entry is moved when a step needs an earlier instant than it is set to, and when
//!   it fires before the recorded instant it is set again (lazy, like nginx's timer
//!   tree updates and tokio's `Sleep::reset` extension). A step that completes never
//!   touches the wheel.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use monoio::time::{Instant, Sleep};

thread_local! {
    /// The instant the current connection-task poll began (`None` outside one).
    static POLL_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Now, to within the current poll: the instant the connection-task poll began, or the
/// clock outside one.
#[inline]
pub fn now() -> Instant {
    POLL_STARTED.with(Cell::get).unwrap_or_else(Instant::now)
}

/// Runs one poll of a connection task with [`now`] fixed at its start (nested calls
/// read the clock again and restore the outer instant when they return).
#[inline]
pub fn polled<T>(poll: impl FnOnce() -> T) -> T {
    /// Puts the outer instant back however `poll` ends (a panic included): a stale
    /// instant left behind would put every later deadline on this thread in the past.
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            POLL_STARTED.set(self.0);
        }
    }
    let _restore = Restore(POLL_STARTED.replace(Some(Instant::now())));
    poll()
}

/// A step did not complete within its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// One connection's timer, re-armed for each of its timed steps (one at a time).
#[derive(Default)]
pub struct Deadline {
    /// The timer entry (made at the first step, registered in the worker's wheel while
    /// a step waits) and when it is set to fire: never after `at` while a step waits.
    entry: Option<(Pin<Box<Sleep>>, Instant)>,
    /// When the current step times out.
    at: Option<Instant>,
}

impl Deadline {
    pub fn new() -> Self {
        Deadline::default()
    }

    /// Runs `step`, failing with [`Elapsed`] if it has not completed within `limit`
    /// (counted from now). Dropping the returned future cancels the step, as with
    /// `monoio::time::timeout`.
    pub fn within<F: Future>(&mut self, limit: Duration, step: F) -> Within<'_, F> {
        self.arm(now() + limit);
        Within {
            deadline: self,
            step,
        }
    }

    /// Sets the current step's deadline; the entry moves only if it would fire late.
    fn arm(&mut self, at: Instant) {
        self.at = Some(at);
        match &mut self.entry {
            Some((sleep, armed)) => {
                if at < *armed {
                    sleep.as_mut().reset(at);
                    *armed = at;
                }
            }
            None => self.entry = Some((Box::pin(monoio::time::sleep_until(at)), at)),
        }
    }

    /// Ready once the current step's deadline has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (Some((sleep, armed)), Some(at)) = (&mut self.entry, self.at) else {
            return Poll::Pending;
        };
        loop {
            ready!(sleep.as_mut().poll(cx));
            // The entry fired at an instant an earlier step set: it waits on, for the
            // later instant this step was given.
            if Instant::now() >= at {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(at);
            *armed = at;
        }
    }
}

pin_project_lite::pin_project! {
    /// A step bounded by its connection's [`Deadline`] (from [`Deadline::within`]). A
    /// hand-written future, not an async fn: that would hold the step twice (argument
    /// and pinned local), and steps are the largest futures on the request path.
    pub struct Within<'a, F> {
        deadline: &'a mut Deadline,
        #[pin]
        step: F,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.step.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        this.deadline.poll_expired(cx).map(|()| Err(Elapsed))
    }
}

/// A single-threaded runtime with a timer for unit tests (the legacy driver: no
/// io_uring needed).
#[cfg(test)]
pub(crate) fn test_runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("a test runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_completes_in_time_gives_its_output() {
        test_runtime().block_on(async {
            let mut d = Deadline::new();
            assert_eq!(d.within(Duration::from_secs(5), async { 7 }).await, Ok(7));
            // The entry is reused for the next step.
            assert_eq!(d.within(Duration::from_secs(5), async { 8 }).await, Ok(8));
        });
    }

    #[test]
    fn a_step_that_never_completes_times_out() {
        test_runtime().block_on(async {
            let mut d = Deadline::new();
            let started = Instant::now();
            let r = d
                .within(Duration::from_millis(20), std::future::pending::<()>())
                .await;
            assert_eq!(r, Err(Elapsed));
            assert!(Instant::now() >= started + Duration::from_millis(20));
        });
    }

    /// A later step's longer limit is honoured although the entry was set, by an
    /// earlier step, to fire sooner: the early firing re-arms instead of timing out.
    #[test]
    fn a_longer_limit_after_a_shorter_one_is_not_cut_short() {
        test_runtime().block_on(async {
            let mut d = Deadline::new();
            // Sets the entry to fire 10 ms from now.
            assert_eq!(d.within(Duration::from_millis(10), async {}).await, Ok(()));
            let started = Instant::now();
            // A step that completes only after 60 ms, with 10 s to do it.
            let step = monoio::time::sleep(Duration::from_millis(60));
            assert_eq!(d.within(Duration::from_secs(10), step).await, Ok(()));
            assert!(Instant::now() >= started + Duration::from_millis(60));
            // A shorter limit after a longer one moves the entry earlier.
            let started = Instant::now();
            let r = d
                .within(Duration::from_millis(15), std::future::pending::<()>())
                .await;
            assert_eq!(r, Err(Elapsed));
            let waited = Instant::now() - started;
            assert!(waited >= Duration::from_millis(15), "{waited:?}");
        });
    }

    #[test]
    fn a_panicking_poll_leaves_the_clock_live() {
        // resume_unwind unwinds like a panic without printing one to the test log.
        let bug = || -> () { std::panic::resume_unwind(Box::new("a connection bug")) };
        let r = std::panic::catch_unwind(|| polled(bug));
        assert!(r.is_err());
        assert_eq!(POLL_STARTED.with(Cell::get), None);
    }

    #[test]
    fn now_is_fixed_within_a_poll_and_the_clock_outside() {
        // (Each spin ends as soon as the clock has moved on.)
        let inside = polled(|| {
            let a = now();
            let outside = Instant::now();
            while Instant::now() == outside {}
            (a, now())
        });
        assert_eq!(inside.0, inside.1);
        let a = now();
        while Instant::now() == a {}
        assert!(now() > a);
    }
}
