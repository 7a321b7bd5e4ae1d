//! The allocator's side of memory per connection.
//!
//! mimalloc (the binaries' global allocator) returns freed pages to the OS only after a
//! delay, and only when the thread that owns them calls into the allocator again. A
//! worker that goes quiet — ten thousand idle keep-alive connections and no traffic —
//! therefore keeps every page its handshakes and bursts once touched: about 30 kB of RSS
//! per idle TLS connection instead of the ~6 kB that is live (loadtest/heap_profile.sh). Each worker calls
//! [`release_free_memory`] once a second, like jemalloc's background purging thread, but
//! on its own thread (mimalloc heaps are thread-local) and at a cost of microseconds.

#![allow(
    unsafe_code,
    reason = "mimalloc's collection entry point is a C function; it has no safe wrapper"
)]

/// Returns this thread's fully free pages to the OS (those past mimalloc's purge delay).
/// Harmless when mimalloc is not the global allocator (the library's tests): it then
/// tidies an empty heap.
pub fn release_free_memory() {
    // SAFETY: mi_collect has no preconditions; with force = false it only frees pages of
    // the calling thread's heap that hold no live block, and it never moves live
    // allocations, so no pointer held anywhere is invalidated.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
