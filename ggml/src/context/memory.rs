//! Where a tensor's bytes live, and what keeps them alive.
//!
//! A tensor of a [`Context`] has its data in one of four places:
//!
//! - the context's **arena** (an allocating context): freed with the context;
//! - a backend **buffer the context owns** ([`Context::allocate`]): freed with
//!   the context too;
//! - memory **leased** from a graph allocator or a scheduler, which places the
//!   tensors of a graph in compute buffers it owns and reuses or frees when it
//!   allocates the next graph;
//! - nowhere yet (a `no_alloc` context before allocation).
//!
//! ggml never clears a tensor's `data` and `buffer` fields when the memory
//! behind them goes away, so a lease is checked before every use. Each
//! allocator has an [`Epoch`]: a counter it advances whenever it allocates
//! again, resets or is dropped, and a lock it holds while doing so. A
//! context records, per lease, the epoch it was granted at and the tensors it
//! placed. Every entry point that reads tensor memory first *sweeps* the
//! context (the tensors of expired leases get their `data` and `buffer`
//! cleared, as if never allocated, together with every view of them) and then
//! *pins* the live leases (read-locks their epochs) for the duration of the
//! access, so no allocator can free the memory meanwhile, from any thread.
//!
//! Zero-copy views are only handed out for memory the context owns (arena,
//! owned host buffers): their lifetime is bounded by the data token's, and
//! nothing but the context's drop can free it. Leased memory is reached by
//! copies, made while pinned.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::Context;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The generation counter of an allocator's memory, shared with the contexts
/// whose tensors it placed.
#[derive(Debug, Default)]
pub(crate) struct Epoch {
    value: AtomicU64,
    /// Contexts using the memory now (pins). The allocator changes its
    /// memory holding this lock, with no pin left.
    readers: Mutex<usize>,
    released: Condvar,
    /// Threads waiting on `released` (changed with `readers` locked), so
    /// that releasing a pin wakes no one, without a system call, when no
    /// one waits.
    waiting: AtomicUsize,
    /// Frees an allocator dropped while its own thread still used its
    /// memory; run when the last pin goes.
    deferred: Mutex<Vec<Deferred>>,
}

/// An allocator's memory, to free later.
pub(crate) struct Deferred(pub(crate) Box<dyn FnOnce()>);

// SAFETY: what a `Deferred` frees (ggml allocators and backends) has no
// thread affinity; it runs once, on the thread that drops the last pin.
unsafe impl Send for Deferred {}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

thread_local! {
    /// Contexts and epochs this thread has pinned.
    static PINNED: RefCell<Vec<(*const Context, usize)>> = const { RefCell::new(Vec::new()) };
}

fn lock(m: &Mutex<usize>) -> MutexGuard<'_, usize> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether this thread pins `epoch`.
fn pinned_here(epoch: &Arc<Epoch>) -> bool {
    let e = Arc::as_ptr(epoch) as usize;
    PINNED.with(|p| p.borrow().iter().any(|&(_, pinned)| pinned == e))
}

/// A backend's work queue, as the contexts whose tensors it computes see it:
/// whether work started by `compute_async` may still run. Set when such work
/// starts, cleared whenever the backend synchronises. A context with an
/// unsynchronised queue refuses access to its memory and, dropped, leaks it
/// rather than free memory a device may still use.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    unsynced: AtomicBool,
}

impl Queue {
    /// A new queue, not running anything.
    pub(crate) fn new() -> Arc<Queue> {
        Arc::new(Queue::default())
    }

    /// Records that the backend has finished all its work.
    pub(crate) fn synchronized(&self) {
        self.unsynced.store(false, Ordering::Release);
    }
}

impl Epoch {
    /// Waits for the last pin to go (`readers` is this epoch's lock).
    fn wait<'a>(&'a self, readers: MutexGuard<'a, usize>) -> MutexGuard<'a, usize> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let readers = self
            .released
            .wait(readers)
            .unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        readers
    }

    /// A new epoch, shared between an allocator and its leases.
    pub(crate) fn new() -> Arc<Epoch> {
        Arc::new(Epoch::default())
    }

    fn current(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Ends every lease granted so far: waits until no context uses the
    /// memory, then advances the epoch. The allocator may change its memory
    /// while the returned guard lives (no context can pin it meanwhile);
    /// leases it grants meanwhile carry the returned epoch.
    ///
    /// # Errors
    /// [`Error::Busy`] when this thread itself is using the memory (from
    /// inside a computation's callback, say), which would never end.
    pub(crate) fn advance(&self) -> Result<(MutexGuard<'_, usize>, u64)> {
        let mut readers = lock(&self.readers);
        let me = self as *const Epoch as usize;
        while *readers > 0 {
            if PINNED.with(|p| p.borrow().iter().any(|&(_, e)| e == me)) {
                return Err(Error::Busy {
                    what: "the allocator's memory is in use by this thread",
                });
            }
            readers = self.wait(readers);
        }
        let now = self.value.fetch_add(1, Ordering::AcqRel) + 1;
        Ok((readers, now))
    }
}

impl Epoch {
    /// Ends every lease for good and runs `free`: at once when no context
    /// uses the memory (after waiting for other threads' uses), or, when
    /// this thread itself uses it (an allocator dropped from inside a
    /// computation's callback), when that use ends.
    pub(crate) fn retire(&self, free: Deferred) {
        let me = self as *const Epoch as usize;
        let mut readers = lock(&self.readers);
        loop {
            if *readers == 0 {
                self.value.fetch_add(1, Ordering::AcqRel);
                (free.0)();
                return;
            }
            if PINNED.with(|p| p.borrow().iter().any(|&(_, e)| e == me)) {
                self.value.fetch_add(1, Ordering::AcqRel);
                self.deferred
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(free);
                return;
            }
            readers = self.wait(readers);
        }
    }
}

/// A context's hold on the leased memory of its tensors: while it lives, no
/// allocator changes that memory. Dropping it lets them.
pub(crate) struct Pins {
    ctx: *const Context,
    epochs: Vec<Arc<Epoch>>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        for epoch in &self.epochs {
            let mut readers = lock(&epoch.readers);
            *readers -= 1;
            let mut deferred = Vec::new();
            if *readers == 0 {
                deferred =
                    std::mem::take(&mut *epoch.deferred.lock().unwrap_or_else(|p| p.into_inner()));
                if epoch.waiting.load(Ordering::Relaxed) > 0 {
                    epoch.released.notify_all();
                }
            }
            drop(readers);
            for free in deferred {
                (free.0)();
            }
            let key = (self.ctx, Arc::as_ptr(epoch) as usize);
            PINNED.with(|p| {
                let mut p = p.borrow_mut();
                if let Some(i) = p.iter().rposition(|&e| e == key) {
                    p.remove(i);
                }
            });
        }
    }
}

/// Memory a context's tensors use but do not own: granted by an allocator at
/// an epoch, valid until the epoch advances.
pub(crate) struct Lease {
    pub(crate) epoch: Arc<Epoch>,
    pub(crate) at: u64,
    /// The tensors (never views) the allocator gave memory.
    pub(crate) roots: Vec<NonNull<ggml_sys::ggml_tensor>>,
}

impl Lease {
    fn is_current(&self) -> bool {
        self.epoch.current() == self.at
    }
}

/// A backend buffer a context owns; freed when dropped.
pub(crate) struct OwnedBuffer(pub(crate) NonNull<ggml_sys::ggml_backend_buffer>);

impl Drop for OwnedBuffer {
    fn drop(&mut self) {
        // SAFETY: a buffer ggml allocated for us, freed once. Its tensors'
        // context is being dropped (buffers are only freed with it).
        unsafe { crate::raw::free_buffer(self.0) };
    }
}

/// Where a tensor's data is (for a view: where its root's is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// No memory (a `no_alloc` context's tensor, not yet allocated).
    Nowhere,
    /// The context's own arena: host memory.
    Arena,
    /// A buffer the context owns.
    Owned { host: bool },
    /// Memory leased from an allocator (pinned while in use).
    Leased { host: bool },
}

impl Place {
    /// Whether the bytes can be reached with a host pointer.
    pub(crate) fn is_host(self) -> bool {
        matches!(
            self,
            Place::Arena | Place::Owned { host: true } | Place::Leased { host: true }
        )
    }

    /// Whether a view of the bytes may outlive the current access (memory
    /// that only the context's drop frees).
    pub(crate) fn is_viewable(self) -> bool {
        matches!(self, Place::Arena | Place::Owned { host: true })
    }
}

/// Whether a tensor has been placed: it has data, or (an empty tensor ggml
/// placed in a buffer of size 0) a buffer.
///
/// # Safety
/// `t` is a live tensor.
pub(crate) unsafe fn is_placed(t: *const ggml_sys::ggml_tensor) -> bool {
    // SAFETY: the caller's contract; fields are copied out.
    unsafe { !(*t).data.is_null() || !(*t).buffer.is_null() }
}

/// Whether a tensor owns memory (is not a view) and has none yet.
///
/// # Safety
/// `t` is a live tensor.
pub(crate) unsafe fn is_unplaced_root(t: *const ggml_sys::ggml_tensor) -> bool {
    // SAFETY: the caller's contract; fields are copied out.
    unsafe { (*t).view_src.is_null() && !is_placed(t) }
}

/// The tensors of `pending` (unplaced roots) that an allocation has placed.
pub(crate) fn now_placed(pending: &[Tensor<'_>]) -> Vec<NonNull<ggml_sys::ggml_tensor>> {
    pending
        .iter()
        // SAFETY: live tensors.
        .filter(|t| unsafe { is_placed(t.as_ptr()) })
        .map(|t| NonNull::new(t.as_ptr()).expect("a live tensor"))
        .collect()
}

impl Context {
    /// Drops the expired leases: their tensors, and every view of them, read
    /// as unallocated afterwards.
    pub(crate) fn sweep(&self) {
        let mut expired = Vec::new();
        self.leases.borrow_mut().retain_mut(|lease| {
            // Memory this thread pins stays until its pins go, even when the
            // allocator has moved on (a deferred free).
            if lease.is_current() || pinned_here(&lease.epoch) {
                true
            } else {
                expired.push(std::mem::take(&mut lease.roots));
                false
            }
        });
        if expired.is_empty() {
            return;
        }
        // The memory behind them may be gone: only placements are written.
        self.unplace(expired.into_iter().flatten());
    }

    /// Makes `roots` (tensors of this context that own memory) and every view
    /// of them read as never allocated: after their memory expired, or after
    /// an allocation that failed part-way.
    pub(crate) fn unplace(&self, roots: impl IntoIterator<Item = NonNull<ggml_sys::ggml_tensor>>) {
        for root in roots {
            // SAFETY: a live tensor of this context; only its placement is
            // written, and no reference to its fields is alive.
            unsafe {
                (*root.as_ptr()).data = std::ptr::null_mut();
                (*root.as_ptr()).buffer = std::ptr::null_mut();
            }
        }
        // Views of cleared tensors hold their old addresses too.
        for t in self.raw().tensors() {
            let t = t.as_ptr();
            // SAFETY: a tensor of the context's own list; as above.
            unsafe {
                let src = (*t).view_src;
                if !src.is_null() && (*src).data.is_null() {
                    (*t).data = std::ptr::null_mut();
                    (*t).buffer = std::ptr::null_mut();
                }
            }
        }
        self.memory_changed();
    }

    /// Runs `f` with the context swept and its leases pinned: no allocator can
    /// change the memory of this context's tensors until `f` returns.
    ///
    /// # Errors
    /// [`Error::Busy`] while an asynchronous computation on the context's
    /// tensors may still run (see [`Context::check_settled`]); `f`'s error.
    pub(crate) fn pinned<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let pins = self.pin()?;
        let result = f();
        drop(pins);
        result
    }

    /// As [`Context::pinned`] for reading where tensors are (not their
    /// bytes), which an asynchronous computation does not change.
    pub(crate) fn pinned_placement<R>(&self, f: impl FnOnce() -> R) -> R {
        let pins = self.pin_leases();
        let result = f();
        drop(pins);
        result
    }

    /// Sweeps the context and pins its leases until the result is dropped.
    ///
    /// Pins nest: an access from inside another (a computation's callback
    /// reading a tensor) pins again. What this thread already pins is not
    /// swept: its memory cannot go while pinned (an allocator dropped
    /// meanwhile is freed when the last pin goes), and the running
    /// computation reads those tensors' placement.
    ///
    /// # Errors
    /// [`Error::Busy`] as for [`Context::pinned`].
    pub(crate) fn pin(&self) -> Result<Pins> {
        self.check_settled()?;
        Ok(self.pin_leases())
    }

    fn pin_leases(&self) -> Pins {
        let me = self as *const Context;
        loop {
            self.sweep();
            let mut epochs: Vec<Arc<Epoch>> = self
                .leases
                .borrow()
                .iter()
                .map(|l| l.epoch.clone())
                .collect();
            epochs.sort_by_key(|e| Arc::as_ptr(e) as usize);
            epochs.dedup_by(|a, b| Arc::ptr_eq(a, b));
            for epoch in &epochs {
                *lock(&epoch.readers) += 1;
                PINNED.with(|p| p.borrow_mut().push((me, Arc::as_ptr(epoch) as usize)));
            }
            let pins = Pins { ctx: me, epochs };
            let current = |l: &Lease| l.is_current() || pinned_here(&l.epoch);
            if self.leases.borrow().iter().all(current) {
                return pins;
            }
            // An allocator moved on between the sweep and the pins.
            drop(pins);
        }
    }

    /// Records that `queue` may run work on this context's tensors until it
    /// is synchronised ([`Backend::compute_async`](crate::backend::Backend::compute_async)).
    pub(crate) fn start_async(&self, queue: &Arc<Queue>) {
        queue.unsynced.store(true, Ordering::Release);
        let mut in_flight = self.in_flight.borrow_mut();
        if !in_flight.iter().any(|q| Arc::ptr_eq(q, queue)) {
            in_flight.push(queue.clone());
        }
    }

    /// Whether no asynchronous computation on this context's tensors may
    /// still run.
    pub(crate) fn is_settled(&self) -> bool {
        let mut in_flight = self.in_flight.borrow_mut();
        in_flight.retain(|q| q.unsynced.load(Ordering::Acquire));
        in_flight.is_empty()
    }

    /// Fails while an asynchronous computation on this context's tensors may
    /// still run. That happens only when its [`Pending`] was leaked
    /// (`std::mem::forget`): a live one borrows the context's data, and
    /// dropping it waits. Synchronising the backend (or dropping it) ends
    /// the state.
    ///
    /// [`Pending`]: crate::backend::Pending
    ///
    /// # Errors
    /// [`Error::Busy`].
    pub(crate) fn check_settled(&self) -> Result<()> {
        if self.is_settled() {
            return Ok(());
        }
        Err(Error::Busy {
            what: "an asynchronous computation on this context's tensors may still run \
                   (its Pending was leaked); call Backend::synchronize first",
        })
    }

    /// Records memory an allocator gave some of this context's tensors.
    /// Tensors (views, at least) may have changed place even without one.
    pub(crate) fn add_lease(&self, lease: Lease) {
        if !lease.roots.is_empty() {
            self.leases.borrow_mut().push(lease);
        }
        self.memory_changed();
    }

    /// Keeps `buffer` until the context is dropped.
    pub(crate) fn own_buffer(&self, buffer: OwnedBuffer) {
        self.buffers.borrow_mut().push(buffer);
        self.memory_changed();
    }

    /// Where `t`'s data is. Call on a swept context; a view whose root has
    /// memory gets its own address filled in if ggml has not yet.
    pub(crate) fn place(&self, t: &Tensor<'_>) -> Place {
        let (root, _) = t.memory_root();
        let raw = root.as_ptr();
        // SAFETY: live tensors of this context; fields are copied out.
        let (data, buffer) = unsafe { ((*raw).data, (*raw).buffer) };
        if data.is_null() {
            return Place::Nowhere;
        }
        if root != *t {
            self.materialise_view(t, buffer);
        }
        if buffer.is_null() {
            return Place::Arena;
        }
        // SAFETY: after a sweep, a non-null buffer is owned or leased, live.
        let host = unsafe { crate::raw::buffer_is_host(buffer) };
        if self.buffers.borrow().iter().any(|b| b.0.as_ptr() == buffer) {
            Place::Owned { host }
        } else {
            Place::Leased { host }
        }
    }

    /// Gives a view made before its root was allocated its address.
    fn materialise_view(&self, t: &Tensor<'_>, root_buffer: *mut ggml_sys::ggml_backend_buffer) {
        let raw = t.as_ptr();
        // SAFETY: a live view of this context whose root has data; ggml's own
        // initialisation sets `buffer` and `data` from the root.
        unsafe {
            if !(*raw).data.is_null() {
                return;
            }
            if root_buffer.is_null() {
                let root = (*raw).view_src;
                (*raw).data = (*root).data.cast::<u8>().add((*raw).view_offs).cast();
            } else if (*raw).buffer.is_null() {
                crate::raw::view_init(raw);
            }
        }
    }
}
