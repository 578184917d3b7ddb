//! `mul_mat_id` (mixture of experts), `out_prod`, `argsort`, `top_k`
//! against ndarray; expert ids and sorted values checked before computing.

use anyhow::Result;
use ggml::ndarray::{arr1, Array, Array2, Array3, ArrayD, IxDyn};
use ggml::ops::SortOrder;
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

#[test]
fn mixture_of_experts_products() -> Result<()> {
    // 4 experts [m=3, k=8]; 2 tokens using 2 experts each; one input row
    // per token (b1 = 1, broadcast over the used experts).
    let experts = Array3::from_shape_fn((4, 3, 8), |(e, i, j)| {
        ((e * 31 + i * 7 + j) as f32 * 0.13).sin()
    });
    let inputs = Array3::from_shape_fn((2, 1, 8), |(t, _, j)| ((t * 5 + j) as f32 * 0.29).cos());
    let ids = Array2::from_shape_vec((2, 2), vec![3i32, 0, 1, 3])?;
    let ctx = Context::new(1 << 20)?;
    let (te, ti, tid) = (
        ctx.tensor_from_array(&experts)?,
        ctx.tensor_from_array(&inputs)?,
        ctx.tensor_from_array(&ids)?,
    );
    let y = te.mul_mat_id(ti, tid)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    let want = ArrayD::from_shape_fn(IxDyn(&[2, 2, 3]), |d| {
        let (t, u, i) = (d[0], d[1], d[2]);
        let e = ids[[t, u]] as usize;
        (0..8).map(|j| experts[[e, i, j]] * inputs[[t, 0, j]]).sum()
    });
    assert_close(
        got,
        &want,
        Tol {
            abs: 1e-5,
            rel: 1e-5,
        },
        "mul_mat_id",
    )?;

    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    data.copy_from_array(tid, &Array2::from_shape_vec((2, 2), vec![3i32, 4, 1, 3])?)?;
    match crate::common::compute(&graph, &mut data) {
        Err(Error::Op(e)) => assert!(e.rule.contains("index 4"), "{}", e.rule),
        other => panic!("expert 4 of 4: expected Error::Op, got {other:?}"),
    }
    Ok(())
}

#[test]
fn outer_products() -> Result<()> {
    // a: n = 5 rows of m = 3; b: 5 rows of p = 4; result [p, m] (ndarray).
    let a = eval::input(&[5, 3], 91, 1.0);
    let b = eval::input(&[5, 4], 92, 1.0);
    let ctx = Context::new(1 << 20)?;
    let y = ctx
        .tensor_from_array(&a)?
        .out_prod(ctx.tensor_from_array(&b)?)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    let a2 = a.into_dimensionality::<ggml::ndarray::Ix2>()?;
    let b2 = b.into_dimensionality::<ggml::ndarray::Ix2>()?;
    let want = b2.t().dot(&a2).into_dyn();
    assert_close(
        got,
        &want,
        Tol {
            abs: 1e-5,
            rel: 1e-5,
        },
        "out_prod",
    )
}

#[test]
fn sorting_rows() -> Result<()> {
    let x = Array::from_shape_fn((3, 9), |(i, j)| ((i * 9 + j) as f32 * 1.7).sin());
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let (asc, desc, top, top_sorted) = (
        t.argsort(SortOrder::Ascending)?,
        t.argsort(SortOrder::Descending)?,
        t.top_k(3)?,
        t.argsort_top_k(3)?,
    );
    let got = eval::compute(&ctx, &[asc, desc, top, top_sorted])?;
    for (r, row) in x.outer_iter().enumerate() {
        let mut order: Vec<usize> = (0..9).collect();
        order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
        let asc_row: Vec<usize> = got[0]
            .index_axis(ggml::ndarray::Axis(0), r)
            .iter()
            .map(|&v| v as usize)
            .collect();
        assert_eq!(asc_row, order, "ascending row {r}");
        let desc_row: Vec<usize> = got[1]
            .index_axis(ggml::ndarray::Axis(0), r)
            .iter()
            .map(|&v| v as usize)
            .collect();
        assert_eq!(
            desc_row,
            order.iter().rev().copied().collect::<Vec<_>>(),
            "descending row {r}"
        );
        let mut top_row: Vec<usize> = got[2]
            .index_axis(ggml::ndarray::Axis(0), r)
            .iter()
            .map(|&v| v as usize)
            .collect();
        top_row.sort_unstable();
        let mut want_top: Vec<usize> = order[6..].to_vec();
        want_top.sort_unstable();
        assert_eq!(top_row, want_top, "top 3 of row {r}");
        let top_sorted_row: Vec<usize> = got[3]
            .index_axis(ggml::ndarray::Axis(0), r)
            .iter()
            .map(|&v| v as usize)
            .collect();
        assert_eq!(
            top_sorted_row,
            order.iter().rev().take(3).copied().collect::<Vec<_>>(),
            "argsort_top_k row {r}"
        );
    }
    assert!(matches!(t.top_k(10), Err(Error::Op(_))), "k past the row");
    assert!(matches!(t.top_k(-1), Err(Error::Op(_))), "negative k");
    Ok(())
}

#[test]
fn nan_values_are_not_sorted() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&arr1(&[1.0f32, f32::NAN, 0.5]))?;
    let y = t.argsort(SortOrder::Ascending)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    match crate::common::compute(&graph, &mut data) {
        Err(Error::Op(e)) => assert!(e.rule.contains("NaN"), "{}", e.rule),
        other => panic!("expected Error::Op, got {other:?}"),
    }
    drop(data);
    // Values the graph computes cannot be checked first: refused.
    let s = ctx.tensor_from_array(&arr1(&[1.0f32, 2.0, 3.0]))?;
    let y = s.exp()?.argsort(SortOrder::Descending)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::UnsupportedNode { op: "argsort", .. })
    ));
    // top_k needs no check: a heap selection stays in bounds.
    let y = t.exp()?.top_k(2)?;
    let graph = ctx.build_graph(&[y])?;
    crate::common::compute(&graph, &mut data)?;
    let _ = Type::F32;
    Ok(())
}

#[test]
fn triangular_solves() -> Result<()> {
    // A lower triangular 4×4 with a safe diagonal; B 4 rows of 3 columns
    // (ndarray [n, k] is ggml's [k, n]).
    let a = Array2::from_shape_fn((4, 4), |(i, j)| {
        if j > i {
            0.0f32
        } else if i == j {
            2.0 + i as f32
        } else {
            (i * 4 + j) as f32 * 0.1
        }
    });
    let b = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32 * 0.3 - 1.0);
    let ctx = Context::new(1 << 20)?;
    let x = ctx
        .tensor_from_array(&a)?
        .solve_tri(ctx.tensor_from_array(&b)?)?;
    let got = &eval::compute(&ctx, &[x])?[0];
    // Forward substitution in f64.
    let mut want = Array2::<f64>::zeros((4, 3));
    for c in 0..3 {
        for i in 0..4 {
            let sum: f64 = (0..i).map(|t| f64::from(a[[i, t]]) * want[[t, c]]).sum();
            want[[i, c]] = (f64::from(b[[i, c]]) - sum) / f64::from(a[[i, i]]);
        }
    }
    assert_close(
        got,
        &want.mapv(|v| v as f32).into_dyn(),
        Tol {
            abs: 1e-5,
            rel: 1e-5,
        },
        "solve_tri",
    )?;
    let wrong = ctx.new_tensor(Type::F32, &[3, 4])?;
    assert!(
        matches!(
            wrong.solve_tri(ctx.tensor_from_array(&b)?),
            Err(Error::Op(_))
        ),
        "not square"
    );
    Ok(())
}
