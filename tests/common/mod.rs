//! Helpers shared by the integration tests.
//!
//! `compute` / `compute_with` compute a graph the way `GGML_TEST_COMPUTE`
//! says: unset, directly on the CPU (`Graph::compute`); `backend`, through a
//! backend on the device `GGML_TEST_DEVICE` names (the CPU by default), so
//! every computing test also covers the backend path (`scripts/test-all`
//! runs them both ways).

#![allow(dead_code)]

use std::cell::RefCell;

use ggml::backend::{Backend, Device};
use ggml::ndarray::{Array, Array2};
use ggml::{Compute, Graph, TensorData};

thread_local! {
    static BACKEND: RefCell<Option<Backend>> = const { RefCell::new(None) };
}

/// Whether tests compute through a backend.
pub fn via_backend() -> bool {
    std::env::var("GGML_TEST_COMPUTE").is_ok_and(|v| v == "backend")
}

/// Computes `graph` on all cores (see the module docs for which path).
pub fn compute<'c>(graph: &Graph<'c>, data: &mut TensorData<'c>) -> ggml::Result<()> {
    compute_with(graph, data, Compute::new())
}

/// Computes `graph` with `options` (see the module docs for which path).
pub fn compute_with<'c>(
    graph: &Graph<'c>,
    data: &mut TensorData<'c>,
    options: Compute<'_>,
) -> ggml::Result<()> {
    if !via_backend() {
        return graph.compute_with(data, options);
    }
    BACKEND.with(|b| {
        let mut b = b.borrow_mut();
        if b.is_none() {
            let device = Device::from_env().expect("GGML_TEST_DEVICE names a device");
            *b = Some(Backend::new(device).expect("a backend on the test device"));
        }
        let backend = b.as_mut().expect("set above");
        backend.compute_with(graph, data, options)
    })
}

/// Asserts that a result is an `Err` matching a pattern (with an optional guard).
#[macro_export]
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err(err) => assert!(matches!(&err, $pattern $(if $guard)?), "unexpected error: {err}"),
            Ok(v) => panic!("expected an error, got {v:?}"),
        }
    };
}

/// Deterministic values in [-1, 1).
pub fn values(shape: (usize, usize), seed: u32) -> Array2<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    Array::from_shape_fn(shape, |_| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 2000) as f32 / 1000.0 - 1.0
    })
}

/// Equal within `tol` relative to the largest magnitude (the products
/// quantize activations to the weights' dot-product type: Q8_0, f16).
pub fn assert_close(got: &Array2<f32>, want: &Array2<f32>, tol: f32) {
    assert_eq!(got.shape(), want.shape());
    let scale = 1.0 + want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * scale,
            "got {g}, want {w}\n{got}\n{want}"
        );
    }
}
