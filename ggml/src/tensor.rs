//! [`Tensor`]: a handle to a tensor of a [`Context`], carrying its lifetime.

use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::shape::{self, MAX_DIMS};
use crate::types::Type;

/// A tensor of a [`Context`].
///
/// A `Copy` handle with no `Drop`: the context owns the tensor and frees it,
/// and the handle's lifetime `'ctx` keeps it from outliving the context.
/// Metadata (type, shape, strides, name) is read here; data goes through the
/// context's [`crate::TensorData`].
#[derive(Clone, Copy)]
pub struct Tensor<'ctx> {
    raw: NonNull<ggml_sys::ggml_tensor>,
    ctx: &'ctx Context,
}

impl<'ctx> Tensor<'ctx> {
    /// Wraps a tensor ggml returned for `ctx`, checking its type is known.
    pub(crate) fn from_raw(ctx: &'ctx Context, raw: *mut ggml_sys::ggml_tensor) -> Result<Self> {
        let raw = NonNull::new(raw).ok_or_else(|| Error::OutOfMemory {
            what: "a tensor".into(),
            needed: 0,
            available: ctx.free_mem(),
            mem_size: ctx.mem_size(),
        })?;
        let tensor = Tensor { raw, ctx };
        // SAFETY: a live tensor of `ctx`.
        Type::try_from(unsafe { (*raw.as_ptr()).type_ })?;
        Ok(tensor)
    }

    /// Wraps a tensor of `ctx` that this crate made (so its type is known).
    pub(crate) fn from_made(ctx: &'ctx Context, raw: NonNull<ggml_sys::ggml_tensor>) -> Self {
        Tensor { raw, ctx }
    }

    /// The raw layer's handle of the tensor.
    pub(crate) fn raw(&self) -> crate::raw::RawTensor<'ctx> {
        // SAFETY: live while its context is, which `'ctx` borrows.
        unsafe { crate::raw::RawTensor::new(self.raw) }
    }

    /// The raw tensor, for calls into `ggml-sys`. It stays owned by the context.
    pub fn as_ptr(&self) -> *mut ggml_sys::ggml_tensor {
        self.raw.as_ptr()
    }

    /// The context that owns the tensor.
    pub fn context(&self) -> &'ctx Context {
        self.ctx
    }

    fn get(&self) -> &ggml_sys::ggml_tensor {
        // SAFETY: the tensor lives as long as `'ctx`; ggml only writes its
        // metadata when this crate asks (set_name), never during computation.
        unsafe { self.raw.as_ref() }
    }

    /// Element type.
    pub fn ty(&self) -> Type {
        Type::from_raw(self.get().type_).expect("type checked at creation")
    }

    /// ggml's `ne`: elements per dimension, fastest-moving first.
    pub fn ne(&self) -> [i64; MAX_DIMS] {
        self.get().ne
    }

    /// ggml's `nb`: byte strides per dimension.
    pub fn nb(&self) -> [usize; MAX_DIMS] {
        self.get().nb
    }

    /// Dimensions in use (trailing 1s of `ne` are not counted; at least 1).
    pub fn n_dims(&self) -> usize {
        shape::n_dims(&self.ne())
    }

    /// Shape in ndarray order, with [`Tensor::n_dims`] axes.
    pub fn shape(&self) -> Vec<usize> {
        shape::shape_from_ne(&self.ne(), self.n_dims())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.ne().iter().product::<i64>() as usize
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the data spans.
    pub fn nbytes(&self) -> usize {
        self.raw().nbytes()
    }

    /// Whether the elements are laid out densely in ggml's order.
    pub fn is_contiguous(&self) -> bool {
        self.raw().is_contiguous()
    }

    /// Whether `ne[0]` is not the fastest-moving axis in memory.
    pub fn is_transposed(&self) -> bool {
        self.raw().is_transposed()
    }

    /// Whether each row (`ne[0]` values) is dense, as quantized data requires.
    pub(crate) fn rows_are_dense(&self) -> bool {
        self.nb()[0] == self.ty().type_size()
    }

    /// Type, `ne` and `nb`, for the guard layer's layout checks.
    pub(crate) fn layout(&self) -> Layout {
        let t = self.get();
        Layout {
            ty: self.ty(),
            ne: t.ne,
            nb: t.nb,
        }
    }

    /// The tensor as an operand in errors.
    pub(crate) fn operand(&self) -> crate::error::Operand {
        crate::error::Operand {
            ty: self.ty(),
            ne: self.ne(),
        }
    }

    /// ggml's `op_params` as `i32`s (parameters of the op that made it).
    pub(crate) fn op_params(&self) -> [i32; 16] {
        self.get().op_params
    }

    /// ggml's operation that computes this tensor (`GGML_OP_NONE` for a leaf).
    pub(crate) fn op(&self) -> ggml_sys::ggml_op {
        self.get().op
    }

    /// Source `i` of the operation, if any.
    pub(crate) fn src(&self, i: usize) -> Option<Tensor<'ctx>> {
        let raw = NonNull::new(self.get().src[i])?;
        Some(Tensor { raw, ctx: self.ctx })
    }

    /// The tensor whose memory this one views, and the byte offset into it
    /// (itself and 0 for a tensor that is not a view). ggml links every view
    /// to the first tensor that owns memory, never to another view.
    pub(crate) fn memory_root(&self) -> (Tensor<'ctx>, usize) {
        let t = self.get();
        match NonNull::new(t.view_src) {
            Some(raw) => (Tensor { raw, ctx: self.ctx }, t.view_offs),
            None => (*self, 0),
        }
    }

    /// Whether the tensor has data the host can read in place: in an
    /// allocating context's arena or in host memory of a backend buffer. An
    /// empty tensor always has (there is nothing to read).
    pub fn has_host_data(&self) -> bool {
        self.is_empty() || self.ctx.pinned_placement(|| self.ctx.place(self).is_host())
    }

    /// Whether the tensor has memory anywhere (host or device).
    pub fn is_allocated(&self) -> bool {
        self.is_empty()
            || self
                .ctx
                .pinned_placement(|| self.ctx.place(self) != crate::context::Place::Nowhere)
    }

    /// The tensor's name (empty when unnamed).
    pub fn name(&self) -> String {
        // SAFETY: ggml keeps `name` NUL-terminated within its array.
        unsafe { CStr::from_ptr(self.get().name.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    /// Renames the tensor; names longer than ggml's limit (63 bytes) are cut.
    /// Interior NUL bytes end the name.
    pub fn set_name(&self, name: &str) -> Self {
        let name = name.split('\0').next().unwrap_or("");
        let max = ggml_sys::GGML_MAX_NAME as usize - 1;
        let mut end = name.len().min(max);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let c = std::ffi::CString::new(&name[..end]).expect("no NUL");
        // SAFETY: a live tensor; ggml copies at most GGML_MAX_NAME bytes. No
        // Rust reference to the name field is alive (`name` copies it out).
        unsafe { self.raw().set_name(&c) };
        *self
    }

    /// Data pointer (null in `no_alloc` contexts until a backend allocates),
    /// or for an empty tensor without memory a dangling one aligned for any
    /// element, which empty slices may start at.
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        let data = self.get().data.cast::<u8>();
        if data.is_null() && self.is_empty() {
            return NonNull::<u64>::dangling().as_ptr().cast();
        }
        data
    }

    pub(crate) fn not_contiguous(&self, op: &'static str) -> Error {
        Error::NotContiguous {
            op,
            name: self.name(),
            ne: self.ne(),
            nb: self.nb(),
        }
    }
}

impl PartialEq for Tensor<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Tensor<'_> {}

impl fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name())
            .field("type", &self.ty())
            .field("shape", &self.shape())
            .field("nb", &self.nb())
            .finish()
    }
}
