//! Criterion benches of the safe API, workloads W1–W7 of BENCHMARKS.md.
//! For the side-by-side comparison with C, see `benches/compare.rs` and
//! `scripts/bench`.
//!
//! ```text
//! cargo bench --bench safe_api            # figures
//! cargo bench --bench safe_api -- --test  # run each once (smoke test)
//! ```

mod common;
use common::{random, QUANT_TYPES};

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ggml::half::f16;
use ggml::ndarray::{Array1, Array2};
use ggml::{Compute, Context, Type};

const SIDE: usize = 4096;
const COPY_LEN: usize = 16 << 20; // 64 MiB of f32

fn matrix() -> Array2<f32> {
    Array2::from_shape_vec((SIDE, SIDE), random(SIDE * SIDE)).expect("shape")
}

/// W1: 10,000 chained adds of 1-element tensors: building, and computing on one thread.
fn w1_call_overhead(c: &mut Criterion) {
    const N: usize = 10_000;
    let mem = (N + 4) * Context::tensor_size(Type::F32, &[1]).unwrap()
        + Context::graph_size(N + 4).unwrap()
        + 65536;
    let mut g = c.benchmark_group("W1 10k chained add");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("build", |b| {
        b.iter_batched(
            || Context::new(mem).expect("context"),
            |ctx| {
                let a = ctx.new_tensor(Type::F32, &[1]).unwrap();
                let one = ctx.new_tensor(Type::F32, &[1]).unwrap();
                let mut x = a;
                for _ in 0..N {
                    x = ctx.add(x, one).unwrap();
                }
                black_box(ctx.build_graph(&[x]).unwrap().n_nodes());
                ctx
            },
            criterion::BatchSize::PerIteration,
        )
    });
    let ctx = Context::new(mem).expect("context");
    let a = ctx.new_tensor(Type::F32, &[1]).unwrap();
    let one = ctx.new_tensor(Type::F32, &[1]).unwrap();
    let mut x = a;
    for _ in 0..N {
        x = ctx.add(x, one).unwrap();
    }
    let graph = ctx.build_graph(&[x]).unwrap();
    let mut data = ctx.data().unwrap();
    data.view_mut::<f32>(a).unwrap()[[0]] = 0.0;
    data.view_mut::<f32>(one).unwrap()[[0]] = 1.0;
    g.bench_function("compute 1 thread", |b| {
        b.iter(|| {
            graph
                .compute_with(&mut data, Compute::new().threads(1))
                .unwrap()
        })
    });
    g.finish();
}

/// W2 and W3: quantize 4096×4096 f32 and dequantize it back, on all cores.
fn w2_w3_quantize(c: &mut Criterion) {
    let src = matrix();
    let mut out = Array2::<f32>::from_elem((SIDE, SIDE), 0.0);
    let mut g = c.benchmark_group("W2/W3 4096x4096");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes((SIDE * SIDE * 4) as u64));
    for ty in QUANT_TYPES {
        let ctx = Context::new(Context::tensor_size(ty, &[SIDE, SIDE]).unwrap() + 65536)
            .expect("context");
        let t = ctx.new_tensor(ty, &[SIDE, SIDE]).unwrap();
        let mut data = ctx.data().unwrap();
        g.bench_with_input(BenchmarkId::new("quantize", ty.name()), &ty, |b, _| {
            b.iter(|| data.copy_from_array(t, &src).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("dequantize", ty.name()), &ty, |b, _| {
            b.iter(|| data.copy_to_array(t, &mut out).unwrap())
        });
    }
    g.finish();
}

/// W4: a 64 MiB f32 array into a tensor and back.
fn w4_copy(c: &mut Criterion) {
    let src = Array1::from_elem(COPY_LEN, 1.5f32);
    let mut out = Array1::from_elem(COPY_LEN, 0f32);
    let ctx = Context::new(Context::tensor_size(Type::F32, &[COPY_LEN]).unwrap() + 65536)
        .expect("context");
    let t = ctx.new_tensor(Type::F32, &[COPY_LEN]).unwrap();
    let mut data = ctx.data().unwrap();
    let mut g = c.benchmark_group("W4 copy 64 MiB f32");
    g.sample_size(20);
    g.throughput(Throughput::Bytes((COPY_LEN * 4) as u64));
    g.bench_function("in (copy_from_array)", |b| {
        b.iter(|| data.copy_from_array(t, &src).unwrap())
    });
    g.bench_function("out (copy_to_array)", |b| {
        b.iter(|| data.copy_to_array(t, &mut out).unwrap())
    });
    g.bench_function("plain memcpy", |b| {
        let from = src.as_slice().unwrap();
        b.iter(|| out.as_slice_mut().unwrap().copy_from_slice(black_box(from)))
    });
    g.finish();
}

/// W5: Q4_0 / F16 4096×4096 weights times f32 input, batch 1 and 32, all cores.
fn w5_mul_mat(c: &mut Criterion) {
    let w = matrix();
    let mut g = c.benchmark_group("W5 mul_mat 4096x4096");
    g.sample_size(10);
    for ty in [Type::Q4_0, Type::F16] {
        for batch in [1usize, 32] {
            let mem = Context::tensor_size(ty, &[SIDE, SIDE]).unwrap()
                + 2 * Context::tensor_size(Type::F32, &[batch, SIDE]).unwrap()
                + Context::graph_size(8).unwrap()
                + (1 << 20);
            let ctx = Context::new(mem).expect("context");
            let a = ctx.tensor_from_array_as(ty, &w).unwrap();
            let x = Array2::from_shape_vec((batch, SIDE), random(batch * SIDE)).unwrap();
            let x = ctx.tensor_from_array(&x).unwrap();
            let y = ctx.mul_mat(a, x).unwrap();
            let graph = ctx.build_graph(&[y]).unwrap();
            let mut data = ctx.data().unwrap();
            g.throughput(Throughput::Elements((2 * SIDE * SIDE * batch) as u64));
            g.bench_function(BenchmarkId::new(ty.name(), format!("batch {batch}")), |b| {
                b.iter(|| graph.compute(&mut data).unwrap())
            });
        }
    }
    g.finish();
}

/// W6: f32 → f16 of 64 MiB, on all cores.
fn w6_f16(c: &mut Criterion) {
    let src = random(COPY_LEN);
    let mut dst = vec![f16::ZERO; COPY_LEN];
    let mut g = c.benchmark_group("W6 f32->f16 64 MiB");
    g.sample_size(20);
    g.throughput(Throughput::Bytes((COPY_LEN * 4) as u64));
    g.bench_function("convert::f32_to_f16", |b| {
        b.iter(|| ggml::convert::f32_to_f16(black_box(&src), &mut dst))
    });
    g.finish();
}

/// W7: an ndarray view of a 1 KiB and of a 1 GiB tensor (O(1)).
fn w7_views(c: &mut Criterion) {
    let big = 1usize << 28;
    let ctx = Context::new(
        Context::tensor_size(Type::F32, &[256]).unwrap()
            + Context::tensor_size(Type::F32, &[big]).unwrap()
            + 4096,
    )
    .expect("context");
    let small_t = ctx.new_tensor(Type::F32, &[256]).unwrap();
    let big_t = ctx.new_tensor(Type::F32, &[big]).unwrap();
    let data = ctx.data().unwrap();
    let mut g = c.benchmark_group("W7 view");
    for (label, t) in [("1 KiB", small_t), ("1 GiB", big_t)] {
        g.bench_function(label, |b| {
            b.iter(|| black_box(data.view::<f32>(black_box(t)).unwrap().len()))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    w1_call_overhead,
    w2_w3_quantize,
    w4_copy,
    w5_mul_mat,
    w6_f16,
    w7_views
);
criterion_main!(benches);
