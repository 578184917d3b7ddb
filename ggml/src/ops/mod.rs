//! Graph operations, each declared once.
//!
//! Ops are methods on [`Tensor`] (`x.rms_norm(1e-6)?.mul(w)?`), grouped in
//! files by family: the family's rules, its CPU kernel contract, its
//! declarations ([`Decl`], one per op: ggml builder, op and sub-op, operand
//! count, kernel contracts, backward rule, generic builder) and the public
//! methods generated from them sit side by side.
//!
//! - The builder checks everything ggml's builder asserts (shapes, types,
//!   sizes, the bounds of the views it makes, room in the context), then
//!   calls ggml. A broken rule is [`Error::Op`] naming the op, its operands
//!   and the rule. Nothing is computed yet.
//! - The kernel contract says what a backend's kernels need of a node of
//!   that op: type combinations and layouts. ggml's CPU backend answers
//!   `supports_op` optimistically (its kernels then abort on type pairs they
//!   lack), so the contract is checked node by node when a graph is
//!   computed, against the backend computing it (`check_node`), keyed by op
//!   and sub-op (the unary and GLU ops share one op each).
//! - [`catalog`] lists every declaration: the fuzzer generates calls of
//!   every op from it, and a test writes the coverage report
//!   (`docs/ops.md`) from it and ggml's header.
//!
//! Families:
//! - [`arith`], element-wise `add`, `sub`, `mul`, `div` with broadcasting, `scale`;
//! - [`unary`], element-wise functions (`relu`, `silu`, `exp`, `sqrt`, ...);
//! - [`glu`], gated linear units (`swiglu`, `geglu`, ...);
//! - [`norm`], `norm`, `rms_norm`, `l2_norm`, `group_norm`;
//! - [`rows`], `get_rows` (indices checked before computing);
//! - [`softmax`], `soft_max`, `soft_max_ext` (mask, ALiBi, sinks);
//! - [`rope`], `rope`, `rope_ext` (YaRN, frequency factors);
//! - [`attention`], `flash_attn_ext`;
//! - [`deepseek`], `lightning_indexer`, `dsv4_hc_comb`, `dsv4_hc_pre`, `dsv4_hc_pre_gated`,
//!   `dsv4_hc_post`;
//! - [`custom`], Rust closures as graph nodes (`map_custom1/2/3`, `custom`, and their
//!   in-place forms);
//! - [`fill`], `diag_mask_inf`, `diag_mask_zero`, `tri`, `fill`, `arange`, `pad`, `pad_ext`,
//!   `pad_reflect_1d`, `diag`, `timestep_embedding`, `roll`;
//! - [`matmul`], `mul_mat`, `mul_mat_id` (experts), `out_prod`;
//! - [`backward`], `silu_back`, `rms_norm_back`, `soft_max_ext_back`, `get_rows_back`, `repeat_back`;
//! - [`sequence`], `ssm_conv`, `ssm_scan`, `rwkv_wkv6`, `gated_linear_attn`, `rwkv_wkv7`,
//!   `gated_delta_net`;
//! - [`conv`], `im2col`, `conv_1d`, `conv_2d` and their depthwise forms, `pool_1d`, `pool_2d`,
//!   `interpolate`, `upscale`;
//! - [`conv_direct`], `conv_transpose_1d`, `conv_transpose_2d_p0`, `conv_2d_direct`,
//!   `conv_2d_dw_direct`, `conv_3d_direct`, `im2col_3d`, `conv_3d` (`Conv3d`), `col2im_1d`,
//!   `im2col_back`, `pool_2d_back`;
//! - [`set`], `set`, `set_1d`, `set_2d`, `acc` (writes into strided views);
//! - [`vision`], `win_part`, `win_unpart`, `get_rel_pos`, `add_rel_pos`;
//! - [`reduce`], `sum`, `sum_rows`, `mean`, `argmax`, `cumsum`, `count_equal`, `argsort`, `top_k`;
//! - [`layout`], `view`, `reshape`, `permute`, `transpose`, `cont`, `cpy`;
//! - [`movement`], `cont_4d`, `dup`, `cast`, `repeat`, `repeat_4d`, `concat`.

mod decl;

pub use attention::{FlashAttn, Precision};
pub use conv::{Conv, Interpolation, Pool};
pub use conv_direct::Conv3d;
pub use custom::{CustomCall, Tasks};
pub(crate) use decl::op_error;
pub use decl::{catalog, Build, Decl, Family, Params, RawBuild, Sub};
pub use fill::Triangle;
pub use glu::GluOp;
pub(crate) use layout::cpu_copy as layout_cpu_copy;
pub use reduce::SortOrder;
pub use rope::{Rope, RopeMode};
pub use sequence::{GatedDeltaNet, GatedLinearAttn, RwkvWkv6, RwkvWkv7, SsmScan};
pub use set::ViewAt;
pub use softmax::SoftMax;
pub use unary::UnaryOp;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::shape;
use crate::size::{self, Ne};
use crate::tensor::Tensor;
use crate::types::Type;

pub mod arith;
pub mod attention;
pub mod backward;
pub mod contents;
pub mod conv;
pub mod conv_direct;
pub mod custom;
pub mod deepseek;
pub mod fill;
pub mod glu;
pub mod layout;
pub mod matmul;
pub mod movement;
pub mod norm;
pub mod reduce;
pub mod rope;
pub mod rows;
pub mod sequence;
pub mod set;
pub mod softmax;
pub mod unary;
pub mod vision;

/// Every family's declarations. Nodes of other ops (made through raw
/// calls) are refused when computed.
const FAMILIES: &[&[Decl]] = &[
    arith::DECLS,
    unary::DECLS,
    glu::DECLS,
    matmul::DECLS,
    layout::DECLS,
    reduce::DECLS,
    norm::DECLS,
    rows::DECLS,
    softmax::DECLS,
    rope::DECLS,
    attention::DECLS,
    movement::DECLS,
    custom::DECLS,
    fill::DECLS,
    fill::MORE,
    vision::DECLS,
    set::DECLS,
    backward::DECLS,
    sequence::DECLS,
    conv::DECLS,
    conv::COMPOSED,
    conv::RESAMPLE,
    conv_direct::DECLS,
    deepseek::DECLS,
];

/// A declaration with the defaults of an op that computes nothing and has
/// no generic builder; declarations fill in the rest (`..decl::BASE`).
pub(crate) const BASE: Decl = Decl {
    name: "",
    family: Family::Layout,
    builders: &[],
    op: ggml_sys::GGML_OP_NONE,
    sub: Sub::None,
    arity: 0,
    cpu: no_kernel,
    backward: false,
    build: decl::no_build,
    raw: decl::no_raw,
};

/// The sub-op of a node (`op_params[0]` of unary and GLU nodes, else 0).
fn sub_op(node: &Tensor<'_>, op: ggml_sys::ggml_op) -> u32 {
    match op {
        ggml_sys::GGML_OP_UNARY | ggml_sys::GGML_OP_GLU => node.op_params()[0] as u32,
        _ => 0,
    }
}

/// Whose kernel contracts a node is checked against (the backend that
/// computes it picks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernels {
    /// ggml's CPU kernels (the CPU backend, linked or loaded at run time).
    Cpu,
}

impl Kernels {
    fn name(self) -> &'static str {
        match self {
            Kernels::Cpu => "the CPU backend",
        }
    }
}

/// Checks that `backend` has kernels for `node` (a leaf needs none).
///
/// # Errors
/// [`Error::UnsupportedNode`] naming the node, its op and types, the backend
/// and what its kernels lack.
pub(crate) fn check_node(node: &Tensor<'_>, backend: Kernels) -> Result<()> {
    let op = node.op();
    if op == ggml_sys::GGML_OP_NONE {
        return Ok(());
    }
    let unsupported = |name: &'static str, reason| Error::UnsupportedNode {
        node: node.name(),
        op: name,
        types: node_types(node),
        backend: backend.name().to_owned(),
        reason,
    };
    let Some(decl) = decl::lookup(op, sub_op(node, op)) else {
        return Err(unsupported(
            op_name(op),
            "this crate has no contract for the op",
        ));
    };
    let check = match backend {
        Kernels::Cpu => decl.cpu,
    };
    check(node).map_err(|reason| unsupported(decl.name, reason))
}

/// Checks an op's rules while its builder runs:
/// `rules.require(ok, || format!("..."))?` is [`Error::Op`] with the op,
/// its operands and the rule when `ok` is false.
pub(crate) struct Rules<'t, 'ctx> {
    op: &'static str,
    operands: &'t [Tensor<'ctx>],
}

impl<'t, 'ctx> Rules<'t, 'ctx> {
    /// The rules of `op` applied to `operands`, which must belong to one
    /// context.
    pub(crate) fn new(op: &'static str, operands: &'t [Tensor<'ctx>]) -> Result<Self> {
        let rules = Rules { op, operands };
        if let Some(first) = operands.first() {
            let ctx = first.context();
            for t in &operands[1..] {
                ctx.owns(t, "an operand")?;
            }
        }
        Ok(rules)
    }

    /// `Ok` when `ok`, else the broken rule.
    pub(crate) fn require(&self, ok: bool, rule: impl FnOnce() -> String) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(self.broken(rule()))
        }
    }

    /// The error for a broken rule.
    pub(crate) fn broken(&self, rule: String) -> Error {
        op_error(
            self.op,
            self.operands.iter().map(Tensor::operand).collect(),
            rule,
        )
    }

    /// The context the result is made in.
    pub(crate) fn context(&self) -> &'ctx Context {
        self.operands[0].context()
    }

    /// Reserves room for a new result of `ty` and `ne`, or (in place) for a
    /// view of `target`, which must not overlap itself: ggml's threads
    /// write each element of the result once.
    pub(crate) fn reserve_result(
        &self,
        ty: Type,
        ne: &Ne,
        inplace: Option<&Tensor<'ctx>>,
    ) -> Result<()> {
        let ctx = self.context();
        match inplace {
            None => ctx.reserve_tensor(self.op, ty, ne),
            Some(t) => {
                self.require(t.layout().is_injective(), || {
                    "an in-place result must not overlap itself (a view whose elements share bytes)"
                        .into()
                })?;
                ctx.reserve_view(self.op)
            }
        }
    }

    /// Wraps the tensor ggml's builder returned.
    pub(crate) fn wrap(&self, raw: *mut ggml_sys::ggml_tensor) -> Result<Tensor<'ctx>> {
        Tensor::from_raw(self.context(), raw)
    }
}

/// Whether `b` shares bytes with `a` without being exactly `a` (same
/// memory, offset and layout): an op writing `a` in place while reading `b`
/// would have ggml's threads read what another thread writes.
pub(crate) fn overlaps(b: &Tensor<'_>, a: &Tensor<'_>) -> bool {
    let ((ra, oa), (rb, ob)) = (a.memory_root(), b.memory_root());
    let (la, lb) = (a.layout(), b.layout());
    if ra != rb || (oa == ob && la == lb) || la.is_empty() || lb.is_empty() {
        return false;
    }
    let (ea, eb) = (oa.saturating_add(a.nbytes()), ob.saturating_add(b.nbytes()));
    oa < eb && ob < ea
}

/// Types of a node's sources, then of the node (for errors).
pub(crate) fn node_types(node: &Tensor<'_>) -> Vec<Type> {
    (0..ggml_sys::GGML_MAX_SRC as usize)
        .map_while(|i| node.src(i))
        .map(|s| s.ty())
        .chain([node.ty()])
        .collect()
}

/// The name of `op`: this crate's, else ggml's.
pub(crate) fn op_name(op: ggml_sys::ggml_op) -> &'static str {
    if let Some(d) = decl::lookup(op, 0).filter(|d| d.sub == Sub::None) {
        return d.name;
    }
    crate::raw::op_name(op).to_str().unwrap_or("?")
}

/// Whether `n` fits the C `int` ggml's CPU kernels count some loops in
/// (row lengths, row counts, blocks).
pub(crate) fn fits_int(n: i64) -> bool {
    n <= i64::from(i32::MAX)
}

/// Kernel contract of ops that only reinterpret memory (views): nothing to compute.
pub(crate) fn no_kernel(_: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    Ok(())
}

/// The ndarray shape of `ne` with every axis shown (for error messages).
pub(crate) fn full_shape(ne: &Ne) -> Vec<usize> {
    shape::shape_from_ne(ne, shape::n_dims(ne))
}

/// Whether the CPU kernels can quantize rows to `ty` (its CPU traits have a
/// `from_float`), as `cpy` to a quantized tensor and quantized `add` need.
///
/// The CPU traits of the pinned ggml, written down once: a `GGML_BACKEND_DL`
/// install has no linkable CPU backend to ask. `cpu_traits_are_ggmls` (a unit
/// test, where the CPU backend is linked) compares them with ggml's table.
pub(crate) fn cpu_can_quantize_to(ty: Type) -> bool {
    // The i-quants but IQ4_* have no CPU quantizer.
    ty.is_quantized()
        && !matches!(
            ty,
            Type::IQ2_XXS
                | Type::IQ2_XS
                | Type::IQ3_XXS
                | Type::IQ1_S
                | Type::IQ3_S
                | Type::IQ2_S
                | Type::IQ1_M
        )
}

/// Whether the CPU kernels have a dot product for `ty` (as `mul_mat` needs):
/// the float types and every quantized type but the intermediate ones. As
/// [`cpu_can_quantize_to`], checked against ggml's table by a unit test.
pub(crate) fn cpu_has_vec_dot(ty: Type) -> bool {
    ty.is_float() || (ty.is_quantized() && !matches!(ty, Type::Q8_1 | Type::Q8_K))
}

#[cfg(all(test, ggml_cpu_backend))]
mod cpu_traits_tests {
    use super::*;

    #[test]
    fn cpu_traits_are_ggmls() {
        for &ty in Type::ALL {
            // SAFETY: a valid type; the CPU traits table is static.
            let traits = unsafe { &*ggml_sys::ggml_get_type_traits_cpu(ty.as_raw()) };
            // F32's "quantizer" is a plain copy: the table above speaks of
            // quantized destinations only.
            let quantizes = traits.from_float.is_some() && ty.is_quantized();
            assert_eq!(cpu_can_quantize_to(ty), quantizes, "from_float of {ty}");
            assert_eq!(
                cpu_has_vec_dot(ty),
                traits.vec_dot.is_some(),
                "vec_dot of {ty}"
            );
        }
    }
}

/// The sources of a node (`src[i]` present for every `i < N`, as the ops
/// here build them).
pub(crate) fn sources<'ctx, const N: usize>(
    node: &Tensor<'ctx>,
) -> std::result::Result<[Tensor<'ctx>; N], &'static str> {
    let mut out = [*node; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = node.src(i).ok_or("a source is missing")?;
    }
    Ok(out)
}

impl Context {
    /// Checks that every operand belongs to this context.
    pub(crate) fn owns_all(&self, tensors: &[&Tensor<'_>]) -> Result<()> {
        tensors.iter().try_for_each(|t| self.owns(t, "an operand"))
    }

    /// Checks that ggml can make a view of `src` with `ne` starting `offset`
    /// bytes into it (ggml asserts that the view's *dense* size, from its
    /// absolute offset, stays inside the memory of the tensor it views, even
    /// when its strides are tighter), and that the context has room for it.
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::BlockSize`], [`Error::ViewOutOfBounds`],
    /// [`Error::OutOfMemory`].
    pub(crate) fn reserve_view_of(
        &self,
        op: &'static str,
        src: &Tensor<'_>,
        ne: &Ne,
        offset: usize,
    ) -> Result<()> {
        let ty = src.ty();
        size::check_shape(op, ty, ne)?;
        let dense = size::dense_bytes(ty, ne);
        let (root, base) = src.memory_root();
        let available = root.nbytes();
        let start = base.checked_add(offset);
        if dense != 0
            && start
                .and_then(|s| s.checked_add(dense))
                .is_none_or(|end| end > available)
        {
            return Err(Error::ViewOutOfBounds {
                name: root.name(),
                offset: start.unwrap_or(usize::MAX),
                needed: dense,
                available,
            });
        }
        self.reserve_view(op)
    }

    /// Wraps the tensor an op returned.
    pub(crate) fn wrap(&self, raw: *mut ggml_sys::ggml_tensor) -> Result<Tensor<'_>> {
        Tensor::from_raw(self, raw)
    }
}
