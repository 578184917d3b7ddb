//! Operations on layout: views, reshapes, permutations, transposition, making
//! contiguous, and copying with type conversion.
//!
//! Every op here but `cont` makes a view: a tensor over the memory of
//! another. ggml asserts that a view's dense size fits in the memory it views
//! (`Context::reserve_view_of`); the builders also keep quantized rows whole
//! blocks, elements aligned, and destinations free of overlaps.

use crate::context::Context;
use crate::error::{Error, LayoutError, Result};
use crate::layout::Layout;
use crate::ops::{cpu_can_quantize_to, full_shape, Decl, Family, BASE};
use crate::shape;
use crate::size;
use crate::tensor::Tensor;
use crate::types::Type;

/// CPU kernels of `cont` and `cpy` (`ggml_compute_forward_dup`, ops.cpp):
///
/// - same type (`dup_bytes`): any layout for plain types; quantized ones must
///   be both contiguous, or of one shape with dense rows (other layouts write
///   block-size times past the destination);
/// - f32/f16/bf16 between each other and f32 ↔ i32 (`dup_flt`), any layout
///   (f16/bf16 → i32 use a work buffer ggml never sizes: refused);
/// - a float source to a quantized destination the CPU quantizes to
///   (`dup_to_q`): dense source rows of the destination's row length (the
///   work buffer is sized from the destination's), contiguous destination;
/// - a quantized source to f32 (`dup_from_q`): dense rows.
///
/// The kernels count rows and blocks in `int` (elements in `uint32_t` when
/// dequantizing).
pub(crate) fn cpu_copy(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let src = crate::ops::sources::<1>(node)?[0];
    // `cpy`'s node is a view of its destination.
    let dst = node.src(1).unwrap_or(*node);
    let (ts, td) = (src.ty(), dst.ty());
    if !crate::ops::fits_int(node.len() as i64) {
        return Err("the CPU copies at most i32::MAX elements at once");
    }
    let float = |t: Type| t.is_float();
    if ts == td {
        let (ls, ld) = (src.layout(), dst.layout());
        let whole = ls.is_contiguous() && ld.is_contiguous();
        let rows = ls.ne == ld.ne && ls.rows_are_dense() && ld.rows_are_dense();
        if ts.is_quantized() && !(whole || rows) {
            return Err(
                "quantized copies need both sides contiguous, or the same shape with dense rows",
            );
        }
        return Ok(());
    }
    if float(ts) && float(td) || matches!((ts, td), (Type::F32, Type::I32) | (Type::I32, Type::F32))
    {
        return Ok(());
    }
    if float(ts) && td.is_quantized() {
        if !cpu_can_quantize_to(td) {
            return Err("the CPU cannot quantize to the destination's type");
        }
        if !dst.is_contiguous() || !src.rows_are_dense() || src.ne()[0] != dst.ne()[0] {
            return Err(
                "quantizing needs a contiguous destination and dense source rows of its row length",
            );
        }
        return Ok(());
    }
    if ts.is_quantized() && td == Type::F32 {
        if !ts.can_dequantize() {
            return Err("the CPU cannot dequantize the source's type");
        }
        if !src.rows_are_dense() || !dst.rows_are_dense() {
            return Err("dequantizing needs dense rows on both sides");
        }
        if node.len() as u64 > u64::from(u32::MAX) {
            return Err("the CPU dequantizes at most u32::MAX elements at once");
        }
        return Ok(());
    }
    Err("no copy kernel between these types (f16/bf16 to i32, integers, f64, quantized to other than f32)")
}

/// The layout ops' declarations. Generic builders read `Params::i` as a
/// shape (`reshape`: ggml's `ne`, zeros dropped) or axes (`permute`).
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "view",
        family: Family::Layout,
        builders: &[
            "ggml_view_1d",
            "ggml_view_2d",
            "ggml_view_3d",
            "ggml_view_4d",
        ],
        op: ggml_sys::GGML_OP_VIEW,
        arity: 1,
        backward: true,
        ..BASE
    },
    Decl {
        name: "reshape",
        family: Family::Layout,
        builders: &[
            "ggml_reshape",
            "ggml_reshape_1d",
            "ggml_reshape_2d",
            "ggml_reshape_3d",
            "ggml_reshape_4d",
        ],
        op: ggml_sys::GGML_OP_RESHAPE,
        arity: 1,
        backward: true,
        build: |_, t, p| {
            let shape: Vec<usize> = p.i.iter().rev().map(|&n| n as usize).collect();
            t[0].reshape(&shape)
        },
        raw: |_, ctx, t, p| {
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_reshape_4d(ctx, t[0], p.i[0], p.i[1], p.i[2], p.i[3]) }
        },
        ..BASE
    },
    Decl {
        name: "permute",
        family: Family::Layout,
        builders: &["ggml_permute"],
        op: ggml_sys::GGML_OP_PERMUTE,
        arity: 1,
        backward: true,
        build: |_, t, p| t[0].permute(p.i.map(|a| a as usize)),
        raw: |_, ctx, t, p| {
            let a = p.i.map(|a| a as i32);
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_permute(ctx, t[0], a[0], a[1], a[2], a[3]) }
        },
        ..BASE
    },
    Decl {
        name: "transpose",
        family: Family::Layout,
        builders: &["ggml_transpose"],
        op: ggml_sys::GGML_OP_TRANSPOSE,
        arity: 1,
        backward: true,
        build: |_, t, _| t[0].transpose(),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_transpose(ctx, t[0]) },
        ..BASE
    },
    Decl {
        name: "cont",
        family: Family::Layout,
        builders: &["ggml_cont"],
        op: ggml_sys::GGML_OP_CONT,
        arity: 1,
        cpu: cpu_copy,
        backward: true,
        build: |_, t, _| t[0].cont(),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_cont(ctx, t[0]) },
        ..BASE
    },
    Decl {
        name: "cpy",
        family: Family::Layout,
        builders: &["ggml_cpy"],
        op: ggml_sys::GGML_OP_CPY,
        arity: 2,
        cpu: cpu_copy,
        backward: true,
        build: |_, t, _| t[0].cpy(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_cpy(ctx, t[0], t[1]) },
        ..BASE
    },
];

impl<'ctx> Tensor<'ctx> {
    /// A view of this tensor: see [`Context::view`].
    ///
    /// # Errors
    /// As [`Context::view`].
    pub fn view(self, shape: &[usize], strides: &[usize], offset: usize) -> Result<Tensor<'ctx>> {
        self.context().view(self, shape, strides, offset)
    }

    /// This tensor with another shape of the same element count: see
    /// [`Context::reshape`].
    ///
    /// # Errors
    /// As [`Context::reshape`].
    pub fn reshape(self, shape: &[usize]) -> Result<Tensor<'ctx>> {
        self.context().reshape(self, shape)
    }

    /// This tensor with its ggml axes permuted: see [`Context::permute`].
    ///
    /// # Errors
    /// As [`Context::permute`].
    pub fn permute(self, axes: [usize; 4]) -> Result<Tensor<'ctx>> {
        self.context().permute(self, axes)
    }

    /// This tensor with its first two ggml axes swapped: see
    /// [`Context::transpose`].
    ///
    /// # Errors
    /// As [`Context::transpose`].
    pub fn transpose(self) -> Result<Tensor<'ctx>> {
        self.context().transpose(self)
    }

    /// A contiguous copy: see [`Context::cont`].
    ///
    /// # Errors
    /// As [`Context::cont`].
    pub fn cont(self) -> Result<Tensor<'ctx>> {
        self.context().cont(self)
    }

    /// Copies this tensor into `dst` when computed: see [`Context::cpy`].
    ///
    /// # Errors
    /// As [`Context::cpy`].
    pub fn cpy(self, dst: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        self.context().cpy(self, dst)
    }
}

/// `Error::Layout` for `t` under `op`.
fn bad_layout(
    op: &'static str,
    t: &Tensor<'_>,
    layout: &Layout,
    offset: usize,
    reason: &'static str,
) -> Error {
    Error::Layout(Box::new(LayoutError {
        op,
        name: t.name(),
        ty: layout.ty,
        ne: layout.ne,
        nb: layout.nb,
        offset,
        reason,
    }))
}

/// Refuses to move ggml's axis 0 of a quantized tensor elsewhere: its rows
/// would no longer be whole blocks, which every kernel and conversion needs.
fn keep_quantized_rows(op: &'static str, t: &Tensor<'_>, axis0_moves: bool) -> Result<()> {
    if t.ty().is_quantized() && axis0_moves {
        let layout = t.layout();
        return Err(bad_layout(
            op,
            t,
            &layout,
            0,
            "a quantized tensor's rows (ne[0]) are blocks and must stay its fastest axis",
        ));
    }
    Ok(())
}

impl Context {
    /// A view of `t`: ndarray shape `shape`, byte strides `strides` of every
    /// axis but the last (ndarray order; the last axis is dense), starting
    /// `offset` bytes into `t`'s data.
    ///
    /// The view must lie inside `t`, its strides and offset must be whole
    /// elements (multiples of the element size; of the block size for
    /// quantized types), and ggml needs its
    /// *dense* size, from where it starts, to fit in the memory it views
    /// (so rows may overlap only that far).
    ///
    /// # Errors
    /// [`Error::InvalidShape`] when `strides` does not have `shape.len() - 1`
    /// entries, [`Error::BlockSize`] for a quantized row length that is not a
    /// multiple of the block size, [`Error::Layout`] for misaligned strides,
    /// [`Error::ViewOutOfBounds`] when the view reaches outside `t`.
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
        size::check_shape("view", ty, &ne)?;
        let mut nb = [0usize; 4];
        nb[0] = ty.type_size();
        for (i, &s) in strides.iter().rev().enumerate() {
            nb[i + 1] = s;
        }
        // Unused outer axes: ggml's convention of a dense continuation
        // (`ne` is 1 there, so these strides never move; saturate, do not wrap).
        for i in strides.len() + 1..4 {
            nb[i] = nb[i - 1].saturating_mul(ne[i - 1] as usize);
        }
        let layout = Layout { ty, ne, nb };
        let (_, base) = t.memory_root();
        if !layout.strides_whole(base.wrapping_add(offset)) {
            return Err(bad_layout(
                "view",
                &t,
                &layout,
                offset,
                "strides and offset must be whole elements (whole blocks for quantized types)",
            ));
        }
        let available = t.nbytes();
        let needed = layout.span();
        match needed {
            Some(needed)
                if offset
                    .checked_add(needed)
                    .is_some_and(|end| end <= available) => {}
            _ => {
                return Err(Error::ViewOutOfBounds {
                    name: t.name(),
                    offset,
                    needed: needed.unwrap_or(usize::MAX),
                    available,
                })
            }
        }
        self.reserve_view_of("view", &t, &ne, offset)?;
        // SAFETY: a tensor of this context; the view lies inside it, its dense
        // size fits the memory it views (ggml's assertion), room reserved.
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
        let count = size::check_shape("reshape", t.ty(), &ne)?;
        if count != t.len() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: t.shape(),
                rhs: shape.to_vec(),
            });
        }
        self.reserve_view_of("reshape", &t, &ne, 0)?;
        // SAFETY: contiguous tensor of this context, same element count, the
        // view fits (checked); room reserved.
        self.wrap(unsafe {
            ggml_sys::ggml_reshape_4d(self.as_ptr(), t.as_ptr(), ne[0], ne[1], ne[2], ne[3])
        })
    }

    /// Permutes the axes of `t` in ggml's terms: ggml axis `i` (where axis 0 is
    /// `ne[0]`, the last ndarray axis) becomes axis `axes[i]`. No data moves:
    /// the result is a strided view. A quantized tensor keeps axis 0 in place
    /// (its rows are blocks).
    ///
    /// For a 4-D ndarray `x`, `permute(t, axes)` corresponds to
    /// `x.permuted_axes(p)` with `p[3 - axes[i]] = 3 - i`.
    ///
    /// # Errors
    /// [`Error::InvalidAxes`] unless `axes` is a permutation of 0..4,
    /// [`Error::Layout`] for a quantized tensor with `axes[0] != 0`,
    /// [`Error::ViewOutOfBounds`] when `t` is a view whose dense size does not
    /// fit the memory it views (ggml's view assertion).
    pub fn permute<'a>(&'a self, t: Tensor<'a>, axes: [usize; 4]) -> Result<Tensor<'a>> {
        self.owns(&t, "the permuted tensor")?;
        let mut seen = [false; 4];
        for &a in &axes {
            if a >= 4 || std::mem::replace(&mut seen[a], true) {
                return Err(Error::InvalidAxes { axes });
            }
        }
        keep_quantized_rows("permute", &t, axes[0] != 0)?;
        self.reserve_view_of("permute", &t, &t.ne(), 0)?;
        let [a0, a1, a2, a3] = axes.map(|a| a as i32);
        // SAFETY: a tensor of this context; axes are a permutation of 0..4;
        // the view fits (checked); room reserved.
        self.wrap(unsafe { ggml_sys::ggml_permute(self.as_ptr(), t.as_ptr(), a0, a1, a2, a3) })
    }

    /// Swaps the two innermost axes (ggml's 0 and 1: the last two ndarray
    /// axes). No data moves. Quantized tensors cannot be transposed (their
    /// rows are blocks): [`Context::cpy`] them to f32 first.
    ///
    /// # Errors
    /// [`Error::Layout`] for a quantized tensor, [`Error::ViewOutOfBounds`]
    /// as [`Context::permute`], [`Error::OutOfMemory`].
    pub fn transpose<'a>(&'a self, t: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns(&t, "the transposed tensor")?;
        keep_quantized_rows("transpose", &t, true)?;
        self.reserve_view_of("transpose", &t, &t.ne(), 0)?;
        // SAFETY: a tensor of this context, not quantized; the view fits.
        self.wrap(unsafe { ggml_sys::ggml_transpose(self.as_ptr(), t.as_ptr()) })
    }

    /// A contiguous copy of `t` (computed with the graph).
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::OutOfMemory`], [`Error::WrongContext`].
    pub fn cont<'a>(&'a self, t: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns(&t, "an operand")?;
        self.reserve_tensor("cont", t.ty(), &t.ne())?;
        // SAFETY: a tensor of this context; room reserved.
        self.wrap(unsafe { ggml_sys::ggml_cont(self.as_ptr(), t.as_ptr()) })
    }

    /// Copies `a` into `b` when the graph is computed, converting the type
    /// (on the CPU: f32/f16/bf16 between each other, to a quantized `b`, from
    /// a quantized `a` to f32, f32 ↔ i32, or the same type). Returns `b` as
    /// the node to compute.
    ///
    /// `b` must not overlap itself (a view whose rows share bytes), nor
    /// overlap `a` unless it is `a` itself: ggml's threads would write the
    /// same bytes, or read bytes another one writes. For copies between
    /// overlapping tensors use [`crate::TensorData::copy_tensor`] (memmove
    /// semantics).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] (element counts differ), [`Error::Overlap`],
    /// [`Error::ViewOutOfBounds`] as [`Context::permute`].
    pub fn cpy<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns_all(&[&a, &b])?;
        if a.len() != b.len() {
            return Err(Error::ShapeMismatch {
                op: "cpy",
                lhs: full_shape(&a.ne()),
                rhs: full_shape(&b.ne()),
            });
        }
        let (la, lb) = (a.layout(), b.layout());
        if !lb.is_injective() {
            return Err(Error::Overlap {
                op: "cpy",
                dst: b.name(),
                reason: "has elements that share bytes",
            });
        }
        let ((ra, oa), (rb, ob)) = (a.memory_root(), b.memory_root());
        if ra == rb && !(oa == ob && la == lb) {
            let (ea, eb) = (oa.saturating_add(a.nbytes()), ob.saturating_add(b.nbytes()));
            if oa < eb && ob < ea && !la.is_empty() && !lb.is_empty() {
                return Err(Error::Overlap {
                    op: "cpy",
                    dst: b.name(),
                    reason: "overlaps the source (use TensorData::copy_tensor)",
                });
            }
        }
        self.reserve_view_of("cpy", &b, &b.ne(), 0)?;
        // SAFETY: tensors of this context with equal element counts; the view
        // of `b` fits (ggml's assertion); room reserved. Kernel support is
        // checked when computed.
        self.wrap(unsafe { ggml_sys::ggml_cpy(self.as_ptr(), a.as_ptr(), b.as_ptr()) })
    }
}
