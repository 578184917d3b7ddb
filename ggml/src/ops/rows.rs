//! Row gathers and scatters: `get_rows` (rows of a matrix picked by an index
//! tensor: the embedding lookup of every language model) and `set_rows`
//! (rows written at indices: a KV cache's update).
//!
//! Indices are data: ggml's CPU kernel aborts on one outside the matrix,
//! and no shape rule can see them. So before every computation of a graph
//! with such a node the indices are read and checked (they are small); an
//! index out of range is [`Error::Op`](crate::Error::Op) naming it. That
//! needs the indices to be known before the graph runs: they must be a graph
//! input (a tensor no node of the graph computes or writes, or a view of
//! one). Indices computed inside the graph are refused when computed
//! ([`Error::UnsupportedNode`](crate::Error::UnsupportedNode)), never
//! handed to ggml unchecked.

use std::ptr::NonNull;

use crate::error::Result;
use crate::ops::{fits_int, op_error, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// The declarations.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "get_rows",
        family: Family::Rows,
        builders: &["ggml_get_rows"],
        op: ggml_sys::GGML_OP_GET_ROWS,
        arity: 2,
        cpu: cpu_get_rows,
        backward: true,
        build: |_, t, _| t[0].get_rows(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_get_rows(ctx, t[0], t[1]) },
        ..BASE
    },
    Decl {
        name: "set_rows",
        family: Family::Rows,
        builders: &["ggml_set_rows"],
        op: ggml_sys::GGML_OP_SET_ROWS,
        arity: 3,
        cpu: cpu_set_rows,
        build: |_, t, _| t[0].set_rows(t[1], t[2]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_set_rows(ctx, t[0], t[1], t[2]) },
        ..BASE
    },
];

impl<'ctx> Tensor<'ctx> {
    /// The rows of this tensor that the i32 `indices` pick: for this tensor
    /// with `ne = [n, rows, a2, a3]` and indices with `ne = [k, a2, a3]`,
    /// an f32 result (i32 for an i32 tensor) with `ne = [n, k, a2, a3]`
    /// whose row `(j, i2, i3)` is row `indices[j, i2, i3]` of matrix
    /// `(i2, i3)`. Quantized rows are dequantized.
    ///
    /// The indices are checked before every computation (see the module
    /// docs): they must lie in `0..rows` and be a graph input.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when the shapes do not match or the
    /// indices are not i32; [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn get_rows(self, indices: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, indices];
        let rules = Rules::new("get_rows", &operands)?;
        let (na, nb) = (self.ne(), indices.ne());
        rules.require(indices.ty() == Type::I32, || {
            "the indices must be i32".into()
        })?;
        rules.require(na[2] == nb[1] && na[3] == nb[2] && nb[3] == 1, || {
            "the indices' ne[1], ne[2] must be the tensor's ne[2], ne[3] (and their ne[3] 1)".into()
        })?;
        let ty = if self.ty() == Type::I32 {
            Type::I32
        } else {
            Type::F32
        };
        rules.reserve_result(ty, &[na[0], nb[0], nb[1], nb[2]], None)?;
        // SAFETY: live tensors meeting ggml_get_rows' assertions; room for
        // the result reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_get_rows(rules.context().as_ptr(), self.as_ptr(), indices.as_ptr())
        })
    }
}

impl<'ctx> Tensor<'ctx> {
    /// Writes the rows of `rows` into this tensor at `indices` when
    /// computed, and returns this tensor (a view of it) as the node: for
    /// this tensor `ne = [n, r, a2, a3]`, `rows` `ne = [n, k, a2, a3]` (f32
    /// or f16) and i32 or i64 `indices` `ne = [k, i2, i3]` with `i2`, `i3`
    /// dividing `a2`, `a3`, row `j` of matrix `(i2, i3)` of `rows` goes to
    /// row `indices[j, i2 % i2, i3 % i3]`, converted (quantized) to this
    /// tensor's type. Later writes of one index win.
    ///
    /// The indices are checked before every computation as
    /// [`Tensor::get_rows`]' are (in `0..r`, a graph input).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) when the shapes or types do not
    /// match, the rows are not dense, or this tensor overlaps itself;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn set_rows(self, rows: Tensor<'ctx>, indices: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, rows, indices];
        let rules = Rules::new("set_rows", &operands)?;
        let (na, nb, nc) = (self.ne(), rows.ne(), indices.ne());
        rules.require(matches!(rows.ty(), Type::F32 | Type::F16), || {
            "the rows must be f32 or f16".into()
        })?;
        rules.require(matches!(indices.ty(), Type::I32 | Type::I64), || {
            "the indices must be i32 or i64".into()
        })?;
        rules.require(
            na[0] == nb[0] && na[2] == nb[2] && na[3] == nb[3] && nb[1] == nc[0] && nc[3] == 1,
            || "rows must match the tensor but in ne[1], one index per row".into(),
        )?;
        rules.require(
            nc[1] >= 1 && nc[2] >= 1 && nb[2] % nc[1] == 0 && nb[3] % nc[2] == 0,
            || "the indices' ne[1], ne[2] must divide the rows' ne[2], ne[3]".into(),
        )?;
        rules.require(
            crate::ops::unary::ggml_rows_dense(&self) && crate::ops::unary::ggml_rows_dense(&rows),
            || "ggml needs dense rows".into(),
        )?;
        rules.reserve_result(self.ty(), &na, Some(&self))?;
        // SAFETY: live tensors meeting ggml_set_rows' assertions; room for
        // the view reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_set_rows(
                rules.context().as_ptr(),
                self.as_ptr(),
                rows.as_ptr(),
                indices.as_ptr(),
            )
        })
    }
}

/// The CPU's `set_rows`: f32 or f16 rows into a tensor of a type the CPU
/// converts f32 to (f32, f16, bf16, the quantized types with a quantizer),
/// dense rows on both sides.
fn cpu_set_rows(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [rows, idx, dst] = crate::ops::sources::<3>(node)?;
    let td = node.ty();
    let converts =
        matches!(td, Type::F32 | Type::F16 | Type::BF16) || crate::ops::cpu_can_quantize_to(td);
    if !matches!(rows.ty(), Type::F32 | Type::F16) || !converts || dst.ty() != td {
        return Err("the CPU writes f32 or f16 rows into f32, f16, bf16 or a type it quantizes to");
    }
    if !matches!(idx.ty(), Type::I32 | Type::I64) {
        return Err("i32 or i64 indices");
    }
    if !rows.rows_are_dense() || !node.rows_are_dense() {
        return Err("the CPU needs dense rows");
    }
    Ok(())
}

/// The CPU's `get_rows` kernels: the row types they have (float types,
/// i32, and the quantized types with a CPU dequantizer), dense rows, an f32
/// (i32) result of the op's shape, at most `i32::MAX` indices.
fn cpu_get_rows(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let ta = a.ty();
    let kernel = matches!(ta, Type::F32 | Type::I32 | Type::F16 | Type::BF16)
        || (ta.is_quantized() && ta.can_dequantize() && !matches!(ta, Type::Q8_K));
    if !kernel {
        return Err(
            "the CPU gathers rows of f32, f16, bf16, i32 and quantized types with a dequantizer",
        );
    }
    let want = if ta == Type::I32 {
        Type::I32
    } else {
        Type::F32
    };
    let (na, nb) = (a.ne(), b.ne());
    if b.ty() != Type::I32 || node.ty() != want || node.ne() != [na[0], nb[0], nb[1], nb[2]] {
        return Err("i32 indices and an f32 (i32) result of the op's shape");
    }
    if !a.rows_are_dense() || !node.rows_are_dense() {
        return Err("the CPU copies rows of dense values");
    }
    if !fits_int(b.len() as i64) {
        return Err("the CPU counts indices in int: at most i32::MAX");
    }
    Ok(())
}

/// The index bound of a node whose op reads indices: the source holding
/// them and the exclusive upper bound.
fn index_source(node: &Tensor<'_>) -> Option<(usize, i64)> {
    match node.op() {
        ggml_sys::GGML_OP_GET_ROWS => Some((1, node.src(0)?.ne()[1])),
        ggml_sys::GGML_OP_SET_ROWS => Some((1, node.ne()[1])),
        _ => None,
    }
}

/// A node of a graph whose indices are checked before each computation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexCheck {
    node: NonNull<ggml_sys::ggml_tensor>,
    /// Why the indices cannot be checked (computed in the graph), if so.
    problem: Option<&'static str>,
}

/// Whether `op` only reinterprets memory.
fn is_view_op(op: ggml_sys::ggml_op) -> bool {
    matches!(
        op,
        ggml_sys::GGML_OP_NONE
            | ggml_sys::GGML_OP_VIEW
            | ggml_sys::GGML_OP_RESHAPE
            | ggml_sys::GGML_OP_PERMUTE
            | ggml_sys::GGML_OP_TRANSPOSE
    )
}

/// The index checks of a graph's tensors (`order`, all of the graph's
/// tensors): empty for graphs without index-reading ops.
pub(crate) fn plan_index_checks(
    ctx: &crate::Context,
    order: &[*mut ggml_sys::ggml_tensor],
) -> Vec<IndexCheck> {
    let reads_indices = |t: *mut ggml_sys::ggml_tensor| {
        // SAFETY: a live tensor of the graph being built; a field read.
        unsafe {
            matches!(
                (*t).op,
                ggml_sys::GGML_OP_GET_ROWS | ggml_sys::GGML_OP_SET_ROWS
            )
        }
    };
    if !order.iter().any(|&t| reads_indices(t)) {
        return Vec::new();
    }
    let order: Vec<Tensor<'_>> = order
        .iter()
        .filter_map(|&t| NonNull::new(t))
        .map(|t| Tensor::from_made(ctx, t))
        .collect();
    let readers: Vec<&Tensor<'_>> = order.iter().filter(|t| index_source(t).is_some()).collect();
    // Memory the graph writes: that of every node that computes.
    let written: std::collections::HashSet<*mut ggml_sys::ggml_tensor> = order
        .iter()
        .filter(|t| !is_view_op(t.op()))
        .map(|t| t.memory_root().0.as_ptr())
        .collect();
    readers
        .into_iter()
        .map(|node| {
            let (src, _) = index_source(node).expect("filtered above");
            let problem = match node.src(src) {
                None => Some("a source is missing"),
                Some(idx) => {
                    let mut t = idx;
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
                    let root = idx.memory_root().0;
                    (computed || root.op() != ggml_sys::GGML_OP_NONE || written.contains(&root.as_ptr()))
                        .then_some("its indices are computed or written in the graph: they must be a graph input, to be checked before computing")
                }
            };
            IndexCheck {
                // SAFETY: not null: a tensor of the graph.
                node: unsafe { NonNull::new_unchecked(node.as_ptr()) },
                problem,
            }
        })
        .collect()
}

/// Runs `checks` on the tensors of `ctx` (pinned by the caller, who holds
/// the data token: nothing writes the indices meanwhile).
///
/// # Errors
/// [`Error::UnsupportedNode`](crate::Error::UnsupportedNode) for indices
/// computed in the graph; [`Error::Op`](crate::Error::Op) naming an index
/// out of range.
pub(crate) fn check_indices(ctx: &crate::Context, checks: &[IndexCheck]) -> Result<()> {
    for check in checks {
        let node = Tensor::from_made(ctx, check.node);
        let (src, bound) = index_source(&node).expect("planned for index readers");
        if let Some(reason) = check.problem {
            return Err(crate::Error::UnsupportedNode {
                node: node.name(),
                op: crate::ops::op_name(node.op()),
                types: crate::ops::node_types(&node),
                backend: "any backend".into(),
                reason,
            });
        }
        let idx = node.src(src).expect("checked when planned");
        let values = read_indices(&idx)?;
        if let Some((at, &v)) = values
            .iter()
            .enumerate()
            .find(|(_, &v)| v < 0 || v >= bound)
        {
            let operands = (0..ggml_sys::GGML_MAX_SRC as usize)
                .map_while(|i| node.src(i))
                .map(|t| t.operand())
                .collect();
            return Err(op_error(
                crate::ops::op_name(node.op()),
                operands,
                format!(
                    "index {v} (element {at} of '{}') is outside 0..{bound}",
                    idx.name()
                ),
            ));
        }
    }
    Ok(())
}

/// The i32 or i64 values of `t` in ggml's order (any strides), wherever
/// they are.
fn read_indices(t: &Tensor<'_>) -> Result<Vec<i64>> {
    let wide = t.ty() == Type::I64;
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
        // SAFETY: a tensor allocated in a live backend buffer (pinned by
        // the caller), `span` its byte size; no computation uses it (the
        // caller holds the data token).
        unsafe { crate::raw::tensor_get(t.as_ptr(), bytes.as_mut_ptr().cast(), span) };
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
                    out.push(unsafe {
                        if wide {
                            base.add(off).cast::<i64>().read_unaligned()
                        } else {
                            i64::from(base.add(off).cast::<i32>().read_unaligned())
                        }
                    });
                }
            }
        }
    }
    Ok(out)
}
