//! Byte I/O: reaching a tensor's bytes for one access. Host memory is used
//! in place; device memory is staged through a host copy, moved with
//! `ggml_backend_tensor_get` / `_set`. The conversions above work on either.

use crate::context::Context;
use crate::context::Place;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A host copy of a tensor's span (gaps of a strided tensor included),
/// aligned for any element type.
struct Staging {
    words: Vec<u64>,
    len: usize,
}

impl Staging {
    fn new(len: usize) -> Staging {
        Staging {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    fn ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }

    /// Copies the tensor's bytes in (an RPC worker's failure is an error).
    fn download(&mut self, t: &Tensor<'_>) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        crate::error::rpc::guard(|| {
            // SAFETY: `t` is in a live backend buffer (its root's, checked by
            // `place`), allocated; 0 + len == nbytes, the bound ggml asserts; the
            // staging buffer holds len bytes and overlaps no tensor.
            unsafe { crate::raw::tensor_get(t.as_ptr(), self.ptr().cast(), self.len) };
            Ok(())
        })
    }

    /// Copies the bytes back out to the tensor.
    fn upload(&mut self, t: &Tensor<'_>) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        crate::error::rpc::guard(|| {
            // SAFETY: as in `download`.
            unsafe { crate::raw::tensor_set(t.as_ptr(), self.ptr().cast(), self.len) };
            Ok(())
        })
    }
}

/// Where `t`'s bytes are for an access, or `NoData`. The context must be
/// pinned.
pub(crate) fn located(ctx: &Context, t: &Tensor<'_>) -> Result<Place> {
    if t.is_empty() {
        return Ok(Place::Arena);
    }
    match ctx.place(t) {
        Place::Nowhere => Err(Error::NoData { name: t.name() }),
        place => Ok(place),
    }
}

/// Runs `f` over `t`'s bytes for reading: a host pointer to them, or to a
/// staged copy. The context must be pinned, and nothing may write the
/// tensor during the call.
pub(crate) fn read<R>(
    ctx: &Context,
    t: &Tensor<'_>,
    f: impl FnOnce(*mut u8) -> Result<R>,
) -> Result<R> {
    access(ctx, t, true, false, f)
}

/// Runs `f` over `t`'s bytes for writing: in place for host memory, else on
/// a staged copy (fetched first unless the tensor is contiguous, and then
/// overwritten whole by `f`) written back after. The context must be
/// pinned, and nothing else may access the tensor during the call.
pub(crate) fn write<R>(
    ctx: &Context,
    t: &Tensor<'_>,
    f: impl FnOnce(*mut u8) -> Result<R>,
) -> Result<R> {
    access(ctx, t, !t.is_contiguous(), true, f)
}

/// `f` over `t`'s bytes in place (host memory), or over a staged copy,
/// downloaded first and uploaded after as asked.
fn access<R>(
    ctx: &Context,
    t: &Tensor<'_>,
    download: bool,
    upload: bool,
    f: impl FnOnce(*mut u8) -> Result<R>,
) -> Result<R> {
    if located(ctx, t)?.is_host() {
        return f(t.data_ptr());
    }
    let mut staging = Staging::new(t.nbytes());
    if download {
        staging.download(t)?;
    }
    let result = f(staging.ptr())?;
    if upload {
        staging.upload(t)?;
    }
    Ok(result)
}

/// `t`'s host address for a view that outlives the access: only memory the
/// context owns (its arena, its host buffers) qualifies.
pub(crate) fn viewable(ctx: &Context, t: &Tensor<'_>) -> Result<*mut u8> {
    let place = located(ctx, t)?;
    if t.is_empty() || place.is_viewable() {
        return Ok(t.data_ptr());
    }
    Err(Error::NotViewable {
        name: t.name(),
        place: if place.is_host() {
            "compute memory an allocator lends"
        } else {
            "device memory"
        },
    })
}
