//! `get_rows` against ndarray gathers (f32, f16, quantized, i32, batched),
//! and its indices: checked before every computation, refused when the
//! graph computes them.

use anyhow::Result;
use ggml::ndarray::{arr1, Array, Array2, ArrayD, Axis, IxDyn};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

#[test]
fn gathers_rows_of_every_kind() -> Result<()> {
    let table = eval::input(&[10, 64], 31, 2.0);
    let ids = arr1(&[3i32, 0, 9, 3, 7]);
    for ty in [Type::F32, Type::F16, Type::BF16, Type::Q8_0, Type::Q4_K] {
        let shape = if ty == Type::Q4_K {
            vec![10, 256]
        } else {
            vec![10, 64]
        };
        let table = eval::input(&shape, 31, 2.0);
        let ctx = Context::new(4 << 20)?;
        let t = ctx.tensor_from_array_as(ty, &table)?;
        let i = ctx.tensor_from_array(&ids)?;
        let y = t.get_rows(i)?;
        assert_eq!((y.ty(), y.shape()), (Type::F32, vec![5, shape[1]]));
        // The reference gathers the table as stored (rounded, quantized).
        let stored = {
            let data = ctx.data()?;
            data.to_array::<f32>(t)?
        };
        let want = stored.select(
            Axis(0),
            &ids.iter().map(|&i| i as usize).collect::<Vec<_>>(),
        );
        let got = &eval::compute(&ctx, &[y])?[0];
        assert_close(
            got,
            &want,
            Tol { abs: 0.0, rel: 0.0 },
            &format!("get_rows {ty}"),
        )?;
    }
    let _ = table;
    Ok(())
}

#[test]
fn batched_and_integer_rows() -> Result<()> {
    // ne = [4, 6, 3]: three matrices of six rows; indices ne = [2, 3].
    let table = Array::from_shape_fn((3, 6, 4), |(b, r, c)| (b * 100 + r * 10 + c) as i32);
    let ids = Array2::from_shape_vec((3, 2), vec![5i32, 0, 1, 1, 2, 4])?;
    let ctx = Context::new(1 << 20)?;
    let (t, i) = (ctx.tensor_from_array(&table)?, ctx.tensor_from_array(&ids)?);
    let y = t.get_rows(i)?;
    assert_eq!((y.ty(), y.shape()), (Type::I32, vec![3, 2, 4]));
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    crate::common::compute(&graph, &mut data)?;
    let got = data.to_array::<i32>(y)?;
    let want = ArrayD::from_shape_fn(IxDyn(&[3, 2, 4]), |d| {
        table[[d[0], ids[[d[0], d[1]]] as usize, d[2]]]
    });
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn indices_out_of_range_are_errors_at_every_computation() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&eval::input(&[4, 8], 32, 1.0))?;
    let i = ctx.tensor_from_array(&arr1(&[0i32, 3]))?;
    let y = t.get_rows(i)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    crate::common::compute(&graph, &mut data)?;
    for bad in [4i32, -1, i32::MAX, i32::MIN] {
        data.copy_from_array(i, &arr1(&[0i32, bad]))?;
        match crate::common::compute(&graph, &mut data) {
            Err(Error::Op(e)) => {
                assert_eq!(e.op, "get_rows");
                assert!(e.rule.contains(&format!("index {bad}")), "{}", e.rule);
            }
            other => panic!("index {bad}: expected Error::Op, got {other:?}"),
        }
    }
    data.copy_from_array(i, &arr1(&[2i32, 1]))?;
    crate::common::compute(&graph, &mut data)?;
    Ok(())
}

#[test]
fn indices_the_graph_computes_are_refused() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&eval::input(&[4, 8], 33, 1.0))?;
    let scores = ctx.tensor_from_array(&eval::input(&[2, 4], 34, 1.0))?;
    // argmax's output is an index the graph computes.
    let y = t.get_rows(scores.argmax()?)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    match crate::common::compute(&graph, &mut data) {
        Err(Error::UnsupportedNode { op, reason, .. }) => {
            assert_eq!(op, "get_rows");
            assert!(reason.contains("graph input"), "{reason}");
        }
        other => panic!("expected UnsupportedNode, got {other:?}"),
    }
    // Indices a node of the same graph writes (a copy into them) are too.
    let i = ctx.tensor_from_array(&arr1(&[1i32, 2]))?;
    let src = ctx.tensor_from_array(&arr1(&[7i32, 7]))?;
    let written = src.cpy(i)?;
    let y = t.get_rows(i)?;
    let graph = ctx.build_graph(&[written, y])?;
    assert!(matches!(
        crate::common::compute(&graph, &mut data),
        Err(Error::UnsupportedNode { op: "get_rows", .. })
    ));
    Ok(())
}

#[test]
fn shape_and_type_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let t = ctx.new_tensor(Type::F32, &[2, 4, 8])?;
    let f = ctx.new_tensor(Type::F32, &[3])?;
    assert!(matches!(t.get_rows(f), Err(Error::Op(_))), "f32 indices");
    let i = ctx.new_tensor(Type::I32, &[3, 5])?;
    match t.get_rows(i) {
        Err(Error::Op(e)) => assert_eq!(e.operands.len(), 2),
        other => panic!("expected Error::Op, got {other:?}"),
    }
    Ok(())
}

#[test]
fn set_rows_writes_a_cache_as_ndarray_assignment_does() -> Result<()> {
    for (ty, dim) in [(Type::F32, 16usize), (Type::F16, 16), (Type::Q8_0, 32)] {
        for wide in [false, true] {
            let ctx = Context::new(1 << 20)?;
            let start = eval::input(&[8, dim], 35, 1.0);
            let cache = ctx.tensor_from_array_as(ty, &start)?;
            let rows = eval::input(&[3, dim], 36, 2.0);
            let tr = ctx.tensor_from_array(&rows)?;
            let at = [5usize, 0, 7];
            let idx = if wide {
                ctx.tensor_from_array(&arr1(&at.map(|i| i as i64)))?
            } else {
                ctx.tensor_from_array(&arr1(&at.map(|i| i as i32)))?
            };
            let stored_before = ctx.data()?.to_array::<f32>(cache)?;
            let y = cache.set_rows(tr, idx)?;
            let got = &eval::compute(&ctx, &[y])?[0];
            // The reference: the cache as stored, with the rows put in and
            // stored as the cache's type (a tensor of that type made from
            // them by the crate's own conversion).
            let stored_rows = {
                let t = ctx.tensor_from_array_as(ty, &rows)?;
                ctx.data()?.to_array::<f32>(t)?
            };
            let mut want = stored_before.clone();
            for (j, &i) in at.iter().enumerate() {
                want.index_axis_mut(Axis(0), i)
                    .assign(&stored_rows.index_axis(Axis(0), j));
            }
            assert_close(
                got,
                &want,
                Tol { abs: 0.0, rel: 0.0 },
                &format!("set_rows {ty} wide {wide}"),
            )?;
        }
    }
    Ok(())
}

#[test]
fn set_rows_indices_are_checked() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let cache = ctx.new_tensor(Type::F32, &[4, 8])?;
    let rows = ctx.new_tensor(Type::F32, &[2, 8])?;
    let idx = ctx.tensor_from_array(&arr1(&[1i64, 3]))?;
    let y = cache.set_rows(rows, idx)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    crate::common::compute(&graph, &mut data)?;
    data.copy_from_array(idx, &arr1(&[1i64, 4]))?;
    assert!(
        matches!(crate::common::compute(&graph, &mut data), Err(Error::Op(_))),
        "index 4 of 4 rows"
    );
    data.copy_from_array(idx, &arr1(&[-1i64, 0]))?;
    assert!(
        matches!(crate::common::compute(&graph, &mut data), Err(Error::Op(_))),
        "index -1"
    );
    drop(data);
    // Rule violations when building.
    let f = ctx.new_tensor(Type::F32, &[2])?;
    assert!(
        matches!(cache.set_rows(rows, f), Err(Error::Op(_))),
        "f32 indices"
    );
    let wrong = ctx.new_tensor(Type::F32, &[2, 7])?;
    assert!(
        matches!(cache.set_rows(wrong, idx), Err(Error::Op(_))),
        "rows of another length"
    );
    let q = ctx.new_tensor(Type::Q8_0, &[2, 32])?;
    let qc = ctx.new_tensor(Type::Q8_0, &[4, 32])?;
    assert!(
        matches!(qc.set_rows(q, idx), Err(Error::Op(_))),
        "quantized rows"
    );
    Ok(())
}
