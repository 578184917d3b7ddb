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
