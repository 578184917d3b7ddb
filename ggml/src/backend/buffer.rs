//! [`BufferType`]: a kind of backend memory (a device's, pinned host memory,
//! plain host memory), and [`Context::allocate`], which places a `no_alloc`
//! context's tensors in one buffer of it that the context then owns.

use std::fmt;
use std::ptr::NonNull;

use super::raw::{self, RawBuffer, RawBufferType};
use crate::context::Context;
use crate::context::{is_unplaced_root, OwnedBuffer};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A kind of backend memory: a device's own memory, pinned host memory, or
/// plain host memory ([`BufferType::cpu`]).
///
/// A `Copy` handle: buffer types are static objects of their backends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BufferType(RawBufferType<'static>);

// SAFETY: buffer types are static and immutable; their queries and
// allocations are thread-safe in every ggml backend.
unsafe impl Send for BufferType {}
// SAFETY: as above.
unsafe impl Sync for BufferType {}

impl BufferType {
    pub(crate) fn from_raw(raw: RawBufferType<'static>) -> Self {
        BufferType(raw)
    }

    /// The raw layer's handle of the buffer type.
    pub(crate) fn raw(&self) -> RawBufferType<'static> {
        self.0
    }

    /// Plain host memory, as the CPU backend uses.
    ///
    /// # Errors
    /// [`Error::Abi`] when the loaded library does not match the bindings.
    pub fn cpu() -> Result<BufferType> {
        crate::init::ensure()?;
        Ok(BufferType(
            raw::cpu_buffer_type().expect("ggml has a CPU buffer type"),
        ))
    }

    /// Name (`"CPU"`, `"CUDA0"`, `"CUDA_Host"`, ...).
    pub fn name(&self) -> String {
        self.0.name()
    }

    /// Alignment of the tensors placed in it, in bytes.
    pub fn alignment(&self) -> usize {
        self.0.alignment()
    }

    /// Largest single buffer it allocates (larger requests are split over
    /// several buffers).
    pub fn max_size(&self) -> usize {
        self.0.max_size()
    }

    /// Whether the host can address its memory directly (tensors in it can
    /// be viewed zero-copy).
    pub fn is_host(&self) -> bool {
        self.0.is_host()
    }
}

impl fmt::Debug for BufferType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferType")
            .field("name", &self.name())
            .field("is_host", &self.is_host())
            .finish()
    }
}

/// Zeroes the buffers `placed` tensors were just put in (of `buffer_type`
/// only, when given): fresh buffers, so every byte a copy reads is
/// initialised.
pub(crate) fn zero_buffers_of(
    placed: &[NonNull<ggml_sys::ggml_tensor>],
    buffer_type: Option<RawBufferType<'static>>,
) {
    let mut cleared: Vec<RawBuffer<'_>> = Vec::new();
    for t in placed {
        // SAFETY: a tensor just placed in a live buffer (or none, if empty).
        let Some(buffer) = (unsafe { raw::buffer_of(t.as_ptr()) }) else {
            continue;
        };
        if cleared.contains(&buffer) {
            continue;
        }
        let of_type = buffer.buffer_type();
        if buffer_type.is_none_or(|b| Some(b) == of_type) {
            // SAFETY: a live buffer nothing computes on now.
            unsafe { buffer.clear(0) };
            cleared.push(buffer);
        }
    }
}

/// Refuses placing `tensors` (`copies` times each) in memory of
/// `buffer_type` when their sizes add up to more than
/// [`MAX_BYTES`](crate::size::MAX_BYTES): ggml sums them unchecked, and a
/// total that wraps plans a tiny buffer, then aborts placing the tensors
/// (`ggml-alloc.c`, "not enough space in the buffer").
///
/// # Errors
/// [`Error::BufferAlloc`].
pub(crate) fn check_placement<'a>(
    buffer_type: BufferType,
    tensors: impl IntoIterator<Item = Tensor<'a>>,
    copies: usize,
) -> Result<()> {
    // SAFETY: a live buffer type; live tensors (their handles borrow their
    // context).
    let total = unsafe {
        crate::size::placement_bytes(
            buffer_type.raw().as_ptr(),
            tensors.into_iter().map(|t| t.as_ptr()),
            copies,
        )
    };
    match total {
        Some(_) => Ok(()),
        None => Err(Error::BufferAlloc {
            buffer_type: buffer_type.name(),
            size: usize::MAX,
            detail: ": the tensors' sizes add up to more than isize::MAX bytes".into(),
        }),
    }
}

/// Tensors of `ctx` that own memory (not views) and have none yet.
pub(crate) fn unplaced_roots(ctx: &Context) -> Vec<NonNull<ggml_sys::ggml_tensor>> {
    ctx.raw()
        .tensors()
        .filter(|t| {
            // SAFETY: a tensor of the context's own list.
            unsafe { is_unplaced_root(t.as_ptr()) }
        })
        .collect()
}

impl Context {
    /// Places every tensor of this `no_alloc` context that has no memory yet
    /// in one new buffer of `buffer_type` (a backend's
    /// [`Backend::buffer_type`](super::Backend::buffer_type), say), which
    /// the context owns and frees when dropped. Returns the buffer's size.
    ///
    /// The memory is zeroed. Tensors made later can be placed by calling
    /// this again (a second buffer), or by a
    /// [`GraphAllocator`](super::GraphAllocator) when they are
    /// intermediates of a graph.
    ///
    /// # Errors
    /// [`Error::NotNoAlloc`] for an allocating context,
    /// [`Error::AlreadyAllocated`] when no tensor needs memory,
    /// [`Error::BufferAlloc`] when the memory cannot be had (out of device
    /// memory): the tensors then stay unallocated.
    pub fn allocate(&self, buffer_type: BufferType) -> Result<usize> {
        crate::error::rpc::guard(|| self.allocate_inner(buffer_type, false))
    }

    /// Like [`Context::allocate`], for weights: the buffer is marked as
    /// holding weights (`GGML_BACKEND_BUFFER_USAGE_WEIGHTS`), so that a
    /// [`Scheduler`](super::Scheduler) runs the ops using these tensors on
    /// the buffer's backend (ggml's rule: ops go where their weights are),
    /// and an RPC worker with a cache keeps large uploads to them.
    ///
    /// # Errors
    /// As [`Context::allocate`].
    pub fn allocate_weights(&self, buffer_type: BufferType) -> Result<usize> {
        crate::error::rpc::guard(|| self.allocate_inner(buffer_type, true))
    }

    /// The body of the functions above.
    fn allocate_inner(&self, buffer_type: BufferType, weights: bool) -> Result<usize> {
        if !self.is_no_alloc() {
            return Err(Error::NotNoAlloc {
                what: "Context::allocate",
            });
        }
        self.sweep();
        let pending = unplaced_roots(self);
        if pending.is_empty() {
            return Err(Error::AlreadyAllocated {
                what: "Context::allocate",
            });
        }
        check_placement(
            buffer_type,
            pending.iter().map(|&t| Tensor::from_made(self, t)),
            1,
        )?;
        // SAFETY: a live no_alloc context (ggml asserts it) and buffer type;
        // every view's source is in this context (the op builders check
        // operands), created before the view, so placed before it.
        let size = unsafe { buffer_type.raw().alloc_ctx_tensors_size(self) };
        let failed = |detail: &str| Error::BufferAlloc {
            buffer_type: buffer_type.name(),
            size,
            detail: detail.into(),
        };
        if size == 0 {
            // Only empty tensors need placing: they need no memory.
            let empty = |t: &NonNull<ggml_sys::ggml_tensor>| Tensor::from_made(self, *t).is_empty();
            if pending.iter().all(empty) {
                return Ok(0);
            }
            return Err(failed(": a tensor is larger than the buffer type allows"));
        }
        // SAFETY: as for the size.
        let buffer = unsafe { buffer_type.raw().alloc_ctx_tensors(self) };
        let Some(buffer) = buffer else {
            // A failure part-way leaves tensors pointing into freed buffers.
            self.unplace(pending);
            return Err(failed(" (out of memory?)"));
        };
        // SAFETY: a live buffer, which the context owns from here on; nothing
        // uses it yet. Zeroing it makes every byte a view or copy can read
        // initialised.
        let raw = unsafe { RawBuffer::new(buffer) };
        // SAFETY: as above.
        unsafe { raw.clear(0) };
        if weights {
            raw.set_weights_usage();
        }
        self.own_buffer(OwnedBuffer(buffer));
        Ok(size)
    }
}
