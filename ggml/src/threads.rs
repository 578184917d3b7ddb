//! How many threads the crate's parallel work uses: graph computations (unless
//! [`crate::Compute::threads`] says otherwise) and large conversions run on all
//! cores by default, or on at most [`set_max_threads`] threads.
//!
//! The core count is read once per process (`available_parallelism`, which
//! honours CPU affinity and cgroup quotas, costs tens of microseconds a call).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The user's cap; 0 means none.
static MAX_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Cores this process may run on, read once.
pub fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Caps the threads of graph computations and conversions at `n` for the whole
/// process; `0` removes the cap (all cores, the default).
pub fn set_max_threads(n: usize) {
    MAX_THREADS.store(n, Ordering::Relaxed);
}

/// Threads the crate's parallel work uses by default: all cores, or the cap
/// set by [`set_max_threads`] (at least 1).
pub fn max_threads() -> usize {
    match MAX_THREADS.load(Ordering::Relaxed) {
        0 => available_cores(),
        n => n,
    }
}
