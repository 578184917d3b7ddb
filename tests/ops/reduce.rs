//! Reductions against ndarray: `sum`, `sum_rows`, `mean`, `argmax`,
//! `cumsum`, `count_equal`; on strided operands; refusals.

use anyhow::Result;
use ggml::ndarray::{s, Array, ArrayD, Axis, IxDyn};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

const TIGHT: Tol = Tol {
    abs: 1e-4,
    rel: 1e-5,
};

#[test]
fn sums_and_means_match_ndarray() -> Result<()> {
    let x = eval::input(&[2, 3, 50], 11, 5.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let outs = [t.sum()?, t.sum_rows()?, t.mean()?, t.cumsum()?];
    assert_eq!(outs[1].shape(), vec![2, 3, 1]);
    let got = eval::compute(&ctx, &outs)?;
    let total = ArrayD::from_elem(IxDyn(&[1]), x.sum());
    assert_close(&got[0], &total, TIGHT, "sum")?;
    let rows = x.sum_axis(Axis(2)).insert_axis(Axis(2));
    assert_close(&got[1], &rows, TIGHT, "sum_rows")?;
    let means = x
        .mean_axis(Axis(2))
        .expect("non-empty")
        .insert_axis(Axis(2));
    assert_close(&got[2], &means, TIGHT, "mean")?;
    let mut running = x.clone();
    running.accumulate_axis_inplace(Axis(2), |&prev, cur| *cur += prev);
    assert_close(&got[3], &running, TIGHT, "cumsum")?;
    Ok(())
}

#[test]
fn sum_in_half_types_and_of_strided_rows() -> Result<()> {
    let x = eval::input(&[4, 40], 12, 1.0);
    for ty in [Type::F16, Type::BF16] {
        let ctx = Context::new(1 << 20)?;
        let t = ctx.tensor_from_array_as(ty, &x)?;
        let y = t.sum()?;
        assert_eq!(y.ty(), ty);
        let got = &eval::compute(&ctx, &[y])?[0];
        let want = ArrayD::from_elem(IxDyn(&[1]), eval::rounded(&x, ty).sum());
        // 160 values of magnitude ≤ 1 summed in f32, rounded once to the type.
        assert_close(
            got,
            &want,
            Tol::of(
                ty,
                Tol {
                    abs: 1e-4,
                    rel: 1e-4,
                },
            ),
            &format!("sum {ty}"),
        )?;
    }
    // Rows with gaps between them (a view of the first 30 values of each).
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let v = t.view(&[4, 30], &[160], 0)?;
    let got = eval::compute(&ctx, &[v.sum_rows()?, v.sum()?])?;
    let part = x.slice(s![.., ..30]);
    assert_close(
        &got[0],
        &part.sum_axis(Axis(1)).insert_axis(Axis(1)).into_dyn(),
        TIGHT,
        "sum_rows of a view",
    )?;
    assert_close(
        &got[1],
        &ArrayD::from_elem(IxDyn(&[1]), part.sum()),
        TIGHT,
        "sum of a view",
    )?;
    Ok(())
}

#[test]
fn argmax_is_the_last_largest_index() -> Result<()> {
    let mut x = Array::from_shape_fn((5, 17), |(i, j)| ((i * 17 + j) as f32 * 0.77).sin());
    x[[2, 3]] = 9.0;
    x[[2, 11]] = 9.0; // a tie: ggml returns the later index
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let y = t.argmax()?;
    assert_eq!((y.ty(), y.shape()), (Type::I32, vec![5]));
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    crate::common::compute(&graph, &mut data)?;
    let got = data.to_array::<i32>(y)?;
    for (i, row) in x.outer_iter().enumerate() {
        let max = row.iter().copied().fold(f32::MIN, f32::max);
        let want = row.iter().rposition(|&v| v == max).expect("a maximum") as i32;
        assert_eq!(got[i], want, "row {i}");
    }
    Ok(())
}

#[test]
fn count_equal_counts() -> Result<()> {
    let a = Array::from_shape_fn((3, 10), |(i, j)| ((i * 10 + j) % 7) as i32);
    let b = Array::from_shape_fn((3, 10), |(i, j)| ((i * 10 + j) % 5) as i32);
    let want = a.iter().zip(b.iter()).filter(|(x, y)| x == y).count() as i64;
    let ctx = Context::new(1 << 20)?;
    let (ta, tb) = (ctx.tensor_from_array(&a)?, ctx.tensor_from_array(&b)?);
    let y = ta.count_equal(tb)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    crate::common::compute(&graph, &mut data)?;
    assert_eq!(data.to_array::<i64>(y)?[[0]], want);
    Ok(())
}

#[test]
fn refusals() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let cube = ctx.new_tensor(Type::F32, &[2, 3, 4])?;
    assert!(
        matches!(cube.argmax(), Err(Error::Op(_))),
        "argmax of a 3-D tensor"
    );
    let h = ctx.new_tensor(Type::F16, &[3, 4])?;
    assert!(matches!(h.cumsum(), Err(Error::Op(_))), "cumsum of f16");
    let i = ctx.new_tensor(Type::I32, &[2, 3, 4])?;
    assert!(
        matches!(i.count_equal(i), Err(Error::Op(_))),
        "count_equal of 3-D tensors"
    );
    // sum_rows of f16 builds (ggml's result follows the operand's type) but
    // the CPU sums f32 rows only.
    let y = h.sum_rows()?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::UnsupportedNode { op: "sum_rows", .. })
    ));
    Ok(())
}
