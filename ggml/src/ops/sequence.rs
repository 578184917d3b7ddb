//! Sequence-model ops: `ssm_conv` (Mamba's causal depthwise convolution
//! over a sliding window of tokens).
//!
//! Rules checked here beyond ggml's builder, which its kernel assumes: f32
//! operands, the kernel's contiguous rows (`sx`'s rows dense and packed,
//! `c` contiguous), dimensions within `int`.

use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The declarations.
pub(crate) const DECLS: &[Decl] = &[Decl {
    name: "ssm_conv",
    family: Family::Sequence,
    builders: &["ggml_ssm_conv"],
    op: ggml_sys::GGML_OP_SSM_CONV,
    arity: 2,
    cpu: cpu_ssm_conv,
    build: |_, t, _| t[0].ssm_conv(t[1]),
    // SAFETY: none (the fuzzer's raw direction).
    raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_ssm_conv(ctx, t[0], t[1]) },
    ..BASE
}];

impl<'ctx> Tensor<'ctx> {
    /// Mamba's convolution: this tensor `sx` (f32 `[d_conv - 1 + n_t,
    /// d_inner, n_seqs]`, each channel's last states then tokens) convolved
    /// with the weights `c` (f32 `[d_conv, d_inner]`): f32
    /// `[d_inner, n_t, n_seqs]`, `out[s][t][i] = Σ_k sx[s][i][t + k] · c[i][k]`.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes, types or layouts that do
    /// not fit; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn ssm_conv(self, c: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, c];
        let rules = Rules::new("ssm_conv", &operands)?;
        let (ns, nc) = (self.ne(), c.ne());
        rules.require(ns[3] == 1 && nc[2] == 1 && nc[3] == 1, || {
            "sx three-dimensional, c a matrix".into()
        })?;
        let n_t = ns[0] - nc[0] + 1;
        rules.require(nc[0] >= 1 && n_t >= 0 && ns[1] == nc[1], || {
            "sx [d_conv - 1 + n_t, d_inner, n_seqs], c [d_conv, d_inner]".into()
        })?;
        rules.require(self.ty() == Type::F32 && c.ty() == Type::F32, || {
            "f32 operands".into()
        })?;
        rules.require(
            self.rows_are_dense() && self.nb()[1] == ns[0] as usize * 4 && c.is_contiguous(),
            || "sx with packed dense rows, c contiguous".into(),
        )?;
        rules.require(ns.iter().chain(&nc).all(|&n| fits_int(n)), || {
            "dimensions within int".into()
        })?;
        rules.reserve_result(Type::F32, &[nc[1], n_t, ns[2], 1], None)?;
        // SAFETY: live f32 tensors meeting the builder's assertions and the
        // kernel's layout; room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_ssm_conv(rules.context().as_ptr(), self.as_ptr(), c.as_ptr())
        })
    }
}

/// The CPU's `ssm_conv`: f32, `sx`'s rows dense and packed, `c`
/// contiguous, a contiguous f32 result.
fn cpu_ssm_conv(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [sx, c] = crate::ops::sources::<2>(node)?;
    if sx.ty() != Type::F32 || c.ty() != Type::F32 || node.ty() != Type::F32 {
        return Err("the CPU convolves f32");
    }
    if !sx.rows_are_dense()
        || sx.nb()[1] != sx.ne()[0] as usize * 4
        || !c.is_contiguous()
        || !node.is_contiguous()
    {
        return Err("packed rows, contiguous weights and result");
    }
    if node.ne()[0] != sx.ne()[1] || c.ne()[1] != sx.ne()[1] {
        return Err("shapes of the op");
    }
    Ok(())
}
