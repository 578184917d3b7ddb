//! How many threads the crate's parallel work uses: graph computations (unless
//! [`crate::Compute::threads`] says otherwise) and large conversions run on all
//! cores by default, or on at most [`set_max_threads`] threads.
//!
//! Every thread count is clamped to [`MAX_THREADS`], ggml's own limit
//! (`GGML_MAX_N_THREADS`, 512): its thread pool has a fixed table of that many
//! workers and reads past it for larger counts.
//!
//! The core count is read once per process (`available_parallelism`, which
//! honours CPU affinity and cgroup quotas, costs tens of microseconds a call).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The most threads ggml computes a graph on (`GGML_MAX_N_THREADS`); larger
/// requests are clamped to it.
pub const MAX_THREADS: usize = ggml_sys::GGML_MAX_N_THREADS as usize;

/// The user's cap; 0 means none.
static MAX_THREADS_CAP: AtomicUsize = AtomicUsize::new(0);

/// Cores this process may run on, read once (at most [`MAX_THREADS`]).
pub fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    })
}

/// Caps the threads of graph computations and conversions at `n` for the whole
/// process; `0` removes the cap (all cores, the default). Values above
/// [`MAX_THREADS`] are clamped to it.
pub fn set_max_threads(n: usize) {
    MAX_THREADS_CAP.store(n.min(MAX_THREADS), Ordering::Relaxed);
}

/// Threads the crate's parallel work uses by default: all cores, or the cap
/// set by [`set_max_threads`] (at least 1, at most [`MAX_THREADS`]).
pub fn max_threads() -> usize {
    match MAX_THREADS_CAP.load(Ordering::Relaxed) {
        0 => available_cores(),
        n => n,
    }
}

/// A thread count as ggml takes it: clamped to `1..=MAX_THREADS`.
pub(crate) fn clamp(n: usize) -> i32 {
    n.clamp(1, MAX_THREADS) as i32
}
