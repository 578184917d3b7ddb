//! Normalisations of rows: `norm` (zero mean, unit variance), `rms_norm`
//! (unit root mean square), `l2_norm` (unit Euclidean length), and
//! `group_norm` (over groups of channels, ggml's dimension 2).
//!
//! The family's rules: the result has the operand's type and shape, a new
//! tensor or (`_inplace`) a view of the operand. ggml's builders assert
//! nothing, but its CPU kernels abort on a negative or NaN `eps` (checked
//! here when building) and divide by the group count (which must be at
//! least 1). The CPU normalises f32 rows of dense values.
//!
//! On the CPU, `rms_norm` followed by a `mul` that only it feeds is computed
//! as one fused step (the weights then need to be f32 rows of the same
//! length, which `mul`'s own contract ensures).

use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// ggml's builder of a normalisation with an `eps`.
type NormFn = unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
    f32,
) -> *mut ggml_sys::ggml_tensor;

/// Builds a normalisation with an `eps`.
fn norm<'a>(
    name: &'static str,
    f: NormFn,
    a: Tensor<'a>,
    eps: f32,
    inplace: bool,
) -> Result<Tensor<'a>> {
    let operands = [a];
    let rules = Rules::new(name, &operands)?;
    rules.require(eps >= 0.0, || {
        format!("eps must be at least 0 (ggml's kernels abort on {eps})")
    })?;
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    // SAFETY: a live tensor; room reserved; the builder asserts nothing
    // (the kernels' eps assertion is checked above).
    rules.wrap(unsafe { f(rules.context().as_ptr(), a.as_ptr(), eps) })
}

/// Builds `group_norm`.
fn group_norm(a: Tensor<'_>, groups: i64, eps: f32, inplace: bool) -> Result<Tensor<'_>> {
    let operands = [a];
    let rules = Rules::new("group_norm", &operands)?;
    // ggml divides by the count, and adds it to the channel count in int
    // (`(channels + groups - 1) / groups`): more groups than channels could
    // overflow that sum, and its threads step through the groups by `nth`
    // in int (a count near i32::MAX overflows the step: a SIGSEGV, found by
    // tests/ops/hostile.rs when more groups were allowed). Groups past the
    // channels would be empty: the result equals one group per channel.
    let channels = a.ne()[2];
    let groups = i32::try_from(groups)
        .ok()
        .filter(|&g| g >= 1 && i64::from(g) <= channels.max(1) && fits_int(channels));
    let Some(groups) = groups else {
        return Err(rules.broken(format!(
            "the group count must be 1 to the channel count {channels} (ggml divides by it and adds it to the channels in int)"
        )));
    };
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    let ctx = rules.context().as_ptr();
    // SAFETY: a live tensor; room reserved; the builder asserts nothing (the
    // kernel's division by the group count is guarded above).
    rules.wrap(unsafe {
        if inplace {
            ggml_sys::ggml_group_norm_inplace(ctx, a.as_ptr(), groups, eps)
        } else {
            ggml_sys::ggml_group_norm(ctx, a.as_ptr(), groups, eps)
        }
    })
}

/// The declaration of a normalisation with an `eps` (`Params::f[0]`).
macro_rules! norm_decl {
    ($name:literal, $op:ident, $plain:ident, $inplace:ident, $bw:literal) => {
        Decl {
            name: $name,
            family: Family::Norm,
            builders: &[stringify!($plain), stringify!($inplace)],
            op: ggml_sys::$op,
            arity: 1,
            cpu: cpu_norm,
            backward: $bw,
            build: |d, t, p| {
                let f: NormFn = if p.inplace() {
                    ggml_sys::$inplace
                } else {
                    ggml_sys::$plain
                };
                norm(d.name, f, t[0], p.f[0], p.inplace())
            },
            raw: |_, ctx, t, p| {
                let f: NormFn = if p.inplace() {
                    ggml_sys::$inplace
                } else {
                    ggml_sys::$plain
                };
                // SAFETY: none (the fuzzer's raw direction).
                unsafe { f(ctx, t[0], p.f[0]) }
            },
            ..BASE
        }
    };
}

/// The normalisations' declarations. Generic builders: `Params::f[0]` is
/// `eps`; `group_norm` takes the group count from `Params::i[0]`.
pub(crate) const DECLS: &[Decl] = &[
    norm_decl!("norm", GGML_OP_NORM, ggml_norm, ggml_norm_inplace, true),
    norm_decl!(
        "rms_norm",
        GGML_OP_RMS_NORM,
        ggml_rms_norm,
        ggml_rms_norm_inplace,
        true
    ),
    norm_decl!(
        "l2_norm",
        GGML_OP_L2_NORM,
        ggml_l2_norm,
        ggml_l2_norm_inplace,
        false
    ),
    Decl {
        name: "group_norm",
        family: Family::Norm,
        builders: &["ggml_group_norm", "ggml_group_norm_inplace"],
        op: ggml_sys::GGML_OP_GROUP_NORM,
        arity: 1,
        cpu: cpu_norm,
        build: |_, t, p| group_norm(t[0], p.i[0], p.f[0], p.inplace()),
        raw: |_, ctx, t, p| {
            let f = if p.inplace() {
                ggml_sys::ggml_group_norm_inplace
            } else {
                ggml_sys::ggml_group_norm
            };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { f(ctx, t[0], p.i[0] as i32, p.f[0]) }
        },
        ..BASE
    },
];

impl<'ctx> Tensor<'ctx> {
    /// Each row normalised to zero mean and unit variance:
    /// `(x - mean) / sqrt(var + eps)`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when `eps` is negative or NaN;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). On the CPU: f32
    /// rows of dense values, else refused when computed.
    pub fn norm(self, eps: f32) -> Result<Tensor<'ctx>> {
        norm("norm", ggml_sys::ggml_norm, self, eps, false)
    }

    /// [`Tensor::norm`] in place.
    ///
    /// # Errors
    /// As [`Tensor::norm`]; [`Error::Op`](crate::Error::Op) when this tensor
    /// overlaps itself.
    pub fn norm_inplace(self, eps: f32) -> Result<Tensor<'ctx>> {
        norm("norm", ggml_sys::ggml_norm_inplace, self, eps, true)
    }

    /// Each row divided by its root mean square:
    /// `x / sqrt(mean(x²) + eps)` (as in llama's layers).
    ///
    /// # Errors
    /// As [`Tensor::norm`].
    pub fn rms_norm(self, eps: f32) -> Result<Tensor<'ctx>> {
        norm("rms_norm", ggml_sys::ggml_rms_norm, self, eps, false)
    }

    /// [`Tensor::rms_norm`] in place.
    ///
    /// # Errors
    /// As [`Tensor::norm_inplace`].
    pub fn rms_norm_inplace(self, eps: f32) -> Result<Tensor<'ctx>> {
        norm("rms_norm", ggml_sys::ggml_rms_norm_inplace, self, eps, true)
    }

    /// Each row divided by its Euclidean length (at least `eps`):
    /// `x / max(‖x‖, eps)`.
    ///
    /// # Errors
    /// As [`Tensor::norm`].
    pub fn l2_norm(self, eps: f32) -> Result<Tensor<'ctx>> {
        norm("l2_norm", ggml_sys::ggml_l2_norm, self, eps, false)
    }

    /// [`Tensor::l2_norm`] in place.
    ///
    /// # Errors
    /// As [`Tensor::norm_inplace`].
    pub fn l2_norm_inplace(self, eps: f32) -> Result<Tensor<'ctx>> {
        norm("l2_norm", ggml_sys::ggml_l2_norm_inplace, self, eps, true)
    }

    /// Normalisation over groups of channels: ggml's dimension 2 (channels)
    /// is split into `groups` groups of `ceil(ne2 / groups)`; each group
    /// (with all of dimensions 0 and 1, per item of dimension 3) is brought
    /// to zero mean and unit variance with `eps`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when `groups` is below 1;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn group_norm(self, groups: i64, eps: f32) -> Result<Tensor<'ctx>> {
        group_norm(self, groups, eps, false)
    }

    /// [`Tensor::group_norm`] in place.
    ///
    /// # Errors
    /// As [`Tensor::group_norm`]; [`Error::Op`](crate::Error::Op) when this
    /// tensor overlaps itself.
    pub fn group_norm_inplace(self, groups: i64, eps: f32) -> Result<Tensor<'ctx>> {
        group_norm(self, groups, eps, true)
    }
}

/// The CPU's normalisation kernels: f32 rows of dense values on both sides,
/// one shape, `eps` at least 0 (their assertion), groups at least 1.
fn cpu_norm(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err("the CPU normalises f32 rows");
    }
    if a.ne() != node.ne() {
        return Err("the result must have the operand's shape");
    }
    if !a.rows_are_dense() || !node.rows_are_dense() {
        return Err("the CPU needs dense rows (nb[0] one element) on both sides");
    }
    let params = node.op_params();
    if node.op() == ggml_sys::GGML_OP_GROUP_NORM {
        if params[0] < 1 || i64::from(params[0]) > a.ne()[2].max(1) || !fits_int(a.ne()[2]) {
            return Err("1 to the channel count of groups");
        }
    } else if f32::from_bits(params[0] as u32) < 0.0 || f32::from_bits(params[0] as u32).is_nan() {
        return Err("eps must be at least 0");
    }
    Ok(())
}
