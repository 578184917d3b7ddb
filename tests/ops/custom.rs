//! Custom ops: Rust closures as graph nodes, against ndarray computations;
//! thread shares and `Tasks`; a panicking closure; refusal off the CPU.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use ggml::backend::{devices, Backend};
use ggml::ops::{CustomCall, Tasks};
use ggml::{Compute, Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

/// `out[r][j] = 2·a[r][j] + b[r][j]` over rows of two `[rows, n]` inputs.
fn twice_plus(call: CustomCall<'_>) {
    let (a, b) = (&call.inputs[0], &call.inputs[1]);
    let n = call.out.ncols();
    let (a, b) = (
        a.to_shape((a.len() / n, n)).expect("rows"),
        b.to_shape((b.len() / n, n)).expect("rows"),
    );
    let mut out = call.out;
    for (i, mut row) in out.outer_iter_mut().enumerate() {
        let r = call.first_row + i;
        for j in 0..n {
            row[j] = 2.0 * a[[r, j]] + b[[r, j]];
        }
    }
}

#[test]
fn closures_compute_as_ndarray_does_on_every_thread_count() -> Result<()> {
    let a = eval::input(&[3, 7, 5], 71, 2.0);
    let b = eval::input(&[3, 7, 5], 72, 2.0);
    let want = &a * 2.0 + &b;
    for threads in [1, 2, 3, 8] {
        let ctx = Context::new(1 << 20)?;
        let (ta, tb) = (ctx.tensor_from_array(&a)?, ctx.tensor_from_array(&b)?);
        let y = ta.map_custom2(tb, Tasks::All, twice_plus)?;
        let z = ctx.custom(&[3, 7, 5], &[ta, tb], Tasks::All, twice_plus)?;
        let graph = ctx.build_graph(&[y, z])?;
        let mut data = ctx.data()?;
        crate::common::compute_with(&graph, &mut data, Compute::new().threads(threads))?;
        for t in [y, z] {
            assert_close(
                &data.to_array::<f32>(t)?,
                &want,
                Tol {
                    abs: 1e-6,
                    rel: 0.0,
                },
                &format!("{threads} threads"),
            )?;
        }
    }
    Ok(())
}

#[test]
fn each_thread_gets_a_share_and_tasks_are_honoured() -> Result<()> {
    let x = eval::input(&[10, 4], 73, 1.0);
    for (tasks, threads, most) in [
        (Tasks::All, 4, 4),
        (Tasks::Exactly(NonZeroUsize::MIN), 4, 1),
        (Tasks::Exactly(NonZeroUsize::new(2).expect("2")), 4, 2),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let rows = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (calls.clone(), rows.clone());
        let ctx = Context::new(1 << 20)?;
        let t = ctx.tensor_from_array(&x)?;
        let y = t.map_custom1(tasks, move |call| {
            c.fetch_add(1, Ordering::SeqCst);
            assert!(call.ith < call.nth);
            r.lock()
                .expect("lock")
                .push((call.first_row, call.out.nrows()));
            let first = call.first_row;
            let mut out = call.out;
            for (i, mut row) in out.outer_iter_mut().enumerate() {
                row.fill((first + i) as f32);
            }
        })?;
        let graph = ctx.build_graph(&[y])?;
        let mut data = ctx.data()?;
        crate::common::compute_with(&graph, &mut data, Compute::new().threads(threads))?;
        let n = calls.load(Ordering::SeqCst);
        assert!(
            n >= 1 && n <= most,
            "{tasks:?} on {threads} threads: {n} calls"
        );
        let mut shares = rows.lock().expect("lock").clone();
        shares.sort();
        let mut next = 0;
        for (first, len) in shares {
            assert_eq!(first, next, "shares are contiguous and disjoint");
            next += len;
        }
        assert_eq!(next, 10, "the shares cover every row");
        let got = data.to_array::<f32>(y)?;
        for (r, row) in got.outer_iter().enumerate() {
            assert!(row.iter().all(|&v| v == r as f32));
        }
    }
    Ok(())
}

#[test]
fn a_panicking_closure_is_an_error_after_ggml_returns() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&eval::input(&[8, 4], 74, 1.0))?;
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let y = t.map_custom1(Tasks::All, move |call| {
        r.fetch_add(1, Ordering::SeqCst);
        if call.ith == 0 {
            panic!("row share {} refused", call.first_row);
        }
    })?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    match crate::common::compute_with(&graph, &mut data, Compute::new().threads(4)) {
        Err(Error::CustomOpPanicked { op, message }) => {
            assert_eq!(op, "map_custom");
            assert!(message.contains("row share 0 refused"), "{message}");
        }
        other => panic!("expected CustomOpPanicked, got {other:?}"),
    }
    assert!(ran.load(Ordering::SeqCst) >= 2, "the other threads ran");
    // The panic is reported once; the next computation succeeds or fails
    // on its own.
    assert!(matches!(
        crate::common::compute_with(&graph, &mut data, Compute::new().threads(1)),
        Err(Error::CustomOpPanicked { .. })
    ));
    Ok(())
}

#[test]
fn rules_and_other_backends() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let h = ctx.new_tensor(Type::F16, &[4])?;
    assert!(
        matches!(h.map_custom1(Tasks::All, |_| {}), Err(Error::Op(_))),
        "f16 operand"
    );
    let many: Vec<_> = (0..10)
        .map(|_| ctx.new_tensor(Type::F32, &[2]).expect("tensor"))
        .collect();
    assert!(
        matches!(
            ctx.custom(&[2], &many, Tasks::All, |_| {}),
            Err(Error::Op(_))
        ),
        "10 operands"
    );
    // A device other than the CPU (a GPU, an RPC server) refuses the node.
    for device in devices()?.into_iter().filter(|d| !d.is_cpu()) {
        let t = ctx.new_tensor(Type::F32, &[4])?;
        let y = t.map_custom1(Tasks::All, |_| {})?;
        let graph = ctx.build_graph(&[y])?;
        let backend = Backend::new(device)?;
        assert!(matches!(
            backend.check(&graph),
            Err(Error::UnsupportedNode { .. })
        ));
    }
    Ok(())
}

/// Rows of `a` (an input of the closure) as `[rows, n]`.
fn rows_of<'a>(
    a: &'a ggml::ndarray::ArrayViewD<'a, f32>,
    n: usize,
) -> ggml::ndarray::CowArray<'a, f32, ggml::ndarray::Ix2> {
    a.to_shape((a.len() / n, n)).expect("rows")
}

#[test]
fn in_place_closures_write_the_operand_on_every_thread_count() -> Result<()> {
    let a = eval::input(&[3, 7, 5], 75, 2.0);
    let b = eval::input(&[3, 7, 5], 76, 2.0);
    let c = eval::input(&[3, 7, 5], 77, 2.0);
    let exact = Tol {
        abs: 1e-6,
        rel: 1e-6,
    };
    for threads in [1, 2, 3, 8] {
        // One context per form: each writes its own copy of `a`.
        type Build = for<'c> fn(
            ggml::Tensor<'c>,
            ggml::Tensor<'c>,
            ggml::Tensor<'c>,
        ) -> ggml::Result<ggml::Tensor<'c>>;
        let forms: [(&str, Build, _); 4] = [
            (
                "map_custom1_inplace",
                |a, _, _| {
                    a.map_custom1_inplace(Tasks::All, |call| {
                        assert!(call.inputs.is_empty(), "the operand is `out`, not an input");
                        let mut out = call.out;
                        out.mapv_inplace(|v| 3.0 * v + 1.0);
                    })
                },
                a.mapv(|v| 3.0 * v + 1.0),
            ),
            (
                "map_custom2_inplace",
                |a, b, _| {
                    a.map_custom2_inplace(b, Tasks::All, |call| {
                        assert_eq!(call.inputs.len(), 1);
                        let n = call.out.ncols();
                        let b = rows_of(&call.inputs[0], n);
                        let first = call.first_row;
                        let mut out = call.out;
                        for ((i, j), v) in out.indexed_iter_mut() {
                            *v += 2.0 * b[[first + i, j]];
                        }
                    })
                },
                &a + &(&b * 2.0),
            ),
            (
                "map_custom3_inplace",
                |a, b, c| {
                    a.map_custom3_inplace(b, c, Tasks::All, |call| {
                        assert_eq!(call.inputs.len(), 2);
                        let n = call.out.ncols();
                        let (b, c) = (rows_of(&call.inputs[0], n), rows_of(&call.inputs[1], n));
                        let first = call.first_row;
                        let mut out = call.out;
                        for ((i, j), v) in out.indexed_iter_mut() {
                            *v = *v * b[[first + i, j]] + c[[first + i, j]];
                        }
                    })
                },
                &a * &b + &c,
            ),
            (
                "custom_inplace",
                |a, b, c| {
                    a.custom_inplace(&[b, c], Tasks::All, |call| {
                        assert_eq!(call.inputs.len(), 2);
                        let n = call.out.ncols();
                        let (b, c) = (rows_of(&call.inputs[0], n), rows_of(&call.inputs[1], n));
                        let first = call.first_row;
                        let mut out = call.out;
                        for ((i, j), v) in out.indexed_iter_mut() {
                            *v -= b[[first + i, j]] * c[[first + i, j]];
                        }
                    })
                },
                &a - &(&b * &c),
            ),
        ];
        for (name, build, want) in forms {
            let ctx = Context::new(1 << 20)?;
            let ta = ctx.tensor_from_array(&a)?;
            let (tb, tc) = (ctx.tensor_from_array(&b)?, ctx.tensor_from_array(&c)?);
            let y = build(ta, tb, tc)?;
            let graph = ctx.build_graph(&[y])?;
            let mut data = ctx.data()?;
            crate::common::compute_with(&graph, &mut data, Compute::new().threads(threads))?;
            let what = format!("{name}, {threads} threads");
            assert_close(&data.to_array::<f32>(y)?, &want, exact, &what)?;
            // The operand's memory holds the result.
            assert_close(
                &data.to_array::<f32>(ta)?,
                &want,
                exact,
                &format!("{what}: the operand"),
            )?;
            // The other operands are untouched.
            assert_close(&data.to_array::<f32>(tb)?, &b, exact, &what)?;
        }
    }
    Ok(())
}

#[test]
fn in_place_on_a_view_writes_only_its_rows() -> Result<()> {
    // Rows 2..5 of an [8, 6] tensor, in place: the other rows keep their values.
    let x = eval::input(&[8, 6], 78, 1.0);
    let ctx = Context::new(1 << 20)?;
    let t = ctx.tensor_from_array(&x)?;
    let v = t.view(&[3, 6], &[24], 2 * 24)?;
    let y = v.map_custom1_inplace(Tasks::All, |call| {
        let first = call.first_row;
        let mut out = call.out;
        for (i, mut row) in out.outer_iter_mut().enumerate() {
            row.mapv_inplace(|val| val * 10.0 + (first + i) as f32);
        }
    })?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    crate::common::compute_with(&graph, &mut data, Compute::new().threads(2))?;
    let mut want = x.clone();
    for r in 2..5 {
        for j in 0..6 {
            want[[r, j]] = x[[r, j]] * 10.0 + (r - 2) as f32;
        }
    }
    let exact = Tol {
        abs: 1e-6,
        rel: 1e-6,
    };
    assert_close(&data.to_array::<f32>(t)?, &want, exact, "the viewed tensor")?;
    assert_close(
        &data.to_array::<f32>(y)?,
        &want
            .slice(ggml::ndarray::s![2..5, ..])
            .to_owned()
            .into_dyn(),
        exact,
        "the result",
    )
}

#[test]
fn in_place_rules() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4, 6])?;
    let b = ctx.new_tensor(Type::F32, &[4, 6])?;
    let is_op = |r: ggml::Result<ggml::Tensor<'_>>| matches!(r, Err(Error::Op(_)));
    assert!(a.map_custom2_inplace(b, Tasks::All, |_| {}).is_ok());
    // A strided operand: the closure's rows are handed out densely.
    assert!(
        is_op(a.transpose()?.map_custom1_inplace(Tasks::All, |_| {})),
        "transposed"
    );
    assert!(
        is_op(
            a.view(&[2, 3], &[24], 0)?
                .map_custom1_inplace(Tasks::All, |_| {})
        ),
        "padded rows"
    );
    // The same memory as another operand: read whole while its rows are
    // written by other threads.
    assert!(
        is_op(a.map_custom2_inplace(a, Tasks::All, |_| {})),
        "b is a"
    );
    let half = a.view(&[2, 6], &[24], 2 * 24)?;
    assert!(
        is_op(a.map_custom3_inplace(b, half, Tasks::All, |_| {})),
        "c views a"
    );
    assert!(
        is_op(half.custom_inplace(&[b, a], Tasks::All, |_| {})),
        "an input holding the operand"
    );
    // Disjoint views of one tensor are fine.
    let top = a.view(&[2, 6], &[24], 0)?;
    assert!(top.map_custom2_inplace(half, Tasks::All, |_| {}).is_ok());
    // Types.
    let h = ctx.new_tensor(Type::F16, &[4, 6])?;
    assert!(is_op(h.map_custom1_inplace(Tasks::All, |_| {})), "f16");
    assert!(is_op(a.map_custom2_inplace(h, Tasks::All, |_| {})), "f16 b");
    // ggml_custom_inplace keeps the operand in src[0]: 8 inputs at most.
    let inputs: Vec<_> = (0..9)
        .map(|_| ctx.new_tensor(Type::F32, &[2]).expect("tensor"))
        .collect();
    assert!(a.custom_inplace(&inputs[..8], Tasks::All, |_| {}).is_ok());
    assert!(
        is_op(a.custom_inplace(&inputs, Tasks::All, |_| {})),
        "9 inputs"
    );
    // An empty operand: nothing to compute.
    let e = ctx.new_tensor(Type::F32, &[0, 3])?;
    let y = e.map_custom1_inplace(Tasks::All, |_| panic!("no rows to compute"))?;
    let graph = ctx.build_graph(&[y])?;
    crate::common::compute(&graph, &mut ctx.data()?)?;
    Ok(())
}

#[test]
fn in_place_panics_and_the_generic_builder() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let x = eval::input(&[8, 4], 79, 1.0);
    let t = ctx.tensor_from_array(&x)?;
    let y = t.map_custom1_inplace(Tasks::All, |call| {
        if call.first_row == 0 {
            panic!("first share refused");
        }
    })?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    match crate::common::compute_with(&graph, &mut data, Compute::new().threads(4)) {
        Err(Error::CustomOpPanicked { op, message }) => {
            assert_eq!(op, "map_custom_inplace");
            assert!(message.contains("first share refused"), "{message}");
        }
        other => panic!("expected CustomOpPanicked, got {other:?}"),
    }
    drop(data);

    // The fuzzer's generic builders, in place (bit 0): each row's index.
    for name in ["custom", "map_custom", "map_custom2", "map_custom3"] {
        let ctx = Context::new(1 << 20)?;
        let decl = ggml::ops::catalog()
            .find(|d| d.name() == name)
            .expect("declared");
        let operands: Vec<_> = (0..3)
            .map(|i| ctx.tensor_from_array(&eval::input(&[5, 3], 80 + i, 1.0)))
            .collect::<ggml::Result<_>>()?;
        let params = ggml::ops::Params {
            flags: 1,
            ..Default::default()
        };
        let y = decl.build(&operands, &params)?;
        let graph = ctx.build_graph(&[y])?;
        let mut data = ctx.data()?;
        crate::common::compute(&graph, &mut data)?;
        let want = ggml::ndarray::ArrayD::from_shape_fn(vec![5, 3], |d| d[0] as f32);
        let exact = Tol { abs: 0.0, rel: 0.0 };
        assert_close(&data.to_array::<f32>(operands[0])?, &want, exact, name)?;
    }
    Ok(())
}
