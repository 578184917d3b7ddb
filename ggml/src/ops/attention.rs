//! Fused attention: `flash_attn_ext`, `softmax(q·kᵀ·scale + mask)·v` per
//! head in one op, with grouped-query heads, a causal (or any) mask, ALiBi,
//! logit soft-capping and sinks.
//!
//! Shapes in ggml's order: `q [dk, n_batch, heads, b]`, `k [dk, n_kv,
//! heads_kv, b]`, `v [dv, n_kv, heads_kv, b]` (not transposed), mask
//! `[≥ n_kv, ≥ n_batch, m2, m3]` with `m2`, `m3` dividing `heads` and `b`;
//! the result is f32 `[dv, heads, n_batch, b]` (heads before tokens).
//!
//! The rules checked here go beyond ggml's builder, which leaves several to
//! its kernel, where they read out of bounds or divide by zero: `q` f32; `k`
//! and `v` of one token count and head count, that head count dividing
//! `q`'s; a mask (f16, contiguous) covering every key and query; K with a
//! CPU dot product and rows of whole blocks, V with a dequantizer; dense
//! rows everywhere; sinks f32, one per head.

use crate::error::Result;
use crate::ops::{cpu_has_vec_dot, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The accumulation precision of [`Tensor::flash_attn_ext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Precision {
    /// The backend's choice.
    #[default]
    Default,
    /// f32 accumulation.
    F32,
}

/// The parameters of [`Tensor::flash_attn_ext`].
#[derive(Debug, Clone, Copy)]
pub struct FlashAttn<'ctx> {
    /// Added to the scaled scores: `[≥ n_kv, ≥ n_batch, m2, m3]`, f16
    /// (`-inf` masks a key out).
    pub mask: Option<Tensor<'ctx>>,
    /// Multiplies `q·kᵀ` (usually `1/√dk`).
    pub scale: f32,
    /// ALiBi's maximum bias (needs a mask); 0 for none.
    pub max_bias: f32,
    /// Soft-capping of scores, `c·tanh(s/c)`; 0 for none.
    pub logit_softcap: f32,
    /// Accumulation precision.
    pub precision: Precision,
    /// One sink logit per head (f32, `ne = [heads]`).
    pub sinks: Option<Tensor<'ctx>>,
}

impl FlashAttn<'_> {
    /// Attention with `scale` and nothing else.
    pub fn new(scale: f32) -> Self {
        FlashAttn {
            mask: None,
            scale,
            max_bias: 0.0,
            logit_softcap: 0.0,
            precision: Precision::Default,
            sinks: None,
        }
    }
}

/// The declaration. Generic builder: q, k, v and a mask (the fourth operand)
/// when bit 1 of `Params::flags` is set; `Params::f[0..3]` are scale, max
/// bias and soft cap; bit 2 asks for f32 precision.
pub(crate) const DECLS: &[Decl] = &[Decl {
    name: "flash_attn_ext",
    family: Family::Attention,
    builders: &["ggml_flash_attn_ext"],
    op: ggml_sys::GGML_OP_FLASH_ATTN_EXT,
    arity: 4,
    cpu: cpu_flash_attn,
    build: |_, t, p| {
        let params = FlashAttn {
            mask: p.flag(1).then_some(t[3]),
            scale: p.f[0],
            max_bias: p.f[1],
            logit_softcap: p.f[2],
            precision: if p.flag(2) {
                Precision::F32
            } else {
                Precision::Default
            },
            sinks: None,
        };
        t[0].flash_attn_ext(t[1], t[2], &params)
    },
    raw: |_, ctx, t, p| {
        let mask = if p.flag(1) {
            t[3]
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: none (the fuzzer's raw direction).
        unsafe {
            ggml_sys::ggml_flash_attn_ext(ctx, t[0], t[1], t[2], mask, p.f[0], p.f[1], p.f[2])
        }
    },
    ..BASE
}];

impl<'ctx> Tensor<'ctx> {
    /// Attention of the queries `self` over keys `k` and values `v` (see
    /// the module docs for shapes and rules): an f32 tensor
    /// `[dv, heads, n_batch, b]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) naming the rule broken;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn flash_attn_ext(
        self,
        k: Tensor<'ctx>,
        v: Tensor<'ctx>,
        p: &FlashAttn<'ctx>,
    ) -> Result<Tensor<'ctx>> {
        let q = self;
        let operands: Vec<Tensor<'ctx>> = [Some(q), Some(k), Some(v), p.mask, p.sinks]
            .into_iter()
            .flatten()
            .collect();
        let rules = Rules::new("flash_attn_ext", &operands)?;
        let (nq, nk, nv) = (q.ne(), k.ne(), v.ne());
        rules.require(q.ty() == Type::F32, || "q must be f32".into())?;
        rules.require(nk[0] == nq[0], || {
            "k's rows must be as long as q's (dk)".into()
        })?;
        rules.require(nv[1] == nk[1] && nv[2] == nk[2], || {
            "k and v must have one token count and head count".into()
        })?;
        rules.require(nk[2] >= 1 && nq[2] % nk[2] == 0, || {
            "the key/value heads must divide the query heads".into()
        })?;
        rules.require(nq[3] == nk[3] && nq[3] == nv[3], || {
            "q, k and v must have one ne[3]".into()
        })?;
        for t in [q, k, v] {
            rules.require(t.rows_are_dense(), || "q, k and v need dense rows".into())?;
        }
        rules.require(
            !k.ty().is_quantized() || nk[0] % k.ty().block_size() as i64 == 0,
            || "quantized keys need rows of whole blocks".into(),
        )?;
        if let Some(m) = p.mask {
            let nm = m.ne();
            rules.require(m.ty() == Type::F16 && m.is_contiguous(), || {
                "the mask must be contiguous f16".into()
            })?;
            rules.require(
                nm[0] >= nk[1] && nm[1] >= nq[1] && nm[2] >= 1 && nm[3] >= 1 && nq[2] % nm[2] == 0 && nq[3] % nm[3] == 0,
                || "the mask must cover every key (ne[0]) and query (ne[1]), its ne[2], ne[3] dividing q's".into(),
            )?;
        }
        let alibi = p.max_bias > 0.0;
        rules.require(!alibi || p.mask.is_some(), || {
            "ALiBi (max_bias > 0) needs a mask".into()
        })?;
        if let Some(s) = p.sinks {
            rules.require(
                s.ty() == Type::F32 && s.ne()[0] == nq[2] && s.rows_are_dense(),
                || "sinks must be dense f32, one per query head".into(),
            )?;
        }
        rules.reserve_result(Type::F32, &[nv[0], nq[2], nq[1], nq[3]], None)?;
        let mask = p.mask.map_or(std::ptr::null_mut(), |m| m.as_ptr());
        let ctx = rules.context().as_ptr();
        // SAFETY: live tensors meeting ggml_flash_attn_ext's assertions and
        // the kernel's needs listed above; room for the result reserved.
        let node = rules.wrap(unsafe {
            ggml_sys::ggml_flash_attn_ext(
                ctx,
                q.as_ptr(),
                k.as_ptr(),
                v.as_ptr(),
                mask,
                p.scale,
                p.max_bias,
                p.logit_softcap,
            )
        })?;
        if p.precision == Precision::F32 {
            // SAFETY: a flash attention node just built.
            unsafe { ggml_sys::ggml_prec_set_acc(node.as_ptr(), ggml_sys::GGML_PREC_F32) };
        }
        if let Some(s) = p.sinks {
            // SAFETY: a flash attention node without sinks; sinks f32 with
            // one value per query head (its assertions).
            unsafe { ggml_sys::ggml_flash_attn_ext_add_sinks(node.as_ptr(), s.as_ptr()) };
        }
        Ok(node)
    }
}

/// The CPU's flash attention: f32 queries; keys of a type with a dot
/// product, rows of whole blocks; values f32 or dequantizable (not Q8_1,
/// Q8_K); shapes as the builder checks; precision default or f32; dense
/// rows and an f32 result.
fn cpu_flash_attn(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [q, k, v] = crate::ops::sources::<3>(node)?;
    let (nq, nk, nv) = (q.ne(), k.ne(), v.ne());
    if q.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err("the CPU takes f32 queries into an f32 result");
    }
    if !cpu_has_vec_dot(k.ty())
        || (k.ty().is_quantized() && nk[0] % k.ty().block_size() as i64 != 0)
    {
        return Err("the CPU has no dot product for the keys' type (or rows of partial blocks)");
    }
    let vt = v.ty();
    if !(vt == Type::F32 || (vt.can_dequantize() && !matches!(vt, Type::Q8_1 | Type::Q8_K))) {
        return Err("the CPU cannot read the values' type");
    }
    if nk[0] != nq[0] || nv[1] != nk[1] || nv[2] != nk[2] || nk[2] < 1 || nq[2] % nk[2] != 0 {
        return Err("q, k and v shapes do not fit (dk, tokens, heads)");
    }
    if node.ne() != [nv[0], nq[2], nq[1], nq[3]] {
        return Err("the result must be [dv, heads, n_batch, b]");
    }
    if !q.rows_are_dense() || !k.rows_are_dense() || !v.rows_are_dense() || !node.is_contiguous() {
        return Err("the CPU needs dense rows and a contiguous result");
    }
    if !matches!(
        node.op_params()[3] as u32,
        ggml_sys::GGML_PREC_DEFAULT | ggml_sys::GGML_PREC_F32
    ) {
        return Err("the CPU accumulates in its default precision or f32 only");
    }
    if let Some(m) = node.src(3) {
        let nm = m.ne();
        if m.ty() != Type::F16
            || !m.is_contiguous()
            || nm[0] < nk[1]
            || nm[1] < nq[1]
            || nm[2] < 1
            || nm[3] < 1
        {
            return Err("the mask must be contiguous f16 covering every key and query");
        }
    }
    if let Some(s) = node.src(4) {
        if s.ty() != Type::F32 || !s.rows_are_dense() || s.ne()[0] < nq[2] {
            return Err("sinks must be dense f32, one per head");
        }
    }
    Ok(())
}
