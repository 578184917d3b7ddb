//! Preconditions on tensor contents, which no shape rule can see: the
//! indices of `get_rows`, `get_rows_back`, `set_rows`, `mul_mat_id`,
//! `add_id` and `ssm_scan` (ggml aborts, or reads or
//! writes out of bounds, on one out of range) and the values `argsort`
//! sorts (a NaN breaks the ordering `std::sort` relies on, which may then
//! read out of bounds).
//!
//! When a graph is built, the nodes with such a rule are listed. Before
//! every computation (direct, asynchronous or scheduled; the memory pinned
//! and the data token held, so nothing writes meanwhile) their operands are
//! read (they are small) and checked; a value breaking the rule is
//! [`Error::Op`](crate::Error::Op) naming it. That needs the values to be
//! known before the graph runs: the operand must be a graph input (a tensor
//! no node of the graph computes or writes, or a view of one). Operands
//! computed inside the graph are refused when computed
//! ([`Error::UnsupportedNode`](crate::Error::UnsupportedNode)), never handed
//! to ggml unchecked.

use std::ptr::NonNull;

use crate::error::Result;
use crate::ops::op_error;
use crate::tensor::Tensor;
use crate::types::Type;

/// What the values of an operand must be.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Indices in `0..bound`.
    Below(i64),
    /// No NaN.
    NotNan,
}

/// The content rule of a node: the source it applies to and the rule.
fn rule_of(node: &Tensor<'_>) -> Option<(usize, Rule)> {
    match node.op() {
        ggml_sys::GGML_OP_GET_ROWS => Some((1, Rule::Below(node.src(0)?.ne()[1]))),
        ggml_sys::GGML_OP_SET_ROWS => Some((1, Rule::Below(node.ne()[1]))),
        ggml_sys::GGML_OP_MUL_MAT_ID => Some((2, Rule::Below(node.src(0)?.ne()[2]))),
        ggml_sys::GGML_OP_ARGSORT => Some((0, Rule::NotNan)),
        ggml_sys::GGML_OP_ADD_ID => Some((2, Rule::Below(node.src(1)?.ne()[1]))),
        ggml_sys::GGML_OP_GET_ROWS_BACK => Some((1, Rule::Below(node.ne()[1]))),
        // The states each sequence starts from (`ids` into `s`'s ne[3]).
        ggml_sys::GGML_OP_SSM_SCAN => Some((6, Rule::Below(node.src(0)?.ne()[3]))),
        _ => None,
    }
}

/// Whether `op` may have a content rule (a field read, for the fast path).
pub(crate) fn has_rule(op: ggml_sys::ggml_op) -> bool {
    matches!(
        op,
        ggml_sys::GGML_OP_GET_ROWS
            | ggml_sys::GGML_OP_SET_ROWS
            | ggml_sys::GGML_OP_MUL_MAT_ID
            | ggml_sys::GGML_OP_ARGSORT
            | ggml_sys::GGML_OP_ADD_ID
            | ggml_sys::GGML_OP_GET_ROWS_BACK
            | ggml_sys::GGML_OP_SSM_SCAN
    )
}

/// A node of a graph whose operand is checked before each computation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContentCheck {
    node: NonNull<ggml_sys::ggml_tensor>,
    /// Why the operand cannot be checked (computed in the graph), if so.
    problem: Option<&'static str>,
}

/// Whether `op` only reinterprets memory (a leaf, or a view of one).
pub(crate) fn is_view_op(op: ggml_sys::ggml_op) -> bool {
    matches!(
        op,
        ggml_sys::GGML_OP_NONE
            | ggml_sys::GGML_OP_VIEW
            | ggml_sys::GGML_OP_RESHAPE
            | ggml_sys::GGML_OP_PERMUTE
            | ggml_sys::GGML_OP_TRANSPOSE
    )
}

/// The content checks of a graph's tensors (`order`: all of them): empty
/// for graphs without such ops.
pub(crate) fn plan(
    ctx: &crate::Context,
    order: &[*mut ggml_sys::ggml_tensor],
) -> Vec<ContentCheck> {
    let ruled = |t: *mut ggml_sys::ggml_tensor| {
        // SAFETY: a live tensor of the graph being built; a field read.
        has_rule(unsafe { (*t).op })
    };
    if !order.iter().any(|&t| ruled(t)) {
        return Vec::new();
    }
    let order: Vec<Tensor<'_>> = order
        .iter()
        .filter_map(|&t| NonNull::new(t))
        .map(|t| Tensor::from_made(ctx, t))
        .collect();
    // Memory the graph writes: that of every node that computes.
    let written: std::collections::HashSet<*mut ggml_sys::ggml_tensor> = order
        .iter()
        .filter(|t| !is_view_op(t.op()))
        .map(|t| t.memory_root().0.as_ptr())
        .collect();
    order
        .iter()
        .filter_map(|node| Some((node, rule_of(node)?)))
        .map(|(node, (src, _))| {
            let problem = match node.src(src) {
                None => Some("a source is missing"),
                Some(operand) => {
                    let mut t = operand;
                    let mut computed = false;
                    while t.op() != ggml_sys::GGML_OP_NONE {
                        if !is_view_op(t.op()) {
                            computed = true;
                            break;
                        }
                        match t.src(0) {
                            Some(s) => t = s,
                            None => break,
                        }
                    }
                    let root = operand.memory_root().0;
                    (computed || root.op() != ggml_sys::GGML_OP_NONE || written.contains(&root.as_ptr()))
                        .then_some("the values it checks before computing (indices, or values to sort) are computed or written in the graph: they must be a graph input")
                }
            };
            ContentCheck {
                // SAFETY: not null: a tensor of the graph.
                node: unsafe { NonNull::new_unchecked(node.as_ptr()) },
                problem,
            }
        })
        .collect()
}

/// Runs `checks` on the tensors of `ctx` (pinned by the caller, who holds
/// the data token: nothing writes them meanwhile).
///
/// # Errors
/// [`Error::UnsupportedNode`](crate::Error::UnsupportedNode) for operands
/// computed in the graph; [`Error::Op`](crate::Error::Op) naming a value
/// that breaks the rule.
pub(crate) fn check(ctx: &crate::Context, checks: &[ContentCheck]) -> Result<()> {
    for check in checks {
        let node = Tensor::from_made(ctx, check.node);
        let (src, rule) = rule_of(&node).expect("planned for ruled nodes");
        if let Some(reason) = check.problem {
            return Err(crate::Error::UnsupportedNode {
                node: node.name(),
                op: crate::ops::op_name(node.op()),
                types: crate::ops::node_types(&node),
                backend: "any backend".into(),
                reason,
            });
        }
        let operand = node.src(src).expect("checked when planned");
        let broken = match rule {
            Rule::Below(bound) => read_values(&operand)?
                .iter()
                .enumerate()
                .find(|(_, v)| !(0.0..bound as f64).contains(*v))
                .map(|(at, &v)| {
                    format!(
                        "index {v} (element {at} of '{}') is outside 0..{bound}",
                        operand.name()
                    )
                }),
            Rule::NotNan => read_values(&operand)?
                .iter()
                .position(|v| v.is_nan())
                .map(|at| {
                    format!(
                        "element {at} of '{}' is NaN, which ggml cannot sort",
                        operand.name()
                    )
                }),
        };
        if let Some(rule) = broken {
            let operands = (0..ggml_sys::GGML_MAX_SRC as usize)
                .map_while(|i| node.src(i))
                .map(|t| t.operand())
                .collect();
            return Err(op_error(crate::ops::op_name(node.op()), operands, rule));
        }
    }
    Ok(())
}

/// The values of an i32, i64 or f32 tensor as f64 (exact for i32, f32 and
/// indices up to 2^53), in ggml's order (any strides), wherever they are.
fn read_values(t: &Tensor<'_>) -> Result<Vec<f64>> {
    let ty = t.ty();
    let ne = t.ne();
    let nb = t.nb();
    let n = t.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let span = t.nbytes();
    let host;
    let base: *const u8 = if t.has_host_data() {
        t.data_ptr()
    } else {
        let (root, _) = t.memory_root();
        if root.data_ptr().is_null() {
            return Err(crate::Error::NoData { name: t.name() });
        }
        let mut bytes = vec![0u8; span];
        crate::error::rpc::guard(|| {
            // SAFETY: a tensor allocated in a live backend buffer (pinned by
            // the caller), `span` its byte size; no computation uses it (the
            // caller holds the data token).
            unsafe { crate::raw::tensor_get(t.as_ptr(), bytes.as_mut_ptr().cast(), span) };
            Ok(())
        })?;
        host = bytes;
        host.as_ptr()
    };
    let mut out = Vec::with_capacity(n);
    for i3 in 0..ne[3] as usize {
        for i2 in 0..ne[2] as usize {
            for i1 in 0..ne[1] as usize {
                for i0 in 0..ne[0] as usize {
                    let off = i0 * nb[0] + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
                    // SAFETY: inside the tensor's span (its strides and shape
                    // were checked when it was made), in memory the caller
                    // keeps alive and unwritten.
                    let p = unsafe { base.add(off) };
                    // SAFETY: as above; unaligned reads of the type's width.
                    out.push(unsafe {
                        match ty {
                            Type::I64 => p.cast::<i64>().read_unaligned() as f64,
                            Type::I32 => f64::from(p.cast::<i32>().read_unaligned()),
                            _ => f64::from(p.cast::<f32>().read_unaligned()),
                        }
                    });
                }
            }
        }
    }
    Ok(out)
}
