//! Operations on layout: views, reshapes, permutations, transposition, making
//! contiguous, and copying with type conversion.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::{cpu_can_quantize_to, full_shape};
use crate::shape;
use crate::tensor::Tensor;
use crate::types::Type;

/// Bytes a tensor of `ty`, `ne` and byte strides `nb` spans (`ggml_nbytes`).
fn span(ty: Type, ne: &[i64; 4], nb: &[usize; 4]) -> usize {
    if ne.contains(&0) {
        return 0;
    }
    let first = ty.row_size(ne[0] as usize);
    first + (1..4).map(|i| (ne[i] as usize - 1) * nb[i]).sum::<usize>()
}

impl Context {
    /// A view of `t`: ndarray shape `shape`, byte strides `strides` of every
    /// axis but the last (ndarray order; the last axis is dense), starting
    /// `offset` bytes into `t`'s data.
    ///
    /// # Errors
    /// [`Error::InvalidShape`] when `strides` does not have `shape.len() - 1`
    /// entries, [`Error::BlockSize`] for a quantized row length that is not a
    /// multiple of the block size, [`Error::ViewOutOfBounds`] when the view
    /// reaches outside `t`.
    pub fn view<'a>(
        &'a self,
        t: Tensor<'a>,
        shape: &[usize],
        strides: &[usize],
        offset: usize,
    ) -> Result<Tensor<'a>> {
        self.owns(&t, "the viewed tensor")?;
        let ne = shape::ne_from_shape(shape)?;
        if strides.len() + 1 != shape.len().max(1) {
            return Err(Error::InvalidShape {
                shape: shape.to_vec(),
                reason: format!(
                    "{} byte strides given, {} expected (all axes but the last)",
                    strides.len(),
                    shape.len().max(1) - 1
                ),
            });
        }
        let ty = t.ty();
        ty.check_row_len(ne[0] as usize)?;
        let mut nb = [0usize; 4];
        nb[0] = ty.type_size();
        for (i, &s) in strides.iter().rev().enumerate() {
            nb[i + 1] = s;
        }
        // Unused outer axes: ggml's convention of a dense continuation.
        for i in strides.len() + 1..4 {
            nb[i] = nb[i - 1] * ne[i - 1] as usize;
        }
        let needed = span(ty, &ne, &nb);
        let available = t.nbytes();
        if offset.checked_add(needed).is_none_or(|end| end > available) {
            return Err(Error::ViewOutOfBounds {
                name: t.name(),
                offset,
                needed,
                available,
            });
        }
        self.reserve_view("view")?;
        // SAFETY: a tensor of this context; extent checked against its bytes.
        let raw = unsafe {
            ggml_sys::ggml_view_4d(
                self.as_ptr(),
                t.as_ptr(),
                ne[0],
                ne[1],
                ne[2],
                ne[3],
                nb[1],
                nb[2],
                nb[3],
                offset,
            )
        };
        self.wrap(raw)
    }

    /// `t` with a new ndarray shape of the same number of elements; `t` must be
    /// contiguous. No data moves.
    ///
    /// # Errors
    /// [`Error::NotContiguous`], [`Error::ShapeMismatch`] (element counts differ),
    /// [`Error::BlockSize`].
    pub fn reshape<'a>(&'a self, t: Tensor<'a>, shape: &[usize]) -> Result<Tensor<'a>> {
        self.owns(&t, "the reshaped tensor")?;
        let ne = shape::ne_from_shape(shape)?;
        if !t.is_contiguous() {
            return Err(t.not_contiguous("reshape"));
        }
        if ne.iter().product::<i64>() != t.ne().iter().product::<i64>() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: t.shape(),
                rhs: shape.to_vec(),
            });
        }
        t.ty().check_row_len(ne[0] as usize)?;
        self.reserve_view("reshape")?;
        // SAFETY: contiguous tensor of this context, same element count.
        self.wrap(unsafe {
            ggml_sys::ggml_reshape_4d(self.as_ptr(), t.as_ptr(), ne[0], ne[1], ne[2], ne[3])
        })
    }

    /// Permutes the axes of `t` in ggml's terms: ggml axis `i` (where axis 0 is
    /// `ne[0]`, the last ndarray axis) becomes axis `axes[i]`. No data moves:
    /// the result is a strided view.
    ///
    /// For a 4-D ndarray `x`, `permute(t, axes)` corresponds to
    /// `x.permuted_axes(p)` with `p[3 - axes[i]] = 3 - i`.
    ///
    /// # Errors
    /// [`Error::InvalidAxes`] unless `axes` is a permutation of 0..4.
    pub fn permute<'a>(&'a self, t: Tensor<'a>, axes: [usize; 4]) -> Result<Tensor<'a>> {
        self.owns(&t, "the permuted tensor")?;
        let mut seen = [false; 4];
        for &a in &axes {
            if a >= 4 || std::mem::replace(&mut seen[a], true) {
                return Err(Error::InvalidAxes { axes });
            }
        }
        self.reserve_view("permute")?;
        let [a0, a1, a2, a3] = axes.map(|a| a as i32);
        // SAFETY: a tensor of this context; axes are a permutation of 0..4.
        self.wrap(unsafe { ggml_sys::ggml_permute(self.as_ptr(), t.as_ptr(), a0, a1, a2, a3) })
    }

    /// Swaps the two innermost axes (ggml's 0 and 1: the last two ndarray
    /// axes). No data moves.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`].
    pub fn transpose<'a>(&'a self, t: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns(&t, "the transposed tensor")?;
        self.reserve_view("transpose")?;
        // SAFETY: a tensor of this context.
        self.wrap(unsafe { ggml_sys::ggml_transpose(self.as_ptr(), t.as_ptr()) })
    }

    /// A contiguous copy of `t` (computed with the graph).
    ///
    /// # Errors
    /// [`Error::NotContiguous`] for a quantized tensor whose rows are not dense,
    /// [`Error::OutOfMemory`].
    pub fn cont<'a>(&'a self, t: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns(&t, "an operand")?;
        if t.ty().is_quantized() && !t.rows_are_dense() {
            return Err(t.not_contiguous("cont"));
        }
        self.reserve_result("cont", t.ty(), &t.ne())?;
        // SAFETY: a tensor of this context; room reserved.
        self.wrap(unsafe { ggml_sys::ggml_cont(self.as_ptr(), t.as_ptr()) })
    }

    /// Copies `a` into `b` when the graph is computed, converting the type
    /// (f32/f16/bf16 between each other, to a quantized `b`, from a quantized
    /// `a` to f32, f32 ↔ i32, or the same type). Returns `b` as the node to
    /// compute.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] (element counts differ),
    /// [`Error::UnsupportedTypes`], [`Error::NotContiguous`].
    pub fn cpy<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns_all(&[&a, &b])?;
        if a.len() != b.len() {
            return Err(Error::ShapeMismatch {
                op: "cpy",
                lhs: full_shape(&a.ne()),
                rhs: full_shape(&b.ne()),
            });
        }
        let (ta, tb) = (a.ty(), b.ty());
        let supported = ta == tb
            || (ta.is_float() && tb.is_float())
            || matches!((ta, tb), (Type::F32, Type::I32) | (Type::I32, Type::F32))
            || (ta.is_float() && tb.is_quantized() && cpu_can_quantize_to(tb))
            || (ta.is_quantized() && tb == Type::F32 && ta.can_dequantize());
        if !supported {
            return Err(Error::UnsupportedTypes {
                op: "cpy",
                types: vec![ta, tb],
            });
        }
        if tb.is_quantized() && ta != tb && !b.is_contiguous() {
            return Err(b.not_contiguous("cpy"));
        }
        if ta.is_quantized() && (!a.rows_are_dense() || (ta != tb && !b.is_contiguous())) {
            return Err(a.not_contiguous("cpy"));
        }
        if ta == tb && ta.is_quantized() && !(a.is_contiguous() && b.is_contiguous()) {
            return Err(if a.is_contiguous() {
                b.not_contiguous("cpy")
            } else {
                a.not_contiguous("cpy")
            });
        }
        self.reserve_view("cpy")?;
        // SAFETY: tensors of this context with equal element counts and a type
        // pair the CPU copy kernels implement.
        self.wrap(unsafe { ggml_sys::ggml_cpy(self.as_ptr(), a.as_ptr(), b.as_ptr()) })
    }
}
