//! Loading a file's tensors into ggml: a host [`Context`] or a backend
//! buffer, copying each tensor's bytes once from the file.

use crate::backend::BufferType;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::size;
use crate::tensor::Tensor;

use super::{Gguf, TensorInfo};

impl Gguf {
    /// Bytes an allocating [`Context`] needs to hold every tensor of the
    /// file, data included (`Context::new(file.context_size()?)`).
    ///
    /// # Errors
    /// [`Error::TooLarge`] when that does not fit in `usize`.
    pub fn context_size(&self) -> Result<usize> {
        self.tensors().try_fold(0usize, |acc, t| {
            size::tensor_object_bytes(t.byte_len())
                .and_then(|b| acc.checked_add(b))
                .ok_or_else(|| Error::TooLarge {
                    what: "Gguf::context_size",
                    ty: t.ty(),
                    shape: t.shape(),
                    limit: "more than usize::MAX bytes in all",
                })
        })
    }

    /// Bytes a `no_alloc` [`Context`] needs for every tensor's metadata
    /// (`Context::new_no_alloc(file.metadata_context_size())`), for
    /// [`Gguf::load_to`].
    pub fn metadata_context_size(&self) -> usize {
        self.tensor_count()
            .saturating_mul(size::tensor_overhead())
            .max(1)
    }

    /// Creates every tensor of the file in the allocating context `ctx`
    /// (same name, type and shape) and copies its data from the file.
    /// Returns them in file order; [`Context::tensor_by_name`] finds them too.
    ///
    /// # Errors
    /// [`Error::NoAllocContext`] for a `no_alloc` context (see
    /// [`Gguf::load_to`]), [`Error::OutOfMemory`] when the context is too
    /// small ([`Gguf::context_size`]).
    pub fn load<'ctx>(&self, ctx: &'ctx Context) -> Result<Vec<Tensor<'ctx>>> {
        if ctx.is_no_alloc() {
            return Err(Error::NoAllocContext { what: "Gguf::load" });
        }
        self.create_and_fill(ctx, None)
    }

    /// Creates every tensor of the file in the `no_alloc` context `ctx`,
    /// places them in one buffer of `buffer_type` (a device's memory, say)
    /// that the context owns ([`Context::allocate`]), and uploads their data
    /// from the file.
    ///
    /// # Errors
    /// [`Error::NotNoAlloc`] for an allocating context, [`Error::OutOfMemory`]
    /// when the context is too small ([`Gguf::metadata_context_size`]),
    /// [`Error::BufferAlloc`] when the buffer cannot be had.
    pub fn load_to<'ctx>(
        &self,
        ctx: &'ctx Context,
        buffer_type: BufferType,
    ) -> Result<Vec<Tensor<'ctx>>> {
        if !ctx.is_no_alloc() {
            return Err(Error::NotNoAlloc {
                what: "Gguf::load_to",
            });
        }
        self.create_and_fill(ctx, Some(buffer_type))
    }

    fn create_and_fill<'ctx>(
        &self,
        ctx: &'ctx Context,
        buffer_type: Option<BufferType>,
    ) -> Result<Vec<Tensor<'ctx>>> {
        let infos: Vec<TensorInfo<'_>> = self.tensors().collect();
        let mut tensors = Vec::with_capacity(infos.len());
        for info in &infos {
            // Names were checked shorter than ggml's limit when the file was
            // opened; shapes with the same checks ggml_new_tensor needs.
            let t = ctx.new_tensor_ne("Gguf::load", info.ty(), &info.ne())?;
            tensors.push(t.set_name(info.name()));
        }
        // Empty tensors have no bytes to place or copy.
        if let Some(bt) = buffer_type {
            if infos.iter().any(|i| i.byte_len() > 0) {
                ctx.allocate(bt)?;
            }
        }
        let mut data = ctx.data()?;
        for (t, info) in tensors.iter().zip(&infos) {
            if info.byte_len() > 0 {
                data.write_bytes(*t, info.bytes())?;
            }
        }
        Ok(tensors)
    }
}
