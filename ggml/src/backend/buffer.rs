//! [`BufferType`]: a kind of backend memory (a device's, pinned host memory,
//! plain host memory), and [`Context::allocate`], which places a `no_alloc`
//! context's tensors in one buffer of it that the context then owns.

use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::memory::OwnedBuffer;

/// A kind of backend memory: a device's own memory, pinned host memory, or
/// plain host memory ([`BufferType::cpu`]).
///
/// A `Copy` handle: buffer types are static objects of their backends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BufferType(NonNull<ggml_sys::ggml_backend_buffer_type>);

// SAFETY: buffer types are static and immutable; their queries and
// allocations are thread-safe in every ggml backend.
unsafe impl Send for BufferType {}
// SAFETY: as above.
unsafe impl Sync for BufferType {}

impl BufferType {
    pub(crate) fn from_raw(raw: ggml_sys::ggml_backend_buffer_type_t) -> Option<Self> {
        NonNull::new(raw).map(BufferType)
    }

    pub(crate) fn as_ptr(&self) -> ggml_sys::ggml_backend_buffer_type_t {
        self.0.as_ptr()
    }

    /// Plain host memory, as the CPU backend uses.
    ///
    /// # Errors
    /// [`Error::Abi`] when the loaded library does not match the bindings.
    pub fn cpu() -> Result<BufferType> {
        crate::init::ensure()?;
        // SAFETY: a static buffer type of ggml-base.
        let raw = unsafe { ggml_sys::ggml_backend_cpu_buffer_type() };
        Ok(BufferType::from_raw(raw).expect("ggml has a CPU buffer type"))
    }

    /// Name (`"CPU"`, `"CUDA0"`, `"CUDA_Host"`, ...).
    pub fn name(&self) -> String {
        // SAFETY: a live buffer type; a static NUL-terminated name.
        unsafe { CStr::from_ptr(ggml_sys::ggml_backend_buft_name(self.as_ptr())) }
            .to_string_lossy()
            .into_owned()
    }

    /// Alignment of the tensors placed in it, in bytes.
    pub fn alignment(&self) -> usize {
        // SAFETY: a live buffer type.
        unsafe { ggml_sys::ggml_backend_buft_get_alignment(self.as_ptr()) }
    }

    /// Largest single buffer it allocates (larger requests are split over
    /// several buffers).
    pub fn max_size(&self) -> usize {
        // SAFETY: a live buffer type.
        unsafe { ggml_sys::ggml_backend_buft_get_max_size(self.as_ptr()) }
    }

    /// Whether the host can address its memory directly (tensors in it can
    /// be viewed zero-copy).
    pub fn is_host(&self) -> bool {
        // SAFETY: a live buffer type.
        unsafe { ggml_sys::ggml_backend_buft_is_host(self.as_ptr()) }
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

/// Tensors of `ctx` that own memory (not views) and have none yet.
pub(crate) fn unplaced_roots(ctx: &Context) -> Vec<NonNull<ggml_sys::ggml_tensor>> {
    let mut out = Vec::new();
    // SAFETY: walking the context's own tensor list; fields are copied out.
    unsafe {
        let mut t = ggml_sys::ggml_get_first_tensor(ctx.as_ptr());
        while let Some(raw) = NonNull::new(t) {
            let r = raw.as_ref();
            if r.view_src.is_null() && r.data.is_null() && r.buffer.is_null() {
                out.push(raw);
            }
            t = ggml_sys::ggml_get_next_tensor(ctx.as_ptr(), t);
        }
    }
    out
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
        // SAFETY: a live no_alloc context (ggml asserts it) and buffer type;
        // every view's source is in this context (the op builders check
        // operands), created before the view, so placed before it.
        let size = unsafe {
            ggml_sys::ggml_backend_alloc_ctx_tensors_from_buft_size(
                self.as_ptr(),
                buffer_type.as_ptr(),
            )
        };
        let failed = |detail: &str| Error::BufferAlloc {
            buffer_type: buffer_type.name(),
            size,
            detail: detail.into(),
        };
        if size == 0 {
            // Only empty tensors need placing: they need no memory.
            // SAFETY: tensors of this context, read-only.
            if pending
                .iter()
                .all(|t| unsafe { ggml_sys::ggml_nelements(t.as_ptr()) } == 0)
            {
                return Ok(0);
            }
            return Err(failed(": a tensor is larger than the buffer type allows"));
        }
        // SAFETY: as for the size.
        let buffer = unsafe {
            ggml_sys::ggml_backend_alloc_ctx_tensors_from_buft(self.as_ptr(), buffer_type.as_ptr())
        };
        let Some(buffer) = NonNull::new(buffer) else {
            // A failure part-way leaves tensors pointing into freed buffers.
            for t in &pending {
                // SAFETY: tensors of this context; only their placement is
                // written.
                unsafe {
                    (*t.as_ptr()).data = std::ptr::null_mut();
                    (*t.as_ptr()).buffer = std::ptr::null_mut();
                }
            }
            self.clear_orphan_views();
            return Err(failed(" (out of memory?)"));
        };
        // SAFETY: a live buffer; zeroing it makes every byte a view or copy
        // can read initialised.
        unsafe { ggml_sys::ggml_backend_buffer_clear(buffer.as_ptr(), 0) };
        self.own_buffer(OwnedBuffer(buffer));
        Ok(size)
    }

    /// Clears views whose root lost its memory.
    pub(crate) fn clear_orphan_views(&self) {
        // SAFETY: walking the context's own tensor list.
        unsafe {
            let mut t = ggml_sys::ggml_get_first_tensor(self.as_ptr());
            while !t.is_null() {
                let src = (*t).view_src;
                if !src.is_null() && (*src).data.is_null() {
                    (*t).data = std::ptr::null_mut();
                    (*t).buffer = std::ptr::null_mut();
                }
                t = ggml_sys::ggml_get_next_tensor(self.as_ptr(), t);
            }
        }
    }
}
