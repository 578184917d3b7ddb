//! The backend API: devices, backends, backend memory, the graph allocator
//! and the scheduler, checked against ndarray and against the direct CPU
//! path. `GGML_TEST_DEVICE` (e.g. `CUDA0`) runs the device tests on a GPU.

use anyhow::Result;
use ggml::backend::{
    devices, Backend, BufferType, Device, DeviceType, Event, GraphAllocator, Scheduler,
};
use ggml::ndarray::{Array, Array2, Ix2};
use ggml::{Compute, Context, Error, Tensor, Type};

use crate::assert_err;
use crate::common::{assert_close, values};

fn test_backend() -> Result<Backend> {
    Ok(Backend::new(Device::from_env()?)?)
}

#[test]
fn devices_are_listed_and_found() -> Result<()> {
    let all = devices()?;
    assert!(!all.is_empty());
    let cpu = Device::cpu()?;
    assert!(all.contains(&cpu));
    assert_eq!(cpu.device_type(), Some(DeviceType::Cpu));
    assert!(cpu.is_cpu());
    assert!(!cpu.name().is_empty());
    let memory = cpu.memory();
    assert!(
        memory.total > 0 && memory.free <= memory.total,
        "{memory:?}"
    );
    assert!(!cpu.caps().events);
    assert!(cpu.buffer_type().is_host());
    assert!(cpu.supports_buffer_type(BufferType::cpu()?));
    assert_eq!(Device::by_name(&cpu.name())?, cpu);
    assert_eq!(Device::by_name(&cpu.name().to_lowercase())?, cpu);
    let index = all.iter().position(|d| *d == cpu).expect("listed");
    assert_eq!(Device::get(index)?, cpu);

    assert_err!(Device::get(all.len()), Error::NoDevice { .. });
    assert_err!(Device::by_name("no such device"), Error::NoDevice { .. });
    assert_err!(Device::by_name("CPU\0"), Error::NoDevice { .. });
    Ok(())
}

#[test]
fn gpu_requests_without_a_gpu_say_what_to_enable() -> Result<()> {
    let has_gpu = devices()?.iter().any(|d| {
        matches!(
            d.device_type(),
            Some(DeviceType::Gpu | DeviceType::IntegratedGpu)
        )
    });
    if has_gpu {
        assert!(Backend::gpu().is_ok());
        return Ok(());
    }
    let err = Backend::gpu().unwrap_err();
    let Error::NoDevice { wanted, advice } = &err else {
        panic!("{err}")
    };
    assert_eq!(wanted, "GPU");
    let gpu_feature = cfg!(feature = "cuda") || cfg!(feature = "vulkan") || cfg!(feature = "metal");
    if !gpu_feature {
        assert!(
            advice.contains("cuda") || advice.contains("GGML_BACKEND"),
            "{err}"
        );
    }
    Ok(())
}

#[test]
fn backend_settings() -> Result<()> {
    let mut cpu = Backend::cpu()?;
    assert!(cpu.is_cpu());
    assert_eq!(cpu.device(), Device::cpu()?);
    assert!(cpu.buffer_type().is_host());
    assert_eq!(cpu.threads(), ggml::max_threads().min(ggml::MAX_THREADS));
    assert_err!(cpu.set_threads(0), Error::ZeroThreads);
    cpu.set_threads(3)?;
    assert_eq!(cpu.threads(), 3);
    cpu.set_threads(100_000)?;
    assert_eq!(cpu.threads(), ggml::MAX_THREADS);
    Ok(())
}

#[test]
fn context_buffers_hold_data_and_are_zeroed() -> Result<()> {
    let backend = test_backend()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[3, 4])?;
    let q = ctx.new_tensor(Type::Q8_0, &[2, 64])?;
    let h = ctx.new_tensor(Type::F16, &[5])?;
    assert!(!a.is_allocated());
    let size = ctx.allocate(backend.buffer_type())?;
    assert!(size >= 3 * 4 * 4 + 2 * 68 + 10, "{size}");
    assert!(a.is_allocated() && q.is_allocated());
    assert_err!(
        ctx.allocate(backend.buffer_type()),
        Error::AlreadyAllocated { .. }
    );

    let mut data = ctx.data()?;
    assert_eq!(data.to_array::<f32>(a)?, Array::zeros((3, 4)).into_dyn());
    assert!(data.read_bytes(q)?.iter().all(|&b| b == 0));

    let av = values((3, 4), 1);
    data.copy_from_array(a, &av)?;
    assert_eq!(data.to_array_as::<f32, Ix2>(a)?, av);
    let qv = values((2, 64), 2);
    data.copy_from_array(q, &qv)?;
    assert_close(&data.to_array_as::<f32, Ix2>(q)?, &qv, 0.01);
    data.copy_from_array(h, &Array::linspace(0.0f32, 4.0, 5))?;
    assert_eq!(
        data.to_array::<f32>(h)?.as_slice(),
        Some(&[0.0, 1.0, 2.0, 3.0, 4.0][..])
    );

    // Strided access: a transposed view, copied out and in.
    let at = ctx.transpose(a)?;
    assert_eq!(data.to_array_as::<f32, Ix2>(at)?, av.t());
    data.copy_from_array(at, &av.t().mapv(|v| v * 2.0))?;
    assert_eq!(data.to_array_as::<f32, Ix2>(a)?, av.mapv(|v| v * 2.0));

    // Host memory the context owns is viewable; device memory is not.
    if backend.buffer_type().is_host() {
        assert_eq!(data.view::<f32>(a)?[[1, 2]], av[[1, 2]] * 2.0);
        data.view_mut::<f32>(a)?[[0, 0]] = 7.0;
        assert_eq!(data.to_array_as::<f32, Ix2>(a)?[[0, 0]], 7.0);
    } else {
        assert_err!(data.view::<f32>(a), Error::NotViewable { .. });
    }

    // An allocating context has its arena: no buffers.
    let arena = Context::new(1 << 16)?;
    assert_err!(arena.allocate(BufferType::cpu()?), Error::NotNoAlloc { .. });
    Ok(())
}

/// Weights and an input of three layers: two matrix products with a bias
/// and a scale in between, the middle weights quantized.
struct Model<'a> {
    w1: Tensor<'a>,
    b1: Tensor<'a>,
    w2: Tensor<'a>,
    w3: Tensor<'a>,
    x: Tensor<'a>,
}

const BATCH: usize = 4;

fn build(ctx: &Context) -> ggml::Result<Model<'_>> {
    Ok(Model {
        w1: ctx.new_tensor(Type::F32, &[32, 16])?,
        b1: ctx.new_tensor(Type::F32, &[1, 32])?,
        w2: ctx.new_tensor(Type::Q8_0, &[16, 32])?,
        w3: ctx.new_tensor(Type::F16, &[8, 16])?,
        x: ctx.new_tensor(Type::F32, &[BATCH, 16])?,
    })
}

/// The forward pass: the output, and its nodes (the first layer's three
/// first).
fn layers<'a>(ctx: &'a Context, m: &Model<'a>) -> ggml::Result<(Tensor<'a>, Vec<Tensor<'a>>)> {
    let p1 = ctx.mul_mat(m.w1, m.x)?;
    let s1 = ctx.add(p1, m.b1)?;
    let h1 = ctx.scale(s1, 0.5)?;
    let h2 = ctx.mul_mat(m.w2, h1)?;
    let y = ctx.mul_mat(m.w3, h2)?;
    Ok((y, vec![p1, s1, h1, h2, y]))
}

/// The weights as the tensors hold them (quantized / rounded), and the
/// reference forward pass in ndarray.
struct Reference {
    w1: Array2<f32>,
    b1: Array2<f32>,
    w2: Array2<f32>,
    w3: Array2<f32>,
}

impl Reference {
    fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        let h1 = (x.dot(&self.w1.t()) + &self.b1) * 0.5;
        let h2 = h1.dot(&self.w2.t());
        h2.dot(&self.w3.t())
    }
}

fn upload_weights<'a>(data: &mut ggml::TensorData<'a>, m: &Model<'a>) -> Result<Reference> {
    data.copy_from_array(m.w1, &values((32, 16), 11))?;
    data.copy_from_array(m.b1, &values((1, 32), 12))?;
    data.copy_from_array(m.w2, &values((16, 32), 13))?;
    data.copy_from_array(m.w3, &values((8, 16), 14))?;
    Ok(Reference {
        w1: data.to_array_as(m.w1)?,
        b1: data.to_array_as(m.b1)?,
        w2: data.to_array_as(m.w2)?,
        w3: data.to_array_as(m.w3)?,
    })
}

#[test]
fn model_shaped_graph_through_the_graph_allocator() -> Result<()> {
    let mut backend = test_backend()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let m = build(&ctx)?;
    ctx.allocate(backend.buffer_type())?; // weights and input, once
    let (y, _) = layers(&ctx, &m)?;
    let graph = ctx.build_graph(&[y])?;
    assert!(!y.is_allocated());

    let mut allocator = GraphAllocator::for_backend(&backend)?;
    let size = allocator.allocate(&graph)?;
    assert!(size > 0 && size == allocator.buffer_size());
    assert!(y.is_allocated());

    // The same graph through the direct CPU path, for comparison.
    let direct = Context::new(1 << 20)?;
    let dm = build(&direct)?;
    let (dy, _) = layers(&direct, &dm)?;
    let direct_graph = direct.build_graph(&[dy])?;
    let mut direct_data = direct.data()?;
    upload_weights(&mut direct_data, &dm)?;

    let mut data = ctx.data()?;
    let reference = upload_weights(&mut data, &m)?;
    for step in 0..5 {
        let x = values((BATCH, 16), 100 + step);
        data.copy_from_array(m.x, &x)?;
        backend.compute(&graph, &mut data)?;
        let got = data.to_array_as::<f32, Ix2>(y)?;
        assert_close(&got, &reference.forward(&x), 0.02);
        // Inputs keep their values through the computation.
        assert_eq!(data.to_array_as::<f32, Ix2>(m.x)?, x);

        direct_data.copy_from_array(dm.x, &x)?;
        direct_graph.compute(&mut direct_data)?;
        assert_close(&got, &direct_data.to_array_as::<f32, Ix2>(dy)?, 1e-5);
    }
    // Graphs no larger do not grow the buffer.
    drop(data);
    assert_eq!(allocator.allocate(&graph)?, size);
    Ok(())
}

#[test]
fn allocator_memory_is_lent_until_it_moves_on() -> Result<()> {
    let mut backend = test_backend()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4, 8])?;
    ctx.allocate(backend.buffer_type())?;
    let b = ctx.scale(a, 2.0)?;
    let c = ctx.scale(a, 3.0)?;
    let gb = ctx.build_graph(&[b])?;
    let gc = ctx.build_graph(&[c])?;
    let av = values((4, 8), 5);

    let mut allocator = GraphAllocator::for_backend(&backend)?;
    allocator.allocate(&gb)?;
    {
        let mut data = ctx.data()?;
        data.copy_from_array(a, &av)?;
        backend.compute(&gb, &mut data)?;
        assert_eq!(data.to_array_as::<f32, Ix2>(b)?, av.mapv(|v| v * 2.0));
        // Lent memory is reached by copies only.
        assert_err!(data.view::<f32>(b), Error::NotViewable { .. });
    }

    // Allocating another graph ends the first one's lease.
    allocator.allocate(&gc)?;
    assert!(!b.is_allocated() && c.is_allocated());
    {
        let mut data = ctx.data()?;
        assert_err!(data.to_array::<f32>(b), Error::NoData { .. });
        assert_err!(backend.compute(&gb, &mut data), Error::NoData { .. });
        backend.compute(&gc, &mut data)?;
        assert_eq!(data.to_array_as::<f32, Ix2>(c)?, av.mapv(|v| v * 3.0));
    }

    // Allocating the first again places it again.
    allocator.allocate(&gb)?;
    {
        let mut data = ctx.data()?;
        backend.compute(&gb, &mut data)?;
        assert_eq!(data.to_array_as::<f32, Ix2>(b)?, av.mapv(|v| v * 2.0));
    }

    // Dropping the allocator ends every lease; the context's own buffer stays.
    drop(allocator);
    assert!(!b.is_allocated() && a.is_allocated());
    let data = ctx.data()?;
    assert_err!(data.to_array::<f32>(b), Error::NoData { .. });
    assert_eq!(data.to_array_as::<f32, Ix2>(a)?, av);
    Ok(())
}

#[test]
fn dropping_an_allocator_from_inside_a_computation_defers_its_free() -> Result<()> {
    let mut backend = Backend::cpu()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[8])?;
    ctx.allocate(backend.buffer_type())?;
    let b = ctx.scale(ctx.scale(a, 2.0)?, 3.0)?;
    let graph = ctx.build_graph(&[b])?;
    let mut allocator = Some(GraphAllocator::for_backend(&backend)?);
    allocator.as_mut().expect("set").allocate(&graph)?;
    let mut data = ctx.data()?;
    data.copy_from_array(a, &Array::from_elem(8, 1.0f32))?;
    // The computation pins the allocator's memory: dropping the allocator
    // there must not free it under the computation (it is freed after).
    let mut drop_it = || {
        drop(allocator.take());
        false
    };
    backend.compute_with(
        &graph,
        &mut data,
        Compute::new().abort_callback(&mut drop_it),
    )?;
    // Freed once the computation ended: `b` reads as unallocated.
    assert!(allocator.is_none());
    assert_err!(data.to_array::<f32>(b), Error::NoData { .. });
    Ok(())
}

#[test]
fn backend_compute_refuses_what_it_cannot_do() -> Result<()> {
    let mut backend = test_backend()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4])?;
    let i = ctx.new_tensor(Type::I32, &[4])?;
    let g = ctx.build_graph(&[ctx.scale(a, 2.0)?])?;
    let mut data = ctx.data()?;
    // No memory yet.
    assert_err!(backend.compute(&g, &mut data), Error::NoData { .. });
    drop(data);
    ctx.allocate(backend.buffer_type())?;
    // An op the CPU kernels lack (scale of i32): refused before computing.
    let bad = ctx.scale(i, 2.0)?;
    let gi = ctx.build_graph(&[bad])?;
    let mut allocator = GraphAllocator::for_backend(&backend)?;
    allocator.allocate(&gi)?;
    let mut data = ctx.data()?;
    assert_err!(backend.check(&gi), Error::UnsupportedNode { .. });
    assert_err!(
        backend.compute(&gi, &mut data),
        Error::UnsupportedNode { .. }
    );
    // A token of another context.
    let other = Context::new(1 << 16)?;
    let mut other_data = other.data()?;
    assert_err!(
        backend.compute(&g, &mut other_data),
        Error::WrongContext { .. }
    );
    Ok(())
}

#[test]
fn the_cpu_backend_computes_arena_tensors_and_async() -> Result<()> {
    let mut backend = Backend::cpu()?;
    let ctx = Context::new(1 << 20)?;
    let a = ctx.tensor_from_array(&values((3, 32), 7))?;
    let q = ctx.tensor_from_array_as(Type::Q4_0, &values((5, 32), 8))?;
    let y = ctx.mul_mat(q, a)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    backend.compute_async(&graph, &mut data)?.wait()?;
    let got = data.to_array_as::<f32, Ix2>(y)?;
    graph.compute(&mut data)?;
    assert_eq!(got, data.to_array_as::<f32, Ix2>(y)?);
    Ok(())
}

fn two_cpu_scheduler() -> Result<Scheduler> {
    Ok(Scheduler::new(vec![Backend::cpu()?, Backend::cpu()?], 256)?)
}

#[test]
fn scheduler_splits_a_graph_over_two_backends() -> Result<()> {
    let mut sched = two_cpu_scheduler()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let mut m = build(&ctx)?;
    // Weights in a buffer of their own; the input placed by the scheduler.
    ctx.allocate(sched.backends()[0].buffer_type())?;
    let x = ctx.new_tensor(Type::F32, &[BATCH, 16])?;
    m.x = x;
    let (y, nodes) = layers(&ctx, &m)?;
    let graph = ctx.build_graph(&[y])?;

    // The first layer on backend 1, the rest on backend 0.
    let placement: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, usize::from(i < 3)))
        .collect();
    sched.allocate_with(&graph, &placement)?;
    assert!(sched.n_splits() >= 2, "{} splits", sched.n_splits());
    assert!(x.is_allocated() && y.is_allocated());

    let mut data = ctx.data()?;
    let reference = upload_weights(&mut data, &m)?;
    for step in 0..3 {
        let xv = values((BATCH, 16), 200 + step);
        data.copy_from_array(x, &xv)?;
        sched.compute(&graph, &mut data)?;
        assert_close(
            &data.to_array_as::<f32, Ix2>(y)?,
            &reference.forward(&xv),
            0.02,
        );
    }
    drop(data);

    // Without a placement: everything on backend 0, computed the same way.
    sched.allocate(&graph)?;
    assert_eq!(sched.n_splits(), 1);
    let mut data = ctx.data()?;
    let xv = values((BATCH, 16), 300);
    data.copy_from_array(x, &xv)?;
    sched.compute(&graph, &mut data)?;
    assert_close(
        &data.to_array_as::<f32, Ix2>(y)?,
        &reference.forward(&xv),
        0.02,
    );

    // Dropping the scheduler ends its lease; the graph is intact.
    drop(data);
    drop(sched);
    assert!(!y.is_allocated());
    let mut allocator = GraphAllocator::new(BufferType::cpu()?)?;
    allocator.allocate(&graph)?;
    let mut data = ctx.data()?;
    data.copy_from_array(x, &xv)?;
    Backend::cpu()?.compute(&graph, &mut data)?;
    assert_close(
        &data.to_array_as::<f32, Ix2>(y)?,
        &reference.forward(&xv),
        0.02,
    );
    Ok(())
}

#[test]
fn scheduler_refuses_what_ggml_asserts_on() -> Result<()> {
    assert_err!(
        Scheduler::new(vec![], 64),
        Error::SchedulerBackends { count: 0, .. }
    );
    let many = (0..17)
        .map(|_| Backend::cpu())
        .collect::<ggml::Result<Vec<_>>>()?;
    assert_err!(
        Scheduler::new(many, 64),
        Error::SchedulerBackends { count: 17, .. }
    );
    assert_err!(
        Scheduler::new(vec![Backend::cpu()?], 0),
        Error::GraphTooLarge { .. }
    );
    assert_err!(
        Scheduler::new(vec![Backend::cpu()?], usize::MAX),
        Error::GraphTooLarge { .. }
    );

    let mut sched = Scheduler::new(vec![Backend::cpu()?], 8)?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4])?;
    // Larger than the scheduler was sized for.
    let mut t = a;
    for _ in 0..8 {
        t = ctx.scale(t, 1.0)?;
    }
    assert_err!(
        sched.allocate(&ctx.build_graph(&[t])?),
        Error::GraphTooLarge { .. }
    );
    // A graph without nodes; an empty tensor without memory.
    assert_err!(
        sched.allocate(&ctx.build_graph(&[a])?),
        Error::Unschedulable { .. }
    );
    let e = ctx.new_tensor(Type::F32, &[0])?;
    assert_err!(
        sched.allocate(&ctx.build_graph(&[ctx.scale(e, 2.0)?])?),
        Error::Unschedulable { .. }
    );
    // Leaves nothing uses, or only views use, are inputs (ggml would leave
    // them without a backend and assert).
    let b = ctx.new_tensor(Type::F32, &[4])?;
    let s = ctx.scale(a, 2.0)?;
    sched.allocate(&ctx.build_graph(&[b, s])?)?;
    let c = ctx.new_tensor(Type::F32, &[2, 4])?;
    sched.allocate(&ctx.build_graph(&[ctx.transpose(c)?])?)?;
    // A node no backend can compute.
    let i = ctx.new_tensor(Type::I32, &[4])?;
    assert_err!(
        sched.allocate(&ctx.build_graph(&[ctx.scale(i, 2.0)?])?),
        Error::UnsupportedNode { .. }
    );
    // Placement on a backend the scheduler does not have.
    let g = ctx.build_graph(&[s])?;
    assert_err!(
        sched.allocate_with(&g, &[(s, 1)]),
        Error::SchedulerBackends { .. }
    );
    // Tensors of an allocating context.
    let arena = Context::new(1 << 20)?;
    let x = arena.tensor_from_array(&values((2, 4), 3))?;
    let ga = arena.build_graph(&[arena.scale(x, 2.0)?])?;
    assert_err!(sched.allocate(&ga), Error::Unschedulable { .. });
    // It still works afterwards.
    sched.allocate(&g)?;
    let mut data = ctx.data()?;
    data.copy_from_array(a, &Array::from_elem(4, 1.5f32))?;
    sched.compute(&g, &mut data)?;
    assert_eq!(data.to_array::<f32>(s)?.as_slice(), Some(&[3.0f32; 4][..]));
    Ok(())
}

#[test]
fn scheduler_sees_memory_another_allocator_took_back() -> Result<()> {
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[4])?;
    ctx.allocate(BufferType::cpu()?)?;
    let t = ctx.scale(a, 2.0)?;
    let u = ctx.scale(t, 3.0)?;
    let v = ctx.scale(a, 5.0)?;
    let mut allocator = GraphAllocator::new(BufferType::cpu()?)?;
    allocator.allocate(&ctx.build_graph(&[t])?)?;
    let g = ctx.build_graph(&[u])?;
    let mut sched = Scheduler::new(vec![Backend::cpu()?], 64)?;
    sched.allocate(&g)?;
    {
        let mut data = ctx.data()?;
        data.copy_from_array(a, &Array::from_elem(4, 1.0f32))?;
        sched.compute(&g, &mut data)?;
        assert_eq!(data.to_array::<f32>(u)?.as_slice(), Some(&[6.0f32; 4][..]));
    }
    // The allocator moves on: `t` loses its memory under the scheduler.
    allocator.allocate(&ctx.build_graph(&[v])?)?;
    let mut data = ctx.data()?;
    assert_err!(sched.compute(&g, &mut data), Error::NoData { .. });
    drop(data);
    // Allocating the graph again places `t` too.
    sched.allocate(&g)?;
    let mut data = ctx.data()?;
    sched.compute(&g, &mut data)?;
    assert_eq!(data.to_array::<f32>(u)?.as_slice(), Some(&[6.0f32; 4][..]));
    Ok(())
}

/// Regressions the fuzzer found in the backend layer: each aborted or
/// crashed inside ggml before the fix.
#[test]
fn fuzzer_regressions() -> Result<()> {
    let mut backend = Backend::cpu()?;
    // 1. A graph whose only tensors to place are empty: ggml put them in a
    //    buffer of size 0 at NULL and asserted placing one twice.
    let arena = Context::new(1 << 20)?;
    let e = arena.new_tensor(Type::F32, &[0, 4])?;
    let c = arena.cont(e)?;
    let g = arena.build_graph(&[arena.scale(c, 2.0)?, c])?;
    let mut allocator = GraphAllocator::new(BufferType::cpu()?)?;
    allocator.allocate(&g)?;
    let mut data = arena.data()?;
    backend.compute(&g, &mut data)?;
    drop(data);

    // 2. A scheduler graph whose leaf only a view reads: ggml left it
    //    without a backend and asserted (`buffer_id >= 0`).
    let ctx = Context::new_no_alloc(1 << 20)?;
    let leaf = ctx.new_tensor(Type::F32, &[3, 4])?;
    let viewed = ctx.permute(leaf, [1, 0, 2, 3])?;
    let mut sched = Scheduler::new(vec![Backend::cpu()?], 64)?;
    let gv = ctx.build_graph(&[viewed])?;
    sched.allocate(&gv)?;
    let mut data = ctx.data()?;
    data.copy_from_array(leaf, &values((3, 4), 9))?;
    sched.compute(&gv, &mut data)?;
    assert_eq!(data.to_array_as::<f32, Ix2>(viewed)?, values((3, 4), 9).t());
    drop(data);

    // 3. Two graphs of the same node and leaf counts, a leaf placed in the
    //    first and unplaced in the second: ggml reused the first plan and
    //    placed the leaf at `buffers[-1]` (a segfault).
    let ctx = Context::new_no_alloc(1 << 20)?;
    let w = ctx.new_tensor(Type::F32, &[4])?;
    let placed_leaf = ctx.new_tensor(Type::F32, &[4])?;
    ctx.allocate(BufferType::cpu()?)?;
    let free_leaf = ctx.new_tensor(Type::F32, &[4])?;
    let mut allocator = GraphAllocator::new(BufferType::cpu()?)?;
    allocator.allocate(&ctx.build_graph(&[placed_leaf, ctx.scale(w, 2.0)?])?)?;
    let second = ctx.build_graph(&[free_leaf, ctx.scale(w, 3.0)?])?;
    allocator.allocate(&second)?;
    assert!(free_leaf.is_allocated());
    let mut sched = Scheduler::new(vec![Backend::cpu()?], 64)?;
    sched.allocate(&ctx.build_graph(&[placed_leaf, ctx.scale(w, 2.0)?])?)?;
    let other = ctx.new_tensor(Type::F32, &[4])?;
    sched.allocate(&ctx.build_graph(&[other, ctx.scale(w, 4.0)?])?)?;
    Ok(())
}

#[test]
fn out_of_memory_and_missing_events_are_errors() -> Result<()> {
    // A buffer no machine has: 2^46 bytes.
    let ctx = Context::new_no_alloc(1 << 20)?;
    let huge = ctx.new_tensor(Type::F32, &[1 << 22, 1 << 22])?;
    assert_err!(ctx.allocate(BufferType::cpu()?), Error::BufferAlloc { .. });
    assert!(!huge.is_allocated());
    // The graph allocator, the same for an intermediate; it starts afresh.
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[1 << 22, 1 << 22])?;
    let small = ctx.new_tensor(Type::F32, &[4])?;
    let mut allocator = GraphAllocator::new(BufferType::cpu()?)?;
    assert_err!(
        allocator.allocate(&ctx.build_graph(&[ctx.scale(a, 2.0)?])?),
        Error::BufferAlloc { .. }
    );
    assert!(!a.is_allocated());
    allocator.allocate(&ctx.build_graph(&[ctx.scale(small, 2.0)?])?)?;
    // The scheduler too.
    let mut sched = Scheduler::new(vec![Backend::cpu()?], 64)?;
    assert_err!(
        sched.allocate(&ctx.build_graph(&[ctx.scale(a, 3.0)?])?),
        Error::BufferAlloc { .. }
    );
    sched.allocate(&ctx.build_graph(&[ctx.scale(small, 3.0)?])?)?;

    // The CPU has no events.
    assert_err!(Event::new(Device::cpu()?), Error::NotSupported { .. });
    Ok(())
}

#[test]
fn an_allocator_dropped_on_another_thread_waits_for_the_computation() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let mut backend = Backend::cpu()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[8])?;
    ctx.allocate(backend.buffer_type())?;
    let b = ctx.scale(a, 2.0)?;
    let graph = ctx.build_graph(&[b])?;
    let mut allocator = GraphAllocator::for_backend(&backend)?;
    allocator.allocate(&graph)?;
    let mut data = ctx.data()?;
    data.copy_from_array(a, &Array::from_elem(8, 1.5f32))?;

    // The pending computation pins the allocator's memory until it is
    // waited for: a drop on another thread must wait as long.
    let pending = backend.compute_async(&graph, &mut data)?;
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let dropper = std::thread::spawn(move || {
        drop(allocator);
        flag.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !dropped.load(Ordering::SeqCst),
        "freed under a pending computation"
    );
    pending.wait()?;
    dropper.join().expect("the dropping thread");
    assert!(dropped.load(Ordering::SeqCst));
    // The memory is gone now: `b` reads as unallocated.
    assert_err!(data.to_array::<f32>(b), Error::NoData { .. });
    Ok(())
}

#[test]
fn a_leaked_pending_leaves_the_context_busy_and_pinned() -> Result<()> {
    let mut backend = Backend::cpu()?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let n = 1 << 20; // 4 MiB per tensor: big allocations are mmapped and reused
    let a = ctx.new_tensor(Type::F32, &[n])?;
    ctx.allocate(backend.buffer_type())?;
    let b = ctx.scale(a, 2.0)?;
    let g1 = ctx.build_graph(&[b])?;
    let mut first = GraphAllocator::for_backend(&backend)?;
    first.allocate(&g1)?;
    let mut data = ctx.data()?;
    data.copy_from_array(a, &Array::from_elem(n, 1.0f32))?;

    // `mem::forget` is safe: leaking the handle must leave things more
    // restricted, never less.
    std::mem::forget(backend.compute_async(&g1, &mut data)?);
    assert_err!(data.to_array::<f32>(b), Error::Busy { .. });
    assert_err!(backend.compute(&g1, &mut data), Error::Busy { .. });
    backend.synchronize();
    assert!(data.to_array::<f32>(b)?.iter().all(|&v| v == 2.0));
    // The leaked pins stay: the first allocator can never move on (from
    // this thread that is an error, not a wait forever).
    let c = ctx.scale(ctx.scale(ctx.scale(a, 3.0)?, 1.0)?, 1.0)?;
    let g2 = ctx.build_graph(&[c])?;
    assert_err!(first.allocate(&g2), Error::Busy { .. });

    // Memory lent by a second allocator is pinned by later computations of
    // the same context: dropping that allocator from the abort callback,
    // between two nodes, must not free it under the graph (the freed block
    // would be reused by the vector allocated next, and overwritten).
    let mut second = Some(GraphAllocator::for_backend(&backend)?);
    second.as_mut().expect("set").allocate(&g2)?;
    let mut reused: Option<Vec<u8>> = None;
    let mut drop_it = || {
        if second.is_some() {
            drop(second.take());
            reused = Some(vec![0xAB; 3 * n * 4]);
        }
        false
    };
    backend.compute_with(&g2, &mut data, Compute::new().abort_callback(&mut drop_it))?;
    let reused = reused.expect("the callback ran");
    assert!(
        reused.iter().all(|&v| v == 0xAB),
        "the graph wrote into freed memory"
    );
    assert_err!(data.to_array::<f32>(c), Error::NoData { .. });
    Ok(())
}

#[test]
fn sizes_that_add_up_past_a_size_t_are_errors() -> Result<()> {
    // Each tensor fits; their sum wraps ggml's size_t plan (to 64 bytes,
    // and then ggml aborts placing them).
    let ctx = Context::new_no_alloc(1 << 20)?;
    for _ in 0..4 {
        ctx.new_tensor(Type::I8, &[1 << 62])?;
    }
    ctx.new_tensor(Type::F32, &[16])?;
    assert_err!(ctx.allocate(BufferType::cpu()?), Error::BufferAlloc { .. });

    // A graph whose intermediates add up past it, through the graph
    // allocator and the scheduler.
    let ctx = Context::new_no_alloc(1 << 20)?;
    let a = ctx.new_tensor(Type::F32, &[1 << 30, 1 << 30])?;
    let b = ctx.add(a, a)?;
    let c = ctx.add(b, a)?;
    let d = ctx.add(c, b)?;
    let graph = ctx.build_graph(&[d])?;
    let mut allocator = GraphAllocator::new(BufferType::cpu()?)?;
    assert_err!(allocator.reserve(&graph), Error::BufferAlloc { .. });
    assert_err!(allocator.allocate(&graph), Error::BufferAlloc { .. });
    let mut sched = two_cpu_scheduler()?;
    assert_err!(sched.allocate(&graph), Error::BufferAlloc { .. });
    Ok(())
}
