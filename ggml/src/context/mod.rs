//! [`Context`]: a ggml memory arena that owns tensors and graphs, and frees them
//! all at once when dropped; with its memory (`memory`: where each tensor's
//! bytes live, the leases and pins that keep them alive).

mod memory;

pub(crate) use memory::{
    is_unplaced_root, now_placed, Deferred, Epoch, Lease, OwnedBuffer, Pins, Place, Queue,
};

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::raw;
use crate::shape;
use crate::size;
use crate::tensor::Tensor;
use crate::types::Type;

/// Memory of a context: an allocation of ours, obtained zeroed, or a
/// caller's `Vec<u8>`. Either way every byte ggml hands out as tensor data is
/// initialised (untouched pages of a large zeroed allocation cost nothing:
/// the system maps them lazily).
enum Memory {
    Owned {
        ptr: NonNull<u8>,
        layout: std::alloc::Layout,
    },
    Caller(Vec<u8>),
}

impl Memory {
    /// A zeroed allocation of at least `size` bytes, aligned for ggml.
    fn zeroed(size: usize) -> Option<Memory> {
        let layout = std::alloc::Layout::from_size_align(size.max(1), size::MEM_ALIGN).ok()?;
        // SAFETY: a non-zero size; freed with the same layout in `Drop`.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(Memory::Owned { ptr, layout })
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Memory::Owned { ptr, layout } = self {
            // SAFETY: allocated in `zeroed` with this layout, freed once.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), *layout) };
        }
    }
}

/// A ggml context: an arena holding tensor metadata, tensor data (unless
/// `no_alloc`) and graphs.
///
/// Tensors are [`Tensor`] handles that borrow the context, so none can outlive
/// it. Reading or writing tensor data goes through the context's single
/// [`TensorData`](crate::TensorData) token ([`Context::data`]), which is how the borrow checker
/// keeps views and computations from aliasing.
pub struct Context {
    raw: NonNull<ggml_sys::ggml_context>,
    /// The arena's memory; ggml does not free it, we do (after `ggml_free`).
    memory: Option<Memory>,
    mem_size: usize,
    no_alloc: bool,
    data_taken: Cell<bool>,
    /// Backend buffers holding tensors of this context; freed with it.
    pub(crate) buffers: RefCell<Vec<OwnedBuffer>>,
    /// Memory allocators lent to tensors of this context (see `memory`).
    pub(crate) leases: RefCell<Vec<Lease>>,
    /// Backend queues that may still run work on this context's tensors
    /// (see `memory::Queue`).
    pub(crate) in_flight: RefCell<Vec<Arc<Queue>>>,
    /// Advanced whenever any tensor's memory may have changed place, so
    /// graphs know when to check their tensors' memory again.
    memory_generation: Cell<u64>,
    /// What the context keeps alive for its graphs: the closures of custom
    /// ops (their nodes' userdata point into these boxes, which keep their
    /// addresses when the vector grows).
    pub(crate) kept: RefCell<Vec<Box<dyn Kept>>>,
}

/// Something a context keeps for as long as its graphs can use it, which
/// may leave an error behind after a computation (a custom op's panic).
pub(crate) trait Kept: Send + Sync {
    /// Takes the error the last computation left, if any.
    fn take_error(&self) -> Option<crate::error::Error>;
}

// SAFETY: a ggml context has no thread affinity; moving it (with all its
// tensors, whose handles borrow it and so cannot move separately) is fine.
// It is not `Sync`: `Cell` and ggml's unsynchronised bookkeeping forbid sharing.
unsafe impl Send for Context {}

impl Context {
    /// A context that allocates `mem_size` bytes for tensor metadata and data.
    ///
    /// The memory is obtained zeroed, so a new tensor reads as zeros (and the
    /// pages nobody touches cost nothing). Size it with
    /// [`Context::tensor_size`] per tensor, plus [`Context::graph_size`] per
    /// graph.
    ///
    /// # Errors
    /// [`Error::Abi`] if the loaded library does not match the bindings,
    /// [`Error::ContextInit`] if the memory cannot be allocated (or is more
    /// than `isize::MAX` bytes).
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
    /// As [`Context::new`]; [`Error::ContextInit`] when the buffer has no
    /// 16-byte aligned byte to start at (an empty one, say).
    pub fn with_buffer(buffer: Vec<u8>, no_alloc: bool) -> Result<Self> {
        Self::init(buffer.len(), Some(buffer), no_alloc)
    }

    fn init(mem_size: usize, buffer: Option<Vec<u8>>, no_alloc: bool) -> Result<Self> {
        crate::init::ensure()?;
        let failed = || Error::ContextInit { mem_size };
        let (memory, start, usable) = match buffer {
            Some(mut buffer) => {
                let skip = buffer.as_mut_ptr().align_offset(size::MEM_ALIGN);
                // ggml takes a size of 0 to mean 16 bytes: refuse it.
                let usable = buffer.len().checked_sub(skip).filter(|&n| n > 0);
                let usable = usable.ok_or_else(failed)?;
                // SAFETY: `skip < len`, so the pointer stays inside the buffer.
                let start = unsafe { buffer.as_mut_ptr().add(skip) };
                (Memory::Caller(buffer), start, usable)
            }
            None => {
                // ggml pads its own allocations to 16 bytes; so do we.
                let usable = size::pad(mem_size.max(1), size::MEM_ALIGN)
                    .filter(|&n| n <= size::MAX_BYTES)
                    .ok_or_else(failed)?;
                let memory = Memory::zeroed(usable).ok_or_else(failed)?;
                let Memory::Owned { ptr, .. } = &memory else {
                    unreachable!()
                };
                let start = ptr.as_ptr();
                (memory, start, usable)
            }
        };
        let params = ggml_sys::ggml_init_params {
            mem_size: usable,
            mem_buffer: start.cast(),
            no_alloc,
        };
        // SAFETY: a non-empty buffer, 16-byte aligned (ggml asserts both),
        // that outlives the context: owned by it, freed after `ggml_free`.
        let raw = unsafe { raw::init_context(params) }.ok_or_else(failed)?;
        Ok(Context {
            raw,
            memory: Some(memory),
            mem_size: usable,
            no_alloc,
            data_taken: Cell::new(false),
            buffers: RefCell::new(Vec::new()),
            leases: RefCell::new(Vec::new()),
            in_flight: RefCell::new(Vec::new()),
            memory_generation: Cell::new(0),
            kept: RefCell::new(Vec::new()),
        })
    }

    /// Takes the context's memory back (a caller-given buffer), freeing the context.
    ///
    /// `None` for a context that allocated its own memory, and for one that a
    /// device may still be using (a leaked
    /// [`Pending`](crate::backend::Pending)): its memory is leaked.
    pub fn into_buffer(mut self) -> Option<Vec<u8>> {
        if !self.is_settled() {
            return None; // dropped: leaks its memory
        }
        let mut memory = self.memory.take();
        drop(self);
        match &mut memory {
            Some(Memory::Caller(buffer)) => Some(std::mem::take(buffer)),
            _ => None,
        }
    }

    /// Bytes one tensor of type `ty` and ndarray shape `shape` takes in an
    /// allocating context: metadata plus data.
    ///
    /// # Errors
    /// [`Error::InvalidShape`], [`Error::BlockSize`], [`Error::TooLarge`] (the
    /// size does not fit in `usize`).
    pub fn tensor_size(ty: Type, shape: &[usize]) -> Result<usize> {
        crate::init::ensure()?;
        let ne = shape::ne_from_shape(shape)?;
        size::check_shape("tensor_size", ty, &ne)?;
        size::tensor_object_bytes(size::dense_bytes(ty, &ne)).ok_or_else(|| Error::TooLarge {
            what: "tensor_size",
            ty,
            shape: shape.to_vec(),
            limit: "more than usize::MAX bytes with its metadata",
        })
    }

    /// Bytes a graph of up to `nodes` nodes takes in a context, or `None`
    /// above [`MAX_GRAPH_NODES`](crate::size::MAX_GRAPH_NODES).
    pub fn graph_size(nodes: usize) -> Option<usize> {
        size::graph_bytes(nodes)
    }

    /// Total bytes of the context's memory.
    pub fn mem_size(&self) -> usize {
        self.mem_size
    }

    /// Bytes in use.
    pub fn used_mem(&self) -> usize {
        self.raw().used_mem()
    }

    /// Bytes still free.
    pub fn free_mem(&self) -> usize {
        self.mem_size.saturating_sub(self.used_mem())
    }

    /// Whether tensors get no data here (`no_alloc`).
    pub fn is_no_alloc(&self) -> bool {
        self.no_alloc
    }

    /// The raw layer's handle of the context.
    pub(crate) fn raw(&self) -> raw::RawContext<'_> {
        // SAFETY: live until `self` is dropped, which the borrow outlasts.
        unsafe { raw::RawContext::new(self.raw) }
    }

    /// The raw context, for calls into `ggml-sys`. It stays owned by `self`.
    pub fn as_ptr(&self) -> *mut ggml_sys::ggml_context {
        self.raw.as_ptr()
    }

    /// Checks there is room for one more object costing `object` bytes (as
    /// [`size::object_bytes`] computes them; `None` is an overflow).
    pub(crate) fn reserve(
        &self,
        object: Option<usize>,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let used = self.used_mem();
        match object {
            Some(object) if size::fits(used, object, self.mem_size) => Ok(()),
            _ => Err(Error::OutOfMemory {
                what: what(),
                needed: object.unwrap_or(usize::MAX),
                available: self.mem_size.saturating_sub(used),
                mem_size: self.mem_size,
            }),
        }
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
    /// In an allocating context its data reads as zeros until written.
    ///
    /// # Errors
    /// [`Error::InvalidShape`] for more than 4 axes, [`Error::BlockSize`] when
    /// the last axis is not a multiple of a quantized type's block size,
    /// [`Error::TooLarge`] for sizes ggml cannot count, [`Error::OutOfMemory`]
    /// when the context is full.
    pub fn new_tensor(&self, ty: Type, shape: &[usize]) -> Result<Tensor<'_>> {
        let ne = shape::ne_from_shape(shape)?;
        self.new_tensor_ne("new_tensor", ty, &ne)
    }

    /// A new dense tensor of `ty` and `ne`, after the shape and room checks.
    pub(crate) fn new_tensor_ne(
        &self,
        what: &'static str,
        ty: Type,
        ne: &size::Ne,
    ) -> Result<Tensor<'_>> {
        self.reserve_tensor(what, ty, ne)?;
        // SAFETY: live context, valid type, a checked shape (ggml's element
        // test holds, sizes fit size_t), room checked exactly as ggml does.
        let raw = unsafe { self.raw().new_tensor(ty.as_raw(), ne) };
        Tensor::from_raw(self, raw)
    }

    /// Checks `ne` as a shape of `ty` and that the context has room for a new
    /// dense tensor of it (with its data, unless `no_alloc`).
    pub(crate) fn reserve_tensor(&self, what: &'static str, ty: Type, ne: &size::Ne) -> Result<()> {
        size::check_shape(what, ty, ne)?;
        let data = if self.no_alloc {
            0
        } else {
            size::dense_bytes(ty, ne)
        };
        self.reserve(size::tensor_object_bytes(data), || {
            let shape = shape::shape_from_ne(ne, shape::n_dims(ne));
            format!("{what}: a {ty} tensor of shape {shape:?}")
        })
    }

    /// Checks the context has room for a view (a tensor without data of its own).
    pub(crate) fn reserve_view(&self, what: &'static str) -> Result<()> {
        self.reserve(size::tensor_object_bytes(0), || {
            format!("the view made by {what}")
        })
    }

    /// The tensor named `name`, if this context has one.
    pub fn tensor_by_name(&self, name: &str) -> Option<Tensor<'_>> {
        let name = std::ffi::CString::new(name).ok()?;
        let raw = self.raw().tensor_by_name(&name);
        Tensor::from_raw(self, raw).ok()
    }

    /// Marks the data token taken; false when it already was (the token,
    /// [`Context::data`], is made in `data`, above this module).
    pub(crate) fn take_data(&self) -> bool {
        !self.data_taken.replace(true)
    }

    /// Marks the data token returned (its drop).
    pub(crate) fn release_data(&self) {
        self.data_taken.set(false);
    }

    /// Notes that tensors may have changed place (see `memory`).
    pub(crate) fn memory_changed(&self) {
        self.memory_generation.set(self.memory_generation.get() + 1);
    }

    /// Changes each time tensors of this context may have changed place.
    pub(crate) fn memory_generation(&self) -> u64 {
        self.memory_generation.get()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if !self.is_settled() {
            // A leaked `Pending`: a device may still read or write the
            // tensors, their buffers and the arena. Leak them all.
            std::mem::forget(self.memory.take());
            std::mem::forget(std::mem::take(&mut *self.buffers.borrow_mut()));
            std::mem::forget(std::mem::take(&mut *self.kept.borrow_mut()));
            return;
        }
        // SAFETY: the context is live and dropped once; every tensor handle
        // borrowed it, so none is left. Its memory is freed after this.
        unsafe { raw::free_context(self.raw) };
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
