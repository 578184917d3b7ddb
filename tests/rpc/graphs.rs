//! Graphs on workers: one worker's backend, a scheduler over two workers
//! and the CPU, weights uploaded once, and a long run without growth.

use anyhow::Result;
use ggml::backend::rpc::{self, Traffic};
use ggml::backend::{Backend, Device, DeviceType, GraphAllocator, Scheduler};
use ggml::ndarray::{Array2, Ix2};
use ggml::{Context, Tensor, Type};

use crate::common::{assert_close, values};
use crate::workers::{spawn, WorkerProc};

const BATCH: usize = 4;

/// The reference: `relu(x · w1ᵀ) · w2ᵀ`, in ndarray.
fn forward(x: &Array2<f32>, w1: &Array2<f32>, w2: &Array2<f32>) -> Array2<f32> {
    x.dot(&w1.t()).mapv(|v| v.max(0.0)).dot(&w2.t())
}

#[test]
fn a_graph_computes_on_a_worker() -> Result<()> {
    let w = spawn(1)?;
    let device = Device::rpc(&w.endpoint)?;
    assert_eq!(device.device_type(), Some(DeviceType::Gpu));
    assert_eq!(device.rpc_endpoint().as_deref(), Some(w.endpoint.as_str()));
    assert!(device.name().contains(&w.endpoint), "{}", device.name());
    let mem = device.rpc_memory()?;
    assert!(mem.total > 0 && mem.free <= mem.total, "{mem:?}");
    // The same device again (one connection per worker).
    assert_eq!(Device::rpc(&w.endpoint)?, device);
    assert_eq!(Device::cpu()?.rpc_endpoint(), None);

    let mut backend = Backend::new(device)?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let w1 = ctx.new_tensor(Type::F16, &[32, 16])?;
    let w2 = ctx.new_tensor(Type::F32, &[8, 32])?;
    let x = ctx.new_tensor(Type::F32, &[BATCH, 16])?;
    ctx.allocate(backend.buffer_type())?;
    let y = ctx.mul_mat(w2, ctx.mul_mat(w1, x)?.relu()?)?;
    let graph = ctx.build_graph(&[y])?;
    let mut allocator = GraphAllocator::for_backend(&backend)?;
    allocator.allocate(&graph)?;

    let (w1v, w2v) = (values((32, 16), 1), values((8, 32), 2));
    let mut data = ctx.data()?;
    data.copy_from_array(w1, &w1v)?;
    data.copy_from_array(w2, &w2v)?;
    // f16 weights: the reference sees them rounded.
    let w1r = data.to_array_as::<f32, Ix2>(w1)?;
    assert_close(&w1r, &w1v, 1e-3);
    for step in 0..3 {
        let xv = values((BATCH, 16), 10 + step);
        data.copy_from_array(x, &xv)?;
        backend.compute(&graph, &mut data)?;
        assert_close(
            &data.to_array_as::<f32, Ix2>(y)?,
            &forward(&xv, &w1r, &w2v),
            1e-3,
        );
    }
    Ok(())
}

/// Weights of the two layers on two workers, the input and a last op on
/// the CPU.
struct Split<'c> {
    w1: Tensor<'c>,
    w2: Tensor<'c>,
    x: Tensor<'c>,
    y: Tensor<'c>,
}

fn split_model<'c>(ctx: &'c Context, sched: &Scheduler) -> Result<Split<'c>> {
    let (a, b) = (&sched.backends()[0], &sched.backends()[1]);
    let w1 = ctx.new_tensor(Type::F32, &[128, 64])?;
    ctx.allocate_weights(a.buffer_type())?;
    let w2 = ctx.new_tensor(Type::F32, &[16, 128])?;
    ctx.allocate_weights(b.buffer_type())?;
    let x = ctx.new_tensor(Type::F32, &[BATCH, 64])?;
    let h = ctx.mul_mat(w1, x)?.relu()?;
    let y = ctx.mul_mat(w2, h)?.scale(0.5)?;
    Ok(Split { w1, w2, x, y })
}

/// Two workers (kept alive by the returned handles), their devices, and a
/// scheduler over both and the CPU.
fn two_workers() -> Result<(WorkerProc, WorkerProc, Device, Device, Scheduler)> {
    let (wa, wb) = (spawn(1)?, spawn(1)?);
    let (da, db) = (Device::rpc(&wa.endpoint)?, Device::rpc(&wb.endpoint)?);
    let sched = Scheduler::new(vec![da.backend()?, db.backend()?, Backend::cpu()?], 256)?;
    Ok((wa, wb, da, db, sched))
}

#[test]
fn a_scheduler_splits_a_graph_over_two_workers_and_the_cpu() -> Result<()> {
    let (_wa, _wb, da, db, mut sched) = two_workers()?;
    assert_ne!(da, db);
    let ctx = Context::new_no_alloc(1 << 20)?;
    let m = split_model(&ctx, &sched)?;
    let graph = ctx.build_graph(&[m.y])?;
    sched.allocate(&graph)?;
    assert!(sched.n_splits() >= 2, "{} splits", sched.n_splits());

    let (w1v, w2v) = (values((128, 64), 3), values((16, 128), 4));
    let mut data = ctx.data()?;
    data.copy_from_array(m.w1, &w1v)?;
    data.copy_from_array(m.w2, &w2v)?;
    let weights = (64 * 128 * 4) as u64;
    let before = (rpc::traffic(&da).unwrap(), rpc::traffic(&db).unwrap());

    // The same numbers computed locally, by a CPU backend.
    let local = Context::new(1 << 22)?;
    let (lw1, lw2) = (
        local.tensor_from_array(&w1v)?,
        local.tensor_from_array(&w2v)?,
    );
    let lx = local.new_tensor(Type::F32, &[BATCH, 64])?;
    let ly = local
        .mul_mat(lw2, local.mul_mat(lw1, lx)?.relu()?)?
        .scale(0.5)?;
    let lgraph = local.build_graph(&[ly])?;
    let mut ldata = local.data()?;
    let mut cpu = Backend::cpu()?;

    for step in 0..5 {
        let xv = values((BATCH, 64), 100 + step);
        data.copy_from_array(m.x, &xv)?;
        sched.compute(&graph, &mut data)?;
        let got = data.to_array_as::<f32, Ix2>(m.y)?;
        ldata.copy_from_array(lx, &xv)?;
        cpu.compute(&lgraph, &mut ldata)?;
        assert_close(&got, &data_ref(&ldata, ly)?, 1e-4);
        assert_close(&got, &forward(&xv, &w1v, &w2v).mapv(|v| v * 0.5), 1e-3);
    }
    // Five steps moved far less than the weights again: they stayed there.
    let after = (rpc::traffic(&da).unwrap(), rpc::traffic(&db).unwrap());
    let sent = |b: Traffic, a: Traffic| a.sent - b.sent;
    assert!(
        sent(before.0, after.0) < weights,
        "{} bytes sent to worker A in five steps",
        sent(before.0, after.0)
    );
    assert!(sent(before.1, after.1) < weights);
    Ok(())
}

fn data_ref(data: &ggml::TensorData<'_>, t: Tensor<'_>) -> ggml::Result<Array2<f32>> {
    data.to_array_as::<f32, Ix2>(t)
}

/// Open descriptors of this process (Linux).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident memory of this process in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The load test runs alone in a child process of its own: the other tests
/// of this binary open sockets and allocate in parallel, which would move
/// the descriptor count and resident memory it watches.
#[test]
fn hundreds_of_computations_grow_neither_memory_nor_descriptors() -> Result<()> {
    let status = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "graphs::load_alone",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GGML_TEST_RPC_LOAD", "1")
        .status()?;
    assert!(status.success(), "the load test's process: {status}");
    Ok(())
}

#[test]
#[ignore = "run alone by hundreds_of_computations_grow_neither_memory_nor_descriptors"]
fn load_alone() -> Result<()> {
    if std::env::var_os("GGML_TEST_RPC_LOAD").is_none() {
        return Ok(());
    }
    let (_wa, _wb, _da, _db, mut sched) = two_workers()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let m = split_model(&ctx, &sched)?;
    let graph = ctx.build_graph(&[m.y])?;
    sched.allocate(&graph)?;
    let (w1v, w2v) = (values((128, 64), 5), values((16, 128), 6));
    let mut data = ctx.data()?;
    data.copy_from_array(m.w1, &w1v)?;
    data.copy_from_array(m.w2, &w2v)?;
    let mut run = |steps: u32| -> Result<()> {
        for step in 0..steps {
            let xv = values((BATCH, 64), step);
            data.copy_from_array(m.x, &xv)?;
            sched.compute(&graph, &mut data)?;
            let got = data.to_array_as::<f32, Ix2>(m.y)?;
            assert_close(&got, &forward(&xv, &w1v, &w2v).mapv(|v| v * 0.5), 1e-3);
        }
        Ok(())
    };
    run(50)?; // warm: buffers, caches
    let (fds, rss) = (open_fds(), rss_kib());
    run(400)?;
    let (fds2, rss2) = (open_fds(), rss_kib());
    eprintln!("400 computations: descriptors {fds} -> {fds2}, resident {rss} -> {rss2} KiB");
    assert!(fds2 <= fds, "descriptors {fds} -> {fds2}");
    assert!(
        rss2 <= rss + 2048,
        "resident memory {rss} KiB -> {rss2} KiB"
    );
    Ok(())
}

/// One W8-like run: weights, a graph allocator, a few steps; everything
/// freed at the end.
fn run_once(device: Device, steps: usize) -> Result<()> {
    let mut backend = Backend::new(device)?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let w: Vec<_> = (0..3)
        .map(|_| ctx.new_tensor(Type::Q4_0, &[256, 256]))
        .collect::<ggml::Result<_>>()?;
    let x = ctx.new_tensor(Type::F32, &[BATCH, 256])?;
    ctx.allocate(backend.buffer_type())?;
    let mut h = x;
    for &t in &w {
        h = ctx.mul_mat(t, h)?;
    }
    let graph = ctx.build_graph(&[h])?;
    let mut allocator = GraphAllocator::for_backend(&backend)?;
    allocator.allocate(&graph)?;
    let mut data = ctx.data()?;
    let wv = values((256, 256), 9);
    for &t in &w {
        data.copy_from_array(t, &wv)?;
    }
    let wr = data.to_array_as::<f32, Ix2>(w[0])?;
    for step in 0..steps {
        let xv = values((BATCH, 256), step as u32);
        data.copy_from_array(x, &xv)?;
        backend.compute(&graph, &mut data)?;
        let want = xv.dot(&wr.t()).dot(&wr.t()).dot(&wr.t());
        assert_close(&data.to_array_as::<f32, Ix2>(h)?, &want, 0.05);
    }
    Ok(())
}

#[test]
fn contexts_come_and_go_on_one_worker() -> Result<()> {
    let w = spawn(1)?;
    let device = Device::rpc(&w.endpoint)?;
    for steps in [3, 1, 5, 2] {
        run_once(device, steps)?;
    }
    Ok(())
}

#[test]
fn what_cannot_travel_is_refused_before_it_is_sent() -> Result<()> {
    let w = spawn(1)?;
    let mut backend = Backend::new(Device::rpc(&w.endpoint)?)?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let x = ctx.new_tensor(Type::F32, &[4, 8])?;
    ctx.allocate(backend.buffer_type())?;
    // A custom op: its closure lives in this process.
    let y = x.map_custom1(ggml::ops::Tasks::All, |_call| {})?;
    let graph = ctx.build_graph(&[y])?;
    let mut allocator = GraphAllocator::for_backend(&backend)?;
    allocator.allocate(&graph)?;
    let mut data = ctx.data()?;
    match backend.compute(&graph, &mut data) {
        Err(ggml::Error::UnsupportedNode { .. }) => {}
        other => panic!("expected UnsupportedNode, got {other:?}"),
    }
    // The connection is intact.
    assert!(Device::rpc(&w.endpoint)?.rpc_memory()?.total > 0);
    Ok(())
}
