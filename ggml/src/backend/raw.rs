//! The backend layer's raw layer: the handles ggml's backend API gives out
//! (devices, registries, buffer types, buffers, backends, events, the
//! scheduler, the graph allocator) and every C call made on them, each
//! wrapped once, so that the rest of `ggml::backend` speaks in safe types.
//!
//! A handle (`RawDevice<'a>`, `RawBackend<'a>`, `RawSched<'a>`, ...) is a
//! pointer its owner keeps alive for `'a`: [`Backend`](super::Backend),
//! [`Event`](super::Event), [`Scheduler`](super::Scheduler) and
//! [`GraphAllocator`](super::GraphAllocator) make it from `&self` and free
//! the object in their `Drop`; registry devices, their registries and buffer
//! types live for the whole process (`'static`). Handles exist only after
//! [`crate::init::ensure`] succeeded (every entry point of the layer calls
//! it first), and so do the registry's free functions here. One-line getters
//! are declared in tables (`getters!`). What a call still requires of its
//! caller beyond live handles (a backend of the scheduler, a graph whose
//! memory the backend can use, a buffer nothing computes on) makes it an
//! `unsafe fn` with a `# Safety` section.
//!
//! The core's tensors, graphs and contexts are taken as their safe handles
//! ([`Tensor`], [`Graph`], [`Context`]), live by their types; the tensor
//! fields placement reads and the scheduler rewrites are read and written
//! here too.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use ggml_sys as sys;

use crate::context::Context;
use crate::graph::Graph;
use crate::tensor::Tensor;

/// A NUL-terminated string ggml owns (or NULL: empty), copied.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string live for the call.
unsafe fn string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// One-line getters of a handle, in three forms:
///
/// - `fn name(args) -> T = ggml_function;` returns
///   `ggml_function(handle, args)`, which reads ggml's state and takes plain
///   values;
/// - `fn name(args) -> T = ggml_function => convert;` returns
///   `convert(ggml_function(handle, args))`, where `convert` takes what ggml
///   returns (NULL, a string valid for the call, or an object ggml keeps for
///   the process);
/// - `fn name() -> (a: A, b: B) = ggml_function;` returns what
///   `ggml_function(handle, &mut a, &mut b)` writes, each starting at its
///   default.
macro_rules! getters {
    ($handle:ident { $($body:tt)* }) => {
        impl $handle<'_> {
            getters!(@items $($body)*);
        }
    };
    (@items) => {};
    (@items $(#[$doc:meta])* fn $name:ident() -> ($($out:ident: $oty:ty),+) = $ffi:ident; $($rest:tt)*) => {
        $(#[$doc])*
        pub(crate) fn $name(self) -> ($($oty),+) {
            $(let mut $out = <$oty>::default();)+
            // SAFETY: a live handle (the type's invariant); the call writes
            // through valid pointers.
            unsafe { sys::$ffi(self.ptr.as_ptr() $(, &mut $out)+) };
            ($($out),+)
        }
        getters!(@items $($rest)*);
    };
    (@items $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $ffi:ident => $conv:path; $($rest:tt)*) => {
        $(#[$doc])*
        pub(crate) fn $name(self $(, $arg: $ty)*) -> $ret {
            // SAFETY: a live handle (the type's invariant); the call reads
            // ggml's state and takes plain values; its result is what the
            // conversion takes (see the macro).
            unsafe { $conv(sys::$ffi(self.ptr.as_ptr() $(, $arg)*)) }
        }
        getters!(@items $($rest)*);
    };
    (@items $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $ffi:ident; $($rest:tt)*) => {
        $(#[$doc])*
        pub(crate) fn $name(self $(, $arg: $ty)*) -> $ret {
            // SAFETY: a live handle (the type's invariant); the call reads
            // ggml's state and takes plain values.
            unsafe { sys::$ffi(self.ptr.as_ptr() $(, $arg)*) }
        }
        getters!(@items $($rest)*);
    };
}

/// ggml's message for a computation's status.
pub(crate) fn status_message(status: sys::ggml_status) -> String {
    // SAFETY: a static NUL-terminated string for any value.
    unsafe { string(sys::ggml_status_to_string(status)) }
}

// ----- the registry: devices -----

/// A device of ggml's backend registry, which keeps it for the process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawDevice<'a> {
    ptr: NonNull<sys::ggml_backend_device>,
    _owner: PhantomData<&'a ()>,
}

/// The handle of a device the registry returned.
///
/// # Safety
/// `ptr` is NULL or a registry device.
pub(crate) unsafe fn device(ptr: sys::ggml_backend_dev_t) -> Option<RawDevice<'static>> {
    NonNull::new(ptr).map(|ptr| RawDevice {
        ptr,
        _owner: PhantomData,
    })
}

/// Every device of the registry, in its order.
pub(crate) fn devices() -> impl Iterator<Item = RawDevice<'static>> {
    // SAFETY: the registry is set up (see the module docs); a count.
    let count = unsafe { sys::ggml_backend_dev_count() };
    (0..count).filter_map(|i| {
        // SAFETY: `i < count`, checked by the range (ggml asserts it).
        unsafe { device(sys::ggml_backend_dev_get(i)) }
    })
}

/// The device named `name` (case does not matter).
pub(crate) fn device_by_name(name: &CStr) -> Option<RawDevice<'static>> {
    // SAFETY: a NUL-terminated name; a registry device or NULL.
    unsafe { device(sys::ggml_backend_dev_by_name(name.as_ptr())) }
}

/// The first device of type `ty`.
pub(crate) fn device_by_type(ty: sys::ggml_backend_dev_type) -> Option<RawDevice<'static>> {
    // SAFETY: ggml compares `ty` with each device's type; a registry device
    // or NULL.
    unsafe { device(sys::ggml_backend_dev_by_type(ty)) }
}

getters!(RawDevice {
    /// Name (`"CPU"`, `"CUDA0"`, ...).
    fn name() -> String = ggml_backend_dev_name => string;
    /// Description (the CPU's or GPU's model name).
    fn description() -> String = ggml_backend_dev_description => string;
    /// ggml's kind of device.
    fn device_type() -> sys::ggml_backend_dev_type = ggml_backend_dev_type;
    /// Free and total memory now, in bytes.
    fn memory() -> (free: usize, total: usize) = ggml_backend_dev_memory;
    /// The device's own memory.
    fn buffer_type() -> Option<RawBufferType<'static>> = ggml_backend_dev_buffer_type => RawBufferType::from_ptr;
    /// Pinned host memory the device reaches fast, if any.
    fn host_buffer_type() -> Option<RawBufferType<'static>> = ggml_backend_dev_host_buffer_type => RawBufferType::from_ptr;
    /// The registry the device belongs to.
    fn registry() -> Option<RawReg<'static>> = ggml_backend_dev_backend_reg => RawReg::from_ptr;
});

impl RawDevice<'_> {
    /// The device as ggml knows it (an identity; not to call C with).
    pub(crate) fn as_ptr(self) -> sys::ggml_backend_dev_t {
        self.ptr.as_ptr()
    }

    /// Its properties (capabilities among them).
    pub(crate) fn props(self) -> sys::ggml_backend_dev_props {
        let mut props = MaybeUninit::<sys::ggml_backend_dev_props>::zeroed();
        // SAFETY: a registry device; a valid out-pointer to a zeroed plain C
        // struct (a valid value of it), which ggml fills.
        unsafe {
            sys::ggml_backend_dev_get_props(self.ptr.as_ptr(), props.as_mut_ptr());
            props.assume_init()
        }
    }

    /// Whether the device's backends can use memory of `buft`.
    pub(crate) fn supports_buft(self, buft: RawBufferType<'_>) -> bool {
        // SAFETY: a registry device and a live buffer type.
        unsafe { sys::ggml_backend_dev_supports_buft(self.ptr.as_ptr(), buft.as_ptr()) }
    }

    /// A new backend on the device, without parameters (`None`: ggml could
    /// not start one). The caller frees it ([`free_backend`]).
    pub(crate) fn init_backend(self) -> Option<NonNull<sys::ggml_backend>> {
        // SAFETY: a registry device; no parameters.
        NonNull::new(unsafe { sys::ggml_backend_dev_init(self.ptr.as_ptr(), std::ptr::null()) })
    }

    /// The entry points its registry gives the device's backends.
    pub(crate) fn backend_procs(self) -> Procs {
        self.registry().map_or(Procs::NONE, RawReg::backend_procs)
    }

    /// A new event (`None` for a device without events). The caller frees it
    /// ([`free_event`]).
    pub(crate) fn new_event(self) -> Option<NonNull<sys::ggml_backend_event>> {
        // SAFETY: a registry device; ggml returns NULL when it has no events.
        NonNull::new(unsafe { sys::ggml_backend_event_new(self.ptr.as_ptr()) })
    }
}

// ----- the registry: backend registries -----

/// A backend registry (the CPU's, CUDA's, ...), kept for the process.
#[derive(Clone, Copy)]
pub(crate) struct RawReg<'a> {
    ptr: NonNull<sys::ggml_backend_reg>,
    _owner: PhantomData<&'a ()>,
}

/// `ggml_backend_set_n_threads`, as a registry gives it.
type SetThreads = sys::ggml_backend_set_n_threads_t;
/// `ggml_backend_set_abort_callback`, as a registry gives it.
type SetAbort = sys::ggml_backend_set_abort_callback_t;

/// An abort callback as ggml takes it: function and opaque data.
pub(crate) type AbortHook = (unsafe extern "C" fn(*mut c_void) -> bool, *mut c_void);

/// The optional entry points a registry gives its backends
/// (`ggml_backend_reg_get_proc_address`): a thread count and an abort
/// callback (the CPU's registry gives both).
#[derive(Clone, Copy)]
pub(crate) struct Procs {
    set_threads: SetThreads,
    set_abort: SetAbort,
}

impl Procs {
    /// None at all.
    const NONE: Procs = Procs {
        set_threads: None,
        set_abort: None,
    };

    /// Whether the backends take a thread count.
    pub(crate) fn has_threads(&self) -> bool {
        self.set_threads.is_some()
    }

    /// Whether the backends take an abort callback.
    pub(crate) fn has_abort(&self) -> bool {
        self.set_abort.is_some()
    }
}

impl RawReg<'static> {
    /// The handle of a registry ggml returned.
    ///
    /// # Safety
    /// `ptr` is NULL or a registry, live for the process.
    unsafe fn from_ptr(ptr: sys::ggml_backend_reg_t) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| RawReg {
            ptr,
            _owner: PhantomData,
        })
    }
}

impl RawReg<'_> {
    /// The entry point named `name` (NULL when the registry has none).
    fn proc_address(self, name: &CStr) -> *mut c_void {
        // SAFETY: a live registry; a NUL-terminated name.
        unsafe { sys::ggml_backend_reg_get_proc_address(self.ptr.as_ptr(), name.as_ptr()) }
    }

    /// The entry points it gives its backends.
    fn backend_procs(self) -> Procs {
        let set_threads = self.proc_address(c"ggml_backend_set_n_threads");
        let set_abort = self.proc_address(c"ggml_backend_set_abort_callback");
        // SAFETY: NULL (`None`) or the function ggml-backend.h documents
        // under that name, whose signature the bindings' type gives; each
        // acts on backends of this registry only (`RawBackend::new`).
        unsafe {
            Procs {
                set_threads: std::mem::transmute::<*mut c_void, SetThreads>(set_threads),
                set_abort: std::mem::transmute::<*mut c_void, SetAbort>(set_abort),
            }
        }
    }
}

// ----- buffer types -----

/// A buffer type: a static object of its backend, kept for the process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawBufferType<'a> {
    ptr: NonNull<sys::ggml_backend_buffer_type>,
    _owner: PhantomData<&'a ()>,
}

/// Plain host memory, as the CPU backend uses (ggml-base's own).
pub(crate) fn cpu_buffer_type() -> Option<RawBufferType<'static>> {
    // SAFETY: a static buffer type of ggml-base.
    unsafe { RawBufferType::from_ptr(sys::ggml_backend_cpu_buffer_type()) }
}

impl RawBufferType<'static> {
    /// The handle of a buffer type ggml returned.
    ///
    /// # Safety
    /// `ptr` is NULL or a buffer type, live for the process (as every
    /// backend's are).
    unsafe fn from_ptr(ptr: sys::ggml_backend_buffer_type_t) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| RawBufferType {
            ptr,
            _owner: PhantomData,
        })
    }
}

getters!(RawBufferType {
    /// Name (`"CPU"`, `"CUDA0"`, `"CUDA_Host"`, ...).
    fn name() -> String = ggml_backend_buft_name => string;
    /// Alignment of the tensors placed in it, in bytes.
    fn alignment() -> usize = ggml_backend_buft_get_alignment;
    /// Largest single buffer it allocates.
    fn max_size() -> usize = ggml_backend_buft_get_max_size;
    /// Whether the host addresses its memory directly.
    fn is_host() -> bool = ggml_backend_buft_is_host;
});

impl RawBufferType<'_> {
    /// The buffer type as ggml knows it.
    pub(crate) fn as_ptr(self) -> sys::ggml_backend_buffer_type_t {
        self.ptr.as_ptr()
    }

    /// Bytes [`RawBufferType::alloc_ctx_tensors`] would allocate for `ctx`
    /// (0: nothing to place, or a tensor larger than the type allows).
    ///
    /// # Safety
    /// `ctx` is a `no_alloc` context (ggml asserts it) whose every view has
    /// its source in the context, made before the view.
    pub(crate) unsafe fn alloc_ctx_tensors_size(self, ctx: &Context) -> usize {
        // SAFETY: a live context and buffer type; the caller's contract.
        unsafe { sys::ggml_backend_alloc_ctx_tensors_from_buft_size(ctx.as_ptr(), self.as_ptr()) }
    }

    /// Places every tensor of `ctx` that has no memory yet in one new buffer
    /// of this type (`None` when it cannot be had: the tensors placed before
    /// the failure then point into freed memory). The caller owns the buffer.
    ///
    /// # Safety
    /// As [`RawBufferType::alloc_ctx_tensors_size`].
    pub(crate) unsafe fn alloc_ctx_tensors(
        self,
        ctx: &Context,
    ) -> Option<NonNull<sys::ggml_backend_buffer>> {
        // SAFETY: as above.
        NonNull::new(unsafe {
            sys::ggml_backend_alloc_ctx_tensors_from_buft(ctx.as_ptr(), self.as_ptr())
        })
    }
}

// ----- buffers -----

/// A backend buffer, kept alive for `'a` by its owner (a context, or an
/// allocator whose lease is pinned).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawBuffer<'a> {
    ptr: NonNull<sys::ggml_backend_buffer>,
    _owner: PhantomData<&'a ()>,
}

impl RawBuffer<'_> {
    /// The handle of a buffer its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live buffer, freed only after `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<sys::ggml_backend_buffer>) -> Self {
        RawBuffer {
            ptr,
            _owner: PhantomData,
        }
    }

    /// Fills the buffer with `value`.
    ///
    /// # Safety
    /// Nothing computes on, copies to or reads the buffer meanwhile.
    pub(crate) unsafe fn clear(self, value: u8) {
        // SAFETY: a live buffer; the caller's contract.
        unsafe { sys::ggml_backend_buffer_clear(self.ptr.as_ptr(), value) }
    }

    /// Marks the buffer as holding weights: the scheduler runs the ops that
    /// use them on the buffer's backend.
    pub(crate) fn set_weights_usage(self) {
        // SAFETY: a live buffer; a flag ggml reads when scheduling.
        unsafe {
            sys::ggml_backend_buffer_set_usage(
                self.ptr.as_ptr(),
                sys::GGML_BACKEND_BUFFER_USAGE_WEIGHTS,
            )
        }
    }
}

getters!(RawBuffer {
    /// Its buffer type.
    fn buffer_type() -> Option<RawBufferType<'static>> = ggml_backend_buffer_get_type => RawBufferType::from_ptr;
});

// ----- tensors, as placement and the scheduler see them -----

/// A node's sources (`ggml_tensor::src`).
pub(crate) type Sources = [*mut sys::ggml_tensor; sys::GGML_MAX_SRC as usize];

/// What a tensor's fields say of its memory.
#[derive(Clone, Copy)]
pub(crate) struct TensorMemory {
    /// It views another tensor's memory (`view_src`).
    pub(crate) is_view: bool,
    /// It has an address (`data`).
    pub(crate) has_data: bool,
    /// It is in a backend buffer (`buffer`).
    pub(crate) has_buffer: bool,
}

/// `t`'s memory fields.
#[inline]
pub(crate) fn tensor_memory(t: &Tensor<'_>) -> TensorMemory {
    let t = t.as_ptr();
    // SAFETY: a live tensor (the handle borrows its context); fields copied
    // out.
    unsafe {
        TensorMemory {
            is_view: !(*t).view_src.is_null(),
            has_data: !(*t).data.is_null(),
            has_buffer: !(*t).buffer.is_null(),
        }
    }
}

/// The buffer `t`'s memory is in, if any.
///
/// # Safety
/// `t` is a live tensor whose buffer, if it has one, stays live for `'a`
/// (its context is pinned, or owns the buffer).
#[inline]
pub(crate) unsafe fn buffer_of<'a>(t: *const sys::ggml_tensor) -> Option<RawBuffer<'a>> {
    // SAFETY: the caller's contract; a field copied out.
    NonNull::new(unsafe { (*t).buffer }).map(|ptr| RawBuffer {
        ptr,
        _owner: PhantomData,
    })
}

/// `node`'s sources.
#[inline]
pub(crate) fn sources(node: &Tensor<'_>) -> Sources {
    // SAFETY: a live tensor (the handle borrows its context); the array is
    // copied out.
    unsafe { (*node.as_ptr()).src }
}

/// Points `node`'s sources at `sources`.
///
/// # Safety
/// `node` is a live tensor, no Rust reference to whose fields is alive;
/// `sources` are live tensors (or NULL) while the node is used with them.
#[inline]
pub(crate) unsafe fn set_sources(node: *mut sys::ggml_tensor, sources: &Sources) {
    // SAFETY: the caller's contract.
    unsafe { (*node).src = *sources };
}

/// Flags `t` as a graph input (the scheduler puts inputs no node reads
/// directly on its last backend).
///
/// # Safety
/// No Rust reference to the tensor's flags is alive.
pub(crate) unsafe fn set_input(t: &Tensor<'_>) {
    // SAFETY: a live tensor; the caller's contract.
    unsafe { sys::ggml_set_input(t.as_ptr()) }
}

// ----- backends -----

/// A backend (an execution stream), kept alive for `'a` by its owner, with
/// the entry points of its device's registry.
#[derive(Clone, Copy)]
pub(crate) struct RawBackend<'a> {
    ptr: NonNull<sys::ggml_backend>,
    procs: Procs,
    _owner: PhantomData<&'a ()>,
}

/// Frees a backend.
///
/// # Safety
/// A backend ggml gave ([`RawDevice::init_backend`]), freed once, its queued
/// work done, used by nothing (scheduler, event) any more.
pub(crate) unsafe fn free_backend(backend: NonNull<sys::ggml_backend>) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_free(backend.as_ptr()) }
}

getters!(RawBackend {
    /// Name (`"CPU"`, `"CUDA0"`, ...).
    fn name() -> String = ggml_backend_name => string;
    /// The memory it computes in by default.
    fn default_buffer_type() -> Option<RawBufferType<'static>> = ggml_backend_get_default_buffer_type => RawBufferType::from_ptr;
});

impl RawBackend<'_> {
    /// The handle of a backend its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live backend, freed only after `'a`; `procs` are its
    /// device's ([`RawDevice::backend_procs`]).
    pub(crate) unsafe fn new(ptr: NonNull<sys::ggml_backend>, procs: Procs) -> Self {
        RawBackend {
            ptr,
            procs,
            _owner: PhantomData,
        }
    }

    /// The backend as ggml knows it.
    fn as_ptr(self) -> sys::ggml_backend_t {
        self.ptr.as_ptr()
    }

    /// Whether it can compute on tensors in memory of `buft`.
    pub(crate) fn supports_buft(self, buft: RawBufferType<'_>) -> bool {
        // SAFETY: a live backend and buffer type.
        unsafe { sys::ggml_backend_supports_buft(self.as_ptr(), buft.as_ptr()) }
    }

    /// Whether it has a kernel for `node` (`supports_op`).
    ///
    /// # Safety
    /// The node's sources and the buffers of all of them are live (its
    /// context is pinned).
    pub(crate) unsafe fn supports_op(self, node: &Tensor<'_>) -> bool {
        // SAFETY: a live backend and node; the caller's contract.
        unsafe { sys::ggml_backend_supports_op(self.as_ptr(), node.as_ptr()) }
    }

    /// Sets the thread count, where its registry has a setter: whether it
    /// had. Nothing computes on the backend meanwhile (the handle is neither
    /// `Send` nor `Sync`, and its owner lends it to one call at a time).
    pub(crate) fn set_threads(self, n: c_int) -> bool {
        let Some(set) = self.procs.set_threads else {
            return false;
        };
        // SAFETY: a live backend; its own registry's setter (`new`).
        unsafe { set(self.as_ptr(), n) };
        true
    }

    /// Sets (or with `None` removes) the abort callback ggml calls between
    /// nodes, where its registry has a setter: whether it had.
    ///
    /// # Safety
    /// The hook's function may be called with its data from the backend's
    /// computations until the callback is removed.
    pub(crate) unsafe fn set_abort_callback(self, hook: Option<AbortHook>) -> bool {
        let Some(set) = self.procs.set_abort else {
            return false;
        };
        let (f, data) = match hook {
            Some((f, data)) => (Some(f), data),
            None => (None, std::ptr::null_mut()),
        };
        // SAFETY: a live backend; its own registry's setter (`new`); the
        // caller's contract.
        unsafe { set(self.as_ptr(), f, data) };
        true
    }

    /// Computes `graph` and waits for it: ggml's status.
    ///
    /// # Safety
    /// Every tensor of the graph has memory this backend can use, live (and
    /// pinned) through the call; it supports every node; nothing else reads
    /// or writes the graph's data meanwhile.
    pub(crate) unsafe fn graph_compute(self, graph: &Graph<'_>) -> sys::ggml_status {
        // SAFETY: a live backend and graph; the caller's contract.
        unsafe { sys::ggml_backend_graph_compute(self.as_ptr(), graph.as_ptr()) }
    }

    /// Starts computing `graph` (the CPU finishes before returning): ggml's
    /// status.
    ///
    /// # Safety
    /// As [`RawBackend::graph_compute`], until [`RawBackend::synchronize`]
    /// has returned.
    pub(crate) unsafe fn graph_compute_async(self, graph: &Graph<'_>) -> sys::ggml_status {
        // SAFETY: as above, the caller's contract lasting until the sync.
        unsafe { sys::ggml_backend_graph_compute_async(self.as_ptr(), graph.as_ptr()) }
    }

    /// Waits until its queued work is done.
    pub(crate) fn synchronize(self) {
        // SAFETY: a live backend.
        unsafe { sys::ggml_backend_synchronize(self.as_ptr()) }
    }
}

// ----- events -----

/// An event of a device, kept alive for `'a` by its owner.
#[derive(Clone, Copy)]
pub(crate) struct RawEvent<'a> {
    ptr: NonNull<sys::ggml_backend_event>,
    _owner: PhantomData<&'a ()>,
}

/// Frees an event.
///
/// # Safety
/// An event ggml gave ([`RawDevice::new_event`]), freed once.
pub(crate) unsafe fn free_event(event: NonNull<sys::ggml_backend_event>) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_event_free(event.as_ptr()) }
}

impl RawEvent<'_> {
    /// The handle of an event its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live event, freed only after `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<sys::ggml_backend_event>) -> Self {
        RawEvent {
            ptr,
            _owner: PhantomData,
        }
    }

    /// Records the event on `backend`'s queue.
    ///
    /// # Safety
    /// `backend` is a backend of the event's device (ggml asserts that the
    /// backend has events).
    pub(crate) unsafe fn record(self, backend: RawBackend<'_>) {
        // SAFETY: a live event and backend; the caller's contract.
        unsafe { sys::ggml_backend_event_record(self.ptr.as_ptr(), backend.as_ptr()) }
    }

    /// Makes `backend` wait for the event before its later work.
    ///
    /// # Safety
    /// As [`RawEvent::record`].
    pub(crate) unsafe fn wait(self, backend: RawBackend<'_>) {
        // SAFETY: as above.
        unsafe { sys::ggml_backend_event_wait(backend.as_ptr(), self.ptr.as_ptr()) }
    }

    /// Blocks the host until the event has happened.
    pub(crate) fn synchronize(self) {
        // SAFETY: a live event of a device with events (ggml made none
        // otherwise).
        unsafe { sys::ggml_backend_event_synchronize(self.ptr.as_ptr()) }
    }
}

// ----- the scheduler -----

/// A backend scheduler, kept alive for `'a` by its owner (with its backends).
#[derive(Clone, Copy)]
pub(crate) struct RawSched<'a> {
    ptr: NonNull<sys::ggml_backend_sched>,
    _owner: PhantomData<&'a ()>,
}

/// A new scheduler over `backends` (highest priority first), each on its
/// default buffer type, for graphs of up to `graph_size` tensors; ggml
/// copies the list. `None` when ggml returns NULL. The caller frees it
/// ([`free_sched`]).
///
/// # Safety
/// 1 to 16 live backends, the last a CPU backend, each outliving the
/// scheduler; `graph_size` in `1..=MAX_GRAPH_SIZE`.
pub(crate) unsafe fn new_sched<'b>(
    backends: impl IntoIterator<Item = RawBackend<'b>>,
    graph_size: usize,
) -> Option<NonNull<sys::ggml_backend_sched>> {
    let mut ptrs: Vec<sys::ggml_backend_t> = backends.into_iter().map(RawBackend::as_ptr).collect();
    // SAFETY: the caller's contract; default buffer types (each supported by
    // its backend); the array lives through the call.
    NonNull::new(unsafe {
        sys::ggml_backend_sched_new(
            ptrs.as_mut_ptr(),
            std::ptr::null_mut(),
            ptrs.len() as c_int,
            graph_size,
            false,
            true,
        )
    })
}

/// Frees a scheduler.
///
/// # Safety
/// A scheduler ggml gave ([`new_sched`]), freed once, before its backends,
/// with no tensor in its memory used any more and no graph pointing at its
/// copies.
pub(crate) unsafe fn free_sched(sched: NonNull<sys::ggml_backend_sched>) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_sched_free(sched.as_ptr()) }
}

getters!(RawSched {
    /// Parts the last allocated graph was split into.
    fn n_splits() -> c_int = ggml_backend_sched_get_n_splits;
});

impl RawSched<'_> {
    /// The handle of a scheduler its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live scheduler, freed only after `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<sys::ggml_backend_sched>) -> Self {
        RawSched {
            ptr,
            _owner: PhantomData,
        }
    }

    /// Bytes of compute memory on `backend`.
    ///
    /// # Safety
    /// `backend` is one of the scheduler's (ggml asserts it).
    pub(crate) unsafe fn buffer_size(self, backend: RawBackend<'_>) -> usize {
        // SAFETY: a live scheduler; the caller's contract.
        unsafe { sys::ggml_backend_sched_get_buffer_size(self.ptr.as_ptr(), backend.as_ptr()) }
    }

    /// The buffer type of `backend`'s compute memory.
    ///
    /// # Safety
    /// As [`RawSched::buffer_size`].
    pub(crate) unsafe fn buffer_type(
        self,
        backend: RawBackend<'_>,
    ) -> Option<RawBufferType<'static>> {
        // SAFETY: as above; buffer types live for the process.
        unsafe {
            RawBufferType::from_ptr(sys::ggml_backend_sched_get_buffer_type(
                self.ptr.as_ptr(),
                backend.as_ptr(),
            ))
        }
    }

    /// Runs `node` on `backend` in the next allocation.
    ///
    /// # Safety
    /// `backend` is one of the scheduler's (ggml asserts it); `node` is a
    /// node of the graph about to be allocated (no new entry in ggml's hash
    /// set).
    pub(crate) unsafe fn set_tensor_backend(self, node: &Tensor<'_>, backend: RawBackend<'_>) {
        // SAFETY: a live scheduler; the caller's contract.
        unsafe {
            sys::ggml_backend_sched_set_tensor_backend(
                self.ptr.as_ptr(),
                node.as_ptr(),
                backend.as_ptr(),
            )
        }
    }

    /// Forgets the last assignment of nodes to backends.
    pub(crate) fn reset(self) {
        // SAFETY: a live scheduler.
        unsafe { sys::ggml_backend_sched_reset(self.ptr.as_ptr()) }
    }

    /// Plans the compute memory for `graph` (splitting it): whether it could.
    ///
    /// # Safety
    /// `graph` passed every check the scheduler's owner makes of what ggml
    /// asserts (size, kernels, reachable memory, sizes that add up); the
    /// scheduler was reset since its last allocation.
    pub(crate) unsafe fn reserve(self, graph: &Graph<'_>) -> bool {
        // SAFETY: a live scheduler and graph; the caller's contract.
        unsafe { sys::ggml_backend_sched_reserve(self.ptr.as_ptr(), graph.as_ptr()) }
    }

    /// Splits `graph` and places its tensors that have no memory: whether
    /// it could.
    ///
    /// # Safety
    /// As [`RawSched::reserve`].
    pub(crate) unsafe fn alloc_graph(self, graph: &Graph<'_>) -> bool {
        // SAFETY: as above.
        unsafe { sys::ggml_backend_sched_alloc_graph(self.ptr.as_ptr(), graph.as_ptr()) }
    }

    /// Computes the graph allocated last (whatever graph is passed): ggml's
    /// status.
    ///
    /// # Safety
    /// `graph` is the graph allocated last, its sources pointing at the
    /// scheduler's copies, its memory live and pinned through the call;
    /// nothing else reads or writes its data meanwhile.
    pub(crate) unsafe fn graph_compute(self, graph: &Graph<'_>) -> sys::ggml_status {
        // SAFETY: a live scheduler and graph; the caller's contract.
        unsafe { sys::ggml_backend_sched_graph_compute(self.ptr.as_ptr(), graph.as_ptr()) }
    }

    /// Waits until every backend's queued work is done.
    pub(crate) fn synchronize(self) {
        // SAFETY: a live scheduler with live backends.
        unsafe { sys::ggml_backend_sched_synchronize(self.ptr.as_ptr()) }
    }
}

// ----- the graph allocator -----

/// A graph allocator, kept alive for `'a` by its owner.
#[derive(Clone, Copy)]
pub(crate) struct RawGallocr<'a> {
    ptr: NonNull<sys::ggml_gallocr>,
    _owner: PhantomData<&'a ()>,
}

/// A new graph allocator with one compute buffer of `buft` (`None` when its
/// bookkeeping cannot be allocated). The caller frees it ([`free_gallocr`]).
pub(crate) fn new_gallocr(buft: RawBufferType<'_>) -> Option<NonNull<sys::ggml_gallocr>> {
    // SAFETY: a live buffer type (one, so `n_bufs >= 1`).
    NonNull::new(unsafe { sys::ggml_gallocr_new(buft.as_ptr()) })
}

/// Frees a graph allocator and its compute buffer.
///
/// # Safety
/// An allocator ggml gave ([`new_gallocr`]), freed once, with no tensor in
/// its memory used any more.
pub(crate) unsafe fn free_gallocr(galloc: NonNull<sys::ggml_gallocr>) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_gallocr_free(galloc.as_ptr()) }
}

impl RawGallocr<'_> {
    /// The handle of an allocator its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live allocator, freed only after `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<sys::ggml_gallocr>) -> Self {
        RawGallocr {
            ptr,
            _owner: PhantomData,
        }
    }

    /// Bytes of its compute buffer now.
    pub(crate) fn buffer_size(self) -> usize {
        // SAFETY: a live allocator; buffer 0 exists (one buffer type).
        unsafe { sys::ggml_gallocr_get_buffer_size(self.ptr.as_ptr(), 0) }
    }

    /// Sizes the compute buffer for `graph` without placing anything:
    /// whether the memory could be had.
    pub(crate) fn reserve(self, graph: &Graph<'_>) -> bool {
        // SAFETY: a live allocator and graph (whose view sources are in it,
        // as in every graph of this crate); reserving writes no tensor.
        unsafe { sys::ggml_gallocr_reserve(self.ptr.as_ptr(), graph.as_ptr()) }
    }

    /// Places `graph`'s tensors that have no memory in the compute buffer,
    /// with the plan made last: whether it could.
    ///
    /// # Safety
    /// The plan was made for this very graph ([`RawGallocr::reserve`]: ggml
    /// reuses a plan of the same node and leaf counts without checking the
    /// leaves); its tensors without memory have neither address nor buffer;
    /// their sizes add up to what ggml can count.
    pub(crate) unsafe fn alloc_graph(self, graph: &Graph<'_>) -> bool {
        // SAFETY: a live allocator and graph; the caller's contract.
        unsafe { sys::ggml_gallocr_alloc_graph(self.ptr.as_ptr(), graph.as_ptr()) }
    }
}
