//! A one-shot, worker-local signal ("drain now") that any number of tasks can wait on.
//!
//! Single-threaded by construction (`Rc`, `Cell`): the only cross-thread hop is the
//! channel that tells the worker to stop, which then raises this flag locally. Waiters
//! register in a slab and deregister on drop, so idle keep-alive connections waiting on
//! it cost one slot each and nothing grows over time.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A flag that is raised once and wakes every waiter.
#[derive(Default)]
pub struct LocalSignal {
    raised: Cell<bool>,
    waiters: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl LocalSignal {
    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    /// Raises the flag and wakes all current waiters.
    pub fn raise(&self) {
        self.raised.set(true);
        let wakers: Vec<Waker> = {
            let mut s = self.waiters.borrow_mut();
            s.wakers.iter_mut().filter_map(Option::take).collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Completes once the flag is raised.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            signal: self,
            slot: None,
        }
    }
}

/// Future returned by [`LocalSignal::wait`].
pub struct Wait<'a> {
    signal: &'a LocalSignal,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.get() {
            return Poll::Ready(());
        }
        let mut s = self.signal.waiters.borrow_mut();
        match self.slot {
            Some(i) => s.wakers[i] = Some(cx.waker().clone()),
            None => {
                let i = match s.free.pop() {
                    Some(i) => {
                        s.wakers[i] = Some(cx.waker().clone());
                        i
                    }
                    None => {
                        s.wakers.push(Some(cx.waker().clone()));
                        s.wakers.len() - 1
                    }
                };
                drop(s);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut s = self.signal.waiters.borrow_mut();
            s.wakers[i] = None;
            s.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_waiters_and_reuses_slots() {
        let sig = LocalSignal::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut w = Box::pin(sig.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            sig.waiters.borrow().wakers.len(),
            1,
            "dropped waiters free their slot"
        );
        let mut a = Box::pin(sig.wait());
        let mut b = Box::pin(sig.wait());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        sig.raise();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        let mut late = Box::pin(sig.wait());
        assert!(
            late.as_mut().poll(&mut cx).is_ready(),
            "a raised signal is ready at once"
        );
    }
}
