//! Helpers of the op tests: deterministic inputs, computing outputs as f32
//! arrays, and comparing them with a reference computed in the test.

use anyhow::{ensure, Result};
use ggml::ndarray::{ArrayD, IxDyn};
use ggml::{Context, Tensor, Type};

use crate::common;

/// Values in `[-scale, scale]`, a deterministic function of `seed` and the
/// index (no two neighbours alike, zero included where the shape allows).
pub fn input(shape: &[usize], seed: u32, scale: f32) -> ArrayD<f32> {
    let mut i = 0u32;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        i += 1;
        if i == 3 {
            return 0.0;
        }
        let x =
            (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) as f32 / u32::MAX as f32;
        (x * 2.0 - 1.0) * scale
    })
}

/// `values` rounded to `ty` (f16 and bf16 keep fewer bits), as f32.
pub fn rounded(values: &ArrayD<f32>, ty: Type) -> ArrayD<f32> {
    match ty {
        Type::F16 => values.mapv(|x| ggml::half::f16::from_f32(x).to_f32()),
        Type::BF16 => values.mapv(|x| ggml::half::bf16::from_f32(x).to_f32()),
        _ => values.clone(),
    }
}

/// Computes `outputs` (one graph) and reads each as f32 (i32 tensors
/// converted value by value).
pub fn compute(ctx: &Context, outputs: &[Tensor<'_>]) -> Result<Vec<ArrayD<f32>>> {
    let graph = ctx.build_graph(outputs)?;
    let mut data = ctx.data()?;
    common::compute(&graph, &mut data)?;
    outputs
        .iter()
        .map(|&t| match t.ty() {
            Type::I32 => Ok(data.to_array::<i32>(t)?.mapv(|v| v as f32)),
            _ => Ok(data.to_array::<f32>(t)?),
        })
        .collect()
}

/// Tolerance of a comparison: `|got - want| <= abs + rel * |want|`.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    pub abs: f32,
    pub rel: f32,
}

impl Tol {
    /// For results stored as `ty` and computed in f32 from inputs of `ty`:
    /// the rounding of the result to the type, on top of `f32_tol`.
    pub fn of(ty: Type, f32_tol: Tol) -> Tol {
        let eps = match ty {
            Type::F16 => 1.0 / 1024.0,
            Type::BF16 => 1.0 / 128.0,
            _ => 0.0,
        };
        Tol {
            abs: f32_tol.abs + eps,
            rel: f32_tol.rel + eps,
        }
    }
}

/// Checks `got` against `want` element by element (NaN matches NaN,
/// infinities match themselves).
pub fn assert_close(got: &ArrayD<f32>, want: &ArrayD<f32>, tol: Tol, what: &str) -> Result<()> {
    ensure!(
        got.shape() == want.shape(),
        "{what}: shape {:?}, expected {:?}",
        got.shape(),
        want.shape()
    );
    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= tol.abs + tol.rel * w.abs()
        };
        ensure!(
            ok,
            "{what}: element {i}: got {g}, expected {w} (tolerance {tol:?})"
        );
    }
    Ok(())
}

/// The error function (Abramowitz and Stegun 7.1.26, absolute error below
/// 1.5e-7), for references of the erf-based GELUs.
pub fn erf(x: f32) -> f32 {
    let x = f64::from(x);
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    (if x < 0.0 { -y } else { y }) as f32
}
