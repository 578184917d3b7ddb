//! Side-by-side benchmark driver: the workloads W1–W10 of BENCHMARKS.md through
//! the safe `ggml` API, run alternately with the C program of
//! `scripts/bench-c/bench.c` (same ggml libraries), printed as one table.
//!
//! ```text
//! cargo bench --bench compare -- [--c-bin PATH] [--rounds N] [--reps N] [--quick] [--only w2,w5]
//! ```
//!
//! Without `--c-bin` only the Rust column is filled. `scripts/bench` builds the
//! C program and passes it. Each measurement runs in a fresh child process
//! (`--child <workload>`), Rust and C taking turns, so both see the same
//! machine state; a child reports the best of `--reps` repetitions and the
//! table shows the best over `--rounds` rounds. One-thread rows run the child
//! under `taskset -c 0`: the safe crate's conversions use every core the
//! process may run on, and so does the C program. The `scaling` job (Rust
//! only) times the conversions on one thread (`ggml::set_max_threads(1)`) and
//! on all cores alternately in one process, for the scaling target.

mod common;
#[cfg(feature = "rpc")]
mod rpc;
use common::{random, QUANT_TYPES};

use std::collections::HashMap;
use std::ffi::c_void;
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use ggml::half::f16;
use ggml::ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use ggml::{Compute, Context, Type};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

// ------------------------------------------------------------------ options --

#[derive(Clone)]
struct Options {
    quick: bool,
    reps: usize,
    rounds: usize,
    tag: String,
    c_bin: Option<String>,
    only: Option<Vec<String>>,
    gguf: Option<String>,
    llama_model: Option<String>,
    llama_c_bin: Option<String>,
}

impl Options {
    fn parse() -> (Options, Option<String>) {
        let mut o = Options {
            quick: false,
            reps: 3,
            rounds: 3,
            tag: String::new(),
            c_bin: None,
            only: None,
            gguf: None,
            llama_model: None,
            llama_c_bin: None,
        };
        let mut child = None;
        let mut reps_given = false;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" | "--test" => o.quick = true,
                "--reps" => {
                    o.reps = args.next().and_then(|v| v.parse().ok()).unwrap_or(3);
                    reps_given = true;
                }
                "--rounds" => o.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(3),
                "--tag" => o.tag = args.next().unwrap_or_default(),
                "--c-bin" => o.c_bin = args.next(),
                "--only" => {
                    o.only = args
                        .next()
                        .map(|v| v.split(',').map(str::to_owned).collect())
                }
                "--child" => child = args.next(),
                "--gguf" => o.gguf = args.next(),
                "--llama-model" => o.llama_model = args.next(),
                "--llama-c-bin" => o.llama_c_bin = args.next(),
                // `cargo bench` passes `--bench`; anything else is ignored too.
                _ => {}
            }
        }
        if o.quick {
            o.rounds = 1;
            if !reps_given {
                o.reps = 1;
            }
        }
        o.reps = o.reps.max(1);
        o.rounds = o.rounds.max(1);
        (o, child)
    }
}

// ------------------------------------------------------------------ helpers --

/// One measurement line, the format the C program prints too.
fn report(o: &Options, key: &str, variant: Option<&str>, seconds: f64, work: f64, unit: &str) {
    let variant = variant.map(|v| format!(" @{v}")).unwrap_or_default();
    println!(
        "RESULT\t{key}{}{variant}\t{seconds:.9e}\t{work:.6e}\t{unit}",
        o.tag
    );
}

/// Best wall time of `reps` runs of `f`.
fn best_of(reps: usize, mut f: impl FnMut() -> Res) -> Res<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

extern "C" {
    // libc's, linked by std anyway.
    fn madvise(addr: *mut c_void, len: usize, advice: i32) -> i32;
}
const MADV_HUGEPAGE: i32 = 14;
const HUGE_PAGE: usize = 2 << 20;

/// A zeroed, touched buffer of `n` `T`s starting on a 2 MiB boundary,
/// optionally advised for transparent huge pages (as the C side allocates).
struct Buffer<T> {
    storage: Vec<T>,
    offset: usize,
    len: usize,
}

impl<T: Copy + Default> Buffer<T> {
    fn new(len: usize, huge: bool) -> Buffer<T> {
        let size = std::mem::size_of::<T>();
        let mut storage: Vec<T> = Vec::with_capacity(len + HUGE_PAGE / size);
        let addr = storage.as_ptr() as usize;
        let offset = (addr.next_multiple_of(HUGE_PAGE) - addr) / size;
        if huge {
            // SAFETY: advising (not changing) memory we own, page-aligned start.
            unsafe {
                madvise(
                    storage.as_mut_ptr().add(offset).cast(),
                    (len * size).next_multiple_of(4096),
                    MADV_HUGEPAGE,
                )
            };
        }
        storage.resize(len + offset, T::default());
        Buffer {
            storage,
            offset,
            len,
        }
    }

    fn slice(&self) -> &[T] {
        &self.storage[self.offset..self.offset + self.len]
    }

    fn slice_mut(&mut self) -> &mut [T] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

/// `len` random values in a buffer aligned as the C program's (2 MiB), so
/// both sides read and write memory of the same alignment.
fn random_buffer(len: usize) -> Buffer<f32> {
    let mut buffer = Buffer::new(len, false);
    buffer.slice_mut().copy_from_slice(&random(len));
    buffer
}

/// A context whose memory (`bytes` + slack) is a touched buffer of ours,
/// advised for huge pages or not.
fn context_over(bytes: usize, huge: bool) -> Res<Context> {
    let len = bytes + HUGE_PAGE + (1 << 16);
    let mut buffer = vec![0u8; len];
    if huge {
        let addr = buffer.as_ptr() as usize;
        let start = addr.next_multiple_of(4096) - addr;
        // SAFETY: advising memory we own, page-aligned start, in bounds.
        unsafe {
            madvise(
                buffer.as_mut_ptr().add(start).cast(),
                (len - start) / 4096 * 4096,
                MADV_HUGEPAGE,
            )
        };
    }
    buffer.fill(1);
    Ok(Context::with_buffer(buffer, false)?)
}

/// Workloads of about a millisecond (W1, W5) repeat this many times more.
const SHORT_REPS: usize = 10;

/// The memory-bound copies of a few milliseconds (W4, W6) repeat this many
/// times more: their best time needs more tries than compute-bound rows.
const MEMORY_REPS: usize = 4;

// ---------------------------------------------------------------- workloads --

/// W1: 10,000 chained `add`s of 1-element f32 tensors, one thread.
fn w1(o: &Options) -> Res {
    let n_ops = if o.quick { 100 } else { 10_000 };
    let (mut build, mut compute, mut again) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..o.reps * SHORT_REPS {
        let mem = (n_ops + 4) * Context::tensor_size(Type::F32, &[1])?
            + Context::graph_size(n_ops + 4).expect("graph size")
            + (1 << 16);
        let ctx = Context::new(mem)?;
        let t0 = Instant::now();
        let a = ctx.new_tensor(Type::F32, &[1])?;
        let b = ctx.new_tensor(Type::F32, &[1])?;
        let mut x = a;
        for _ in 0..n_ops {
            x = ctx.add(x, b)?;
        }
        let graph = ctx.build_graph(&[x])?;
        build = build.min(t0.elapsed().as_secs_f64());

        let mut data = ctx.data()?;
        data.view_mut::<f32>(a)?[[0]] = 1.0;
        data.view_mut::<f32>(b)?[[0]] = 0.5;
        let t1 = Instant::now();
        graph.compute_with(&mut data, Compute::new().threads(1))?;
        compute = compute.min(t1.elapsed().as_secs_f64());
        assert_eq!(data.view::<f32>(x)?[[0]], 1.0 + 0.5 * n_ops as f32);
        // The same graph again: the one-time checks are not repeated.
        let t2 = Instant::now();
        graph.compute_with(&mut data, Compute::new().threads(1))?;
        again = again.min(t2.elapsed().as_secs_f64());
        assert_eq!(data.view::<f32>(x)?[[0]], 1.0 + 0.5 * n_ops as f32);
    }
    report(o, "W1 build", None, build, n_ops as f64, "op");
    report(o, "W1 compute", None, compute, n_ops as f64, "op");
    report(o, "W1 compute again", None, again, n_ops as f64, "op");
    Ok(())
}

fn matrix_side(o: &Options) -> usize {
    if o.quick {
        256
    } else {
        4096
    }
}

/// W2: quantize a 4096×4096 f32 matrix.
fn w2(o: &Options) -> Res {
    let n = matrix_side(o);
    let input = random_buffer(n * n);
    let src = ArrayView2::from_shape((n, n), input.slice())?;
    let bytes = (n * n * 4) as f64;
    for ty in QUANT_TYPES {
        let ctx = Context::new(Context::tensor_size(ty, &[n, n])? + (1 << 16))?;
        let t = ctx.new_tensor(ty, &[n, n])?;
        let mut data = ctx.data()?;
        data.bytes_mut(t)?.fill(0);
        let key = format!("W2 quantize {}", ty.name());
        let s = best_of(o.reps, || Ok(data.copy_from_array(t, &src)?))?;
        report(o, &key, Some("copy_from_array"), s, bytes, "bytes");
        let s = best_of(o.reps, || {
            let dst = data.bytes_mut(t)?;
            Ok(ggml::convert::from_f32(
                ty,
                src.as_slice().expect("standard"),
                dst,
                n,
                None,
            )?)
        })?;
        report(o, &key, Some("convert::from_f32"), s, bytes, "bytes");
    }
    Ok(())
}

/// W3: dequantize the same back to f32.
fn w3(o: &Options) -> Res {
    let n = matrix_side(o);
    let input = random_buffer(n * n);
    let src = ArrayView2::from_shape((n, n), input.slice())?;
    let bytes = (n * n * 4) as f64;
    let mut output = Buffer::<f32>::new(n * n, false);
    let mut out = ArrayViewMut2::from_shape((n, n), output.slice_mut())?;
    for ty in QUANT_TYPES {
        let ctx = Context::new(Context::tensor_size(ty, &[n, n])? + (1 << 16))?;
        let t = ctx.new_tensor(ty, &[n, n])?;
        let mut data = ctx.data()?;
        data.copy_from_array(t, &src)?;
        let key = format!("W3 dequantize {}", ty.name());
        let s = best_of(o.reps, || {
            black_box(data.to_array::<f32>(t)?);
            Ok(())
        })?;
        // C's counterpart allocates a new buffer too ("new buffer").
        report(
            o,
            &format!("{key} new buffer"),
            Some("to_array"),
            s,
            bytes,
            "bytes",
        );
        let s = best_of(o.reps, || Ok(data.copy_to_array(t, &mut out)?))?;
        report(o, &key, Some("copy_to_array"), s, bytes, "bytes");
        let s = best_of(o.reps, || {
            let dst = out.as_slice_mut().expect("standard");
            Ok(ggml::convert::to_f32(ty, data.bytes(t)?, dst)?)
        })?;
        report(o, &key, Some("convert::to_f32"), s, bytes, "bytes");
    }
    Ok(())
}

/// Scaling of the conversions: the W2/W3 copies on one thread
/// (`ggml::set_max_threads(1)`) and on all cores, alternating in this one
/// process so both see the same machine (Rust only).
fn scaling(o: &Options) -> Res {
    let n = matrix_side(o);
    let input = random_buffer(n * n);
    let src = ArrayView2::from_shape((n, n), input.slice())?;
    let mut output = Buffer::<f32>::new(n * n, false);
    let mut out = ArrayViewMut2::from_shape((n, n), output.slice_mut())?;
    let bytes = (n * n * 4) as f64;
    for ty in QUANT_TYPES {
        let ctx = Context::new(Context::tensor_size(ty, &[n, n])? + (1 << 16))?;
        let t = ctx.new_tensor(ty, &[n, n])?;
        let mut data = ctx.data()?;
        let mut best = [[f64::INFINITY; 2]; 2]; // [quantize, dequantize][1 thread, all]
        for _ in 0..o.reps {
            for (slot, cap) in [(0, 1), (1, 0)] {
                ggml::set_max_threads(cap);
                let t0 = Instant::now();
                data.copy_from_array(t, &src)?;
                let t1 = Instant::now();
                data.copy_to_array(t, &mut out)?;
                let t2 = Instant::now();
                best[0][slot] = best[0][slot].min((t1 - t0).as_secs_f64());
                best[1][slot] = best[1][slot].min((t2 - t1).as_secs_f64());
            }
        }
        ggml::set_max_threads(0);
        for (what, [one, all]) in ["quantize", "dequantize"].iter().zip(best) {
            let key = format!("Scaling {what} {}", ty.name());
            report(o, &key, Some("1 thread"), one, bytes, "bytes");
            report(o, &key, Some("all cores"), all, bytes, "bytes");
        }
    }
    Ok(())
}

/// W4: a 64 MiB f32 array into a tensor and back (memcpy is the limit).
fn w4(o: &Options) -> Res {
    let len = if o.quick { 1 << 18 } else { 16 << 20 };
    let bytes = (len * 4) as f64;
    for huge in [false, true] {
        let thp = if huge { " (THP)" } else { "" };
        let mut src = Buffer::<f32>::new(len, huge);
        src.slice_mut().fill(1.5);
        let mut out = Buffer::<f32>::new(len, huge);
        let ctx = context_over(len * 4, huge)?;
        let t = ctx.new_tensor(Type::F32, &[len])?;
        let mut data = ctx.data()?;
        let src_view = ArrayView1::from(src.slice());
        let s = best_of(o.reps * MEMORY_REPS, || {
            Ok(data.copy_from_array(t, &src_view)?)
        })?;
        report(
            o,
            &format!("W4 copy in{thp}"),
            Some("copy_from_array"),
            s,
            bytes,
            "bytes",
        );
        let s = best_of(o.reps * MEMORY_REPS, || {
            let mut out_view = ArrayViewMut1::from(out.slice_mut());
            Ok(data.copy_to_array(t, &mut out_view)?)
        })?;
        report(
            o,
            &format!("W4 copy out{thp}"),
            Some("copy_to_array"),
            s,
            bytes,
            "bytes",
        );
        let s = best_of(o.reps * MEMORY_REPS, || {
            let view = data.view::<f32>(t)?;
            let v = view.as_slice().expect("contiguous");
            out.slice_mut().copy_from_slice(v);
            Ok(())
        })?;
        report(
            o,
            &format!("W4 copy out{thp}"),
            Some("view + copy_from_slice"),
            s,
            bytes,
            "bytes",
        );
    }
    Ok(())
}

/// W5: Q4_0 and F16 4096×4096 weights times f32 input, batch 1 and 32, all cores.
fn w5(o: &Options) -> Res {
    let n = matrix_side(o);
    let w = Array2::from_shape_vec((n, n), random(n * n))?;
    for ty in [Type::Q4_0, Type::F16] {
        for batch in [1usize, 32] {
            let mem = Context::tensor_size(ty, &[n, n])?
                + 2 * Context::tensor_size(Type::F32, &[batch, n])?
                + Context::graph_size(8).expect("graph size")
                + (1 << 20);
            let ctx = Context::new(mem)?;
            let a = ctx.tensor_from_array_as(ty, &w)?;
            let x =
                ctx.tensor_from_array(&Array2::from_shape_vec((batch, n), random(batch * n))?)?;
            let y = ctx.mul_mat(a, x)?;
            let graph = ctx.build_graph(&[y])?;
            let mut data = ctx.data()?;
            graph.compute(&mut data)?; // warms caches, as the C side's first run
            let s = best_of(o.reps * SHORT_REPS, || Ok(graph.compute(&mut data)?))?;
            let key = format!("W5 mul_mat {} batch {batch}", ty.name());
            report(o, &key, None, s, 2.0 * (n * n * batch) as f64, "flop");
        }
    }
    Ok(())
}

/// W8 sizes: layer width, layers, batch.
fn w8_sizes(o: &Options) -> (usize, usize, usize) {
    if o.quick {
        (256, 2, 4)
    } else {
        (2048, 4, 8)
    }
}

/// W8: the backend path. Q4_0 weights of `layers` layers uploaded once to a
/// backend buffer (the CPU's, or `GGML_BENCH_DEVICE`'s), intermediates placed by the graph allocator; each
/// step writes the input, computes on the backend and reads the output.
fn w8(o: &Options) -> Res {
    use ggml::backend::{Backend, Device};
    // GGML_BENCH_DEVICE names another device (e.g. CUDA0), as for the C side.
    let backend = match std::env::var("GGML_BENCH_DEVICE") {
        Ok(name) if !name.is_empty() && name != "CPU" => Backend::new(Device::by_name(&name)?)?,
        _ => Backend::cpu()?,
    };
    let (n, layers, batch) = w8_sizes(o);
    let s = w8_on(o, backend)?;
    report(
        o,
        "W8 backend step Q4_0",
        None,
        s,
        2.0 * (n * n * batch * layers) as f64,
        "flop",
    );
    Ok(())
}

/// W8's step on `backend`: the best time of one step.
fn w8_on(o: &Options, mut backend: ggml::backend::Backend) -> Res<f64> {
    use ggml::backend::GraphAllocator;
    let (n, layers, batch) = w8_sizes(o);
    let ctx = Context::new_no_alloc(1 << 20)?;
    let weights = (0..layers)
        .map(|_| ctx.new_tensor(Type::Q4_0, &[n, n]))
        .collect::<ggml::Result<Vec<_>>>()?;
    let x = ctx.new_tensor(Type::F32, &[batch, n])?;
    ctx.allocate(backend.buffer_type())?;
    let mut h = x;
    for &w in &weights {
        h = ctx.mul_mat(w, h)?;
    }
    let graph = ctx.build_graph(&[h])?;
    let mut allocator = GraphAllocator::for_backend(&backend)?;
    allocator.allocate(&graph)?;
    let mut data = ctx.data()?;
    let w = Array2::from_shape_vec((n, n), random(n * n))?;
    for &t in &weights {
        data.copy_from_array(t, &w)?;
    }
    let input = Array2::from_shape_vec((batch, n), random(batch * n))?;
    let mut output = Array2::<f32>::zeros((batch, n));
    let mut step = || -> Res {
        data.copy_from_array(x, &input)?;
        backend.compute(&graph, &mut data)?;
        data.copy_to_array(h, &mut output)?;
        Ok(())
    };
    step()?; // warms caches, as the C side's first run
    best_of(o.reps * SHORT_REPS, step)
}

/// W10 sizes: model width, heads, key/value heads, feed-forward width
/// (Qwen2.5-0.5B's shapes; tiny with `--quick`).
fn w10_sizes(o: &Options) -> (usize, usize, usize, usize) {
    if o.quick {
        (128, 4, 2, 256)
    } else {
        (896, 14, 2, 4864)
    }
}

/// W10: one llama-style transformer block through the safe ops (rms_norm,
/// mul_mat with Q4_0 weights, rope_ext, soft_max_ext with a causal mask,
/// swiglu, add), batch 1 and 32: the graph built once (timed), computed
/// repeatedly on the CPU backend.
fn w10(o: &Options) -> Res {
    use ggml::ops::{Rope, RopeMode, SoftMax};
    let (d, heads, kv_heads, ff) = w10_sizes(o);
    let hd = d / heads;
    let kvd = hd * kv_heads;
    for t in [1usize, 32] {
        let ctx = Context::new(64 << 20)?;
        let mk = |rows: usize, cols: usize| -> Res<ggml::Tensor<'_>> {
            let w = Array2::from_shape_vec((rows, cols), random(rows * cols))?;
            Ok(ctx.tensor_from_array_as(Type::Q4_0, &w)?)
        };
        let (wq, wk, wv, wo) = (mk(d, d)?, mk(kvd, d)?, mk(kvd, d)?, mk(d, d)?);
        let (wg, wu, wd) = (mk(ff, d)?, mk(ff, d)?, mk(d, ff)?);
        let norm1 = ctx.tensor_from_array(&ggml::ndarray::Array1::from(random(d)))?;
        let norm2 = ctx.tensor_from_array(&ggml::ndarray::Array1::from(random(d)))?;
        let x = ctx.tensor_from_array(&Array2::from_shape_vec((t, d), random(t * d))?)?;
        let pos = ctx.tensor_from_array(&ggml::ndarray::Array1::from_iter(0..t as i32))?;
        let mask = ctx.tensor_from_array(&Array2::from_shape_fn((t, t), |(i, j)| {
            if j > i {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        }))?;
        let started = Instant::now();
        let rope = Rope {
            mode: RopeMode::Neox,
            freq_base: 1e6,
            ..Rope::new(hd as i32)
        };
        let h = x.rms_norm(1e-6)?.mul(norm1)?;
        let q = wq
            .mul_mat(h)?
            .reshape(&[t, heads, hd])?
            .rope_ext(pos, None, &rope)?;
        let k = wk
            .mul_mat(h)?
            .reshape(&[t, kv_heads, hd])?
            .rope_ext(pos, None, &rope)?;
        let v = wv.mul_mat(h)?.reshape(&[t, kv_heads, hd])?;
        let q = q.permute([0, 2, 1, 3])?;
        let k = k.permute([0, 2, 1, 3])?;
        let scores = k.mul_mat(q)?.soft_max_ext(&SoftMax {
            mask: Some(mask),
            scale: 1.0 / (hd as f32).sqrt(),
            ..SoftMax::default()
        })?;
        let vt = v.permute([1, 2, 0, 3])?.cont()?;
        let attn = vt
            .mul_mat(scores)?
            .permute([0, 2, 1, 3])?
            .cont()?
            .reshape(&[t, d])?;
        let x1 = wo.mul_mat(attn)?.add(x)?;
        let h2 = x1.rms_norm(1e-6)?.mul(norm2)?;
        let mlp = wd.mul_mat(wg.mul_mat(h2)?.swiglu_split(wu.mul_mat(h2)?)?)?;
        let out = mlp.add(x1)?;
        let graph = ctx.build_graph(&[out])?;
        let build = started.elapsed().as_secs_f64();
        let mut data = ctx.data()?;
        graph.compute(&mut data)?; // warms caches, as the C side's first run
        let s = best_of(o.reps * SHORT_REPS, || Ok(graph.compute(&mut data)?))?;
        let flop = 2.0 * (t * (2 * d * d + 2 * d * kvd + 3 * d * ff)) as f64;
        report(
            o,
            &format!("W10 block build b{t}"),
            None,
            build,
            graph.n_nodes() as f64,
            "op",
        );
        report(o, &format!("W10 block compute b{t}"), None, s, flop, "flop");
    }
    Ok(())
}

/// W9 sizes: vocabulary, layers, layer width.
fn w9_sizes(o: &Options) -> (usize, usize, usize) {
    if o.quick {
        (2_000, 2, 64)
    } else {
        (150_000, 12, 1024)
    }
}

/// The model-like file W9 opens, written once with the crate's writer
/// (`target/bench/w9-*.gguf`): a 150,000-token vocabulary (tokens, scores,
/// types, merges), llama-style keys, 12 layers of Q8_0 attention and
/// feed-forward weights with f32 norms, f16 embeddings, a Q6_K output:
/// 110 tensors, about 250 MB.
fn w9_file(o: &Options) -> Res<String> {
    use ggml::gguf::{ArrayValue, Writer};
    let (vocab, layers, n) = w9_sizes(o);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("w9-{vocab}-{layers}-{n}.gguf"));
    if path.exists() {
        return Ok(path.display().to_string());
    }
    eprintln!("writing {} ...", path.display());
    let ff = n * 11 / 4 / 32 * 32;
    let tokens: Vec<String> = (0..vocab).map(|i| format!("▁tok{i:x}")).collect();
    let merges: Vec<String> = (0..vocab).map(|i| format!("m{} e{i}", i % 97)).collect();
    let scores: Vec<f32> = (0..vocab).map(|i| -(i as f32)).collect();
    let types: Vec<i32> = (0..vocab).map(|i| 1 + (i % 3) as i32).collect();
    let mut w = Writer::new();
    w.set("general.architecture", "llama")?;
    w.set("general.name", "w9 benchmark model")?;
    w.set("general.file_type", 7u32)?;
    w.set("general.quantization_version", 2u32)?;
    for (k, v) in [
        ("context_length", 4096u32),
        ("embedding_length", n as u32),
        ("block_count", layers as u32),
        ("feed_forward_length", ff as u32),
        ("attention.head_count", 16),
        ("attention.head_count_kv", 4),
        ("rope.dimension_count", (n / 16) as u32),
    ] {
        w.set(&format!("llama.{k}"), v)?;
    }
    w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f32)?;
    w.set("tokenizer.ggml.model", "gpt2")?;
    w.set("tokenizer.ggml.tokens", ArrayValue::strings(&tokens))?;
    w.set("tokenizer.ggml.scores", scores)?;
    w.set("tokenizer.ggml.token_type", types)?;
    w.set("tokenizer.ggml.merges", ArrayValue::strings(&merges))?;
    w.set("tokenizer.ggml.bos_token_id", 1u32)?;
    w.set(
        "tokenizer.chat_template",
        "{% for m in messages %}{{ m.content }}{% endfor %}",
    )?;
    let fill = |first: usize, out: &mut [f32]| {
        for (i, v) in out.iter_mut().enumerate() {
            *v = (((first * 7919 + i) % 1009) as f32 / 504.5 - 1.0) * 0.05;
        }
        Ok(())
    };
    w.add_rows("token_embd.weight", Type::F16, &[vocab, n], None, fill)?;
    for l in 0..layers {
        w.add_rows(
            &format!("blk.{l}.attn_norm.weight"),
            Type::F32,
            &[n],
            None,
            fill,
        )?;
        for m in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            w.add_rows(
                &format!("blk.{l}.{m}.weight"),
                Type::Q8_0,
                &[n, n],
                None,
                fill,
            )?;
        }
        w.add_rows(
            &format!("blk.{l}.ffn_norm.weight"),
            Type::F32,
            &[n],
            None,
            fill,
        )?;
        for (m, shape) in [
            ("ffn_gate", [ff, n]),
            ("ffn_up", [ff, n]),
            ("ffn_down", [n, ff]),
        ] {
            w.add_rows(
                &format!("blk.{l}.{m}.weight"),
                Type::Q8_0,
                &shape,
                None,
                fill,
            )?;
        }
    }
    w.add_rows("output_norm.weight", Type::F32, &[n], None, fill)?;
    w.add_rows(
        "output.weight",
        Type::Q6_K,
        &[vocab, n.max(256)],
        None,
        fill,
    )?;
    let tmp = path.with_extension("tmp");
    w.write_to_file(&tmp)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path.display().to_string())
}

/// W9: open a model-like GGUF file and index it: validate the header and
/// every key and tensor info, read the architecture, the vocabulary size and
/// every tensor's name, type and shape (the C side: `gguf_init_from_file`
/// with `no_alloc` and no context, then the same reads).
fn w9(o: &Options) -> Res {
    let path = o.gguf.clone().ok_or("w9 needs --gguf PATH")?;
    let mut work = 0usize;
    let s = best_of(o.reps * SHORT_REPS, || {
        // SAFETY: the benchmark's own file, not modified while it runs.
        let g = unsafe { ggml::gguf::Gguf::open(&path)? };
        let arch = g.architecture()?.unwrap_or("");
        let tokens = g
            .get::<ggml::gguf::ArrayValue>("tokenizer.ggml.tokens")?
            .len();
        let mut sum = arch.len() + tokens;
        for t in g.tensors() {
            sum += t.name().len() + t.ty() as usize + t.ne()[0] as usize;
        }
        work = black_box(sum);
        Ok(())
    })?;
    let _ = work;
    report(o, "W9 GGUF open + index", None, s, 1.0, "op");
    Ok(())
}

/// L1/L2 sizes: prompt tokens, generated tokens.
fn llama_sizes(o: &Options) -> (usize, usize) {
    if o.quick {
        (32, 8)
    } else {
        (512, 128)
    }
}

/// L1, L2: the llama layer on the test model. A prompt of 512 tokens in one
/// batch, then 128 tokens generated one at a time, greedy, through the safe
/// API (`Context::decode`, `Sampler::sample`) against `llama_ref bench`
/// making the same llama.cpp calls (`llama_decode`, `llama_sampler_sample`);
/// both on every core, n_batch = n_ubatch = 512, flash attention off.
fn llama(o: &Options) -> Res {
    use ggml::llama::{Batch, Context, ContextParams, FlashAttention, Model, Sampler};
    let path = o
        .llama_model
        .clone()
        .ok_or("llama needs --llama-model PATH")?;
    let (pp, tg) = llama_sizes(o);
    let model = Model::load(&path)?;
    let n_vocab = model.vocab().n_tokens();
    let threads = ggml::available_cores();
    let params = ContextParams::new()
        .n_ctx((pp + tg).next_multiple_of(256) as u32)
        .n_batch(512)
        .n_ubatch(512)
        .threads(threads)
        .threads_batch(threads)
        .flash_attn(FlashAttention::Disabled);
    let mut ctx = Context::new(&model, &params)?;
    let mut sampler = Sampler::greedy(&model);
    let prompt: Vec<i32> = (0..pp as i32).map(|i| (i * 7919 + 13) % n_vocab).collect();
    let prompt_batch = Batch::from_prompt(&prompt)?;
    let mut batch = Batch::new();
    let (mut best_pp, mut best_tg) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..o.reps {
        ctx.clear_memory(true);
        let t = Instant::now();
        ctx.decode(&prompt_batch)?;
        best_pp = best_pp.min(t.elapsed().as_secs_f64());
        let mut token = sampler.sample(&ctx, pp - 1)?;
        let t = Instant::now();
        for i in 0..tg {
            batch.clear();
            batch.add(token, (pp + i) as i32, &[0], true)?;
            ctx.decode(&batch)?;
            token = sampler.sample(&ctx, 0)?;
        }
        best_tg = best_tg.min(t.elapsed().as_secs_f64());
    }
    report(
        o,
        &format!("L1 prompt {pp} tokens"),
        None,
        best_pp,
        pp as f64,
        "token",
    );
    report(
        o,
        &format!("L2 generate {tg} tokens"),
        None,
        best_tg,
        tg as f64,
        "token",
    );
    Ok(())
}

/// L1, L2 through the crate's own llama transformer
/// (`ggml::transformer`, the forward pass written in the safe ops) on the
/// same file, prompt and threads; rows `@transformer` against the same C
/// figures (llama.cpp's graph through `llama_ref bench`).
fn transformer(o: &Options) -> Res {
    use ggml::backend::Backend;
    use ggml::transformer::{Model, Options as ModelOptions};
    let path = o
        .llama_model
        .clone()
        .ok_or("transformer needs --llama-model PATH")?;
    let (pp, tg) = llama_sizes(o);
    let mut backend = Backend::cpu()?;
    backend.set_threads(ggml::available_cores())?;
    let options = ModelOptions {
        n_ctx: (pp + tg).next_multiple_of(256),
        n_batch: 512,
        ..ModelOptions::default()
    };
    let model = Model::load(&path, &backend, options)?;
    let n_vocab = model.hparams().n_vocab as i32;
    let mut session = model.session(backend)?;
    let prompt: Vec<i32> = (0..pp as i32).map(|i| (i * 7919 + 13) % n_vocab).collect();
    let argmax = |row: ggml::ndarray::ArrayView1<'_, f32>| {
        row.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as i32)
    };
    let (mut best_pp, mut best_tg) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..o.reps {
        session.clear();
        let t = Instant::now();
        let logits = session.decode(&prompt, false)?;
        best_pp = best_pp.min(t.elapsed().as_secs_f64());
        let mut token = argmax(logits.row(0));
        let t = Instant::now();
        for _ in 0..tg {
            let logits = session.decode(&[token], false)?;
            token = argmax(logits.row(0));
        }
        best_tg = best_tg.min(t.elapsed().as_secs_f64());
    }
    report(
        o,
        &format!("L1 prompt {pp} tokens"),
        Some("transformer"),
        best_pp,
        pp as f64,
        "token",
    );
    report(
        o,
        &format!("L2 generate {tg} tokens"),
        Some("transformer"),
        best_tg,
        tg as f64,
        "token",
    );
    Ok(())
}

/// W6: f32 → f16 of 64 MiB.
fn w6(o: &Options) -> Res {
    let len = if o.quick { 1 << 18 } else { 16 << 20 };
    let bytes = (len * 4) as f64;
    let mut src = Buffer::<f32>::new(len, false);
    src.slice_mut().copy_from_slice(&random(len));
    let mut dst = Buffer::<f16>::new(len, false);
    let s = best_of(o.reps * MEMORY_REPS, || {
        ggml::convert::f32_to_f16(src.slice(), dst.slice_mut());
        Ok(())
    })?;
    report(
        o,
        "W6 f32->f16",
        Some("convert::f32_to_f16"),
        s,
        bytes,
        "bytes",
    );

    let ctx = Context::new(Context::tensor_size(Type::F16, &[len])? + (1 << 16))?;
    let t = ctx.new_tensor(Type::F16, &[len])?;
    let mut data = ctx.data()?;
    data.bytes_mut(t)?.fill(0);
    let src_view = ArrayView1::from(src.slice());
    let s = best_of(o.reps * MEMORY_REPS, || {
        Ok(data.copy_from_array(t, &src_view)?)
    })?;
    report(o, "W6 f32->f16", Some("copy_from_array"), s, bytes, "bytes");
    Ok(())
}

/// W7: an ndarray view of a 1 KiB and of a 1 GiB tensor.
fn w7(o: &Options) -> Res {
    let big = if o.quick { 1 << 18 } else { 1 << 28 };
    let calls = if o.quick { 1_000 } else { 1_000_000 };
    let ctx = Context::new(
        Context::tensor_size(Type::F32, &[256])? + Context::tensor_size(Type::F32, &[big])? + 4096,
    )?;
    let small_t = ctx.new_tensor(Type::F32, &[256])?;
    let big_t = ctx.new_tensor(Type::F32, &[big])?;
    let data = ctx.data()?;
    let big_label = if o.quick { "1 MiB" } else { "1 GiB" };
    for (label, t) in [("1 KiB", small_t), (big_label, big_t)] {
        let s = best_of(o.reps, || {
            for _ in 0..calls {
                black_box(data.view::<f32>(black_box(t))?);
            }
            Ok(())
        })?;
        report(o, &format!("W7 view {label}"), None, s, calls as f64, "op");
    }
    Ok(())
}

fn run_child(o: &Options, workload: &str) -> Res {
    ggml::init()?;
    match workload {
        "w1" => w1(o),
        "w2" => w2(o),
        "w3" => w3(o),
        "w4" => w4(o),
        "w5" => w5(o),
        "w6" => w6(o),
        "w7" => w7(o),
        "w8" => w8(o),
        #[cfg(feature = "rpc")]
        "rpc" => rpc::rpc(o),
        "w9" => w9(o),
        "w10" => w10(o),
        "llama" => llama(o),
        "transformer" => transformer(o),
        "scaling" => scaling(o),
        other => Err(format!("unknown workload {other:?}").into()),
    }
}

// ------------------------------------------------------------- orchestrator --

struct Measurement {
    seconds: f64,
    work: f64,
    unit: String,
}

#[derive(Default)]
struct Results {
    /// (side, key) → best measurement; keys in first-seen order.
    best: HashMap<(Side, String), Measurement>,
    order: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Rust,
    C,
}

impl Results {
    fn add(&mut self, side: Side, output: &str) {
        for line in output.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 5 || f[0] != "RESULT" {
                continue;
            }
            let (Ok(seconds), Ok(work)) = (f[2].parse::<f64>(), f[3].parse::<f64>()) else {
                continue;
            };
            let key = f[1].to_owned();
            let c_key = key.split(" @").next().unwrap_or(&key).to_owned();
            for k in [&c_key, &key] {
                if !self.order.contains(k) {
                    self.order.push(k.clone());
                }
            }
            let m = Measurement {
                seconds,
                work,
                unit: f[4].to_owned(),
            };
            let slot = self.best.entry((side, key)).or_insert(Measurement {
                seconds: f64::INFINITY,
                ..m
            });
            if seconds < slot.seconds {
                slot.seconds = seconds;
            }
        }
    }
}

/// The figure shown for a measurement: MB/s, GFLOP/s or ns/op.
fn figure(m: &Measurement) -> String {
    match m.unit.as_str() {
        "bytes" => format!("{:.0} MB/s", m.work / m.seconds / 1e6),
        "flop" => format!("{:.1} GFLOP/s", m.work / m.seconds / 1e9),
        "token" => format!("{:.1} tok/s", m.work / m.seconds),
        "bytes/step" => format!("{:.0} B/step", m.work),
        _ => format!("{:.1} ns/op", m.seconds / m.work * 1e9),
    }
}

fn run_side(exe: &str, args: &[String], pin: bool) -> Res<String> {
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", exe]);
        c
    } else {
        Command::new(exe)
    };
    let out = cmd.args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "{exe} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn orchestrate(o: &Options) -> Res {
    let me = std::env::current_exe()?.display().to_string();
    let have_taskset = Command::new("taskset").arg("-V").output().is_ok();
    // (workload, tag, pinned to one core)
    let mut jobs: Vec<(&str, &str, bool)> = vec![("w1", "", false)];
    for w in ["w2", "w3"] {
        if have_taskset {
            jobs.push((w, " 1t", true));
        }
        jobs.push((w, " all", false));
    }
    jobs.push(("w4", "", false));
    jobs.push(("w5", "", false));
    if have_taskset {
        jobs.push(("w6", " 1t", true));
    }
    jobs.push(("w6", " all", false));
    jobs.push(("w7", "", false));
    jobs.push(("w8", "", false));
    jobs.push(("w9", "", false));
    jobs.push(("w10", "", false));
    #[cfg(feature = "rpc")]
    jobs.push(("rpc", "", false));
    if o.llama_model.is_some() {
        jobs.push(("llama", "", false));
        jobs.push(("transformer", "", false));
    }
    jobs.push(("scaling", "", false));
    if let Some(only) = &o.only {
        jobs.retain(|(w, _, _)| only.iter().any(|x| x == w));
    }
    let gguf = if jobs.iter().any(|j| j.0 == "w9") {
        Some(w9_file(o)?)
    } else {
        None
    };

    let mut results = Results::default();
    for round in 0..o.rounds {
        for &(w, tag, pin) in &jobs {
            let mut args = vec![w.to_owned(), "--reps".into(), o.reps.to_string()];
            if o.quick {
                args.push("--quick".into());
            }
            if !tag.is_empty() {
                args.extend(["--tag".into(), tag.into()]);
            }
            if let (Some(path), "w9") = (&gguf, w) {
                args.extend(["--gguf".into(), path.clone()]);
            }
            let mut rust_args = vec!["--child".to_owned()];
            rust_args.extend(args.iter().cloned());
            let c_side = o
                .c_bin
                .as_ref()
                .filter(|_| !matches!(w, "w7" | "scaling" | "llama" | "transformer" | "rpc"));
            // The llama rows' C side is llama_ref, with its own arguments.
            let llama_c = match (w, &o.llama_c_bin, &o.llama_model) {
                ("llama", Some(bin), Some(model)) => {
                    let (pp, tg) = llama_sizes(o);
                    Some((
                        bin.clone(),
                        vec![
                            "bench".to_owned(),
                            model.clone(),
                            pp.to_string(),
                            tg.to_string(),
                            ggml::available_cores().to_string(),
                            o.reps.to_string(),
                        ],
                    ))
                }
                _ => None,
            };
            // Alternate who goes first, round by round.
            let rust_first = round % 2 == 0;
            for turn in 0..2 {
                let rust_turn = (turn == 0) == rust_first;
                if rust_turn {
                    eprintln!("round {}: rust {w}{tag}", round + 1);
                    let mut a = rust_args.clone();
                    if matches!(w, "llama" | "transformer" | "rpc") {
                        a.extend([
                            "--llama-model".into(),
                            o.llama_model.clone().unwrap_or_default(),
                        ]);
                    }
                    results.add(Side::Rust, &run_side(&me, &a, pin)?);
                } else if let Some((bin, args)) = &llama_c {
                    eprintln!("round {}: c    {w}{tag}", round + 1);
                    results.add(Side::C, &run_side(bin, args, pin)?);
                } else if let Some(c) = c_side {
                    eprintln!("round {}: c    {w}{tag}", round + 1);
                    results.add(Side::C, &run_side(c, &args, pin)?);
                }
            }
        }
    }
    print_table(o, &results);
    Ok(())
}

fn print_table(o: &Options, r: &Results) {
    println!(
        "\nbest of {} rounds x {} reps; ratio = Rust time / C time (lower is better; 1t = pinned to one core, all = {} cores)\n",
        o.rounds,
        o.reps,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| {:<58} | {:>15} | {:>15} | {:>6} |",
        "workload", "Rust", "C", "ratio"
    );
    println!("|{:-<60}|{:->17}|{:->17}|{:->8}|", ":", ":", ":", ":");
    for key in &r.order {
        let rust = r.best.get(&(Side::Rust, key.clone()));
        let c_key = key.split(" @").next().unwrap_or(key).to_owned();
        let c = r.best.get(&(Side::C, c_key.clone()));
        // A C-only key with Rust variants is shown only through the variants.
        if rust.is_none() && r.order.iter().any(|k| k.starts_with(&format!("{key} @"))) {
            continue;
        }
        let show = |m: Option<&Measurement>| m.map_or("-".to_owned(), figure);
        let ratio = match (rust, c) {
            (Some(a), Some(b)) => format!("{:.2}", a.seconds / b.seconds),
            _ => "-".to_owned(),
        };
        let c_shown = if rust.is_some() || key == &c_key {
            c
        } else {
            None
        };
        println!(
            "| {:<58} | {:>15} | {:>15} | {:>6} |",
            key,
            show(rust),
            show(c_shown),
            ratio
        );
    }

    // Scaling of the safe API's conversions, and W7's size independence.
    let secs = |k: &str| r.best.get(&(Side::Rust, k.to_owned())).map(|m| m.seconds);
    let mut notes = Vec::new();
    for key in &r.order {
        let Some(rest) = key.strip_suffix(" @all cores") else {
            continue;
        };
        if let (Some(one), Some(all)) = (secs(&format!("{rest} @1 thread")), secs(key)) {
            notes.push(format!("{rest}: all cores {:.2}x one thread", one / all));
        }
    }
    let w7: Vec<&String> = r
        .order
        .iter()
        .filter(|k| k.starts_with("W7 view"))
        .collect();
    if let [small, big] = w7[..] {
        if let (Some(a), Some(b)) = (secs(small), secs(big)) {
            notes.push(format!("W7: {big} / {small} time = {:.2}", b / a));
        }
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("{n}");
        }
    }
}

fn main() -> Res {
    #[cfg(feature = "rpc")]
    if let Some(spec) = std::env::args().skip_while(|a| a != "--rpc-worker").nth(1) {
        return rpc::serve(&spec);
    }
    if std::env::args().any(|a| a == "--print-lib-dir") {
        // For scripts/bench: link the C program against these very libraries.
        println!(
            "{}",
            ggml::sys::build_info::LIB_DIR.ok_or("ggml-sys reports no LIB_DIR")?
        );
        return Ok(());
    }
    let (o, child) = Options::parse();
    match child {
        Some(w) => run_child(&o, &w),
        None => orchestrate(&o),
    }
}
