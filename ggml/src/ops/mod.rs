//! Graph operations, each in one place: its **builder** and its **kernel
//! contract** side by side in `ops/<family>.rs`.
//!
//! - The builder checks everything ggml's builder asserts (shapes, sizes,
//!   the bounds of the views it makes, room in the context) with the guard
//!   functions below, then calls ggml. Nothing is computed yet.
//! - The kernel contract (`Contract`) says what a backend's kernels need
//!   of a node of that op: type combinations and layouts. ggml's CPU backend
//!   answers `supports_op` optimistically (its kernels then abort on type
//!   pairs they lack), so the contract is checked node by node when a graph
//!   is computed, against the backend computing it (`check_node`).
//!
//! Adding an op is writing its builder and one `Contract`, and listing the
//! contract in `CONTRACTS`.
//!
//! - [`arith`], element-wise `add`, `sub`, `mul`, `div` with broadcasting, `scale`;
//! - [`matmul`], `mul_mat`;
//! - [`layout`], `view`, `reshape`, `permute`, `transpose`, `cont`, `cpy`.

use std::sync::OnceLock;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::shape;
use crate::size::{self, Ne};
use crate::tensor::Tensor;
use crate::types::Type;

/// What the kernels of a backend need of a node: `Ok`, or what they lack.
pub(crate) type KernelCheck = fn(&Tensor<'_>) -> std::result::Result<(), &'static str>;

/// One op's kernel contract.
pub(crate) struct Contract {
    /// ggml's op (`GGML_OP_*`).
    pub op: ggml_sys::ggml_op,
    /// Name in errors.
    pub name: &'static str,
    /// The CPU backend's kernels: type combinations and layouts they implement.
    pub cpu: KernelCheck,
}

/// Declares an op's contract: `contract!(NAME: GGML_OP_X, "name", cpu_check);`.
macro_rules! contract {
    ($name:ident: $op:ident, $label:literal, $cpu:expr) => {
        #[doc = concat!("`", $label, "`'s kernel contract.")]
        pub(crate) const $name: crate::ops::Contract = crate::ops::Contract {
            op: ggml_sys::$op,
            name: $label,
            cpu: $cpu,
        };
    };
}

pub mod arith;
pub mod layout;
pub mod matmul;

/// Every op the crate builds. Nodes of other ops (made through raw calls)
/// are refused when computed.
const CONTRACTS: &[&Contract] = &[
    &arith::ADD,
    &arith::SUB,
    &arith::MUL,
    &arith::DIV,
    &arith::SCALE,
    &matmul::MUL_MAT,
    &layout::VIEW,
    &layout::RESHAPE,
    &layout::PERMUTE,
    &layout::TRANSPOSE,
    &layout::CONT,
    &layout::CPY,
];

/// The contract of `op`, from a table indexed by op.
fn contract(op: ggml_sys::ggml_op) -> Option<&'static Contract> {
    const OPS: usize = ggml_sys::GGML_OP_COUNT as usize;
    static TABLE: OnceLock<[Option<&'static Contract>; OPS]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [None; OPS];
        for &c in CONTRACTS {
            table[c.op as usize] = Some(c);
        }
        table
    });
    table.get(op as usize).copied().flatten()
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
    let Some(contract) = contract(op) else {
        return Err(unsupported("?", "this crate has no contract for the op"));
    };
    let check = match backend {
        Kernels::Cpu => contract.cpu,
    };
    check(node).map_err(|reason| unsupported(contract.name, reason))
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
    if let Some(c) = contract(op) {
        return c.name;
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
