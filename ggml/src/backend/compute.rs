//! [`Backend`]: an execution stream on a [`Device`], and computing graphs
//! on it, each node checked first against what the backend supports.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::raw::{self, AbortHook, Procs, RawBackend, RawBuffer};
use super::{BufferType, Device};
use crate::error::{Error, Result};
use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::context::{Pins, Place, Queue};
use crate::graph::Graph;
use crate::tensor::Tensor;
use crate::TensorData;

/// A backend: a device's execution stream, which computes graphs whose
/// tensors are in memory it can use.
///
/// `Send`, not `Sync`: a backend computes one graph at a time (the CPU
/// backend's work buffer and thread count are per backend); make one per
/// thread. Dropping it waits for its work to finish.
pub struct Backend {
    raw: NonNull<ggml_sys::ggml_backend>,
    device: Device,
    /// The thread-count and abort-callback setters of its registry.
    procs: Procs,
    threads: usize,
    /// Whether work started by `compute_async` may still run.
    queue: Arc<Queue>,
}

// SAFETY: ggml backends have no thread affinity; `&mut self` on every call
// that uses the stream keeps two threads from using one at once.
unsafe impl Send for Backend {}

impl Backend {
    /// A backend on `device`; for the CPU with [`crate::max_threads`]
    /// threads.
    ///
    /// # Errors
    /// [`Error::BackendInit`].
    pub fn new(device: Device) -> Result<Backend> {
        crate::init::ensure()?;
        let raw = device
            .raw()
            .init_backend()
            .ok_or_else(|| Error::BackendInit {
                device: device.name(),
            })?;
        let mut backend = Backend {
            raw,
            device,
            procs: device.raw().backend_procs(),
            threads: 0,
            queue: Queue::new(),
        };
        backend.apply_threads(crate::max_threads());
        Ok(backend)
    }

    /// A backend on the CPU.
    ///
    /// # Errors
    /// [`Error::NoDevice`] (no CPU backend module loaded), [`Error::BackendInit`].
    pub fn cpu() -> Result<Backend> {
        Backend::new(Device::cpu()?)
    }

    /// A backend on the first GPU.
    ///
    /// # Errors
    /// [`Error::NoDevice`] naming the feature to enable when the build has no
    /// GPU backend, [`Error::BackendInit`].
    pub fn gpu() -> Result<Backend> {
        Backend::new(Device::gpu()?)
    }

    /// The raw layer's handle of the backend.
    pub(crate) fn raw(&self) -> RawBackend<'_> {
        // SAFETY: live until `self` is dropped, which the borrow outlasts;
        // the setters of its device's registry.
        unsafe { RawBackend::new(self.raw, self.procs) }
    }

    /// Its device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Name (`"CPU"`, `"CUDA0"`, ...).
    pub fn name(&self) -> String {
        self.raw().name()
    }

    /// How errors name it: "the CPU backend", "the CUDA0 backend".
    fn description(&self) -> String {
        if self.is_cpu() {
            "the CPU backend".into()
        } else {
            format!("the {} backend", self.name())
        }
    }

    /// Whether its device is the CPU (which also computes tensors of
    /// allocating contexts, in host memory).
    pub fn is_cpu(&self) -> bool {
        self.device.is_cpu()
    }

    /// The memory it computes in by default.
    pub fn buffer_type(&self) -> BufferType {
        BufferType::from_raw(
            self.raw()
                .default_buffer_type()
                .expect("a backend has a buffer type"),
        )
    }

    /// Whether it can compute on tensors in memory of `buffer_type`.
    pub fn supports_buffer_type(&self, buffer_type: BufferType) -> bool {
        self.raw().supports_buft(buffer_type.raw())
    }

    /// Threads the backend computes with (CPU backends; 0 for backends
    /// without a thread count).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Sets the thread count (clamped to [`crate::MAX_THREADS`]).
    ///
    /// # Errors
    /// [`Error::ZeroThreads`]; [`Error::NotSupported`] for backends without
    /// a thread count (GPUs).
    pub fn set_threads(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::ZeroThreads);
        }
        if !self.procs.has_threads() {
            return Err(Error::NotSupported {
                backend: self.name(),
                what: "a thread count",
            });
        }
        self.apply_threads(n);
        Ok(())
    }

    fn apply_threads(&mut self, n: usize) {
        if self.procs.has_threads() {
            let n = crate::threads::clamp(n);
            // Not computing (`&mut self`).
            self.raw().set_threads(n);
            self.threads = n as usize;
        }
    }

    /// Computes `graph`, whose tensors must all have memory this backend can
    /// use, and waits for the result.
    ///
    /// Every node is checked before anything runs: the backend must support
    /// it (`supports_op`, and for the CPU this crate's kernel contracts), and
    /// every tensor must have memory in a buffer the backend can use (the
    /// CPU also takes tensors of allocating contexts).
    ///
    /// # Errors
    /// [`Error::UnsupportedNode`], [`Error::UnsupportedBuffer`],
    /// [`Error::NoData`], [`Error::WrongContext`], [`Error::Compute`];
    /// [`Error::Rpc`] when an RPC worker fails (feature `rpc`).
    pub fn compute<'ctx>(
        &mut self,
        graph: &Graph<'ctx>,
        data: &mut TensorData<'ctx>,
    ) -> Result<()> {
        self.compute_with(graph, data, Compute::new())
    }

    /// Computes `graph` with `options`: a thread count (kept by the backend
    /// afterwards; ignored by backends without one) and an abort callback
    /// (backends that take one: the CPU).
    ///
    /// # Errors
    /// As [`Backend::compute`], plus [`Error::Aborted`],
    /// [`Error::ZeroThreads`], and [`Error::NotSupported`] for an abort
    /// callback on a backend that takes none.
    ///
    /// # Panics
    /// Resumes a panic of the abort callback after ggml has stopped.
    pub fn compute_with<'ctx>(
        &mut self,
        graph: &Graph<'ctx>,
        data: &mut TensorData<'ctx>,
        options: Compute<'_>,
    ) -> Result<()> {
        graph.check_token(data)?;
        if let Some(n) = options.requested_threads()? {
            self.apply_threads(n);
        }
        let mut abort = options.into_abort().map(AbortState::new);
        if abort.is_some() && !self.procs.has_abort() {
            return Err(Error::NotSupported {
                backend: self.name(),
                what: "an abort callback",
            });
        }
        let ctx = graph.context();
        let status = crate::error::rpc::guard(|| {
            ctx.pinned(|| -> Result<ggml_sys::ggml_status> {
                check_graph(graph, self)?;
                graph.check_indices()?;
                let backend = self.raw();
                if let Some(state) = abort.as_mut() {
                    // SAFETY: the state outlives the computation and is unset
                    // right after it.
                    unsafe { backend.set_abort_callback(Some(state.hook())) };
                }
                // No view is alive (the token is borrowed mutably); the backend
                // is not in use elsewhere (`&mut self`).
                // SAFETY: a live graph whose every tensor has memory this backend
                // can use (checked, pinned until the call returns), nodes it supports.
                let status = unsafe { backend.graph_compute(graph) };
                // It waited for the whole queue.
                self.queue.synchronized();
                if abort.is_some() {
                    // SAFETY: removes the hook before the state goes.
                    unsafe { backend.set_abort_callback(None) };
                }
                Ok(status)
            })
            .and_then(status_result)
        });
        if let Some(state) = abort {
            state.resume_panic();
        }
        status?;
        match ctx.take_custom_panic() {
            Some(panic) => Err(panic),
            None => Ok(()),
        }
    }

    /// Starts computing `graph` and returns at once (on backends that compute
    /// asynchronously: GPUs; the CPU computes before returning). The graph's
    /// data stays borrowed, and its memory pinned, until the returned handle
    /// is [waited for](Pending::wait) or dropped.
    ///
    /// # Errors
    /// As [`Backend::compute`], for the checks made before starting.
    pub fn compute_async<'a, 'ctx>(
        &'a mut self,
        graph: &'a Graph<'ctx>,
        data: &'a mut TensorData<'ctx>,
    ) -> Result<Pending<'a>> {
        graph.check_token(data)?;
        let ctx = graph.context();
        let pins = ctx.pin()?;
        check_graph(graph, self)?;
        graph.check_indices()?;
        // Before starting: should the handle be leaked, the context stays
        // busy (and is leaked rather than freed) until the backend syncs.
        ctx.start_async(&self.queue);
        // The memory stays pinned, the data borrowed and the backend
        // borrowed until `synchronize`. Leaking the handle ends those borrows
        // but not the context's busy state above, and leaves the pins held
        // (the allocators can never move on).
        crate::error::rpc::clear();
        // SAFETY: as in `compute_with`, with the borrows and pins above.
        let status = unsafe { self.raw().graph_compute_async(graph) };
        // An RPC worker's failure (its client computes before returning).
        let fault = crate::error::rpc::take();
        // Custom ops run on the CPU only, which computes before returning.
        let custom_panic = ctx.take_custom_panic();
        Ok(Pending {
            backend: self,
            status,
            fault,
            custom_panic,
            _pins: pins,
            _data: PhantomData,
        })
    }

    /// Waits until the backend's queued work is done.
    pub fn synchronize(&mut self) {
        self.raw().synchronize();
        self.queue.synchronized();
    }

    /// Checks, without computing, that this backend can compute `graph`
    /// (as [`Backend::compute`] does first).
    ///
    /// # Errors
    /// As [`Backend::compute`]'s checks.
    pub fn check(&self, graph: &Graph<'_>) -> Result<()> {
        graph.context().pinned(|| check_graph(graph, self))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.raw().synchronize();
        // SAFETY: a live backend, freed once, after its queued work.
        unsafe { raw::free_backend(self.raw) };
        self.queue.synchronized();
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name())
            .field("device", &self.device)
            .field("threads", &self.threads)
            .finish()
    }
}

/// A computation started by [`Backend::compute_async`]. Waiting for it (or
/// dropping it) synchronises the backend; until then the graph's data stays
/// borrowed and its memory pinned.
#[must_use = "dropping it waits for the computation; call `wait` for its result"]
pub struct Pending<'a> {
    backend: &'a mut Backend,
    status: ggml_sys::ggml_status,
    /// An RPC worker's failure during the computation.
    fault: Option<Error>,
    /// A panic of a custom op's closure during the computation.
    custom_panic: Option<Error>,
    _pins: Pins,
    _data: PhantomData<&'a mut ()>,
}

impl Pending<'_> {
    /// Waits for the computation.
    ///
    /// # Errors
    /// [`Error::Compute`] when it failed; [`Error::CustomOpPanicked`] when
    /// a custom op's closure panicked; [`Error::Rpc`] when an RPC worker
    /// failed.
    pub fn wait(mut self) -> Result<()> {
        let status = self.status;
        let panic = self.custom_panic.take();
        let fault = self.fault.take();
        drop(self);
        if let Some(fault) = fault {
            return Err(fault);
        }
        status_result(status)?;
        match panic {
            Some(panic) => Err(panic),
            None => Ok(()),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.backend.synchronize();
    }
}

/// Options of one computation: thread count and abort callback.
#[derive(Default)]
pub struct Compute<'f> {
    threads: Option<usize>,
    abort: Option<&'f mut (dyn FnMut() -> bool + Send)>,
}

impl<'f> Compute<'f> {
    /// Default threads ([`crate::max_threads`]), no abort callback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of threads (default: [`crate::max_threads`], all cores unless
    /// capped); at most [`crate::MAX_THREADS`] run, larger counts are clamped.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// A callback ggml calls between nodes; returning `true` stops the
    /// computation, which then returns [`Error::Aborted`]. A panic in the
    /// callback stops the computation and is resumed once ggml has returned.
    pub fn abort_callback(mut self, f: &'f mut (dyn FnMut() -> bool + Send)) -> Self {
        self.abort = Some(f);
        self
    }

    /// The thread count asked for, if any.
    pub(crate) fn requested_threads(&self) -> Result<Option<usize>> {
        match self.threads {
            Some(0) => Err(Error::ZeroThreads),
            n => Ok(n),
        }
    }

    /// The abort callback, if any.
    pub(crate) fn into_abort(self) -> Option<&'f mut (dyn FnMut() -> bool + Send)> {
        self.abort
    }
}

/// State the abort trampoline reaches through ggml's `void *`.
pub(crate) struct AbortState<'f> {
    callback: &'f mut (dyn FnMut() -> bool + Send),
    panic: Option<Box<dyn std::any::Any + Send>>,
}

impl<'f> AbortState<'f> {
    pub(crate) fn new(callback: &'f mut (dyn FnMut() -> bool + Send)) -> Self {
        AbortState {
            callback,
            panic: None,
        }
    }

    /// The callback and data to hand ggml; valid while `self` is not moved.
    pub(crate) fn hook(&mut self) -> AbortHook {
        (
            abort_trampoline as unsafe extern "C" fn(*mut std::ffi::c_void) -> bool,
            (self as *mut AbortState<'_>).cast(),
        )
    }

    /// Resumes a panic the callback raised.
    pub(crate) fn resume_panic(self) {
        if let Some(payload) = self.panic {
            resume_unwind(payload);
        }
    }
}

unsafe extern "C" fn abort_trampoline(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `data` is the `AbortState` that `compute_with` keeps alive and
    // does not touch while ggml runs; ggml calls this from one thread at a time.
    let state = unsafe { &mut *data.cast::<AbortState<'_>>() };
    if state.panic.is_some() {
        return true;
    }
    match catch_unwind(AssertUnwindSafe(|| (state.callback)())) {
        Ok(stop) => stop,
        Err(payload) => {
            state.panic = Some(payload);
            true
        }
    }
}

pub(crate) fn status_result(status: ggml_sys::ggml_status) -> Result<()> {
    match status {
        ggml_sys::GGML_STATUS_SUCCESS => Ok(()),
        ggml_sys::GGML_STATUS_ABORTED => Err(Error::Aborted),
        other => Err(Error::Compute {
            status: other,
            message: raw::status_message(other),
        }),
    }
}

thread_local! {
    /// This thread's CPU backend for [`Graph::compute`], made on first use
    /// (it keeps its work buffer between computations).
    static CPU: RefCell<Option<Backend>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's CPU backend (a fresh one when the thread's
/// is in use: a graph computed from another computation's callback).
fn with_cpu_backend<R>(f: impl FnOnce(&mut Backend) -> Result<R>) -> Result<R> {
    CPU.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(Backend::cpu()?);
            }
            f(slot.as_mut().expect("made above"))
        }
        Err(_) => f(&mut Backend::cpu()?),
    })
}

impl<'ctx> Graph<'ctx> {
    /// Computes the graph on the CPU, on all cores ([`crate::max_threads`]).
    /// Taking the context's [`TensorData`] mutably guarantees no view of any
    /// tensor is alive meanwhile.
    ///
    /// This is [`Backend::compute`] on a CPU backend of this thread's, made
    /// once: the one compute path of the crate. Before the first
    /// computation, every tensor of the graph is checked to have memory the
    /// CPU can use, and every node to have a CPU kernel for its types and
    /// layouts.
    ///
    /// # Errors
    /// [`Error::NoData`] for a tensor without memory (a `no_alloc` context),
    /// [`Error::UnsupportedNode`] for a node the CPU kernels lack,
    /// [`Error::UnsupportedBuffer`] for a tensor in device memory,
    /// [`Error::WrongContext`], [`Error::Compute`]; [`Error::NoDevice`] when
    /// no CPU backend can be loaded (a `GGML_BACKEND_DL` install without its
    /// modules).
    pub fn compute(&self, data: &mut TensorData<'ctx>) -> Result<()> {
        self.compute_with(data, Compute::new())
    }

    /// Computes the graph on the CPU with `options` (threads, default
    /// [`crate::max_threads`]; abort callback).
    ///
    /// # Errors
    /// As [`Graph::compute`], plus [`Error::Aborted`] and [`Error::ZeroThreads`].
    ///
    /// # Panics
    /// Resumes a panic of the abort callback after ggml has stopped.
    pub fn compute_with(&self, data: &mut TensorData<'ctx>, options: Compute<'_>) -> Result<()> {
        let threads = options
            .requested_threads()?
            .unwrap_or_else(crate::max_threads);
        with_cpu_backend(|backend| backend.compute_with(self, data, options.threads(threads)))
    }
}

/// Describes a place for errors.
fn place_name(t: &Tensor<'_>, place: Place) -> String {
    match place {
        Place::Nowhere => "no memory".into(),
        Place::Arena => "the context's arena (host memory)".into(),
        Place::Owned { .. } | Place::Leased { .. } => {
            let (root, _) = t.memory_root();
            // SAFETY: a live tensor with a live buffer (the context is swept).
            let buft = unsafe { raw::buffer_of(root.as_ptr()) }.and_then(RawBuffer::buffer_type);
            format!(
                "a {} buffer",
                buft.map_or_else(|| "?".into(), |b| BufferType::from_raw(b).name())
            )
        }
    }
}

/// Checks that `backend` can compute every node of `graph` and use the
/// memory of every tensor. The context must be pinned. Passing checks are
/// remembered until the context's memory changes or another device computes.
pub(crate) fn check_graph(graph: &Graph<'_>, backend: &Backend) -> Result<()> {
    let ctx = graph.context();
    let key = (
        backend.device.raw().as_ptr() as usize,
        ctx.memory_generation(),
    );
    if graph.checked_for() == Some(key) {
        return Ok(());
    }
    let cpu = backend.is_cpu();
    for t in graph.tensors() {
        let memory = raw::tensor_memory(&t);
        let place = if !memory.is_view && !memory.has_buffer && memory.has_data {
            Place::Arena // the common case on the CPU, without the lookups
        } else {
            ctx.place(&t)
        };
        if place == Place::Nowhere && !t.is_empty() {
            return Err(Error::NoData { name: t.name() });
        }
        let usable = match place {
            Place::Nowhere => true, // empty: nothing to reach
            Place::Arena => cpu,
            Place::Owned { .. } | Place::Leased { .. } => {
                let (root, _) = t.memory_root();
                // SAFETY: a live buffer (pinned) of a live tensor.
                unsafe { raw::buffer_of(root.as_ptr()) }
                    .and_then(RawBuffer::buffer_type)
                    .is_some_and(|buft| backend.raw().supports_buft(buft))
            }
        };
        if !usable {
            return Err(Error::UnsupportedBuffer {
                name: t.name(),
                place: place_name(&t, place),
                backend: backend.description(),
            });
        }
        // Kernels, in the same pass (a second walk over a large graph's
        // tensors costs a cache miss each).
        if t.op() == ggml_sys::GGML_OP_NONE {
            continue;
        }
        check_kernels(&t, backend, cpu)?;
    }
    graph.set_checked_for(key);
    Ok(())
}

/// Checks that `backend` has a kernel for node `t`. On the CPU the crate's
/// kernel contracts decide: every op the crate computes has one, at least
/// as strict as the CPU backend's `supports_op` (whose answer also asks each
/// extra buffer type, per node) and strict where the kernels abort. Other
/// backends are asked `supports_op`.
fn check_kernels(t: &Tensor<'_>, backend: &Backend, cpu: bool) -> Result<()> {
    if cpu {
        return crate::ops::check_node(t, crate::ops::Kernels::Cpu);
    }
    if crate::ops::custom::is_custom(t.op()) {
        // A Rust closure runs in this process, on the CPU backend only (the
        // RPC backend claims support and would ship its address away).
        return Err(unsupported(
            t,
            backend.description(),
            "custom ops (Rust closures) run on the CPU backend only",
        ));
    }
    // SAFETY: a live backend; a node whose sources and buffers are live
    // (pinned).
    if unsafe { backend.raw().supports_op(t) } {
        return Ok(());
    }
    // An RPC worker's device says no to what its protocol cannot carry:
    // say why (off the path of supported nodes).
    #[cfg(feature = "rpc")]
    if backend.device.rpc_endpoint().is_some()
        // SAFETY: a node whose sources are live (pinned).
        && unsafe { super::rpc::refusal(t.as_ptr()) }.is_some()
    {
        return Err(unsupported(
            t,
            backend.description(),
            "ggml's RPC protocol cannot carry it (a size or stride past 32 bits)",
        ));
    }
    Err(no_kernel(t, backend.description()))
}

/// The error for node `t` that no backend named by `backend` has a kernel
/// for (their `supports_op` says no).
pub(crate) fn no_kernel(t: &Tensor<'_>, backend: String) -> Error {
    unsupported(t, backend, "no kernel for it (supports_op)")
}

/// [`Error::UnsupportedNode`] for node `t` on `backend`, for `reason`.
fn unsupported(t: &Tensor<'_>, backend: String, reason: &'static str) -> Error {
    Error::UnsupportedNode {
        node: t.name(),
        op: crate::ops::op_name(t.op()),
        types: crate::ops::node_types(t),
        backend,
        reason,
    }
}

/// Checks that `backend` can compute `node` (kernel contract on the CPU, and
/// `supports_op`). The node's context must be pinned or have no leases.
pub(crate) fn check_graph_node(node: &Tensor<'_>, backend: &Backend) -> Result<()> {
    node.context()
        .pinned(|| check_kernels(node, backend, backend.is_cpu()))
}
