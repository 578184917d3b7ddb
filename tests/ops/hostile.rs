//! Every declared op against the hostile inputs `tests/soundness`-style
//! checks cover one op at a time: NaN and infinities (also flowing into
//! quantized destinations), empty tensors, rows longer than `int` and
//! near-overflow sizes, transposed operands, one tensor passed as several
//! operands to in-place forms, extreme parameters and odd thread counts.
//!
//! The only assertion is the soundness promise: each call is refused with an
//! error or builds, and each built node is refused or computed; an abort, a
//! panic or a signal fails the test binary. What the ops compute is checked
//! against references by the family files.

use anyhow::{ensure, Result};
use ggml::ndarray::{ArrayD, IxDyn};
use ggml::ops::{Family, Params};
use ggml::{Compute, Context, Tensor, Type};

use crate::eval;

/// Integer parameters: small values (so that calls fit) and the extremes.
const INTS: [i64; 16] = [
    i64::MIN,
    -(1 << 31) - 1,
    -1,
    0,
    1,
    1,
    2,
    2,
    3,
    4,
    8,
    32,
    (1 << 31) - 1,
    1 << 31,
    1 << 62,
    i64::MAX,
];

/// Float parameters: ordinary values, NaN, infinities and extremes.
const FLOATS: [f32; 12] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    -1.0,
    0.0,
    1e-6,
    0.5,
    1.0,
    1.0,
    2.0,
    1e30,
    f32::MAX,
];

/// Thread counts the computations rotate through.
const THREADS: [usize; 4] = [1, 2, 3, 7];

/// An xorshift draw in `0..n`.
struct Draw(u64);

impl Draw {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Operands in `ctx`: several shapes and types, NaN and infinities, empty
/// tensors, a transposed view, index tensors in and out of range.
fn pool(ctx: &Context) -> Result<Vec<Tensor<'_>>> {
    let mut pool = Vec::new();
    let shapes: [&[usize]; 8] = [
        &[3, 4],
        &[2, 3, 8],
        &[2, 2, 5, 3],
        &[4, 1],
        &[1, 3, 4, 4],
        &[3, 2, 2],
        &[2, 4, 64],
        &[32],
    ];
    for (i, shape) in shapes.iter().enumerate() {
        let x = eval::input(shape, 700 + i as u32, 1.0);
        for ty in [Type::F32, Type::F16, Type::BF16] {
            pool.push(ctx.tensor_from_array_as(ty, &x)?);
        }
        if shape.last() == Some(&64) || shape.last() == Some(&32) {
            pool.push(ctx.tensor_from_array_as(Type::Q4_0, &x)?);
            pool.push(ctx.tensor_from_array_as(Type::Q8_0, &x)?);
        }
        if shape.len() >= 2 {
            pool.push(ctx.tensor_from_array(&x)?.transpose()?);
        }
    }
    // NaN and infinities, as data and as the source of quantizing copies.
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0];
    let values: Vec<f32> = (0..64).map(|i| special[i % 4]).collect();
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 32]), values)?;
    pool.push(ctx.tensor_from_array(&x)?);
    pool.push(ctx.tensor_from_array(&x.slice_move(ggml::ndarray::s![.., ..4]))?);
    // Empty tensors.
    pool.push(ctx.new_tensor(Type::F32, &[0, 3])?);
    pool.push(ctx.new_tensor(Type::F32, &[4, 0, 2])?);
    pool.push(ctx.new_tensor(Type::I32, &[0])?);
    // Indices: in range for small tensors, negative, and past `int`.
    for values in [[0, 1, 2, 1], [-1, i32::MAX, 0, i32::MIN], [3, 0, 0, 7]] {
        let x = ArrayD::from_shape_vec(IxDyn(&[4]), values.to_vec())?;
        pool.push(ctx.tensor_from_array(&x)?);
    }
    Ok(pool)
}

/// Tensors without memory whose sizes are near the limits: rows longer than
/// `int`, element counts near `i64::MAX / 4`.
fn giants(ctx: &Context) -> Result<Vec<Tensor<'_>>> {
    // ndarray order: the last axis is ggml's ne[0], the row.
    Ok(vec![
        ctx.new_tensor(Type::F32, &[2, (1 << 31) + 1])?,
        ctx.new_tensor(Type::F32, &[1 << 28, 1 << 32])?,
        ctx.new_tensor(Type::F16, &[1 << 20, 1 << 40, 3])?,
        ctx.new_tensor(Type::I32, &[(1 << 31) + 7])?,
        ctx.new_tensor(Type::Q4_0, &[4, 1 << 35])?,
    ])
}

#[test]
fn every_op_refuses_or_computes_hostile_inputs() -> Result<()> {
    let huge = Context::new_no_alloc(1 << 20)?;
    let giants = giants(&huge)?;
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let (mut calls, mut built, mut computed, mut refused_at_compute) = (0u64, 0u64, 0u64, 0u64);
    let mut ops = 0;
    for decl in ggml::ops::catalog() {
        ops += 1;
        // A context per op, so that one op filling it spares the others.
        let ctx = Context::new(24 << 20)?;
        let pool = pool(&ctx)?;
        for round in 0..200 {
            // One giant now and then; repeats make aliased operands.
            let operands: Vec<Tensor<'_>> = (0..decl.arity())
                .map(|_| match draw.next(12) {
                    0 => giants[draw.next(giants.len())],
                    _ => pool[draw.next(pool.len())],
                })
                .collect();
            let mut params = Params {
                flags: draw.next(64) as u32,
                f: [0; 4].map(|_| FLOATS[draw.next(FLOATS.len())]),
                i: [0; 4].map(|_| INTS[draw.next(INTS.len())]),
            };
            if decl.family() == Family::Custom {
                // Bit 1 makes the closure panic: tests/ops/custom.rs tests
                // that; here it would only flood the output.
                params.flags &= !2;
            }
            calls += 1;
            let Ok(t) = decl.build(&operands, &params) else {
                continue;
            };
            built += 1;
            if t.len() > 1 << 18 {
                continue;
            }
            let threads = THREADS[round % THREADS.len()];
            let outcome = ctx.build_graph(&[t]).and_then(|graph| {
                let mut data = ctx.data()?;
                graph.compute_with(&mut data, Compute::new().threads(threads))
            });
            match outcome {
                Ok(()) => computed += 1,
                Err(_) => refused_at_compute += 1,
            }
        }
    }
    eprintln!(
        "{ops} ops, {calls} calls: {built} built, {computed} computed, \
         {refused_at_compute} refused at compute"
    );
    ensure!(
        built > calls / 20 && computed > 0,
        "too few calls got through to test anything: {built} built, {computed} computed"
    );
    Ok(())
}
