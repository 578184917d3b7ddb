//! Loading a file's tensors into ggml: a host [`Context`] or a backend
//! buffer, copying each tensor's bytes once from the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

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

    /// Like [`Gguf::load_to`] for the file at `path` (every shard of a
    /// split model), without holding the file in memory: the metadata is
    /// read and validated as [`Gguf::check_file`] does, then each tensor's
    /// data is read from the file into a staging buffer (as large as the
    /// largest tensor) and uploaded. Peak memory is the buffer plus one
    /// tensor, where [`Gguf::read`] then [`Gguf::load_to`] holds the whole
    /// file besides.
    ///
    /// # Errors
    /// As [`Gguf::read`] and [`Gguf::load_to`]; [`Error::Io`] when a read
    /// fails (a file changed since it was validated, say).
    pub fn load_file_to<'ctx>(
        path: impl AsRef<Path>,
        ctx: &'ctx Context,
        buffer_type: BufferType,
    ) -> Result<Vec<Tensor<'ctx>>> {
        if !ctx.is_no_alloc() {
            return Err(Error::NotNoAlloc {
                what: "Gguf::load_file_to",
            });
        }
        let index = Gguf::read_index(path.as_ref())?;
        let paths: Vec<PathBuf> = index.paths().map(Path::to_path_buf).collect();
        let infos: Vec<TensorInfo<'_>> = index.tensors().collect();
        let mut tensors = Vec::with_capacity(infos.len());
        for info in &infos {
            let t = ctx.new_tensor_ne("Gguf::load_file_to", info.ty(), &info.ne())?;
            tensors.push(t.set_name(info.name()));
        }
        if infos.iter().any(|i| i.byte_len() > 0) {
            ctx.allocate(buffer_type)?;
        }
        let mut files = Vec::with_capacity(paths.len());
        for p in &paths {
            files.push(File::open(p).map_err(|e| Error::io(p, e))?);
        }
        let largest = infos.iter().map(TensorInfo::byte_len).max().unwrap_or(0);
        let mut staging = vec![0u8; largest];
        let mut data = ctx.data()?;
        for (t, info) in tensors.iter().zip(&infos) {
            let len = info.byte_len();
            if len == 0 {
                continue;
            }
            let shard = info.shard();
            let bytes = &mut staging[..len];
            let file = &mut files[shard];
            file.seek(SeekFrom::Start(info.offset() as u64))
                .and_then(|_| file.read_exact(bytes))
                .map_err(|e| Error::io(&paths[shard], e))?;
            data.write_bytes(*t, bytes)?;
        }
        Ok(tensors)
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
