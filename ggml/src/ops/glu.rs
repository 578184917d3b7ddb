//! Gated linear units (`GGML_OP_GLU` and its sub-ops): `act(x) * g`, where
//! `x` and the gate `g` are the two halves of each row of one tensor
//! (`x.swiglu()`, halves swapped with `swiglu_swapped`) or two tensors of
//! one shape (`x.swiglu_split(g)`).
//!
//! The family's rules, declared once:
//! - **builder** (`ggml_glu_impl`): operands with whole rows
//!   (`ggml_is_contiguous_1`); two operands of one shape and type. The
//!   result has the operand's type, and half its row length for one operand
//!   (`ne[0] / 2`, rounded down);
//! - **CPU kernels**: f32, f16 and bf16 (`swiglu_oai`: f32; `swiglu_clamp`:
//!   f32 and f16); rows reached at one stride (`i·nb[1]` for row `i`, which
//!   ggml's kernels assume: a tensor of one row per matrix with another
//!   stride between matrices would be read out of bounds), rows and row
//!   counts within `int`.

use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Rules, Sub, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// Declares the GLU sub-ops: [`GluOp`], the methods on [`Tensor`] and the
/// [`Decl`]s.
macro_rules! glu_ops {
    ($($(#[$doc:meta])* $variant:ident: $name:ident, $swapped:ident, $split:ident = $raw:ident, types $types:expr;)*) => {
        /// A gated linear unit of ggml (`GGML_GLU_OP_*`), for [`Tensor::glu`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum GluOp {
            $($(#[$doc])* $variant,)*
            /// `swiglu` with clamping and a scaled sigmoid (gpt-oss):
            /// [`Tensor::swiglu_oai`], which sets its parameters.
            SwigluOai,
            /// `swiglu` with the gate clamped: [`Tensor::swiglu_clamp`].
            SwigluClamp,
        }

        impl GluOp {
            /// Every unit.
            pub const ALL: &'static [GluOp] = &[$(GluOp::$variant,)* GluOp::SwigluOai, GluOp::SwigluClamp];

            /// ggml's value.
            pub fn as_raw(self) -> ggml_sys::ggml_glu_op {
                match self {
                    $(GluOp::$variant => ggml_sys::$raw,)*
                    GluOp::SwigluOai => ggml_sys::GGML_GLU_OP_SWIGLU_OAI,
                    GluOp::SwigluClamp => ggml_sys::GGML_GLU_OP_SWIGLU_CLAMP,
                }
            }

            /// The unit's name (as the method's).
            pub fn name(self) -> &'static str {
                match self {
                    $(GluOp::$variant => stringify!($name),)*
                    GluOp::SwigluOai => "swiglu_oai",
                    GluOp::SwigluClamp => "swiglu_clamp",
                }
            }

            /// The unit of a raw value.
            pub fn from_raw(raw: ggml_sys::ggml_glu_op) -> Option<GluOp> {
                GluOp::ALL.iter().copied().find(|op| op.as_raw() == raw)
            }

            /// The types the CPU's kernels of the unit take.
            fn cpu_types(self) -> &'static [Type] {
                match self {
                    $(GluOp::$variant => $types,)*
                    GluOp::SwigluOai => &[Type::F32],
                    GluOp::SwigluClamp => &[Type::F32, Type::F16],
                }
            }
        }

        impl<'ctx> Tensor<'ctx> {
            $(
                $(#[$doc])*
                /// The halves of each row are `x` then `g`; the result's rows
                /// are half as long.
                ///
                /// # Errors
                /// [`Error::Op`](crate::Error::Op) when the tensor's rows are
                /// not whole (`ggml_is_contiguous_1`);
                /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
                pub fn $name(self) -> Result<Tensor<'ctx>> {
                    glu(self, None, GluOp::$variant, false)
                }

                #[doc = concat!("[`Tensor::", stringify!($name), "`] with the halves swapped (`g` then `x`).")]
                ///
                /// # Errors
                #[doc = concat!("As [`Tensor::", stringify!($name), "`].")]
                pub fn $swapped(self) -> Result<Tensor<'ctx>> {
                    glu(self, None, GluOp::$variant, true)
                }

                #[doc = concat!("[`Tensor::", stringify!($name), "`] of this tensor (`x`) and a gate `g` of the same shape and type.")]
                ///
                /// # Errors
                #[doc = concat!("As [`Tensor::", stringify!($name), "`]; [`Error::Op`](crate::Error::Op) when the shapes or types differ.")]
                pub fn $split(self, g: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
                    glu(self, Some(g), GluOp::$variant, false)
                }
            )*
        }

        /// The GLU declarations. Generic builders: two operands (the second
        /// is the gate) when bit 1 of `Params::flags` is set, else one,
        /// swapped when bit 2 is; `swiglu_oai` reads `Params::f[0..2]`
        /// (alpha, limit), `swiglu_clamp` `Params::f[0]`.
        pub(crate) const DECLS: &[Decl] = &[
            $(Decl {
                name: stringify!($name),
                family: Family::Glu,
                builders: &[concat!("ggml_", stringify!($name)), concat!("ggml_", stringify!($swapped)), concat!("ggml_", stringify!($split))],
                op: ggml_sys::GGML_OP_GLU,
                sub: Sub::Glu(ggml_sys::$raw),
                arity: 2,
                cpu: cpu_glu,
                build: |_, t, p| glu(t[0], p.flag(1).then_some(t[1]), GluOp::$variant, p.flag(2)),
                raw: |_, ctx, t, p| {
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe {
                        if p.flag(1) {
                            ggml_sys::ggml_glu_split(ctx, t[0], t[1], ggml_sys::$raw)
                        } else {
                            ggml_sys::ggml_glu(ctx, t[0], ggml_sys::$raw, p.flag(2))
                        }
                    }
                },
                ..BASE
            },)*
            Decl {
                name: "swiglu_oai",
                family: Family::Glu,
                builders: &["ggml_swiglu_oai"],
                op: ggml_sys::GGML_OP_GLU,
                sub: Sub::Glu(ggml_sys::GGML_GLU_OP_SWIGLU_OAI),
                arity: 2,
                cpu: cpu_glu,
                build: |_, t, p| t[0].swiglu_oai(p.flag(1).then_some(t[1]), p.f[0], p.f[1]),
                raw: |_, ctx, t, p| {
                    let g = if p.flag(1) { t[1] } else { std::ptr::null_mut() };
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe { ggml_sys::ggml_swiglu_oai(ctx, t[0], g, p.f[0], p.f[1]) }
                },
                ..BASE
            },
            Decl {
                name: "swiglu_clamp",
                family: Family::Glu,
                builders: &["ggml_swiglu_clamp"],
                op: ggml_sys::GGML_OP_GLU,
                sub: Sub::Glu(ggml_sys::GGML_GLU_OP_SWIGLU_CLAMP),
                arity: 2,
                cpu: cpu_glu,
                build: |_, t, p| t[0].swiglu_clamp(p.flag(1).then_some(t[1]), p.f[0]),
                raw: |_, ctx, t, p| {
                    let g = if p.flag(1) { t[1] } else { std::ptr::null_mut() };
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe { ggml_sys::ggml_swiglu_clamp(ctx, t[0], g, p.f[0]) }
                },
                ..BASE
            },
            Decl {
                name: "glu",
                family: Family::Glu,
                builders: &["ggml_glu", "ggml_glu_split"],
                op: ggml_sys::GGML_OP_GLU,
                arity: 2,
                cpu: cpu_glu,
                build: |_, t, p| {
                    let op = GluOp::ALL[p.i[0].unsigned_abs() as usize % GluOp::ALL.len()];
                    glu(t[0], p.flag(1).then_some(t[1]), op, p.flag(2))
                },
                ..BASE
            },
        ];
    };
}

glu_ops! {
    /// ReGLU: `relu(x) * g`.
    Reglu: reglu, reglu_swapped, reglu_split = GGML_GLU_OP_REGLU, types &[Type::F32, Type::F16, Type::BF16];
    /// GeGLU: `gelu(x) * g` (tanh approximation).
    Geglu: geglu, geglu_swapped, geglu_split = GGML_GLU_OP_GEGLU, types &[Type::F32, Type::F16, Type::BF16];
    /// SwiGLU: `silu(x) * g`.
    Swiglu: swiglu, swiglu_swapped, swiglu_split = GGML_GLU_OP_SWIGLU, types &[Type::F32, Type::F16, Type::BF16];
    /// GeGLU with the error function: `gelu_erf(x) * g`.
    GegluErf: geglu_erf, geglu_erf_swapped, geglu_erf_split = GGML_GLU_OP_GEGLU_ERF, types &[Type::F32, Type::F16, Type::BF16];
    /// GeGLU, quick approximation: `gelu_quick(x) * g`.
    GegluQuick: geglu_quick, geglu_quick_swapped, geglu_quick_split = GGML_GLU_OP_GEGLU_QUICK, types &[Type::F32, Type::F16, Type::BF16];
}

/// Builds a GLU (`ggml_glu_impl`), returning the node for the caller to set
/// parameters on.
fn glu<'a>(a: Tensor<'a>, g: Option<Tensor<'a>>, op: GluOp, swapped: bool) -> Result<Tensor<'a>> {
    let both = [a, g.unwrap_or(a)];
    let operands = if g.is_some() { &both[..] } else { &both[..1] };
    let rules = Rules::new(op.name(), operands)?;
    for t in operands {
        rules.require(t.layout().is_contiguous_n(1), || {
            "ggml needs whole rows (ggml_is_contiguous_1)".into()
        })?;
    }
    let mut ne = a.ne();
    if let Some(g) = g {
        rules.require(g.ne() == ne && g.ty() == a.ty(), || {
            "the gate must have the operand's shape and type".into()
        })?;
    } else {
        ne[0] /= 2;
    }
    rules.reserve_result(a.ty(), &ne, None)?;
    let ctx = rules.context().as_ptr();
    // SAFETY: live tensors with whole rows, of one shape and type when two
    // (ggml_glu_impl's assertions); room for the result reserved.
    rules.wrap(unsafe {
        match g {
            Some(g) => ggml_sys::ggml_glu_split(ctx, a.as_ptr(), g.as_ptr(), op.as_raw()),
            None => ggml_sys::ggml_glu(ctx, a.as_ptr(), op.as_raw(), swapped),
        }
    })
}

/// Sets `f32` op parameter `i` of a node this crate just built.
fn set_param_f32(node: &Tensor<'_>, i: usize, v: f32) {
    // SAFETY: a node of a live context, built by this crate and not yet in
    // any graph or computation; `i` < 16.
    unsafe { (*node.as_ptr()).op_params[i] = v.to_bits() as i32 };
}

impl<'ctx> Tensor<'ctx> {
    /// The gated linear unit `op` of this tensor's row halves (swapped when
    /// `swapped`): see the methods of each unit (`x.swiglu()`).
    /// [`GluOp::SwigluOai`] and [`GluOp::SwigluClamp`] take the parameters
    /// of [`Tensor::swiglu_oai`] and [`Tensor::swiglu_clamp`] as 0.
    ///
    /// # Errors
    /// As [`Tensor::swiglu`].
    pub fn glu(self, op: GluOp, swapped: bool) -> Result<Tensor<'ctx>> {
        glu(self, None, op, swapped)
    }

    /// The gated linear unit `op` of this tensor (`x`) and a gate `g`.
    ///
    /// # Errors
    /// As [`Tensor::swiglu_split`].
    pub fn glu_split(self, g: Tensor<'ctx>, op: GluOp) -> Result<Tensor<'ctx>> {
        glu(self, Some(g), op, false)
    }

    /// gpt-oss's SwiGLU: with `x` clamped to at most `limit`, `g` to
    /// `[-limit, limit]`, `x · sigmoid(alpha · x) · (g + 1)`. The gate is
    /// `g`, or the second half of each row when `None`.
    ///
    /// # Errors
    /// As [`Tensor::swiglu_split`].
    pub fn swiglu_oai(
        self,
        g: Option<Tensor<'ctx>>,
        alpha: f32,
        limit: f32,
    ) -> Result<Tensor<'ctx>> {
        let node = glu(self, g, GluOp::SwigluOai, false)?;
        set_param_f32(&node, 2, alpha);
        set_param_f32(&node, 3, limit);
        Ok(node)
    }

    /// SwiGLU with `x` clamped to at most `limit` and `g` to
    /// `[-limit, limit]`. The gate is `g`, or the second half of each row
    /// when `None`.
    ///
    /// # Errors
    /// As [`Tensor::swiglu_split`].
    pub fn swiglu_clamp(self, g: Option<Tensor<'ctx>>, limit: f32) -> Result<Tensor<'ctx>> {
        let node = glu(self, g, GluOp::SwigluClamp, false)?;
        set_param_f32(&node, 3, limit);
        Ok(node)
    }
}

/// Whether row `i` of `t` is at `i·nb[1]` for every row (as ggml's GLU
/// kernels address them).
pub(crate) fn rows_at_one_stride(t: &Tensor<'_>) -> bool {
    let (ne, nb) = (t.ne(), t.nb());
    let mut rows = ne[1] as usize;
    for i in 2..4 {
        if ne[i] != 1 && Some(nb[i]) != nb[1].checked_mul(rows) {
            return false;
        }
        rows = rows.saturating_mul(ne[i] as usize);
    }
    true
}

/// The CPU's GLU kernels (`ggml_compute_forward_glu`): a type the unit's
/// kernel has, one type throughout, rows reached at one stride, the
/// result's rows as long as the operand's half (or whole, with a gate).
fn cpu_glu(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let a = node.src(0).ok_or("a source is missing")?;
    let g = node.src(1);
    let op = GluOp::from_raw(node.op_params()[0] as u32).ok_or("an unknown GLU")?;
    if !op.cpu_types().contains(&a.ty())
        || node.ty() != a.ty()
        || g.is_some_and(|g| g.ty() != a.ty())
    {
        return Err("the CPU's kernel of this unit lacks the type");
    }
    for t in [Some(a), g, Some(*node)].into_iter().flatten() {
        if !t.rows_are_dense() || !t.layout().is_contiguous_n(1) || !rows_at_one_stride(&t) {
            return Err(
                "the CPU reads whole rows at one stride (ggml_is_contiguous_1, row i at i·nb[1])",
            );
        }
    }
    let nc = if g.is_some() {
        a.ne()[0]
    } else {
        a.ne()[0] / 2
    };
    let rows = |t: &Tensor<'_>| {
        t.ne()[1]
            .saturating_mul(t.ne()[2])
            .saturating_mul(t.ne()[3])
    };
    if node.ne()[0] != nc || rows(node) != rows(&a) || g.is_some_and(|g| g.ne() != a.ne()) {
        return Err(
            "the result must have the operand's rows, of half its row length without a gate",
        );
    }
    if !fits_int(a.ne()[0]) || !fits_int(rows(&a)) {
        return Err("the CPU's loops count in int: at most i32::MAX values a row and rows");
    }
    Ok(())
}
