//! Element-wise functions of one tensor: ggml's unary ops (`GGML_OP_UNARY`
//! and its sub-ops: `relu`, `silu`, `gelu`, `exp`, `tanh`, ...) and the math
//! ops with an op of their own (`sqr`, `sqrt`, `log`, `sin`, `cos`).
//!
//! The family's rules, declared once:
//! - **builder**: ggml asserts dense rows (`ggml_is_contiguous_rows`) for the
//!   unary sub-ops; the result has the operand's type and shape, a new
//!   tensor or (`_inplace`) a view of the operand, which must then not
//!   overlap itself;
//! - **CPU kernels**: f32 → f32, f16 → f16, bf16 → bf16 (and f16/bf16 → f32,
//!   which this crate's builders never make); `gelu`, `gelu_erf`,
//!   `gelu_quick` and `silu` have kernels of their own for the same three
//!   types; rows dense on both sides (`nb[0]` one element), at most
//!   `i32::MAX` values a row (and rows, for the kernels of their own).
//!
//! Every function is a method on [`Tensor`] (`x.silu()?`), with an
//! `_inplace` twin, and [`Tensor::unary`] takes the function as a
//! [`UnaryOp`].

use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Rules, Sub, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// ggml's in-place and plain builder of a math op with an op of its own.
type MathFn = unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
) -> *mut ggml_sys::ggml_tensor;

/// Declares the unary sub-ops: [`UnaryOp`], the methods on [`Tensor`] and
/// the [`Decl`]s.
macro_rules! unary_ops {
    ($($(#[$doc:meta])* $variant:ident: $name:ident, $inplace:ident = $raw:ident, backward $bw:literal $(, $no:ident)?;)*) => {
        /// A unary function of ggml (`GGML_UNARY_OP_*`), for [`Tensor::unary`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum UnaryOp {
            $($(#[$doc])* $variant,)*
        }

        impl UnaryOp {
            /// Every unary function.
            pub const ALL: &'static [UnaryOp] = &[$(UnaryOp::$variant,)*];

            /// ggml's value.
            pub fn as_raw(self) -> ggml_sys::ggml_unary_op {
                match self {
                    $(UnaryOp::$variant => ggml_sys::$raw,)*
                }
            }

            /// The function's name (as the method's).
            pub fn name(self) -> &'static str {
                match self {
                    $(UnaryOp::$variant => stringify!($name),)*
                }
            }

            /// The function of a raw value.
            pub fn from_raw(raw: ggml_sys::ggml_unary_op) -> Option<UnaryOp> {
                match raw {
                    $(ggml_sys::$raw => Some(UnaryOp::$variant),)*
                    _ => None,
                }
            }
        }

        // `add`, `neg`, ... return `Result`: they cannot be `std::ops` traits.
        #[allow(clippy::should_implement_trait)]
        impl<'ctx> Tensor<'ctx> {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                /// [`Error::Op`](crate::Error::Op) when the rows are not
                /// dense; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
                /// Types the backend lacks are refused when computed.
                pub fn $name(self) -> Result<Tensor<'ctx>> {
                    unary(self, UnaryOp::$variant, false)
                }

                #[doc = concat!("[`Tensor::", stringify!($name), "`] written into this tensor (the result is a view of it).")]
                ///
                /// # Errors
                #[doc = concat!("As [`Tensor::", stringify!($name), "`]; [`Error::Op`](crate::Error::Op) when this tensor overlaps itself.")]
                pub fn $inplace(self) -> Result<Tensor<'ctx>> {
                    unary(self, UnaryOp::$variant, true)
                }
            )*
        }

        /// The unary sub-ops' declarations, then the math ops'.
        /// Generic builders: bit 0 of `Params::flags` selects `_inplace`.
        pub(crate) const DECLS: &[Decl] = &[
            $(Decl {
                name: stringify!($name),
                family: Family::Unary,
                builders: unary_builders!($name, $inplace $(, $no)?),
                op: ggml_sys::GGML_OP_UNARY,
                sub: Sub::Unary(ggml_sys::$raw),
                arity: 1,
                cpu: cpu_unary,
                backward: $bw,
                build: |_, t, p| unary(t[0], UnaryOp::$variant, p.inplace()),
                raw: |_, ctx, t, p| {
                    let f = if p.inplace() { ggml_sys::ggml_unary_inplace } else { ggml_sys::ggml_unary };
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe { f(ctx, t[0], ggml_sys::$raw) }
                },
            },)*
            Decl {
                name: "unary",
                family: Family::Unary,
                builders: &["ggml_unary", "ggml_unary_inplace"],
                op: ggml_sys::GGML_OP_UNARY,
                arity: 1,
                cpu: cpu_unary,
                build: |_, t, p| {
                    let op = UnaryOp::ALL[p.i[0].unsigned_abs() as usize % UnaryOp::ALL.len()];
                    unary(t[0], op, p.inplace())
                },
                ..BASE
            },
            math_decl!("sqr", GGML_OP_SQR, ggml_sqr, ggml_sqr_inplace, true),
            math_decl!("sqrt", GGML_OP_SQRT, ggml_sqrt, ggml_sqrt_inplace, true),
            math_decl!("log", GGML_OP_LOG, ggml_log, ggml_log_inplace, true),
            math_decl!("sin", GGML_OP_SIN, ggml_sin, ggml_sin_inplace, true),
            math_decl!("cos", GGML_OP_COS, ggml_cos, ggml_cos_inplace, true),
            Decl {
                name: "xielu",
                family: Family::Unary,
                builders: &["ggml_xielu"],
                op: ggml_sys::GGML_OP_UNARY,
                sub: Sub::Unary(ggml_sys::GGML_UNARY_OP_XIELU),
                arity: 1,
                cpu: cpu_whole_rows,
                build: |_, t, p| t[0].xielu(p.f[0], p.f[1], p.f[2], p.f[3]),
                // SAFETY: none (the fuzzer's raw direction).
                raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_xielu(ctx, t[0], p.f[0], p.f[1], p.f[2], p.f[3]) },
                ..BASE
            },
            Decl {
                name: "clamp",
                family: Family::Unary,
                builders: &["ggml_clamp", "ggml_clamp_inplace"],
                op: ggml_sys::GGML_OP_CLAMP,
                arity: 1,
                cpu: cpu_whole_rows,
                build: |_, t, p| clamp(t[0], p.f[0], p.f[1], p.inplace()),
                raw: |_, ctx, t, p| {
                    let f = if p.inplace() { ggml_sys::ggml_clamp_inplace } else { ggml_sys::ggml_clamp };
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe { f(ctx, t[0], p.f[0], p.f[1]) }
                },
                ..BASE
            },
            Decl {
                name: "leaky_relu",
                family: Family::Unary,
                builders: &["ggml_leaky_relu"],
                op: ggml_sys::GGML_OP_LEAKY_RELU,
                arity: 1,
                cpu: cpu_whole_rows,
                build: |_, t, p| leaky_relu(t[0], p.f[0], p.inplace()),
                // SAFETY: none (the fuzzer's raw direction).
                raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_leaky_relu(ctx, t[0], p.f[0], p.inplace()) },
                ..BASE
            },
        ];
    };
}

/// The ggml builders of a unary sub-op (`hardswish` and `hardsigmoid` have
/// no `_inplace` of their own: their in-place form is `ggml_unary_inplace`).
macro_rules! unary_builders {
    ($name:ident, $inplace:ident) => {
        &[
            concat!("ggml_", stringify!($name)),
            concat!("ggml_", stringify!($inplace)),
        ]
    };
    ($name:ident, $inplace:ident, no_inplace_builder) => {
        &[concat!("ggml_", stringify!($name))]
    };
}

/// The declaration of a math op with an op of its own.
macro_rules! math_decl {
    ($name:literal, $op:ident, $plain:ident, $inplace:ident, $bw:literal) => {
        Decl {
            name: $name,
            family: Family::Unary,
            builders: &[stringify!($plain), stringify!($inplace)],
            op: ggml_sys::$op,
            arity: 1,
            cpu: cpu_unary,
            backward: $bw,
            build: |d, t, p| {
                let f: MathFn = if p.inplace() {
                    ggml_sys::$inplace
                } else {
                    ggml_sys::$plain
                };
                math(d.name, f, t[0], p.inplace())
            },
            raw: |_, ctx, t, p| {
                let f: MathFn = if p.inplace() {
                    ggml_sys::$inplace
                } else {
                    ggml_sys::$plain
                };
                // SAFETY: none (the fuzzer's raw direction).
                unsafe { f(ctx, t[0]) }
            },
            ..BASE
        }
    };
}

unary_ops! {
    /// `|x|`.
    Abs: abs, abs_inplace = GGML_UNARY_OP_ABS, backward true;
    /// The sign of x: -1, 0 or 1.
    Sgn: sgn, sgn_inplace = GGML_UNARY_OP_SGN, backward true;
    /// `-x`.
    Neg: neg, neg_inplace = GGML_UNARY_OP_NEG, backward true;
    /// 1 where x > 0, else 0.
    Step: step, step_inplace = GGML_UNARY_OP_STEP, backward true;
    /// `tanh(x)`.
    Tanh: tanh, tanh_inplace = GGML_UNARY_OP_TANH, backward false;
    /// ELU: x where x > 0, else `exp(x) - 1`.
    Elu: elu, elu_inplace = GGML_UNARY_OP_ELU, backward false;
    /// ReLU: `max(x, 0)`.
    Relu: relu, relu_inplace = GGML_UNARY_OP_RELU, backward true;
    /// The logistic function `1 / (1 + exp(-x))`.
    Sigmoid: sigmoid, sigmoid_inplace = GGML_UNARY_OP_SIGMOID, backward false;
    /// GELU, tanh approximation (ggml computes f16 inputs through a table).
    Gelu: gelu, gelu_inplace = GGML_UNARY_OP_GELU, backward false;
    /// GELU, `x * sigmoid(1.702 x)` approximation.
    GeluQuick: gelu_quick, gelu_quick_inplace = GGML_UNARY_OP_GELU_QUICK, backward false;
    /// SiLU (swish): `x * sigmoid(x)`.
    Silu: silu, silu_inplace = GGML_UNARY_OP_SILU, backward true;
    /// Hard swish: `x * min(1, max(0, (x + 3) / 6))`.
    Hardswish: hardswish, hardswish_inplace = GGML_UNARY_OP_HARDSWISH, backward false, no_inplace_builder;
    /// Hard sigmoid: `min(1, max(0, (x + 3) / 6))`.
    Hardsigmoid: hardsigmoid, hardsigmoid_inplace = GGML_UNARY_OP_HARDSIGMOID, backward false, no_inplace_builder;
    /// `exp(x)`.
    Exp: exp, exp_inplace = GGML_UNARY_OP_EXP, backward true;
    /// `exp(x) - 1`.
    Expm1: expm1, expm1_inplace = GGML_UNARY_OP_EXPM1, backward true;
    /// Softplus: `log(1 + exp(x))` (x itself above 20).
    Softplus: softplus, softplus_inplace = GGML_UNARY_OP_SOFTPLUS, backward true;
    /// GELU with the error function: `0.5 x (1 + erf(x / √2))`.
    GeluErf: gelu_erf, gelu_erf_inplace = GGML_UNARY_OP_GELU_ERF, backward false;
    /// `floor(x)`.
    Floor: floor, floor_inplace = GGML_UNARY_OP_FLOOR, backward false;
    /// `ceil(x)`.
    Ceil: ceil, ceil_inplace = GGML_UNARY_OP_CEIL, backward false;
    /// `round(x)`, halves away from zero.
    Round: round, round_inplace = GGML_UNARY_OP_ROUND, backward false;
    /// `trunc(x)`.
    Trunc: trunc, trunc_inplace = GGML_UNARY_OP_TRUNC, backward false;
}

/// Builds a unary sub-op (`ggml_unary_impl`).
fn unary(a: Tensor<'_>, op: UnaryOp, inplace: bool) -> Result<Tensor<'_>> {
    let operands = [a];
    let rules = Rules::new(op.name(), &operands)?;
    rules.require(ggml_rows_dense(&a), || {
        "ggml needs dense rows (nb[0] one element)".into()
    })?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    let ctx = rules.context().as_ptr();
    // SAFETY: a live tensor with dense rows (ggml's assertion); room
    // reserved; a valid unary op.
    rules.wrap(unsafe {
        if inplace {
            ggml_sys::ggml_unary_inplace(ctx, a.as_ptr(), op.as_raw())
        } else {
            ggml_sys::ggml_unary(ctx, a.as_ptr(), op.as_raw())
        }
    })
}

/// Builds a math op with an op of its own (ggml asserts nothing).
fn math<'a>(name: &'static str, f: MathFn, a: Tensor<'a>, inplace: bool) -> Result<Tensor<'a>> {
    let operands = [a];
    let rules = Rules::new(name, &operands)?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    // SAFETY: a live tensor; room reserved; the builder asserts nothing.
    rules.wrap(unsafe { f(rules.context().as_ptr(), a.as_ptr()) })
}

/// Builds `clamp` (ggml asserts nothing).
fn clamp(a: Tensor<'_>, min: f32, max: f32, inplace: bool) -> Result<Tensor<'_>> {
    let operands = [a];
    let rules = Rules::new("clamp", &operands)?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    let ctx = rules.context().as_ptr();
    // SAFETY: a live tensor; room reserved; the builder asserts nothing.
    rules.wrap(unsafe {
        if inplace {
            ggml_sys::ggml_clamp_inplace(ctx, a.as_ptr(), min, max)
        } else {
            ggml_sys::ggml_clamp(ctx, a.as_ptr(), min, max)
        }
    })
}

/// Builds `leaky_relu` (ggml asserts nothing).
fn leaky_relu(a: Tensor<'_>, slope: f32, inplace: bool) -> Result<Tensor<'_>> {
    let operands = [a];
    let rules = Rules::new("leaky_relu", &operands)?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    // SAFETY: a live tensor; room reserved; the builder asserts nothing.
    rules.wrap(unsafe {
        ggml_sys::ggml_leaky_relu(rules.context().as_ptr(), a.as_ptr(), slope, inplace)
    })
}

/// `ggml_is_contiguous_rows`: dense rows, or rows of one block.
pub(crate) fn ggml_rows_dense(t: &Tensor<'_>) -> bool {
    t.ne()[0] == t.ty().block_size() as i64 || t.rows_are_dense()
}

impl<'ctx> Tensor<'ctx> {
    /// The unary function `op` of every element (see [`UnaryOp`]; each
    /// also has a method of its own, `x.relu()`).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when the rows are not dense;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn unary(self, op: UnaryOp) -> Result<Tensor<'ctx>> {
        unary(self, op, false)
    }

    /// [`Tensor::unary`] written into this tensor (the result is a view of it).
    ///
    /// # Errors
    /// As [`Tensor::unary`]; [`Error::Op`](crate::Error::Op) when this
    /// tensor overlaps itself.
    pub fn unary_inplace(self, op: UnaryOp) -> Result<Tensor<'ctx>> {
        unary(self, op, true)
    }

    /// xIELU (`ggml_xielu`): `x > 0`: `αp'·x² + β·x`; else
    /// `(expm1(min(x, eps)) - x)·αn' + β·x`, where `αp' = softplus(alpha_p)`
    /// and `αn' = beta + softplus(alpha_n)`. Not in place.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory); operands without
    /// whole rows are refused when computed.
    pub fn xielu(self, alpha_n: f32, alpha_p: f32, beta: f32, eps: f32) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("xielu", &operands)?;
        rules.reserve_result(self.ty(), &self.ne(), None)?;
        let ctx = rules.context().as_ptr();
        // SAFETY: a live tensor; room reserved; the builder asserts nothing.
        rules.wrap(unsafe { ggml_sys::ggml_xielu(ctx, self.as_ptr(), alpha_n, alpha_p, beta, eps) })
    }

    /// Every element clamped to `[min, max]` (`max(min(x, max), min)`: NaN
    /// becomes `max`).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). On the CPU: f32
    /// and f16 with whole rows at one stride, else refused when computed.
    pub fn clamp(self, min: f32, max: f32) -> Result<Tensor<'ctx>> {
        clamp(self, min, max, false)
    }

    /// [`Tensor::clamp`] in place.
    ///
    /// # Errors
    /// As [`Tensor::clamp`]; [`Error::Op`](crate::Error::Op) when this
    /// tensor overlaps itself.
    pub fn clamp_inplace(self, min: f32, max: f32) -> Result<Tensor<'ctx>> {
        clamp(self, min, max, true)
    }

    /// Leaky ReLU: `max(x, 0) + slope·min(x, 0)`.
    ///
    /// # Errors
    /// As [`Tensor::clamp`].
    pub fn leaky_relu(self, slope: f32) -> Result<Tensor<'ctx>> {
        leaky_relu(self, slope, false)
    }

    /// [`Tensor::leaky_relu`] in place.
    ///
    /// # Errors
    /// As [`Tensor::clamp_inplace`].
    pub fn leaky_relu_inplace(self, slope: f32) -> Result<Tensor<'ctx>> {
        leaky_relu(self, slope, true)
    }

    /// `x²` of every element.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn sqr(self) -> Result<Tensor<'ctx>> {
        math("sqr", ggml_sys::ggml_sqr, self, false)
    }

    /// [`Tensor::sqr`] in place.
    ///
    /// # Errors
    /// As [`Tensor::sqr`]; [`Error::Op`](crate::Error::Op) when this tensor
    /// overlaps itself.
    pub fn sqr_inplace(self) -> Result<Tensor<'ctx>> {
        math("sqr", ggml_sys::ggml_sqr_inplace, self, true)
    }

    /// `√x` of every element.
    ///
    /// # Errors
    /// As [`Tensor::sqr`].
    pub fn sqrt(self) -> Result<Tensor<'ctx>> {
        math("sqrt", ggml_sys::ggml_sqrt, self, false)
    }

    /// [`Tensor::sqrt`] in place.
    ///
    /// # Errors
    /// As [`Tensor::sqr_inplace`].
    pub fn sqrt_inplace(self) -> Result<Tensor<'ctx>> {
        math("sqrt", ggml_sys::ggml_sqrt_inplace, self, true)
    }

    /// The natural logarithm of every element.
    ///
    /// # Errors
    /// As [`Tensor::sqr`].
    pub fn log(self) -> Result<Tensor<'ctx>> {
        math("log", ggml_sys::ggml_log, self, false)
    }

    /// [`Tensor::log`] in place.
    ///
    /// # Errors
    /// As [`Tensor::sqr_inplace`].
    pub fn log_inplace(self) -> Result<Tensor<'ctx>> {
        math("log", ggml_sys::ggml_log_inplace, self, true)
    }

    /// `sin(x)` of every element.
    ///
    /// # Errors
    /// As [`Tensor::sqr`].
    pub fn sin(self) -> Result<Tensor<'ctx>> {
        math("sin", ggml_sys::ggml_sin, self, false)
    }

    /// [`Tensor::sin`] in place.
    ///
    /// # Errors
    /// As [`Tensor::sqr_inplace`].
    pub fn sin_inplace(self) -> Result<Tensor<'ctx>> {
        math("sin", ggml_sys::ggml_sin_inplace, self, true)
    }

    /// `cos(x)` of every element.
    ///
    /// # Errors
    /// As [`Tensor::sqr`].
    pub fn cos(self) -> Result<Tensor<'ctx>> {
        math("cos", ggml_sys::ggml_cos, self, false)
    }

    /// [`Tensor::cos`] in place.
    ///
    /// # Errors
    /// As [`Tensor::sqr_inplace`].
    pub fn cos_inplace(self) -> Result<Tensor<'ctx>> {
        math("cos", ggml_sys::ggml_cos_inplace, self, true)
    }
}

/// The CPU kernels that read whole rows at one stride (`xielu`: f32, f16,
/// bf16; `clamp` and `leaky_relu`: f32 and f16, which address row `i` at
/// `i·nb[1]` whatever the strides of dimensions 2 and 3): one type
/// throughout, one shape, rows and row counts within `int`.
fn cpu_whole_rows(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    let types: &[Type] = if node.op() == ggml_sys::GGML_OP_UNARY {
        &[Type::F32, Type::F16, Type::BF16]
    } else {
        &[Type::F32, Type::F16]
    };
    if !types.contains(&a.ty()) || node.ty() != a.ty() {
        return Err("the CPU's kernel lacks the type (clamp, leaky_relu: f32 and f16)");
    }
    if a.ne() != node.ne() {
        return Err("the result must have the operand's shape");
    }
    for t in [a, *node] {
        // Their kernels assert nb[0] is one element even for rows of one.
        if !t.rows_are_dense()
            || !t.layout().is_contiguous_n(1)
            || !crate::ops::glu::rows_at_one_stride(&t)
        {
            return Err("the CPU reads whole rows at one stride (row i at i·nb[1])");
        }
    }
    let ne = a.ne();
    if !fits_int(ne[0]) || !fits_int(ne[1].saturating_mul(ne[2]).saturating_mul(ne[3])) {
        return Err("the CPU's loops count in int: at most i32::MAX values a row and rows");
    }
    Ok(())
}

/// The CPU's element-wise kernels (`unary_op` in unary-ops.cpp, and the
/// kernels of `gelu`, `gelu_erf`, `gelu_quick`, `silu` in ops.cpp): a type
/// pair they have, the same shape, dense rows, rows and row counts within
/// `int`.
fn cpu_unary(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    let (ts, td) = (a.ty(), node.ty());
    let own_kernel = node.op() == ggml_sys::GGML_OP_UNARY
        && matches!(
            UnaryOp::from_raw(node.op_params()[0] as u32),
            Some(UnaryOp::Gelu | UnaryOp::GeluErf | UnaryOp::GeluQuick | UnaryOp::Silu)
        );
    let float = matches!(ts, Type::F32 | Type::F16 | Type::BF16);
    let pair = if own_kernel {
        float && td == ts
    } else {
        float && (td == ts || td == Type::F32)
    };
    if !pair {
        return Err(
            "the CPU's element-wise functions take f32, f16 or bf16 (result of the same type)",
        );
    }
    if a.ne() != node.ne() {
        return Err("the result must have the operand's shape");
    }
    if !a.rows_are_dense() || !node.rows_are_dense() {
        return Err("the CPU needs dense rows (nb[0] one element) on both sides");
    }
    let ne = a.ne();
    if !fits_int(ne[0]) || !fits_int(ne[1].saturating_mul(ne[2]).saturating_mul(ne[3])) {
        return Err("the CPU's loops count in int: at most i32::MAX values a row and rows");
    }
    Ok(())
}
