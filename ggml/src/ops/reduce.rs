//! Reductions: `sum` (of everything), `sum_rows`, `mean` (of each row),
//! `argmax` (of each row), `cumsum` (along rows), `count_equal`.
//!
//! The family's rules: results are new tensors; the CPU reads rows with
//! dense values (`nb[0]` one element) at any row strides and counts a row's
//! values in `int`. Types: `sum` f32, f16, bf16 (result of the same type);
//! the others f32 (`count_equal`: i32, result i64).
//!
//! Sorting: `argsort` (a NaN would break `std::sort`'s ordering, which may
//! then read out of bounds: its input is checked before every computation,
//! see [`super::contents`]) and `top_k` (a heap selection, in bounds
//! whatever the values). The CPU sorts f32 rows.

use crate::error::Result;
use crate::ops::{fits_int, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// ggml's builder of a one-operand reduction.
type ReduceFn = unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
) -> *mut ggml_sys::ggml_tensor;

/// Declares a one-operand reduction: its [`Decl`] from its name, op,
/// ggml builder, result type and shape, CPU contract and backward rule.
macro_rules! reduce_decl {
    ($name:literal, $op:ident, $f:ident, $cpu:expr, $bw:literal) => {
        Decl {
            name: $name,
            family: Family::Reduce,
            builders: &[stringify!($f)],
            op: ggml_sys::$op,
            arity: 1,
            cpu: $cpu,
            backward: $bw,
            build: |d, t, _| reduce(d.name, ggml_sys::$f, t[0]),
            // SAFETY: none (the fuzzer's raw direction).
            raw: |_, ctx, t, _| unsafe { ggml_sys::$f(ctx, t[0]) },
            ..BASE
        }
    };
}

/// The reductions' declarations.
pub(crate) const DECLS: &[Decl] = &[
    reduce_decl!("sum", GGML_OP_SUM, ggml_sum, cpu_sum, true),
    reduce_decl!(
        "sum_rows",
        GGML_OP_SUM_ROWS,
        ggml_sum_rows,
        cpu_rows_f32,
        true
    ),
    reduce_decl!("mean", GGML_OP_MEAN, ggml_mean, cpu_rows_f32, true),
    reduce_decl!("argmax", GGML_OP_ARGMAX, ggml_argmax, cpu_rows_f32, false),
    reduce_decl!("cumsum", GGML_OP_CUMSUM, ggml_cumsum, cpu_rows_f32, false),
    Decl {
        name: "argsort",
        family: Family::Reduce,
        builders: &["ggml_argsort", "ggml_argsort_top_k"],
        op: ggml_sys::GGML_OP_ARGSORT,
        arity: 1,
        cpu: cpu_sort,
        build: |_, t, p| {
            t[0].argsort(if p.flag(1) {
                SortOrder::Descending
            } else {
                SortOrder::Ascending
            })
        },
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_argsort(ctx, t[0], u32::from(p.flag(1))) },
        ..BASE
    },
    Decl {
        name: "top_k",
        family: Family::Reduce,
        builders: &["ggml_top_k"],
        op: ggml_sys::GGML_OP_TOP_K,
        arity: 1,
        cpu: cpu_sort,
        build: |_, t, p| t[0].top_k(p.i[0]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, p| unsafe { ggml_sys::ggml_top_k(ctx, t[0], p.i[0] as i32) },
        ..BASE
    },
    Decl {
        name: "count_equal",
        family: Family::Reduce,
        builders: &["ggml_count_equal"],
        op: ggml_sys::GGML_OP_COUNT_EQUAL,
        arity: 2,
        cpu: cpu_count_equal,
        build: |_, t, _| t[0].count_equal(t[1]),
        // SAFETY: none (the fuzzer's raw direction).
        raw: |_, ctx, t, _| unsafe { ggml_sys::ggml_count_equal(ctx, t[0], t[1]) },
        ..BASE
    },
];

/// The result type and `ne` of reduction `name` of `a`.
fn result_of(name: &str, a: &Tensor<'_>) -> (Type, [i64; 4]) {
    let ne = a.ne();
    match name {
        "sum" => (a.ty(), [1, 1, 1, 1]),
        "sum_rows" => (a.ty(), [1, ne[1], ne[2], ne[3]]),
        "mean" => (Type::F32, [1, ne[1], ne[2], ne[3]]),
        "argmax" => (Type::I32, [ne[1], 1, 1, 1]),
        _ => (a.ty(), ne), // cumsum
    }
}

/// Builds a one-operand reduction, checking what its ggml builder asserts.
fn reduce<'a>(name: &'static str, f: ReduceFn, a: Tensor<'a>) -> Result<Tensor<'a>> {
    let operands = [a];
    let rules = Rules::new(name, &operands)?;
    let ne = a.ne();
    match name {
        "argmax" => {
            rules.require(ne[2] == 1 && ne[3] == 1, || {
                "ggml takes the argmax of the rows of a matrix (ne[2] = ne[3] = 1)".into()
            })?;
            rules.require(fits_int(ne[0]), || {
                "ggml's indices are i32: rows of at most i32::MAX values".into()
            })?;
        }
        "cumsum" => rules.require(a.ty() == Type::F32, || "ggml sums f32 values".into())?,
        _ => {}
    }
    let (ty, out) = result_of(name, &a);
    rules.reserve_result(ty, &out, None)?;
    // SAFETY: a live tensor meeting the builder's assertions; room for the
    // result reserved.
    rules.wrap(unsafe { f(rules.context().as_ptr(), a.as_ptr()) })
}

impl<'ctx> Tensor<'ctx> {
    /// The sum of every element: a tensor of one element, of this tensor's
    /// type (on the CPU: f32, summed in f64; f16 and bf16, summed in f32).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory), or a type the
    /// backend lacks, refused when computed.
    pub fn sum(self) -> Result<Tensor<'ctx>> {
        reduce("sum", ggml_sys::ggml_sum, self)
    }

    /// The sum of each row (ggml's dimension 0): `ne = [1, ne1, ne2, ne3]`,
    /// this tensor's type (the CPU sums f32 rows, in f64).
    ///
    /// # Errors
    /// As [`Tensor::sum`].
    pub fn sum_rows(self) -> Result<Tensor<'ctx>> {
        reduce("sum_rows", ggml_sys::ggml_sum_rows, self)
    }

    /// The mean of each row: f32, `ne = [1, ne1, ne2, ne3]` (the CPU takes
    /// f32 rows; a row of no values gives NaN).
    ///
    /// # Errors
    /// As [`Tensor::sum`].
    pub fn mean(self) -> Result<Tensor<'ctx>> {
        reduce("mean", ggml_sys::ggml_mean, self)
    }

    /// The index of the largest value of each row of a matrix: i32,
    /// `ne = [ne1]`. Of equal values the last wins; a NaN restarts the
    /// search after it (the CPU takes f32 rows).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for more than two dimensions or rows
    /// longer than `i32::MAX`; as [`Tensor::sum`].
    pub fn argmax(self) -> Result<Tensor<'ctx>> {
        reduce("argmax", ggml_sys::ggml_argmax, self)
    }

    /// The running sum along each row (inclusive, in f32).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for a type other than f32; as
    /// [`Tensor::sum`].
    pub fn cumsum(self) -> Result<Tensor<'ctx>> {
        reduce("cumsum", ggml_sys::ggml_cumsum, self)
    }

    /// How many elements of this tensor equal those of `b`: an i64 tensor
    /// of one element. Both i32 matrices of one shape (ggml's kernel
    /// indexes higher dimensions wrongly: refused).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for shapes that differ or have more
    /// than two dimensions; types other than i32 are refused when computed.
    pub fn count_equal(self, b: Tensor<'ctx>) -> Result<Tensor<'ctx>> {
        let operands = [self, b];
        let rules = Rules::new("count_equal", &operands)?;
        rules.require(self.ne() == b.ne(), || {
            "the operands must have one shape".into()
        })?;
        rules.require(self.ne()[2] == 1 && self.ne()[3] == 1, || {
            "ggml's kernel counts matrices only (ne[2] = ne[3] = 1)".into()
        })?;
        rules.reserve_result(Type::I64, &[1, 1, 1, 1], None)?;
        // SAFETY: live tensors of one shape (the builder's assertion); room
        // reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_count_equal(rules.context().as_ptr(), self.as_ptr(), b.as_ptr())
        })
    }
}

/// The order of [`Tensor::argsort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Smallest first.
    Ascending,
    /// Largest first.
    Descending,
}

impl<'ctx> Tensor<'ctx> {
    /// The indices that sort each row (i32, this tensor's shape). The
    /// values are checked for NaN before every computation and must be a
    /// graph input (see [`super::contents`]); ties in no particular order.
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for rows longer than `i32::MAX`;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). On the CPU: f32
    /// rows of whole matrices at one stride.
    pub fn argsort(self, order: SortOrder) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("argsort", &operands)?;
        rules.require(fits_int(self.ne()[0]), || {
            "rows of at most i32::MAX values".into()
        })?;
        rules.reserve_result(Type::I32, &self.ne(), None)?;
        let order = match order {
            SortOrder::Ascending => ggml_sys::GGML_SORT_ORDER_ASC,
            SortOrder::Descending => ggml_sys::GGML_SORT_ORDER_DESC,
        };
        // SAFETY: a live tensor with rows within i32 (the builder's
        // assertion); room reserved.
        rules
            .wrap(unsafe { ggml_sys::ggml_argsort(rules.context().as_ptr(), self.as_ptr(), order) })
    }

    /// The indices of the `k` largest values of each row, largest first: a
    /// view of [`Tensor::argsort`] (descending), whose input rule applies.
    ///
    /// # Errors
    /// As [`Tensor::top_k`].
    pub fn argsort_top_k(self, k: i64) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("argsort", &operands)?;
        let ne = self.ne();
        rules.require((0..=ne[0]).contains(&k) && fits_int(ne[0]), || {
            format!("k {k} must be 0 to the row length {}", ne[0])
        })?;
        rules.reserve_result(Type::I32, &ne, None)?;
        rules.context().reserve_view("argsort_top_k")?;
        // SAFETY: a live tensor, 0 ≤ k ≤ ne[0] (the builder's assertion);
        // room for the sort and its view reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_argsort_top_k(rules.context().as_ptr(), self.as_ptr(), k as i32)
        })
    }

    /// The indices of the `k` largest values of each row, in no particular
    /// order (i32, `ne = [k, ne1, ne2, ne3]`).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) unless `0 ≤ k ≤` the row length;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory). On the CPU: f32.
    pub fn top_k(self, k: i64) -> Result<Tensor<'ctx>> {
        let operands = [self];
        let rules = Rules::new("top_k", &operands)?;
        let ne = self.ne();
        rules.require((0..=ne[0]).contains(&k) && fits_int(ne[0]), || {
            format!("k {k} must be 0 to the row length {}", ne[0])
        })?;
        rules.reserve_result(Type::I32, &[k, ne[1], ne[2], ne[3]], None)?;
        // SAFETY: a live tensor, 0 ≤ k ≤ ne[0] (the builder's assertion and
        // a non-negative size); room reserved.
        rules.wrap(unsafe {
            ggml_sys::ggml_top_k(rules.context().as_ptr(), self.as_ptr(), k as i32)
        })
    }
}

/// The CPU's sorts: f32 rows of dense values reached at one row stride
/// (`i·nb[1]`), an i32 result with dense rows.
fn cpu_sort(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F32 || node.ty() != Type::I32 {
        return Err("the CPU sorts f32 rows into i32 indices");
    }
    if !a.rows_are_dense() || !crate::ops::glu::rows_at_one_stride(&a) || !node.rows_are_dense() {
        return Err("the CPU reads rows at one stride (row i at i·nb[1])");
    }
    if !crate::ops::glu::rows_at_one_stride(node) {
        return Err("the result's rows at one stride");
    }
    Ok(())
}

/// Rows of dense values and a row length within `int`.
fn rows_ok(t: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    if !t.rows_are_dense() {
        return Err("the CPU reads rows of dense values (nb[0] one element)");
    }
    if !fits_int(t.ne()[0]) {
        return Err("the CPU counts a row's values in int: at most i32::MAX");
    }
    Ok(())
}

/// CPU kernel of `sum`: f32, f16 or bf16, result of the same type.
fn cpu_sum(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if !matches!(a.ty(), Type::F32 | Type::F16 | Type::BF16) || node.ty() != a.ty() {
        return Err("the CPU sums f32, f16 and bf16 into the same type");
    }
    if node.len() != 1 {
        return Err("the result must be one element");
    }
    rows_ok(&a)
}

/// CPU kernels of `sum_rows`, `mean`, `argmax`, `cumsum`: f32 rows, the
/// result of the op's type and shape, dense on both sides.
fn cpu_rows_f32(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a] = crate::ops::sources::<1>(node)?;
    if a.ty() != Type::F32 {
        return Err("the CPU's kernel takes f32 rows");
    }
    let name = crate::ops::op_name(node.op());
    let (ty, ne) = result_of(name, &a);
    let ty = if name == "sum_rows" { Type::F32 } else { ty };
    if node.ty() != ty || node.ne() != ne {
        return Err("the result must have the op's type and shape");
    }
    rows_ok(&a)?;
    if !node.rows_are_dense() {
        return Err("the result's values must be dense");
    }
    Ok(())
}

/// CPU kernel of `count_equal`: i32 matrices of one shape, an i64 scalar.
fn cpu_count_equal(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    if a.ty() != Type::I32 || b.ty() != Type::I32 || node.ty() != Type::I64 {
        return Err("the CPU counts equal i32 values into an i64");
    }
    if a.ne() != b.ne() || a.ne()[2] != 1 || a.ne()[3] != 1 || node.len() != 1 {
        return Err("the CPU counts matrices of one shape (ne[2] = ne[3] = 1)");
    }
    rows_ok(&a)?;
    rows_ok(&b)
}
