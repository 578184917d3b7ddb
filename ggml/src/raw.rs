//! The core's raw layer: the C calls the core makes on ggml's contexts,
//! tensors, graphs and type tables, each wrapped once, so that the modules
//! above speak in safe types.
//!
//! Two other raw layers sit beside this one, each private to its layer:
//! `backend/raw.rs` (devices, buffers, backends, the graph allocator, the
//! scheduler) and `llama/raw.rs` (llama.cpp's handles). Outside the three,
//! C is called only by the op builders in `ops/` (one ggml builder per op,
//! declared where the op is) and by the conversions' row kernels in
//! `convert.rs`.
//!
//! A handle ([`RawContext`], [`RawTensor`], [`RawGraph`]) is a pointer its
//! owner keeps alive for `'a`: [`Context`](crate::Context) makes it from
//! `&self` and frees the context (with its tensors and graphs) in its `Drop`.
//! One-line getters are declared in tables (`getters!`). What a call still
//! requires of its caller beyond a live handle makes it an `unsafe fn` with a
//! `# Safety` section.

use std::ffi::{c_void, CStr};
use std::marker::PhantomData;
use std::ptr::NonNull;

use ggml_sys as sys;

/// One-line getters of a handle: `fn name() -> T = ggml_function;` calls
/// `ggml_function(handle)`, which only reads ggml's state.
macro_rules! getters {
    ($handle:ident { $($(#[$doc:meta])* fn $name:ident() -> $ret:ty = $ffi:ident;)* }) => {
        impl $handle<'_> {
            $(
                $(#[$doc])*
                pub(crate) fn $name(self) -> $ret {
                    // SAFETY: a live handle (the type's invariant); the call
                    // reads fields only.
                    unsafe { sys::$ffi(self.ptr.as_ptr()) }
                }
            )*
        }
    };
}

// ----- library -----

/// Initialises the CPU backend's lookup tables (idempotent).
#[cfg(ggml_cpu_backend)]
pub(crate) fn cpu_init() {
    // SAFETY: idempotent initialisation of static tables.
    unsafe { sys::ggml_cpu_init() }
}

/// Loads the backend modules of the install (idempotent).
#[cfg(not(ggml_cpu_backend))]
pub(crate) fn load_all_backends() {
    // SAFETY: registers the modules found next to the library; idempotent.
    unsafe { sys::ggml_backend_load_all() }
}

/// ggml's traits of `ty` (a static table).
///
/// # Safety
/// `ty` is a type of the linked library (the ABI guard checks that it has
/// every type of the bindings).
pub(crate) unsafe fn type_traits(ty: sys::ggml_type) -> &'static sys::ggml_type_traits {
    // SAFETY: the caller's contract; the table is static.
    unsafe { &*sys::ggml_get_type_traits(ty) }
}

/// Whether quantizing to `ty` needs an importance matrix.
pub(crate) fn quantize_requires_imatrix(ty: sys::ggml_type) -> bool {
    // SAFETY: the function only compares its argument.
    unsafe { sys::ggml_quantize_requires_imatrix(ty) }
}

/// Quantizes `n_rows` rows of `row_len` f32 values from `src` into `dst`;
/// bytes written.
///
/// # Safety
/// `src` holds `n_rows * row_len` finite values (in the quantizer's range),
/// `dst` exactly `n_rows` rows of `ty`; `row_len` is a whole number of `ty`'s
/// blocks; `imatrix` is NULL or holds `row_len` values, and is not NULL when
/// `ty` requires one.
pub(crate) unsafe fn quantize_rows(
    ty: sys::ggml_type,
    src: &[f32],
    dst: &mut [u8],
    n_rows: i64,
    row_len: i64,
    imatrix: *const f32,
) -> usize {
    // SAFETY: the caller's contract.
    unsafe {
        sys::ggml_quantize_chunk(
            ty,
            src.as_ptr(),
            dst.as_mut_ptr().cast(),
            0,
            n_rows,
            row_len,
            imatrix,
        )
    }
}

/// ggml's name of `op` (static).
pub(crate) fn op_name(op: sys::ggml_op) -> &'static CStr {
    // SAFETY: ggml returns a static NUL-terminated name for any op value.
    unsafe { CStr::from_ptr(sys::ggml_op_name(op)) }
}

/// `ggml_tensor_overhead()`: a context's bytes per tensor object.
pub(crate) fn tensor_overhead() -> usize {
    // SAFETY: a constant query.
    unsafe { sys::ggml_tensor_overhead() }
}

/// `ggml_graph_overhead_custom(nodes, false)`.
///
/// # Safety
/// ggml's arithmetic on `nodes` (a hash table of twice as many 8-byte
/// entries, plus the node arrays) fits in a `size_t`.
pub(crate) unsafe fn graph_overhead(nodes: usize) -> usize {
    // SAFETY: the caller's contract; a pure size computation.
    unsafe { sys::ggml_graph_overhead_custom(nodes, false) }
}

/// The alignment of `buft`'s buffers.
///
/// # Safety
/// `buft` is a live buffer type.
pub(crate) unsafe fn buft_alignment(buft: sys::ggml_backend_buffer_type_t) -> usize {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_buft_get_alignment(buft) }
}

/// The bytes `buft` allocates for `t`.
///
/// # Safety
/// `buft` is a live buffer type and `t` a live tensor whose size was checked.
pub(crate) unsafe fn buft_alloc_size(
    buft: sys::ggml_backend_buffer_type_t,
    t: *mut sys::ggml_tensor,
) -> usize {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_buft_get_alloc_size(buft, t) }
}

// ----- backend buffers, as the core sees them -----

/// Frees a buffer.
///
/// # Safety
/// A buffer ggml allocated for the caller, freed once, none of whose tensors
/// is used again.
pub(crate) unsafe fn free_buffer(buffer: NonNull<sys::ggml_backend_buffer>) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_buffer_free(buffer.as_ptr()) }
}

/// Whether `buffer`'s memory is host memory.
///
/// # Safety
/// `buffer` is live.
pub(crate) unsafe fn buffer_is_host(buffer: *mut sys::ggml_backend_buffer) -> bool {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_buffer_is_host(buffer) }
}

/// Gives a view its root's buffer and address (`ggml_backend_view_init`).
///
/// # Safety
/// `view` is a live view whose root is allocated in a live buffer, and no
/// Rust reference to its fields is alive.
pub(crate) unsafe fn view_init(view: *mut sys::ggml_tensor) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_view_init(view) };
}

/// Copies `len` bytes of `t`'s data (from offset 0) into `dst`.
///
/// # Safety
/// `t` is allocated in a live backend buffer, `len` is at most its size,
/// `dst` holds `len` bytes and overlaps no tensor, and no computation uses `t`.
pub(crate) unsafe fn tensor_get(t: *const sys::ggml_tensor, dst: *mut c_void, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_tensor_get(t, dst, 0, len) }
}

/// Copies `len` bytes from `src` into `t`'s data (from offset 0).
///
/// # Safety
/// As [`tensor_get`], `src` holding `len` bytes.
pub(crate) unsafe fn tensor_set(t: *mut sys::ggml_tensor, src: *const c_void, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_backend_tensor_set(t, src, 0, len) }
}

// ----- contexts -----

/// A live `ggml_context` (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawContext<'a> {
    ptr: NonNull<sys::ggml_context>,
    _owner: PhantomData<&'a ()>,
}

/// Makes a context over the caller's memory (`None` when ggml fails).
///
/// # Safety
/// `params.mem_buffer` is a non-empty, 16-byte aligned buffer of
/// `params.mem_size` bytes that outlives the context.
pub(crate) unsafe fn init_context(
    params: sys::ggml_init_params,
) -> Option<NonNull<sys::ggml_context>> {
    // SAFETY: the caller's contract.
    NonNull::new(unsafe { sys::ggml_init(params) })
}

/// Frees a context.
///
/// # Safety
/// Called once, by its owner, when no handle of it (tensor, graph) is used
/// again.
pub(crate) unsafe fn free_context(ctx: NonNull<sys::ggml_context>) {
    // SAFETY: the caller's contract.
    unsafe { sys::ggml_free(ctx.as_ptr()) }
}

getters!(RawContext {
    /// Bytes in use.
    fn used_mem() -> usize = ggml_used_mem;
    /// The start of the context's memory.
    fn mem_buffer() -> *mut c_void = ggml_get_mem_buffer;
});

impl<'a> RawContext<'a> {
    /// The handle of a context its owner keeps alive for `'a`.
    ///
    /// # Safety
    /// `ptr` is a live context, freed only after `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<sys::ggml_context>) -> Self {
        RawContext {
            ptr,
            _owner: PhantomData,
        }
    }

    /// A new dense tensor of `ty` and `ne` (NULL when ggml has no room).
    ///
    /// # Safety
    /// `ty` is a valid type; `ne` passed the shape checks (ggml's element
    /// test holds, sizes fit `size_t`) and the context's room was checked
    /// exactly as ggml checks it.
    pub(crate) unsafe fn new_tensor(
        self,
        ty: sys::ggml_type,
        ne: &[i64; sys::GGML_MAX_DIMS as usize],
    ) -> *mut sys::ggml_tensor {
        // SAFETY: the caller's contract.
        unsafe {
            sys::ggml_new_tensor(
                self.ptr.as_ptr(),
                ty,
                sys::GGML_MAX_DIMS as i32,
                ne.as_ptr(),
            )
        }
    }

    /// The tensor named `name` (NULL when none).
    pub(crate) fn tensor_by_name(self, name: &CStr) -> *mut sys::ggml_tensor {
        // SAFETY: a live context, a NUL-terminated name.
        unsafe { sys::ggml_get_tensor(self.ptr.as_ptr(), name.as_ptr()) }
    }

    /// A graph of `capacity` nodes and leaves, without gradients.
    ///
    /// # Safety
    /// The context has room for it, checked exactly as `ggml_new_object`
    /// checks (ggml aborts otherwise).
    pub(crate) unsafe fn new_graph(self, capacity: usize) -> Option<NonNull<sys::ggml_cgraph>> {
        // SAFETY: the caller's contract.
        NonNull::new(unsafe { sys::ggml_new_graph_custom(self.ptr.as_ptr(), capacity, false) })
    }

    /// The context's tensors, in the order they were made.
    pub(crate) fn tensors(self) -> impl Iterator<Item = NonNull<sys::ggml_tensor>> + 'a {
        // SAFETY: a live context; the first of its object list.
        let first = unsafe { sys::ggml_get_first_tensor(self.ptr.as_ptr()) };
        std::iter::successors(NonNull::new(first), move |t| {
            // SAFETY: a tensor of this live context; the next of its list.
            NonNull::new(unsafe { sys::ggml_get_next_tensor(self.ptr.as_ptr(), t.as_ptr()) })
        })
    }
}

// ----- tensors -----

/// A live `ggml_tensor` (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawTensor<'a> {
    ptr: NonNull<sys::ggml_tensor>,
    _owner: PhantomData<&'a ()>,
}

getters!(RawTensor {
    /// Bytes the data spans.
    fn nbytes() -> usize = ggml_nbytes;
    /// Whether the elements are dense in ggml's order.
    fn is_contiguous() -> bool = ggml_is_contiguous;
    /// Whether `ne[0]` is not the fastest-moving axis.
    fn is_transposed() -> bool = ggml_is_transposed;
});

impl RawTensor<'_> {
    /// The handle of a tensor of a context its owner keeps alive.
    ///
    /// # Safety
    /// `ptr` is a live tensor, its context freed only after the handle's
    /// lifetime.
    pub(crate) unsafe fn new(ptr: NonNull<sys::ggml_tensor>) -> Self {
        RawTensor {
            ptr,
            _owner: PhantomData,
        }
    }

    /// Sets the name (ggml copies at most `GGML_MAX_NAME - 1` bytes).
    ///
    /// # Safety
    /// No Rust reference to the tensor's name field is alive.
    pub(crate) unsafe fn set_name(self, name: &CStr) {
        // SAFETY: a live tensor, a NUL-terminated name; the caller's contract.
        unsafe { sys::ggml_set_name(self.ptr.as_ptr(), name.as_ptr()) };
    }

    /// Flags the tensor as a graph output (allocators keep its value).
    ///
    /// # Safety
    /// No Rust reference to the tensor's flags is alive.
    pub(crate) unsafe fn set_output(self) {
        // SAFETY: a live tensor; the caller's contract.
        unsafe { sys::ggml_set_output(self.ptr.as_ptr()) }
    }
}

// ----- graphs -----

/// A live `ggml_cgraph` (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawGraph<'a> {
    ptr: NonNull<sys::ggml_cgraph>,
    _owner: PhantomData<&'a ()>,
}

impl RawGraph<'_> {
    /// The handle of a graph of a context its owner keeps alive.
    ///
    /// # Safety
    /// `ptr` is a live graph, its context freed only after the handle's
    /// lifetime.
    pub(crate) unsafe fn new(ptr: NonNull<sys::ggml_cgraph>) -> Self {
        RawGraph {
            ptr,
            _owner: PhantomData,
        }
    }

    /// Number of nodes.
    pub(crate) fn n_nodes(self) -> usize {
        // SAFETY: a live graph; a field read.
        let n = unsafe { sys::ggml_graph_n_nodes(self.ptr.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// Adds `node` and the nodes it depends on.
    ///
    /// # Safety
    /// `node` is a live tensor of the graph's context; the graph has room for
    /// what it adds, and ggml's recursion over the parents not yet added
    /// stays shallow (the caller adds parents first).
    pub(crate) unsafe fn expand(self, node: *mut sys::ggml_tensor) {
        // SAFETY: the caller's contract.
        unsafe { sys::ggml_build_forward_expand(self.ptr.as_ptr(), node) }
    }
}
