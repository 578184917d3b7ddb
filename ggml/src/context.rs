//! [`Context`]: a ggml memory arena that owns tensors and graphs, and frees them
//! all at once when dropped.

use std::cell::Cell;
use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::shape;
use crate::tensor::Tensor;
use crate::types::Type;
use crate::TensorData;

/// Alignment ggml requires of a context's memory.
const MEM_ALIGN: usize = 16;

/// A ggml context: an arena holding tensor metadata, tensor data (unless
/// `no_alloc`) and graphs.
///
/// Tensors are [`Tensor`] handles that borrow the context, so none can outlive
/// it. Reading or writing tensor data goes through the context's single
/// [`TensorData`] token ([`Context::data`]), which is how the borrow checker
/// keeps views and computations from aliasing.
pub struct Context {
    raw: NonNull<ggml_sys::ggml_context>,
    /// Caller-given memory; ggml does not free it, we do (after `ggml_free`).
    buffer: Option<Vec<u8>>,
    mem_size: usize,
    no_alloc: bool,
    /// `ggml_tensor_overhead()`, asked once (it is checked on every op).
    tensor_overhead: usize,
    data_taken: Cell<bool>,
}

// SAFETY: a ggml context has no thread affinity; moving it (with all its
// tensors, whose handles borrow it and so cannot move separately) is fine.
// It is not `Sync`: `Cell` and ggml's unsynchronised bookkeeping forbid sharing.
unsafe impl Send for Context {}

impl Context {
    /// A context that allocates `mem_size` bytes for tensor metadata and data.
    ///
    /// Size it with [`Context::tensor_size`] per tensor, plus
    /// [`Context::graph_size`] per graph.
    ///
    /// # Errors
    /// [`Error::Abi`] if the loaded library does not match the bindings,
    /// [`Error::ContextInit`] if the memory cannot be allocated.
    pub fn new(mem_size: usize) -> Result<Self> {
        Self::init(mem_size, None, false)
    }

    /// A context holding only tensor metadata (`no_alloc`): tensors have no
    /// data until a backend allocates them.
    ///
    /// # Errors
    /// As [`Context::new`].
    pub fn new_no_alloc(mem_size: usize) -> Result<Self> {
        Self::init(mem_size, None, true)
    }

    /// A context over a caller-given buffer, which it keeps until dropped or
    /// [`Context::into_buffer`]. ggml's memory starts at the first 16-byte
    /// aligned address of the buffer.
    ///
    /// # Errors
    /// As [`Context::new`].
    pub fn with_buffer(buffer: Vec<u8>, no_alloc: bool) -> Result<Self> {
        Self::init(buffer.len(), Some(buffer), no_alloc)
    }

    fn init(mem_size: usize, mut buffer: Option<Vec<u8>>, no_alloc: bool) -> Result<Self> {
        crate::init::ensure()?;
        let params = ggml_sys::ggml_init_params {
            mem_size,
            mem_buffer: buffer
                .as_mut()
                .map_or(std::ptr::null_mut(), |b| b.as_mut_ptr().cast()),
            no_alloc,
        };
        // SAFETY: a caller buffer is aligned (checked) and outlives the context
        // (owned by it, freed after `ggml_free`). ggml_init returns NULL (or
        // aborts before that only on allocation failure of its own struct).
        let raw = unsafe { ggml_sys::ggml_init(params) };
        let raw = NonNull::new(raw).ok_or(Error::ContextInit { mem_size })?;
        // SAFETY: a live context.
        let mem_size = unsafe { ggml_sys::ggml_get_mem_size(raw.as_ptr()) };
        Ok(Context {
            raw,
            buffer,
            mem_size,
            no_alloc,
            // SAFETY: a constant query.
            tensor_overhead: unsafe { ggml_sys::ggml_tensor_overhead() },
            data_taken: Cell::new(false),
        })
    }

    /// Takes the context's memory back (a caller-given buffer), freeing the context.
    pub fn into_buffer(mut self) -> Option<Vec<u8>> {
        let buffer = self.buffer.take();
        drop(self);
        buffer
    }

    /// Bytes one tensor of type `ty` and ndarray shape `shape` takes in a
    /// context: metadata plus data (for an allocating context).
    pub fn tensor_size(ty: Type, shape: &[usize]) -> usize {
        let n: usize = shape.iter().product();
        let row = shape.last().copied().unwrap_or(1).max(1);
        let rows = n / row;
        // SAFETY: a constant query.
        let overhead = unsafe { ggml_sys::ggml_tensor_overhead() };
        overhead + rows * ty.row_size(row) + MEM_ALIGN
    }

    /// Bytes a graph of up to `nodes` nodes takes in a context.
    pub fn graph_size(nodes: usize) -> usize {
        // SAFETY: a pure size computation.
        unsafe { ggml_sys::ggml_graph_overhead_custom(nodes, false) }
    }

    /// Total bytes of the context's memory.
    pub fn mem_size(&self) -> usize {
        self.mem_size
    }

    /// Bytes in use.
    pub fn used_mem(&self) -> usize {
        // SAFETY: a live context.
        unsafe { ggml_sys::ggml_used_mem(self.raw.as_ptr()) }
    }

    /// Bytes still free.
    pub fn free_mem(&self) -> usize {
        self.mem_size.saturating_sub(self.used_mem())
    }

    /// Bytes of metadata each tensor takes (`ggml_tensor_overhead()`).
    pub(crate) fn tensor_overhead(&self) -> usize {
        self.tensor_overhead
    }

    /// Whether tensors get no data here (`no_alloc`).
    pub fn is_no_alloc(&self) -> bool {
        self.no_alloc
    }

    /// The raw context, for calls into `ggml-sys`. It stays owned by `self`.
    pub fn as_ptr(&self) -> *mut ggml_sys::ggml_context {
        self.raw.as_ptr()
    }

    /// Checks there is room for `needed` more bytes (plus one object header).
    pub(crate) fn reserve(&self, needed: usize, what: impl FnOnce() -> String) -> Result<()> {
        let available = self.free_mem();
        // One object header and alignment padding on top of what ggml counts.
        let needed = needed.saturating_add(64);
        if needed > available {
            return Err(Error::OutOfMemory {
                what: what(),
                needed,
                available,
                mem_size: self.mem_size,
            });
        }
        Ok(())
    }

    /// Checks that `tensor` belongs to this context.
    pub(crate) fn owns(&self, tensor: &Tensor<'_>, what: &'static str) -> Result<()> {
        if std::ptr::eq(tensor.context(), self) {
            Ok(())
        } else {
            Err(Error::WrongContext { what })
        }
    }

    /// A new tensor of type `ty` and ndarray shape `shape` (rank 0 to 4).
    ///
    /// Its data (in an allocating context) is uninitialised memory of ggml's;
    /// fill it through [`TensorData`] before reading it.
    ///
    /// # Errors
    /// [`Error::InvalidShape`] for more than 4 axes, [`Error::BlockSize`] when
    /// the last axis is not a multiple of a quantized type's block size,
    /// [`Error::OutOfMemory`] when the context is full.
    pub fn new_tensor(&self, ty: Type, shape: &[usize]) -> Result<Tensor<'_>> {
        let ne = shape::ne_from_shape(shape)?;
        ty.check_row_len(ne[0] as usize)?;
        let bytes = if self.no_alloc {
            0
        } else {
            Self::tensor_size(ty, shape)
        };
        self.reserve(bytes.max(self.tensor_overhead), || {
            format!("a {ty} tensor of shape {shape:?}")
        })?;
        // SAFETY: live context, valid type, ne has MAX_DIMS entries, room checked.
        let raw = unsafe {
            ggml_sys::ggml_new_tensor(
                self.raw.as_ptr(),
                ty.as_raw(),
                shape::MAX_DIMS as i32,
                ne.as_ptr(),
            )
        };
        Tensor::from_raw(self, raw)
    }

    /// The tensor named `name`, if this context has one.
    pub fn tensor_by_name(&self, name: &str) -> Option<Tensor<'_>> {
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: live context, NUL-terminated name.
        let raw = unsafe { ggml_sys::ggml_get_tensor(self.raw.as_ptr(), name.as_ptr()) };
        Tensor::from_raw(self, raw).ok()
    }

    /// The context's data access token, through which tensor data is viewed,
    /// copied and computed.
    ///
    /// There is one per context at a time: while it lives, a second call
    /// returns [`Error::DataBorrowed`].
    ///
    /// # Errors
    /// [`Error::DataBorrowed`] while another token of this context exists.
    pub fn data(&self) -> Result<TensorData<'_>> {
        if self.data_taken.replace(true) {
            return Err(Error::DataBorrowed);
        }
        Ok(TensorData::new(self))
    }

    pub(crate) fn release_data(&self) {
        self.data_taken.set(false);
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context is live and dropped once; every tensor handle
        // borrowed it, so none is left. A caller buffer is freed after this.
        unsafe { ggml_sys::ggml_free(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("mem_size", &self.mem_size)
            .field("used_mem", &self.used_mem())
            .field("no_alloc", &self.no_alloc)
            .finish()
    }
}
