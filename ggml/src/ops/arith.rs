//! Element-wise arithmetic: `add`, `sub`, `mul`, `div` (with broadcasting of the
//! right operand) and `scale`.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::{full_shape, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

type BinaryFn = unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
    *mut ggml_sys::ggml_tensor,
) -> *mut ggml_sys::ggml_tensor;

/// Whether `b` can be repeated to `a`'s shape (`ggml_can_repeat(b, a)`).
pub(crate) fn can_broadcast(b: &[i64; 4], a: &[i64; 4]) -> bool {
    if a == b {
        return true; // the common case, without four divisions
    }
    let empty = |ne: &[i64; 4]| ne.contains(&0);
    if empty(b) {
        return empty(a);
    }
    a.iter().zip(b).all(|(&x, &y)| x % y == 0)
}

/// Type triples (src0, src1, dst) of the CPU's element-wise kernels
/// (`binary_op` in ggml-cpu's binary-ops.cpp; anything else aborts).
fn cpu_binary_types(a: Type, b: Type, dst: Type) -> bool {
    use Type::{BF16, F16, F32};
    matches!(
        (a, b, dst),
        (F32, F32, F32)
            | (F16, F16, F16)
            | (BF16, BF16, BF16)
            | (BF16, F32, BF16)
            | (BF16, F32, F32)
            | (F16, F32, F16)
            | (F16, F32, F32)
    )
}

/// CPU kernels of `sub`, `mul`, `div` (and `add` of plain types):
/// `apply_binary_op` asserts dense elements in `src0` and `dst` rows and a
/// type triple it has.
fn cpu_binary(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    cpu_binary_of(node, a, b)
}

/// [`cpu_binary`] with the sources fetched.
fn cpu_binary_of(
    node: &Tensor<'_>,
    a: Tensor<'_>,
    b: Tensor<'_>,
) -> std::result::Result<(), &'static str> {
    if !cpu_binary_types(a.ty(), b.ty(), node.ty()) {
        return Err("no element-wise kernel for these types (f32, f16 and bf16 with a matching or f32 right side)");
    }
    if !a.rows_are_dense() || !node.rows_are_dense() {
        return Err("the left operand's rows must be dense (nb[0] one element)");
    }
    if !crate::ops::fits_int(a.ne()[0]) {
        return Err("the CPU's row loops count in int: rows of at most i32::MAX values");
    }
    Ok(())
}

/// CPU kernels of `add`: plain types as [`cpu_binary`]; a quantized left
/// operand goes through `ggml_compute_forward_add_q_f32`, which dequantizes
/// a row, adds an f32 row of the same shape and quantizes it back.
fn cpu_add(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let ta = a.ty();
    if !ta.is_quantized() {
        return cpu_binary_of(node, a, b);
    }
    if b.ty() != Type::F32 || node.ty() != ta {
        return Err(
            "a quantized left operand needs an f32 right operand and result of its own type",
        );
    }
    if !ta.can_dequantize() || !crate::ops::cpu_can_quantize_to(ta) {
        return Err("the CPU cannot both dequantize and quantize rows of this type");
    }
    // ggml_compute_forward_add lists the quantized types it adds to: the
    // intermediate Q8_1 and Q8_K are not among them (it aborts).
    if matches!(ta, Type::Q8_1 | Type::Q8_K) {
        return Err("the CPU does not add to Q8_1 or Q8_K tensors");
    }
    if a.ne() != b.ne() {
        return Err(
            "a quantized left operand needs a right operand of the same shape (no broadcasting)",
        );
    }
    if !a.rows_are_dense() || !node.rows_are_dense() || a.is_transposed() {
        return Err("quantized rows must be dense");
    }
    if b.nb()[0] != std::mem::size_of::<f32>() {
        return Err("the right operand's rows must be dense");
    }
    let rows = a.len() as i64 / a.ne()[0].max(1);
    if !crate::ops::fits_int(rows) {
        return Err("the CPU counts quantized rows in int: at most i32::MAX rows");
    }
    Ok(())
}

/// CPU kernel of `add_id`: f32 rows, i32 ids, an f32 result, dense rows.
fn cpu_add_id(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b, ids] = crate::ops::sources::<3>(node)?;
    if a.ty() != Type::F32 || b.ty() != Type::F32 || ids.ty() != Type::I32 || node.ty() != Type::F32
    {
        return Err("the CPU adds f32 rows picked by i32 ids");
    }
    if !a.rows_are_dense() || !b.rows_are_dense() || !node.rows_are_dense() {
        return Err("dense rows");
    }
    Ok(())
}

/// CPU kernel of `scale` (`ggml_compute_forward_scale`): f32 or bf16,
/// result of the same type, both contiguous (the kernels assert it), rows and
/// row counts within `int`.
fn cpu_scale(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if !matches!(a.ty(), Type::F32 | Type::BF16) || node.ty() != a.ty() {
        return Err("the CPU scales f32 and bf16 tensors");
    }
    if !a.is_contiguous() || !node.is_contiguous() {
        return Err("the CPU scales contiguous tensors");
    }
    let ne = a.ne();
    if !crate::ops::fits_int(ne[0]) || !crate::ops::fits_int(ne[1] * ne[2] * ne[3]) {
        return Err("the CPU's loops count in int: at most i32::MAX values a row and rows");
    }
    Ok(())
}

/// Declares the broadcasting binary ops: their [`Decl`]s and methods on
/// [`Tensor`] (`a.add(b)`, `a.add_inplace(b)`).
macro_rules! binary_ops {
    ($($(#[$doc:meta])* $name:ident, $inplace:ident = $c:ident, $cin:ident: $op:ident, $cpu:expr;)*) => {
        /// The arithmetic ops' declarations (the first of an op names its
        /// nodes in errors: `scale` before `scale_bias`). Generic builders: bit 0 of
        /// `Params::flags` selects the `_inplace` form; `scale` reads
        /// `Params::f[0]`.
        pub(crate) const DECLS: &[Decl] = &[
            $(Decl {
                name: stringify!($name),
                family: Family::Binary,
                builders: &[stringify!($c), stringify!($cin)],
                op: ggml_sys::$op,
                arity: 2,
                cpu: $cpu,
                backward: true,
                build: |d, t, p| {
                    let f = if p.inplace() { ggml_sys::$cin } else { ggml_sys::$c };
                    binary(d.name, f, t[0], t[1], p.inplace())
                },
                raw: |_, ctx, t, p| {
                    let f = if p.inplace() { ggml_sys::$cin } else { ggml_sys::$c };
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe { f(ctx, t[0], t[1]) }
                },
                ..BASE
            },)*
            Decl {
                name: "add_cast",
                family: Family::Binary,
                builders: &["ggml_add_cast"],
                op: ggml_sys::GGML_OP_ADD,
                arity: 2,
                cpu: cpu_add,
                build: |_, t, p| t[0].add_cast(t[1], Type::ALL[p.i[0].unsigned_abs() as usize % Type::ALL.len()]),
                raw: |_, ctx, t, p| {
                    let ty = Type::ALL[p.i[0].unsigned_abs() as usize % Type::ALL.len()];
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe { ggml_sys::ggml_add_cast(ctx, t[0], t[1], ty.as_raw()) }
                },
                ..BASE
            },
            Decl {
                name: "add_id",
                family: Family::Binary,
                builders: &["ggml_add_id"],
                op: ggml_sys::GGML_OP_ADD_ID,
                arity: 3,
                cpu: cpu_add_id,
                build: |_, t, _| t[0].add_id(t[1], t[2]),
                // SAFETY: none (the fuzzer's raw direction).
                raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_add_id(ctx, t[0], t[1], t[2]) },
                ..BASE
            },
            Decl {
                name: "scale",
                family: Family::Binary,
                builders: &["ggml_scale", "ggml_scale_inplace"],
                op: ggml_sys::GGML_OP_SCALE,
                arity: 1,
                cpu: cpu_scale,
                backward: true,
                build: |_, t, p| scale(t[0], p.f[0], p.inplace()),
                raw: |_, ctx, t, p| {
                    let f = if p.inplace() { ggml_sys::ggml_scale_inplace } else { ggml_sys::ggml_scale };
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe { f(ctx, t[0], p.f[0]) }
                },
                ..BASE
            },
            Decl {
                name: "scale_bias",
                family: Family::Binary,
                builders: &["ggml_scale_bias", "ggml_scale_bias_inplace"],
                op: ggml_sys::GGML_OP_SCALE,
                arity: 1,
                cpu: cpu_scale,
                build: |_, t, p| scale_bias(t[0], p.f[0], p.f[1], p.inplace()),
                raw: |_, ctx, t, p| {
                    let f = if p.inplace() { ggml_sys::ggml_scale_bias_inplace } else { ggml_sys::ggml_scale_bias };
                    // SAFETY: none (the fuzzer's raw direction).
                    unsafe { f(ctx, t[0], p.f[0], p.f[1]) }
                },
                ..BASE
            },
        ];

        // `add`, `neg`, ... return `Result`: they cannot be `std::ops` traits.
        #[allow(clippy::should_implement_trait)]
        impl<'ctx> Tensor<'ctx> {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                /// [`Error::NotBroadcastable`], [`Error::OutOfMemory`],
                /// [`Error::WrongContext`].
                pub fn $name(self, b: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
                    binary(stringify!($name), ggml_sys::$c, self, b, false)
                }

                #[doc = concat!("[`Tensor::", stringify!($name), "`] written into this tensor (the result is a view of it).")]
                ///
                /// # Errors
                #[doc = concat!("As [`Tensor::", stringify!($name), "`]; [`Error::Op`] when this tensor overlaps itself or `b` overlaps it (unless `b` is this tensor).")]
                pub fn $inplace(self, b: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
                    binary(stringify!($name), ggml_sys::$cin, self, b, true)
                }
            )*
        }
    };
}

binary_ops! {
    /// `self + b`, with `b` broadcast (repeated) to this tensor's shape; the
    /// result has this tensor's type. See [`Context::add`] for the types
    /// the CPU adds.
    add, add_inplace = ggml_add, ggml_add_inplace: GGML_OP_ADD, cpu_add;
    /// `self - b`, with `b` broadcast to this tensor's shape (on the CPU:
    /// float types as [`Tensor::add`], no quantized operands).
    sub, sub_inplace = ggml_sub, ggml_sub_inplace: GGML_OP_SUB, cpu_binary;
    /// `self * b` element-wise, with `b` broadcast to this tensor's shape.
    mul, mul_inplace = ggml_mul, ggml_mul_inplace: GGML_OP_MUL, cpu_binary;
    /// `self / b` element-wise, with `b` broadcast to this tensor's shape.
    div, div_inplace = ggml_div, ggml_div_inplace: GGML_OP_DIV, cpu_binary;
}

/// Builds an element-wise op: ggml asserts only that `b` repeats to `a`;
/// the result is a new tensor of `a`'s type and shape, or a view of `a`
/// (in place).
fn binary<'a>(
    op: &'static str,
    f: BinaryFn,
    a: Tensor<'a>,
    b: Tensor<'a>,
    inplace: bool,
) -> Result<Tensor<'a>> {
    let operands = [a, b];
    let rules = Rules::new(op, &operands)?;
    let (na, nb) = (a.ne(), b.ne());
    if !can_broadcast(&nb, &na) {
        return Err(Error::NotBroadcastable {
            op,
            lhs: full_shape(&na),
            rhs: full_shape(&nb),
        });
    }
    if inplace {
        rules.require(!crate::ops::overlaps(&b, &a), || {
            "in place, the right operand must not share memory with the left (unless it is the left itself)".into()
        })?;
    }
    rules.reserve_result(a.ty(), &na, inplace.then_some(&a))?;
    let ctx = rules.context();
    // SAFETY: both tensors belong to this live context; `b` repeats to
    // `a` (ggml's only assertion); room for the result reserved.
    rules.wrap(unsafe { f(ctx.as_ptr(), a.as_ptr(), b.as_ptr()) })
}

/// `a * s + b`, or in place (as [`scale`]).
fn scale_bias(a: Tensor<'_>, s: f32, b: f32, inplace: bool) -> Result<Tensor<'_>> {
    if !a.layout().is_padded_1d() {
        return Err(a.not_contiguous("scale_bias"));
    }
    let operands = [a];
    let rules = Rules::new("scale_bias", &operands)?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    let f = if inplace {
        ggml_sys::ggml_scale_bias_inplace
    } else {
        ggml_sys::ggml_scale_bias
    };
    // SAFETY: a live tensor, padded 1-d as ggml asserts; room reserved.
    rules.wrap(unsafe { f(rules.context().as_ptr(), a.as_ptr(), s, b) })
}

/// `a * s`, or in place. ggml needs `a`'s rows dense and its dimensions 2
/// and 3 dense over 1.
fn scale(a: Tensor<'_>, s: f32, inplace: bool) -> Result<Tensor<'_>> {
    if !a.layout().is_padded_1d() {
        return Err(a.not_contiguous("scale"));
    }
    let operands = [a];
    let rules = Rules::new("scale", &operands)?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    let f = if inplace {
        ggml_sys::ggml_scale_inplace
    } else {
        ggml_sys::ggml_scale
    };
    // SAFETY: a live tensor, padded 1-d as ggml asserts; room reserved.
    rules.wrap(unsafe { f(rules.context().as_ptr(), a.as_ptr(), s) })
}

impl<'ctx> Tensor<'ctx> {
    /// `self + b` into a new tensor of type `ty` (`ggml_add_cast`): this
    /// tensor f16, bf16 or quantized, `b`'s rows as long as its own and
    /// repeating to its shape. The CPU adds an f32 `b` to f16 and bf16 into
    /// f32, and to a quantized tensor into its own type.
    ///
    /// # Errors
    /// [`Error::Op`] when the shapes or this tensor's type do not fit;
    /// [`Error::BlockSize`](crate::Error::BlockSize), [`Error::OutOfMemory`].
    pub fn add_cast(self, b: Tensor<'ctx>, ty: Type) -> Result<Tensor<'ctx>> {
        let operands = [self, b];
        let rules = Rules::new("add_cast", &operands)?;
        let (na, nb) = (self.ne(), b.ne());
        rules.require(nb[0] == na[0] && can_broadcast(&nb, &na), || {
            "b's rows must be as long and repeat to the tensor".into()
        })?;
        let ta = self.ty();
        rules.require(
            ta.is_quantized() || matches!(ta, Type::F16 | Type::BF16),
            || "the tensor must be f16, bf16 or quantized".into(),
        )?;
        rules.reserve_result(ty, &na, None)?;
        // SAFETY: live tensors meeting ggml_add_cast's assertions; the
        // result's shape checked for `ty` and its room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_add_cast(
                rules.context().as_ptr(),
                self.as_ptr(),
                b.as_ptr(),
                ty.as_raw(),
            )
        })
    }

    /// Adds to each row `(i1, i2)` of this tensor (f32 `[n, e, t]`) row
    /// `ids[i1, i2]` of `b` (f32 `[n, b1]`): per-expert biases. The ids
    /// (i32 `[e, t]`) are checked before every computation (in `0..b1`, a
    /// graph input: see [`crate::ops::contents`]).
    ///
    /// # Errors
    /// [`Error::Op`] when the shapes or types do not fit;
    /// [`Error::OutOfMemory`].
    pub fn add_id(self, b: Tensor<'ctx>, ids: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, b, ids];
        let rules = Rules::new("add_id", &operands)?;
        let (na, nb, ni) = (self.ne(), b.ne(), ids.ne());
        rules.require(ids.ty() == Type::I32, || "the ids must be i32".into())?;
        rules.require(na[0] == nb[0] && na[1] == ni[0] && na[2] == ni[1], || {
            "b's rows as long as the tensor's, one id per row of it".into()
        })?;
        rules.reserve_result(self.ty(), &na, None)?;
        // SAFETY: live tensors meeting ggml_add_id's assertions; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_add_id(
                rules.context().as_ptr(),
                self.as_ptr(),
                b.as_ptr(),
                ids.as_ptr(),
            )
        })
    }

    /// `self * s`: see [`Context::scale`].
    ///
    /// # Errors
    /// As [`Context::scale`].
    pub fn scale(self, s: f32) -> Result<Tensor<'ctx>> {
        scale(self, s, false)
    }

    /// `self * s + b` (on the CPU: contiguous f32 and bf16).
    ///
    /// # Errors
    /// As [`Context::scale`].
    pub fn scale_bias(self, s: f32, b: f32) -> Result<Tensor<'ctx>> {
        scale_bias(self, s, b, false)
    }

    /// [`Tensor::scale_bias`] in place.
    ///
    /// # Errors
    /// As [`Tensor::scale_inplace`].
    pub fn scale_bias_inplace(self, s: f32, b: f32) -> Result<Tensor<'ctx>> {
        scale_bias(self, s, b, true)
    }

    /// `self * s` written into this tensor (the result is a view of it).
    ///
    /// # Errors
    /// As [`Context::scale`]; [`Error::Op`] when this tensor overlaps itself.
    pub fn scale_inplace(self, s: f32) -> Result<Tensor<'ctx>> {
        scale(self, s, true)
    }
}

impl Context {
    /// `a + b`, with `b` broadcast (repeated) to `a`'s shape. The result has
    /// `a`'s type. (Also [`Tensor::add`]: `a.add(b)`.)
    ///
    /// On the CPU: f32+f32, f16+f16, f16+f32, bf16+bf16, bf16+f32, and a
    /// quantized `a` plus an f32 `b` of the same shape (the result is
    /// re-quantized). Other types build, and are refused with
    /// [`Error::UnsupportedNode`] when computed.
    ///
    /// # Errors
    /// [`Error::NotBroadcastable`], [`Error::OutOfMemory`], [`Error::WrongContext`].
    pub fn add<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns(&a, "an operand")?;
        a.add(b)
    }

    /// `a - b`, with `b` broadcast to `a`'s shape (on the CPU: float types
    /// as [`Context::add`], no quantized operands).
    ///
    /// # Errors
    /// As [`Context::add`].
    pub fn sub<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns(&a, "an operand")?;
        a.sub(b)
    }

    /// `a * b` element-wise, with `b` broadcast to `a`'s shape.
    ///
    /// # Errors
    /// As [`Context::add`].
    pub fn mul<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns(&a, "an operand")?;
        a.mul(b)
    }

    /// `a / b` element-wise, with `b` broadcast to `a`'s shape.
    ///
    /// # Errors
    /// As [`Context::add`].
    pub fn div<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Result<Tensor<'a>> {
        self.owns(&a, "an operand")?;
        a.div(b)
    }

    /// `a * s`. ggml needs `a`'s rows dense and its dimensions 2 and 3 dense
    /// over 1 (a contiguous tensor, or a view of whole rows); the CPU scales
    /// contiguous f32 and bf16 tensors.
    ///
    /// # Errors
    /// [`Error::NotContiguous`], [`Error::OutOfMemory`], [`Error::WrongContext`].
    pub fn scale<'a>(&'a self, a: Tensor<'a>, s: f32) -> Result<Tensor<'a>> {
        self.owns(&a, "an operand")?;
        scale(a, s, false)
    }
}

#[cfg(test)]
mod tests {
    use super::can_broadcast;

    #[test]
    fn broadcast_rule_is_divisibility() {
        assert!(can_broadcast(&[4, 1, 1, 1], &[4, 3, 1, 1]));
        assert!(can_broadcast(&[2, 1, 1, 1], &[4, 3, 1, 1]));
        assert!(!can_broadcast(&[3, 1, 1, 1], &[4, 3, 1, 1]));
        assert!(!can_broadcast(&[4, 3, 1, 1], &[4, 1, 1, 1]));
    }
}
