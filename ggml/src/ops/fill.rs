//! Masks, fills and padding: `diag_mask_inf` / `diag_mask_zero` (causal
//! masks of score matrices), `tri` (keep a triangle), `fill` (a constant),
//! `arange` (a ramp), `pad` / `pad_ext` (zeros or wrap-around around a
//! tensor).
//!
//! All compute f32 on the CPU (`fill` also f16). Rules checked here that
//! ggml leaves to its kernels: `n_past` at least 0; `arange`'s step
//! positive and its length representable; pads not negative, and
//! wrap-around pads no wider than the tensor they wrap.

use crate::context::Context;
use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// Which triangle [`Tensor::tri`] keeps (of a square matrix; the rest is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Triangle {
    /// Column > row.
    Upper,
    /// Column ≥ row.
    UpperDiag,
    /// Column < row.
    Lower,
    /// Column ≤ row.
    LowerDiag,
}

impl Triangle {
    fn as_raw(self) -> ggml_sys::ggml_tri_type {
        match self {
            Triangle::Upper => ggml_sys::GGML_TRI_TYPE_UPPER,
            Triangle::UpperDiag => ggml_sys::GGML_TRI_TYPE_UPPER_DIAG,
            Triangle::Lower => ggml_sys::GGML_TRI_TYPE_LOWER,
            Triangle::LowerDiag => ggml_sys::GGML_TRI_TYPE_LOWER_DIAG,
        }
    }
}

/// The declarations. Generic builders: bit 0 of `Params::flags` in place;
/// `n_past`, pads and the triangle from `Params::i`; the fill value,
/// `arange`'s start, stop and step from `Params::f`; bit 1 wrap-around pads.
pub(crate) const DECLS: &[Decl] = &[
    diag_mask_decl(
        "diag_mask_inf",
        &["ggml_diag_mask_inf", "ggml_diag_mask_inf_inplace"],
        ggml_sys::GGML_OP_DIAG_MASK_INF,
    ),
    diag_mask_decl(
        "diag_mask_zero",
        &["ggml_diag_mask_zero", "ggml_diag_mask_zero_inplace"],
        ggml_sys::GGML_OP_DIAG_MASK_ZERO,
    ),
    Decl {
        name: "tri",
        family: Family::Fill,
        builders: &["ggml_tri"],
        op: ggml_sys::GGML_OP_TRI,
        arity: 1,
        cpu: cpu_tri,
        build: |_, t, p| {
            let all = [
                Triangle::Upper,
                Triangle::UpperDiag,
                Triangle::Lower,
                Triangle::LowerDiag,
            ];
            t[0].tri(all[p.i[0].unsigned_abs() as usize % 4])
        },
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_tri(ctx, t[0], p.i[0] as u32 % 4) },
        ..BASE
    },
    Decl {
        name: "fill",
        family: Family::Fill,
        builders: &["ggml_fill", "ggml_fill_inplace"],
        op: ggml_sys::GGML_OP_FILL,
        arity: 1,
        cpu: cpu_fill,
        build: |_, t, p| fill(t[0], p.f[0], p.inplace()),
        raw: |_, ctx, t, p| {
            let f = if p.inplace() {
                ggml_sys::ggml_fill_inplace
            } else {
                ggml_sys::ggml_fill
            };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { f(ctx, t[0], p.f[0]) }
        },
        ..BASE
    },
    Decl {
        name: "arange",
        family: Family::Fill,
        builders: &["ggml_arange"],
        op: ggml_sys::GGML_OP_ARANGE,
        arity: 1,
        cpu: cpu_arange,
        build: |_, t, p| t[0].context().arange(p.f[0], p.f[1], p.f[2]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, _, p| unsafe { ggml_sys::ggml_arange(ctx, p.f[0], p.f[1], p.f[2]) },
        ..BASE
    },
    Decl {
        name: "pad_ext",
        family: Family::Fill,
        builders: &[
            "ggml_pad",
            "ggml_pad_ext",
            "ggml_pad_circular",
            "ggml_pad_ext_circular",
        ],
        op: ggml_sys::GGML_OP_PAD,
        arity: 1,
        cpu: cpu_pad,
        build: |_, t, p| {
            let pads = [(p.i[0], p.i[1]), (p.i[2], p.i[3]), (0, 0), (0, 0)];
            t[0].pad_ext(pads, p.flag(1))
        },
        raw: |_, ctx, t, p| {
            let v = p.i.map(|x| x as i32);
            let f = if p.flag(1) {
                ggml_sys::ggml_pad_ext_circular
            } else {
                ggml_sys::ggml_pad_ext
            };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { f(ctx, t[0], v[0], v[1], v[2], v[3], 0, 0, 0, 0) }
        },
        ..BASE
    },
];

/// More declarations of the family: `diag`, `pad_reflect_1d`,
/// `timestep_embedding`, `roll`.
pub(crate) const MORE: &[Decl] = &[
    Decl {
        name: "diag",
        family: Family::Fill,
        builders: &["ggml_diag"],
        op: ggml_sys::GGML_OP_DIAG,
        arity: 1,
        cpu: cpu_f32_rows,
        build: |_, t, _| t[0].diag(),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_diag(ctx, t[0]) },
        ..BASE
    },
    Decl {
        name: "pad_reflect_1d",
        family: Family::Fill,
        builders: &["ggml_pad_reflect_1d"],
        op: ggml_sys::GGML_OP_PAD_REFLECT_1D,
        arity: 1,
        cpu: cpu_f32_rows,
        build: |_, t, p| t[0].pad_reflect_1d(p.i[0], p.i[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe {
            ggml_sys::ggml_pad_reflect_1d(ctx, t[0], p.i[0] as i32, p.i[1] as i32)
        },
        ..BASE
    },
    Decl {
        name: "timestep_embedding",
        family: Family::Fill,
        builders: &["ggml_timestep_embedding"],
        op: ggml_sys::GGML_OP_TIMESTEP_EMBEDDING,
        arity: 1,
        cpu: cpu_f32_rows,
        build: |_, t, p| t[0].timestep_embedding(p.i[0], p.i[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe {
            ggml_sys::ggml_timestep_embedding(ctx, t[0], p.i[0] as i32, p.i[1] as i32)
        },
        ..BASE
    },
    Decl {
        name: "roll",
        family: Family::Fill,
        builders: &["ggml_roll"],
        op: ggml_sys::GGML_OP_ROLL,
        arity: 1,
        cpu: cpu_f32_rows,
        build: |_, t, p| t[0].roll(p.i),
        raw: |_, ctx, t, p| {
            let s = p.i.map(|x| x as i32);
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { ggml_sys::ggml_roll(ctx, t[0], s[0], s[1], s[2], s[3]) }
        },
        ..BASE
    },
];

/// The CPU kernels of `diag`, `pad_reflect_1d`, `timestep_embedding` and
/// `roll`: f32 with dense rows on both sides.
fn cpu_f32_rows(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F32
        || node.ty() != Type::F32
        || !a.rows_are_dense()
        || !node.rows_are_dense()
    {
        return Err("the CPU computes f32 with dense rows");
    }
    let linear = matches!(
        node.op(),
        ggml_sys::GGML_OP_PAD_REFLECT_1D | ggml_sys::GGML_OP_ROLL
    );
    if linear && (!a.is_contiguous() || !node.is_contiguous()) {
        return Err("the CPU reflects and rolls contiguous tensors");
    }
    Ok(())
}

/// Builds `diag_mask_inf` (`inf`) or `diag_mask_zero`.
fn diag_mask(a: Tensor<'_>, n_past: i64, inf: bool, inplace: bool) -> Result<Tensor<'_>> {
    let operands = [a];
    let name = if inf {
        "diag_mask_inf"
    } else {
        "diag_mask_zero"
    };
    let rules = Rules::new(name, &operands)?;
    let n_past = i32::try_from(n_past).ok().filter(|&n| n >= 0);
    let Some(n_past) = n_past else {
        return Err(rules.broken("n_past must be 0 to i32::MAX (ggml's kernel asserts it)".into()));
    };
    rules.require(a.is_contiguous(), || {
        "ggml's kernel needs a contiguous operand".into()
    })?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    let ctx = rules.context().as_ptr();
    let build = diag_mask_builder(inf, inplace);
    // SAFETY: a live contiguous tensor, n_past at least 0; room reserved.
    rules.wrap(unsafe { build(ctx, a.as_ptr(), n_past) })
}

/// The declaration of `diag_mask_inf` or `diag_mask_zero` (the op says
/// which).
const fn diag_mask_decl(
    name: &'static str,
    builders: &'static [&'static str],
    op: ggml_sys::ggml_op,
) -> Decl {
    Decl {
        name,
        family: Family::Fill,
        builders,
        op,
        arity: 1,
        cpu: cpu_diag_mask,
        backward: true,
        build: |d, t, p| {
            let inf = d.op == ggml_sys::GGML_OP_DIAG_MASK_INF;
            diag_mask(t[0], p.i[0], inf, p.inplace())
        },
        raw: |d, ctx, t, p| {
            let f = diag_mask_builder(d.op == ggml_sys::GGML_OP_DIAG_MASK_INF, p.inplace());
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { f(ctx, t[0], p.i[0] as i32) }
        },
        ..BASE
    }
}

/// ggml's builder of the mask: `-inf` or zeros, in place or not.
fn diag_mask_builder(
    inf: bool,
    inplace: bool,
) -> unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
    i32,
) -> *mut ggml_sys::ggml_tensor {
    match (inf, inplace) {
        (true, false) => ggml_sys::ggml_diag_mask_inf,
        (true, true) => ggml_sys::ggml_diag_mask_inf_inplace,
        (false, false) => ggml_sys::ggml_diag_mask_zero,
        (false, true) => ggml_sys::ggml_diag_mask_zero_inplace,
    }
}

/// Builds `fill`.
fn fill(a: Tensor<'_>, c: f32, inplace: bool) -> Result<Tensor<'_>> {
    let operands = [a];
    let rules = Rules::new("fill", &operands)?;
    rules.require(matches!(a.ty(), Type::F32 | Type::F16), || {
        "ggml fills f32 and f16 tensors".into()
    })?;
    rules.require(a.is_contiguous(), || "ggml fills contiguous tensors".into())?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    let ctx = rules.context().as_ptr();
    // SAFETY: a live contiguous f32/f16 tensor (the builder's assertions);
    // room reserved.
    rules.wrap(unsafe {
        if inplace {
            ggml_sys::ggml_fill_inplace(ctx, a.as_ptr(), c)
        } else {
            ggml_sys::ggml_fill(ctx, a.as_ptr(), c)
        }
    })
}

impl<'ctx> Tensor<'ctx> {
    /// Sets to `-inf` the elements of each matrix above the diagonal
    /// shifted right by `n_past` (column `i` of row `j` where
    /// `i > n_past + j`): the causal mask of attention scores.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a negative `n_past` or a tensor
    /// that is not contiguous; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    /// On the CPU: f32.
    pub fn diag_mask_inf(self, n_past: i64) -> Result<Tensor<'ctx>> {
        diag_mask(self, n_past, true, false)
    }

    /// [`Tensor::diag_mask_inf`] in place.
    ///
    /// # Errors
    /// As [`Tensor::diag_mask_inf`].
    pub fn diag_mask_inf_inplace(self, n_past: i64) -> Result<Tensor<'ctx>> {
        diag_mask(self, n_past, true, true)
    }

    /// [`Tensor::diag_mask_inf`] with zeros.
    ///
    /// # Errors
    /// As [`Tensor::diag_mask_inf`].
    pub fn diag_mask_zero(self, n_past: i64) -> Result<Tensor<'ctx>> {
        diag_mask(self, n_past, false, false)
    }

    /// [`Tensor::diag_mask_zero`] in place.
    ///
    /// # Errors
    /// As [`Tensor::diag_mask_inf`].
    pub fn diag_mask_zero_inplace(self, n_past: i64) -> Result<Tensor<'ctx>> {
        diag_mask(self, n_past, false, true)
    }

    /// The `triangle` of each square matrix, zeros elsewhere.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless this tensor is contiguous f32
    /// with square matrices; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn tri(self, triangle: Triangle) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("tri", &operands)?;
        rules.require(self.ty() == Type::F32 && self.is_contiguous(), || {
            "ggml keeps triangles of contiguous f32".into()
        })?;
        rules.require(self.ne()[0] == self.ne()[1], || {
            "the matrices must be square".into()
        })?;
        rules.reserve_result(Type::F32, &self.ne(), None)?;
        // SAFETY: a live contiguous f32 tensor of square matrices (the
        // builder's assertions); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_tri(rules.context().as_ptr(), self.as_ptr(), triangle.as_raw())
        })
    }

    /// A tensor of this one's shape filled with `c` (f32 or f16, contiguous).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for another type or layout;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn fill(self, c: f32) -> Result<Tensor<'ctx>> {
        fill(self, c, false)
    }

    /// [`Tensor::fill`] in place.
    ///
    /// # Errors
    /// As [`Tensor::fill`].
    pub fn fill_inplace(self, c: f32) -> Result<Tensor<'ctx>> {
        fill(self, c, true)
    }

    /// This tensor with zeros added before and after each dimension
    /// (`pads[d] = (before, after)` for ggml's dimension `d`), or with the
    /// tensor's own values wrapping around (`circular`, a torus).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for pads outside `i32`, a negative
    /// padded size, wrap-around pads negative or wider than the dimension
    /// (or of an empty tensor). Negative pads without wrap-around crop;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). On the CPU: f32.
    pub fn pad_ext(self, pads: [(i64, i64); 4], circular: bool) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("pad_ext", &operands)?;
        let na = self.ne();
        let mut ne = na;
        let int = |v: i64| i32::try_from(v).is_ok();
        for (d, &(before, after)) in pads.iter().enumerate() {
            if circular {
                rules.require(
                    na[d] > 0 && (0..=na[d]).contains(&before) && (0..=na[d]).contains(&after),
                    || {
                        format!(
                            "wrap-around pads of dimension {d} must be 0 to its length {}",
                            na[d]
                        )
                    },
                )?;
            } else {
                // Negative pads crop: ggml's kernel reads source index
                // i - before only for i in [before, ne - after), always
                // inside the operand.
                rules.require(int(before) && int(after), || {
                    format!("pads of dimension {d} must be within i32")
                })?;
            }
            ne[d] = na[d]
                .checked_add(before + after)
                .filter(|&n| n >= 0)
                .ok_or_else(|| {
                    rules.broken(format!(
                        "the padded size of dimension {d} must be 0 to i64::MAX \
                         ({} {before:+} {after:+})",
                        na[d]
                    ))
                })?;
        }
        rules.reserve_result(self.ty(), &ne, None)?;
        let p = pads.map(|(b, a)| (b as i32, a as i32));
        let f = if circular {
            ggml_sys::ggml_pad_ext_circular
        } else {
            ggml_sys::ggml_pad_ext
        };
        // SAFETY: a live tensor; non-negative pads (within the tensor when
        // wrapping) of a size checked for the type; room reserved.
        rules.wrap(unsafe {
            f(
                rules.context().as_ptr(),
                self.as_ptr(),
                p[0].0,
                p[0].1,
                p[1].0,
                p[1].1,
                p[2].0,
                p[2].1,
                p[3].0,
                p[3].1,
            )
        })
    }

    /// [`Tensor::pad_ext`] with pads after each dimension only (`ggml_pad`).
    ///
    /// # Errors
    /// As [`Tensor::pad_ext`].
    pub fn pad(self, after: [i64; 4]) -> Result<Tensor<'ctx>> {
        self.pad_ext(after.map(|a| (0, a)), false)
    }
}

impl<'ctx> Tensor<'ctx> {
    /// The diagonal matrices of rows: for this tensor `[n, 1, a2, a3]`, the
    /// `[n, n, a2, a3]` tensor with each row on a diagonal, zeros elsewhere.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless `ne[1]` is 1;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). On the CPU: f32.
    pub fn diag(self) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("diag", &operands)?;
        let ne = self.ne();
        rules.require(ne[1] == 1, || "one row per matrix (ne[1] = 1)".into())?;
        rules.reserve_result(self.ty(), &[ne[0], ne[0], ne[2], ne[3]], None)?;
        // SAFETY: a live tensor of single-row matrices (the builder's
        // assertion); room reserved.
        rules.wrap(unsafe { ggml_sys::ggml_diag(rules.context().as_ptr(), self.as_ptr()) })
    }

    /// Each row mirrored at its ends: `p0` values before, `p1` after
    /// (`[a, b, c, d]` with 1 and 1 is `[b, a, b, c, d, c]`).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless `0 ≤ p0, p1 < ne[0]` and this
    /// tensor is contiguous f32; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn pad_reflect_1d(self, p0: i64, p1: i64) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("pad_reflect_1d", &operands)?;
        let ne = self.ne();
        rules.require(
            (0..ne[0]).contains(&p0) && (0..ne[0]).contains(&p1) && fits_int(ne[0]),
            || {
                format!(
                    "pads {p0}, {p1} must be 0 to the row length {} (exclusive)",
                    ne[0]
                )
            },
        )?;
        rules.require(self.ty() == Type::F32 && self.is_contiguous(), || {
            "a contiguous f32 tensor".into()
        })?;
        rules.reserve_result(Type::F32, &[ne[0] + p0 + p1, ne[1], ne[2], ne[3]], None)?;
        // SAFETY: a live contiguous f32 tensor, pads within its rows (the
        // builder's assertions); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_pad_reflect_1d(
                rules.context().as_ptr(),
                self.as_ptr(),
                p0 as i32,
                p1 as i32,
            )
        })
    }

    /// Sinusoidal embeddings of the timesteps in this f32 vector: `[dim, n]`
    /// with `cos` then `sin` of `t · max_period^(-j / (dim/2))` (a 0 last
    /// when `dim` is odd).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a negative `dim`, or timesteps
    /// that are not an f32 vector with dense values;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn timestep_embedding(self, dim: i64, max_period: i64) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("timestep_embedding", &operands)?;
        let ne = self.ne();
        rules.require(
            (0..=i64::from(i32::MAX)).contains(&dim) && i32::try_from(max_period).is_ok(),
            || "dim 0 to i32::MAX".into(),
        )?;
        rules.require(
            self.ty() == Type::F32
                && self.rows_are_dense()
                && ne[1] == 1
                && ne[2] == 1
                && ne[3] == 1,
            || "timesteps are a dense f32 vector".into(),
        )?;
        rules.reserve_result(Type::F32, &[dim, ne[0], 1, 1], None)?;
        // SAFETY: a live dense f32 vector; dim fits the result (room
        // reserved); the builder asserts nothing.
        rules.wrap(unsafe {
            ggml_sys::ggml_timestep_embedding(
                rules.context().as_ptr(),
                self.as_ptr(),
                dim as i32,
                max_period as i32,
            )
        })
    }

    /// Each dimension rotated by `shifts[d]` (elements leaving one end come
    /// back at the other; `|shift| < ne[d]`).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a shift as long as its dimension
    /// (so any shift of an empty tensor), or rows that are not dense;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). On the CPU: f32.
    pub fn roll(self, shifts: [i64; 4]) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("roll", &operands)?;
        let ne = self.ne();
        rules.require(
            shifts
                .iter()
                .zip(&ne)
                .all(|(s, &n)| s.unsigned_abs() < n as u64),
            || format!("shifts {shifts:?} must each be shorter than their dimension of {ne:?}"),
        )?;
        rules.require(self.rows_are_dense(), || "ggml needs dense rows".into())?;
        rules.reserve_result(self.ty(), &ne, None)?;
        let s = shifts.map(|x| x as i32);
        // SAFETY: a live tensor with dense rows and |shift| < ne per
        // dimension (the builder's assertions); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_roll(
                rules.context().as_ptr(),
                self.as_ptr(),
                s[0],
                s[1],
                s[2],
                s[3],
            )
        })
    }
}

impl Context {
    /// The f32 ramp `start, start + step, ...` below `stop`
    /// (`ceil((stop - start) / step)` values), computed with the graph.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless `start < stop` and `step > 0`
    /// are finite with at most 2^40 values; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn arange(&self, start: f32, stop: f32, step: f32) -> Result<Tensor<'_>> {
        let rules = Rules::new("arange", &[])?;
        let len = ((stop - start) / step).ceil();
        let ok = start.is_finite()
            && stop.is_finite()
            && step.is_finite()
            && stop > start
            && step > 0.0
            && len <= (1u64 << 40) as f32;
        if !ok {
            return Err(rules.broken(format!("arange({start}, {stop}, {step}): needs start < stop, a positive step, at most 2^40 values")));
        }
        self.reserve_tensor("arange", Type::F32, &[len as i64, 1, 1, 1])?;
        // SAFETY: start < stop and a positive step (the builder's assertion
        // and what its length needs); room reserved.
        self.wrap(unsafe { ggml_sys::ggml_arange(self.as_ptr(), start, stop, step) })
    }
}

/// The CPU's diagonal masks: f32, both sides contiguous and of one shape,
/// `n_past` at least 0, rows counted in `int`.
fn cpu_diag_mask(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F32 || node.ty() != Type::F32 || a.ne() != node.ne() {
        return Err("the CPU masks f32 into a result of one shape");
    }
    if !a.is_contiguous() || !node.is_contiguous() || node.op_params()[0] < 0 {
        return Err("contiguous operands and n_past at least 0");
    }
    let ne = a.ne();
    if !fits_int(ne[0]) || !fits_int(ne[1].saturating_mul(ne[2]).saturating_mul(ne[3])) {
        return Err("the CPU counts in int");
    }
    Ok(())
}

/// The CPU's `tri`: contiguous f32 square matrices, a known triangle.
fn cpu_tri(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    let known = (0..4).contains(&node.op_params()[0]);
    if a.ty() != Type::F32
        || node.ty() != Type::F32
        || !a.is_contiguous()
        || !node.rows_are_dense()
        || !known
    {
        return Err("the CPU keeps triangles of contiguous f32");
    }
    if a.ne() != node.ne() || !fits_int(a.ne()[0]) {
        return Err("one shape, rows within int");
    }
    Ok(())
}

/// The CPU's `fill`: f32 or f16 with dense rows.
fn cpu_fill(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    if !matches!(node.ty(), Type::F32 | Type::F16) || !node.rows_are_dense() {
        return Err("the CPU fills f32 and f16 rows");
    }
    Ok(())
}

/// The CPU's `arange`: an f32 vector of the op's length.
fn cpu_arange(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    if node.ty() != Type::F32 || !node.rows_are_dense() {
        return Err("the CPU writes f32");
    }
    Ok(())
}

/// The CPU's `pad`: f32, a contiguous result, pads as the builder checks.
fn cpu_pad(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F32 || node.ty() != Type::F32 || !node.is_contiguous() {
        return Err("the CPU pads f32 into a contiguous result");
    }
    let p = node.op_params();
    let circular = p[8] != 0;
    let na = a.ne();
    for d in 0..4 {
        let (before, after) = (i64::from(p[2 * d]), i64::from(p[2 * d + 1]));
        let wraps_badly = circular
            && (na[d] == 0 || !(0..=na[d]).contains(&before) || !(0..=na[d]).contains(&after));
        if wraps_badly || node.ne()[d] != na[d] + before + after {
            return Err("wrap-around pads from 0 to the length; the result of the padded size");
        }
    }
    Ok(())
}
