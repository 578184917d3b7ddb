//! Graphs on the CPU: products against ndarray, thread counts, large graphs,
//! the abort callback and panics inside it.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use ggml::ndarray::{Array, Array2, Ix1, Ix2};
use ggml::{Compute, Context, Error, Type};

use crate::common;

fn matrix(rows: usize, cols: usize, seed: f32) -> Array2<f32> {
    Array::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 7 + j * 13) as f32 * 0.37 + seed).sin()
    })
}

#[test]
fn mul_mat_matches_ndarray_for_every_thread_count() -> Result<()> {
    let (m, n, k) = (5, 3, 64);
    let a = matrix(m, k, 0.1);
    let b = matrix(n, k, 0.7);
    let expected = b.dot(&a.t()); // ggml: result = b · aᵀ, shape [n, m]
    for threads in [1, 2, 4] {
        let ctx = Context::new(1 << 20)?;
        let ta = ctx.tensor_from_array(&a)?;
        let tb = ctx.tensor_from_array(&b)?;
        let c = ctx.mul_mat(ta, tb)?;
        assert_eq!(c.shape(), vec![n, m]);
        let graph = ctx.build_graph(&[c])?;
        let mut data = ctx.data()?;
        common::compute_with(&graph, &mut data, Compute::new().threads(threads))?;
        let got = data.view_as::<f32, Ix2>(c)?;
        for (x, y) in got.iter().zip(expected.iter()) {
            assert!((x - y).abs() < 1e-4, "{threads} threads: {x} vs {y}");
        }
    }
    Ok(())
}

#[test]
fn quantized_mul_mat_is_close_to_f32() -> Result<()> {
    let (m, n, k) = (8, 4, 256);
    let a = matrix(m, k, 0.3);
    let b = matrix(n, k, 0.9);
    let expected = b.dot(&a.t());
    let ctx = Context::new(4 << 20)?;
    let ta = ctx.tensor_from_array_as(Type::Q8_0, &a)?;
    let tb = ctx.tensor_from_array(&b)?;
    let c = ctx.mul_mat(ta, tb)?;
    let graph = ctx.build_graph(&[c])?;
    let mut data = ctx.data()?;
    common::compute(&graph, &mut data)?;
    let got = data.view_as::<f32, Ix2>(c)?;
    // Q8_0 keeps ~8 bits per value; over k = 256 terms of magnitude ≤ 1 the
    // product's error stays well under 1% of k.
    for (x, y) in got.iter().zip(expected.iter()) {
        assert!((x - y).abs() < 0.5, "{x} vs {y}");
    }
    Ok(())
}

#[test]
fn views_of_transposed_and_permuted_tensors_are_strided() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let x = Array::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as f32);
    let t = ctx.tensor_from_array(&x)?;
    let tt = ctx.transpose(t)?;
    // ggml axes 0 and 1 are ndarray's last two.
    let p = ctx.permute(t, [1, 0, 2, 3])?;
    let data = ctx.data()?;
    let expected = x.view().permuted_axes([0, 2, 1]);
    assert_eq!(data.view_as::<f32, ggml::ndarray::Ix3>(tt)?, expected);
    assert_eq!(data.view_as::<f32, ggml::ndarray::Ix3>(p)?, expected);
    assert!(!tt.is_contiguous());
    // A copy of a strided tensor converts element by element.
    let as_f32 = data.to_array_as::<f32, ggml::ndarray::Ix3>(tt)?;
    assert_eq!(as_f32, expected);
    Ok(())
}

#[test]
fn cont_and_cpy_compute_conversions() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let x = Array::from_shape_fn((3, 32), |(i, j)| (i as f32 - 1.0) * (j as f32) / 8.0);
    let t = ctx.tensor_from_array(&x)?;
    let c = ctx.cont(ctx.transpose(t)?)?;
    let h = ctx.new_tensor(Type::F16, &[3, 32])?;
    let copied = ctx.cpy(t, h)?;
    let scaled = ctx.scale(t, 2.0)?;
    let graph = ctx.build_graph(&[c, copied, scaled])?;
    let mut data = ctx.data()?;
    common::compute(&graph, &mut data)?;
    assert_eq!(data.view_as::<f32, Ix2>(c)?, x.t());
    assert_eq!(data.to_array_as::<f32, Ix2>(h)?, x); // exact: values are multiples of 1/8
    assert_eq!(data.view_as::<f32, Ix2>(scaled)?, &x * 2.0);
    Ok(())
}

#[test]
fn graph_of_100_000_nodes() -> Result<()> {
    let nodes = 100_000;
    let mem = nodes * (Context::tensor_size(Type::F32, &[1])? + 64)
        + Context::graph_size(nodes + 2).expect("graph size")
        + (1 << 20);
    let ctx = Context::new(mem)?;
    let one = ctx.tensor_from_array(&Array::from_elem(1, 1.0f32))?;
    let mut x = ctx.tensor_from_array(&Array::from_elem(1, 0.0f32))?;
    for _ in 0..nodes {
        x = ctx.add(x, one)?;
    }
    let graph = ctx.build_graph(&[x])?;
    assert_eq!(graph.n_nodes(), nodes);
    let mut data = ctx.data()?;
    common::compute_with(&graph, &mut data, Compute::new().threads(1))?;
    assert_eq!(data.view_as::<f32, Ix1>(x)?[0], nodes as f32);
    Ok(())
}

fn chain(ctx: &Context, len: usize) -> Result<ggml::Tensor<'_>> {
    let one = ctx.tensor_from_array(&Array::from_elem(1, 1.0f32))?;
    let mut x = one;
    for _ in 0..len {
        x = ctx.add(x, one)?;
    }
    Ok(x)
}

#[test]
fn abort_callback_stops_the_computation() -> Result<()> {
    let ctx = Context::new(8 << 20)?;
    let x = chain(&ctx, 1000)?;
    let graph = ctx.build_graph(&[x])?;
    let mut data = ctx.data()?;
    let calls = AtomicUsize::new(0);
    let mut stop_after_ten = || calls.fetch_add(1, Ordering::Relaxed) >= 10;
    let err = common::compute_with(
        &graph,
        &mut data,
        Compute::new()
            .threads(2)
            .abort_callback(&mut stop_after_ten),
    )
    .unwrap_err();
    assert_eq!(err, Error::Aborted);
    assert!(calls.load(Ordering::Relaxed) < 1000);
    // The context is still usable: compute again without the callback.
    common::compute(&graph, &mut data)?;
    assert_eq!(data.view_as::<f32, Ix1>(x)?[0], 1001.0);
    Ok(())
}

#[test]
fn a_panicking_abort_callback_is_resumed_after_ggml_returns() -> Result<()> {
    let ctx = Context::new(8 << 20)?;
    let x = chain(&ctx, 100)?;
    let graph = ctx.build_graph(&[x])?;
    let mut data = ctx.data()?;
    let mut boom = || -> bool { panic!("callback failed") };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::compute_with(&graph, &mut data, Compute::new().abort_callback(&mut boom))
    }));
    let payload = outcome.expect_err("the panic crosses back into Rust");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"callback failed"));
    common::compute(&graph, &mut data)?;
    assert_eq!(data.view_as::<f32, Ix1>(x)?[0], 101.0);
    Ok(())
}

#[test]
fn zero_threads_is_an_error() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let x = chain(&ctx, 1)?;
    let graph = ctx.build_graph(&[x])?;
    let mut data = ctx.data()?;
    assert_eq!(
        common::compute_with(&graph, &mut data, Compute::new().threads(0)),
        Err(Error::ZeroThreads)
    );
    Ok(())
}
