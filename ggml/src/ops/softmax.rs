//! Soft max over rows: `soft_max`, and `soft_max_ext` with a scale, an
//! additive mask (broadcast over ggml's dimensions 2 and 3), ALiBi slopes
//! (`max_bias`) and attention sinks, as attention layers use it.
//!
//! The rules: ggml asserts a contiguous operand; a mask of f16 or f32,
//! contiguous, with the operand's row length, at least its rows, and
//! dimensions 2 and 3 that divide the operand's; ALiBi needs a mask; sinks
//! are f32, one per head (`ne[2]`). The CPU computes f32 rows (at most
//! `i32::MAX` values). In place, the mask and sinks must not share memory
//! with the operand.

use crate::error::Result;
use crate::ops::{fits_int, overlaps, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The parameters of [`Tensor::soft_max_ext`]: `softmax(x·scale + slope·mask)`
/// per row, with a sink logit per head.
#[derive(Debug, Clone, Copy)]
pub struct SoftMax<'ctx> {
    /// Added to the scaled rows (f16 or f32; row `i` of the operand takes
    /// row `i` of the mask; `-inf` masks a value out).
    pub mask: Option<Tensor<'ctx>>,
    /// Multiplies the operand first.
    pub scale: f32,
    /// ALiBi: above 0, head `h`'s mask is multiplied by a slope computed
    /// from `max_bias` and the head count (needs a mask).
    pub max_bias: f32,
    /// One extra logit per head (f32, `ne = [heads]`), in the normalisation
    /// but not in the output (gpt-oss's attention sinks).
    pub sinks: Option<Tensor<'ctx>>,
}

impl Default for SoftMax<'_> {
    fn default() -> Self {
        SoftMax {
            mask: None,
            scale: 1.0,
            max_bias: 0.0,
            sinks: None,
        }
    }
}

/// The declarations. Generic builder: the first operand, a mask (the second)
/// when bit 1 of `Params::flags` is set, `Params::f[0..2]` as scale and
/// max bias, in place with bit 0.
pub(crate) const DECLS: &[Decl] = &[Decl {
    name: "soft_max",
    family: Family::SoftMax,
    builders: &[
        "ggml_soft_max",
        "ggml_soft_max_inplace",
        "ggml_soft_max_ext",
        "ggml_soft_max_ext_inplace",
    ],
    op: ggml_sys::GGML_OP_SOFT_MAX,
    arity: 2,
    cpu: cpu_soft_max,
    backward: true,
    build: |_, t, p| {
        let params = SoftMax {
            mask: p.flag(1).then_some(t[1]),
            scale: p.f[0],
            max_bias: p.f[1],
            sinks: None,
        };
        soft_max(t[0], &params, p.inplace())
    },
    raw: |_, ctx, t, p| {
        let mask = if p.flag(1) {
            t[1]
        } else {
            std::ptr::null_mut()
        };
        let f = if p.inplace() {
            ggml_sys::ggml_soft_max_ext_inplace
        } else {
            ggml_sys::ggml_soft_max_ext
        };
        // SAFETY: none (the fuzzer's raw direction).
        unsafe { f(ctx, t[0], mask, p.f[0], p.f[1]) }
    },
    ..BASE
}];

/// Builds `soft_max_ext` (with sinks when given).
fn soft_max<'a>(a: Tensor<'a>, p: &SoftMax<'a>, inplace: bool) -> Result<Tensor<'a>> {
    let operands: Vec<Tensor<'a>> = [Some(a), p.mask, p.sinks].into_iter().flatten().collect();
    let rules = Rules::new("soft_max", &operands)?;
    rules.require(a.is_contiguous(), || {
        "ggml needs a contiguous operand".into()
    })?;
    let na = a.ne();
    if let Some(m) = p.mask {
        let nm = m.ne();
        rules.require(matches!(m.ty(), Type::F16 | Type::F32), || {
            "the mask must be f16 or f32".into()
        })?;
        rules.require(m.is_contiguous(), || "the mask must be contiguous".into())?;
        rules.require(
            nm[0] == na[0] && nm[1] >= na[1] && nm[2] != 0 && nm[3] != 0 && na[2] % nm[2] == 0 && na[3] % nm[3] == 0,
            || "the mask needs the operand's row length, at least its rows, and ne[2], ne[3] dividing the operand's".into(),
        )?;
    }
    let alibi = p.max_bias > 0.0;
    rules.require(!alibi || p.mask.is_some(), || {
        "ALiBi (max_bias > 0) needs a mask".into()
    })?;
    if let Some(s) = p.sinks {
        rules.require(s.ty() == Type::F32 && s.ne()[0] == na[2], || {
            "sinks must be f32, one per head (ne[0] = the operand's ne[2])".into()
        })?;
    }
    if inplace {
        for other in [p.mask, p.sinks].into_iter().flatten() {
            rules.require(!overlaps(&other, &a), || {
                "in place, the mask and sinks must not share memory with the operand".into()
            })?;
        }
    }
    rules.reserve_result(a.ty(), &na, inplace.then_some(&a))?;
    let ctx = rules.context().as_ptr();
    let mask = p.mask.map_or(std::ptr::null_mut(), |m| m.as_ptr());
    // SAFETY: live tensors meeting ggml_soft_max_impl's assertions (and
    // ggml_soft_max_add_sinks' for the sinks); room for the result reserved.
    let node = rules.wrap(unsafe {
        if inplace {
            ggml_sys::ggml_soft_max_ext_inplace(ctx, a.as_ptr(), mask, p.scale, p.max_bias)
        } else {
            ggml_sys::ggml_soft_max_ext(ctx, a.as_ptr(), mask, p.scale, p.max_bias)
        }
    })?;
    if let Some(s) = p.sinks {
        // SAFETY: a soft max node just built, without sinks; sinks f32 with
        // one value per head (its assertions).
        unsafe { ggml_sys::ggml_soft_max_add_sinks(node.as_ptr(), s.as_ptr()) };
    }
    Ok(node)
}

impl<'ctx> Tensor<'ctx> {
    /// The soft max of each row: `exp(x - max) / Σ exp(x - max)`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when the tensor is not contiguous;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). On the CPU: f32.
    pub fn soft_max(self) -> Result<Tensor<'ctx>> {
        soft_max(self, &SoftMax::default(), false)
    }

    /// [`Tensor::soft_max`] in place.
    ///
    /// # Errors
    /// As [`Tensor::soft_max`].
    pub fn soft_max_inplace(self) -> Result<Tensor<'ctx>> {
        soft_max(self, &SoftMax::default(), true)
    }

    /// The soft max of each row of `self·scale + slope·mask`, with sinks
    /// (see [`SoftMax`]): attention's soft max.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for the rules of the module docs;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn soft_max_ext(self, params: &SoftMax<'ctx>) -> Result<Tensor<'ctx>> {
        soft_max(self, params, false)
    }

    /// [`Tensor::soft_max_ext`] in place.
    ///
    /// # Errors
    /// As [`Tensor::soft_max_ext`]; [`Error::Op`](crate::Error::Op) when the
    /// mask or sinks share memory with this tensor.
    pub fn soft_max_ext_inplace(self, params: &SoftMax<'ctx>) -> Result<Tensor<'ctx>> {
        soft_max(self, params, true)
    }
}

/// The CPU's soft max kernel: f32 rows, an f32 result of one shape, both
/// contiguous; a mask of f16 or f32 with whole, dense rows; sinks dense f32.
fn cpu_soft_max(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let a = node.src(0).ok_or("a source is missing")?;
    if a.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err("the CPU's soft max takes f32");
    }
    if a.ne() != node.ne() || !a.is_contiguous() || !node.is_contiguous() {
        return Err("the CPU needs a contiguous operand and result of one shape");
    }
    if let Some(m) = node.src(1) {
        let (nm, na) = (m.ne(), a.ne());
        if !matches!(m.ty(), Type::F16 | Type::F32) || !m.rows_are_dense() {
            return Err("the mask must be f16 or f32 with dense rows");
        }
        if nm[0] != na[0] || nm[1] < na[1] || nm[2] == 0 || nm[3] == 0 {
            return Err("the mask's rows must cover the operand's");
        }
    }
    if let Some(s) = node.src(2) {
        if s.ty() != Type::F32 || !s.rows_are_dense() || s.ne()[0] < a.ne()[2] {
            return Err("sinks must be dense f32, one per head");
        }
    }
    if !fits_int(a.ne()[0]) {
        return Err("the CPU counts a row's values in int: at most i32::MAX");
    }
    Ok(())
}
