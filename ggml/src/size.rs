//! Checked size arithmetic: the one place that multiplies sizes.
//!
//! Every element count, row size, byte stride, byte span, context object and
//! graph size the crate relies on is computed here, with checked arithmetic,
//! against ggml's own limits: element counts are `int64_t` (and ggml's
//! `ggml_new_tensor` asserts `INT64_MAX / ne[i] > count` dimension by
//! dimension), bytes are `size_t` (which ggml multiplies without checking), and
//! anything the crate may turn into a Rust slice stays within `isize::MAX`.
//! A size that does not fit is an [`Error::TooLarge`], never a wrapped value.

use crate::error::{Error, Result};
use crate::shape::{self, MAX_DIMS};
use crate::types::Type;

/// ggml's `ne`: elements per dimension, fastest-moving first.
pub(crate) type Ne = [i64; MAX_DIMS];
/// ggml's `nb`: byte strides per dimension.
pub(crate) type Nb = [usize; MAX_DIMS];

/// Most bytes one tensor, view or context may span: what a Rust slice can
/// address (and so less than `SIZE_MAX`, which ggml computes in).
pub const MAX_BYTES: usize = isize::MAX as usize;

/// ggml's alignment of objects in a context (`GGML_MEM_ALIGN`).
pub(crate) const MEM_ALIGN: usize = 16;

/// Most nodes a graph may hold: ggml counts them in an `int`.
pub const MAX_GRAPH_NODES: usize = i32::MAX as usize;

fn too_large(what: &'static str, ty: Type, ne: &Ne, limit: &'static str) -> Error {
    Error::TooLarge {
        what,
        ty,
        shape: shape::shape_from_ne(ne, MAX_DIMS),
        limit,
    }
}

/// Bytes of a row of `n` values of `ty` as ggml computes it
/// (`type_size * n / block_size`), or `None` if `type_size * n` overflows.
pub(crate) fn row_bytes(ty: Type, n: usize) -> Option<usize> {
    ty.row_size(n)
}

impl Type {
    /// Checks that rows of `row_len` values are whole blocks of this type.
    ///
    /// # Errors
    /// [`Error::BlockSize`] naming the type, its block size and the length.
    pub fn check_row_len(self, row_len: usize) -> Result<()> {
        let block_size = self.block_size();
        if row_len % block_size == 0 {
            Ok(())
        } else {
            Err(Error::BlockSize {
                ty: self,
                block_size,
                row_len,
            })
        }
    }
}

/// Checks `ne` as the shape of a tensor of `ty`, whatever context it lives
/// in, and returns its element count.
///
/// - every `ne[i] >= 0`;
/// - ggml's own element-count test in `ggml_new_tensor` holds (it asserts);
/// - the product of the dimensions, counting empty ones as 1, fits in `i64`
///   (ggml loops over `ne[1] * ne[2] * ne[3]` rows even when `ne[0]` is 0);
/// - `ne[0]` is a whole number of blocks of `ty`;
/// - the dense byte size, counting empty dimensions as 1, is at most
///   [`MAX_BYTES`], so that every `nb[i]` and `ggml_nbytes` ggml computes for
///   the tensor, and any view of it, fits in `size_t` without wrapping.
///
/// # Errors
/// [`Error::InvalidShape`] for a negative dimension, [`Error::BlockSize`],
/// [`Error::TooLarge`].
pub(crate) fn check_shape(what: &'static str, ty: Type, ne: &Ne) -> Result<usize> {
    if let Some(&d) = ne.iter().find(|&&d| d < 0) {
        return Err(Error::InvalidShape {
            shape: ne.iter().rev().map(|&d| d.max(0) as usize).collect(),
            reason: format!("negative dimension {d}"),
        });
    }
    // ggml_new_tensor_impl: `GGML_ASSERT(INT64_MAX / ne[i] > current_nelements)`.
    let mut running = ne[0];
    for &d in &ne[1..] {
        if d > 1 {
            if i64::MAX / d <= running {
                return Err(too_large(what, ty, ne, "more than i64::MAX elements"));
            }
            running *= d;
        }
    }
    let rows_bound = ne
        .iter()
        .try_fold(1i64, |acc, &d| acc.checked_mul(d.max(1)));
    if rows_bound.is_none() {
        return Err(too_large(
            what,
            ty,
            ne,
            "more than i64::MAX elements counting empty dimensions as 1",
        ));
    }
    ty.check_row_len(ne[0] as usize)?;
    let bytes_bound = row_bytes(ty, (ne[0] as usize).max(ty.block_size())).and_then(|row| {
        ne[1..]
            .iter()
            .try_fold(row, |acc, &d| acc.checked_mul(d.max(1) as usize))
    });
    if bytes_bound.is_none_or(|b| b > MAX_BYTES) {
        return Err(too_large(what, ty, ne, "more than isize::MAX bytes"));
    }
    // ggml's running count above skips dimensions of 0 and 1; the element
    // count is the whole product (bounded by `rows_bound`, so it fits).
    Ok(ne.iter().product::<i64>() as usize)
}

/// Bytes of a dense tensor of `ty` and `ne` (`ggml_row_size(ne[0]) * ne[1] *
/// ne[2] * ne[3]`, as `ggml_new_tensor` computes it). `ne` must have passed
/// [`check_shape`], so this cannot overflow.
pub(crate) fn dense_bytes(ty: Type, ne: &Ne) -> usize {
    ne[1..]
        .iter()
        .fold(ty.row_bytes(ne[0] as usize), |acc, &d| acc * d as usize)
}

#[cfg(test)]
/// The byte strides ggml gives a new dense tensor of `ty` and `ne` (checked
/// `ne`, so no overflow).
pub(crate) fn dense_strides(ty: Type, ne: &Ne) -> Nb {
    let mut nb = [0usize; MAX_DIMS];
    nb[0] = ty.type_size();
    nb[1] = ty.row_bytes(ne[0] as usize);
    for i in 2..MAX_DIMS {
        nb[i] = nb[i - 1] * ne[i - 1] as usize;
    }
    nb
}

/// Bytes a strided tensor spans from its first byte (`ggml_nbytes`), or
/// `None` if that overflows. 0 for an empty tensor.
pub(crate) fn span_bytes(ty: Type, ne: &Ne, nb: &Nb) -> Option<usize> {
    if ne.iter().any(|&d| d <= 0) {
        return Some(0);
    }
    let first = if ty.block_size() == 1 {
        ty.type_size()
            .checked_add((ne[0] as usize - 1).checked_mul(nb[0])?)?
    } else {
        (ne[0] as usize).checked_mul(nb[0])? / ty.block_size()
    };
    (1..MAX_DIMS).try_fold(first, |acc, i| {
        acc.checked_add((ne[i] as usize - 1).checked_mul(nb[i])?)
    })
}

/// `n` rounded up to a multiple of `align` (a power of two), if that fits.
pub(crate) fn pad(n: usize, align: usize) -> Option<usize> {
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// Bytes a context spends on one object whose payload is `payload` bytes:
/// ggml's object header plus the payload padded to [`MEM_ALIGN`]
/// (`ggml_new_object`).
pub(crate) fn object_bytes(payload: usize) -> Option<usize> {
    pad(payload, MEM_ALIGN)?.checked_add(object_header())
}

/// `sizeof(struct ggml_object)`, which ggml does not export: the tensor
/// overhead less the tensor struct.
fn object_header() -> usize {
    tensor_overhead() - std::mem::size_of::<ggml_sys::ggml_tensor>()
}

/// `ggml_tensor_overhead()`: object header plus tensor struct (asked once:
/// it sits on every op's room check).
pub(crate) fn tensor_overhead() -> usize {
    static OVERHEAD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *OVERHEAD.get_or_init(crate::raw::tensor_overhead)
}

/// Bytes a context spends on a tensor whose own data is `data` bytes (0 for
/// views and `no_alloc` contexts).
pub(crate) fn tensor_object_bytes(data: usize) -> Option<usize> {
    object_bytes(data.checked_add(std::mem::size_of::<ggml_sys::ggml_tensor>())?)
}

/// Bytes a context spends on a graph of `nodes` nodes
/// (`ggml_graph_overhead_custom(nodes, false)`), or `None` above
/// [`MAX_GRAPH_NODES`].
pub(crate) fn graph_bytes(nodes: usize) -> Option<usize> {
    if nodes > MAX_GRAPH_NODES {
        return None;
    }
    // SAFETY: a pure size computation; at most 2^31 nodes, for which ggml's
    // arithmetic (hash table of 2 * nodes entries, 8 bytes each) fits in a
    // 64-bit size_t.
    #[cfg(target_pointer_width = "64")]
    // SAFETY: as said above.
    return Some(unsafe { crate::raw::graph_overhead(nodes) });
    #[cfg(not(target_pointer_width = "64"))]
    {
        if nodes > (1 << 24) {
            return None;
        }
        // SAFETY: as above, small enough for a 32-bit size_t.
        Some(unsafe { crate::raw::graph_overhead(nodes) })
    }
}

/// Whether a context of `mem_size` bytes with `used` bytes in use has room
/// for an object of `payload` bytes: ggml's own test in `ggml_new_object`
/// (`cur_end + PAD(size) + GGML_OBJECT_SIZE <= mem_size`), checked.
pub(crate) fn fits(used: usize, object: usize, mem_size: usize) -> bool {
    used.checked_add(object).is_some_and(|end| end <= mem_size)
}

/// Bytes of memory of `buft` that placing `tensors` takes at most: each
/// one's allocation size padded to the buffer type's alignment, times
/// `copies`, summed; `None` when that exceeds [`MAX_BYTES`].
///
/// ggml adds these sizes in a `size_t` without checking (buffer plans, the
/// graph allocator's offsets, the scheduler's copies of split inputs): a
/// bound that fits keeps every partial sum it makes from wrapping.
///
/// # Safety
/// `buft` is a live buffer type; `tensors` are live tensors.
pub(crate) unsafe fn placement_bytes(
    buft: ggml_sys::ggml_backend_buffer_type_t,
    tensors: impl IntoIterator<Item = *mut ggml_sys::ggml_tensor>,
    copies: usize,
) -> Option<usize> {
    // SAFETY: the caller's contract.
    let align = unsafe { crate::raw::buft_alignment(buft) }.max(1);
    let mut total = 0usize;
    for t in tensors {
        // SAFETY: the caller's contract; the size of a tensor whose own size
        // was checked when it was made.
        let size = unsafe { crate::raw::buft_alloc_size(buft, t) };
        let padded = if align.is_power_of_two() {
            pad(size, align)?
        } else {
            size.checked_next_multiple_of(align)?
        };
        total = total.checked_add(padded.checked_mul(copies)?)?;
    }
    (total <= MAX_BYTES).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne(d: [i64; 4]) -> Ne {
        d
    }

    #[test]
    fn element_counts_follow_ggml_and_bound_rows() {
        assert_eq!(check_shape("t", Type::F32, &ne([4, 3, 2, 1])).unwrap(), 24);
        assert_eq!(check_shape("t", Type::F32, &ne([0, 3, 2, 1])).unwrap(), 0);
        // A dimension of 0 after others (found by the fuzzer: ggml's running
        // count skips it, the element count does not).
        assert_eq!(check_shape("t", Type::F32, &ne([256, 0, 1, 1])).unwrap(), 0);
        // 2^62 + 4 f32 elements: 2^64 + 16 bytes, wraps in size_t.
        let err = check_shape("t", Type::F32, &ne([(1 << 62) + 4, 1, 1, 1])).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        // ggml's strict test: INT64_MAX / d > count.
        assert!(check_shape("t", Type::I8, &ne([2, i64::MAX / 2, 1, 1])).is_err());
        // Empty, but 2^124 rows.
        assert!(check_shape("t", Type::F32, &ne([0, 1 << 62, 1 << 62, 1])).is_err());
        assert!(check_shape("t", Type::F32, &ne([2, (1 << 62) - 1, 1, 1])).is_err());
        assert!(check_shape("t", Type::F32, &ne([-1, 1, 1, 1])).is_err());
        assert!(matches!(
            check_shape("t", Type::Q8_0, &ne([31, 1, 1, 1])),
            Err(Error::BlockSize { .. })
        ));
    }

    #[test]
    fn spans_match_ggml_nbytes() {
        let n = ne([4, 3, 1, 1]);
        let nb = dense_strides(Type::F32, &n);
        assert_eq!(nb, [4, 16, 48, 48]);
        assert_eq!(span_bytes(Type::F32, &n, &nb), Some(48));
        assert_eq!(dense_bytes(Type::F32, &n), 48);
        // Transposed.
        assert_eq!(
            span_bytes(Type::F32, &ne([3, 4, 1, 1]), &[16, 4, 48, 48]),
            Some(48)
        );
        // Quantized rows.
        let q = ne([64, 2, 1, 1]);
        assert_eq!(
            span_bytes(Type::Q8_0, &q, &dense_strides(Type::Q8_0, &q)),
            Some(136)
        );
        assert_eq!(
            span_bytes(Type::F32, &ne([0, 3, 1, 1]), &[4, 0, 0, 0]),
            Some(0)
        );
        assert_eq!(
            span_bytes(Type::F32, &ne([2, 2, 1, 1]), &[4, usize::MAX, 0, 0]),
            None
        );
    }

    #[test]
    fn object_sizes_are_padded_and_checked() {
        assert_eq!(pad(17, 16), Some(32));
        assert_eq!(pad(usize::MAX, 16), None);
        assert_eq!(
            tensor_object_bytes(0),
            Some(tensor_overhead()),
            "a tensor without data costs ggml_tensor_overhead()"
        );
        assert!(tensor_object_bytes(usize::MAX - 8).is_none());
        assert!(fits(0, 100, 100) && !fits(1, 100, 100) && !fits(usize::MAX, 2, 10));
        assert!(graph_bytes(MAX_GRAPH_NODES + 1).is_none());
        assert!(graph_bytes(2048).unwrap() > 2048 * 8);
    }
}
