//! Hostile workers: a fake worker that speaks the protocol's framing but
//! answers each request with numbers drawn at random (plausible, extreme,
//! or wrong in size), closes, or stalls. Through the safe API, every call
//! must return, `Ok` or `Err`: the process never aborts (ggml asserts on
//! numbers its allocator cannot use; the client checks them first).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use ggml::backend::rpc::RpcOptions;
use ggml::backend::{Backend, Device, GraphAllocator, Scheduler};
use ggml::ndarray::Array2;
use ggml::{Context, Type};

/// A small xorshift generator (seeded, reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// `plausible`, or one of `extremes` now and then (each answer of a
    /// session is wrong with a small chance, so sessions reach every step).
    fn answer<T: Copy>(&mut self, plausible: T, extremes: &[T]) -> T {
        if self.chance(4) {
            self.pick(extremes)
        } else {
            plausible
        }
    }
}

fn u64s(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Serves one connection with answers drawn from `rng`.
fn serve(mut s: TcpStream, mut rng: Rng) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let size = u64::from_ne_bytes(head[1..].try_into().unwrap());
        if size > 1 << 28 {
            return;
        }
        let mut payload = vec![0u8; size as usize];
        if s.read_exact(&mut payload).is_err() {
            return;
        }
        if rng.chance(2) {
            return; // hang up
        }
        if rng.chance(1) {
            thread::sleep(Duration::from_millis(400)); // past the client's bound
        }
        let body: Option<Vec<u8>> = match head[0] {
            14 => {
                let mut r = vec![7u8, 0, 0, 0];
                r[0] = rng.answer(7, &[0, 6, 8, 255]);
                r.extend_from_slice(&[0; 24]);
                Some(r)
            }
            15 => Some(
                rng.answer(1u32, &[2, 0, 300, u32::MAX])
                    .to_ne_bytes()
                    .to_vec(),
            ),
            1 => Some(u64s(&[rng.answer(32, &[64, 0, 3, 1 << 40, u64::MAX])])),
            2 => Some(u64s(&[rng.answer(u64::MAX, &[0, 1, 1 << 20, 100])])),
            0 => {
                let asked = u64::from_ne_bytes(
                    payload.get(4..12).map_or([0; 8], |b| b.try_into().unwrap()),
                );
                let ptr = rng.answer(0x5000u64, &[0, 1, u64::MAX]);
                let size = rng.answer(asked, &[asked.saturating_sub(1), 0, u64::MAX, asked * 2]);
                Some(u64s(&[ptr, size]))
            }
            3 => Some(u64s(&[rng.answer(
                0x7f00_0000_0000u64,
                &[0, 1, u64::MAX - 10, 0x7f00_0000_0010, 1 << 63],
            )])),
            13 => {
                let r = rng.answer(4096, &[0, 1, 1 << 50, u64::MAX, 1 << 30]);
                Some(u64s(&[r]))
            }
            8 => {
                let n = u64::from_ne_bytes(
                    payload
                        .get(304..312)
                        .map_or([0; 8], |b| b.try_into().unwrap()),
                );
                let n = if rng.chance(3) { n + 1 } else { n };
                if n > 1 << 26 {
                    return;
                }
                Some((0..n).map(|_| rng.next() as u8).collect())
            }
            7 | 9 => Some(vec![rng.answer(1u8, &[0, 255])]),
            11 => Some(u64s(&[rng.next(), rng.next()])),
            _ => None, // no answer to the others
        };
        if let Some(mut body) = body {
            if rng.chance(2) {
                body.push(0); // a wrong size
            }
            let mut out = (body.len() as u64).to_ne_bytes().to_vec();
            out.extend_from_slice(&body);
            if s.write_all(&out).is_err() {
                return;
            }
        }
    }
}

/// A hostile worker on a fresh port; each connection draws from its own seed.
fn hostile(seed: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        for (i, stream) in listener.incoming().flatten().enumerate() {
            let rng = Rng((seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64 + 1)) | 1);
            thread::spawn(move || serve(stream, rng));
        }
    });
    endpoint
}

/// One session against a hostile worker; every error is fine.
fn session(endpoint: &str, rng: &mut Rng) -> ggml::Result<()> {
    let options = RpcOptions {
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_millis(300),
    };
    let device = Device::rpc_with(endpoint, &options)?;
    let _ = device.rpc_memory();
    let _ = device.memory();
    let backend = Backend::new(device)?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let ty = rng.pick(&[Type::F32, Type::F16, Type::Q4_0]);
    let rows = rng.pick(&[1usize, 8, 33]);
    let w = ctx.new_tensor(ty, &[rows, 64])?;
    let x = ctx.new_tensor(Type::F32, &[4, 64])?;
    if rng.chance(50) {
        ctx.allocate_weights(backend.buffer_type())?;
    } else {
        ctx.allocate(backend.buffer_type())?;
    }
    let y = ctx.mul_mat(w, x)?.relu()?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    data.copy_from_array(w, &Array2::from_elem((rows, 64), 0.25f32))?;
    data.copy_from_array(x, &Array2::from_elem((4, 64), 1.0f32))?;
    if rng.chance(50) {
        drop(data);
        let mut allocator = GraphAllocator::for_backend(&backend)?;
        allocator.allocate(&graph)?;
        let mut data = ctx.data()?;
        let mut backend = backend;
        for _ in 0..rng.pick(&[1, 2, 3]) {
            backend.compute(&graph, &mut data)?;
            let _ = data.to_array_as::<f32, ggml::ndarray::Ix2>(y)?;
        }
    } else {
        drop(data);
        let mut sched = Scheduler::new(vec![backend, Backend::cpu()?], 64)?;
        sched.allocate(&graph)?;
        let mut data = ctx.data()?;
        for _ in 0..rng.pick(&[1, 2]) {
            sched.compute(&graph, &mut data)?;
            let _ = data.to_array_as::<f32, ggml::ndarray::Ix2>(y)?;
        }
    }
    Ok(())
}

#[test]
fn hostile_workers_never_crash_the_client() -> Result<()> {
    let sessions: u64 = std::env::var("GGML_TEST_RPC_HOSTILE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let (mut ok, mut errors) = (0, std::collections::BTreeMap::<String, usize>::new());
    for seed in 1..=sessions {
        let endpoint = hostile(seed);
        let mut rng = Rng((seed * 7919) | 1);
        match session(&endpoint, &mut rng) {
            Ok(()) => ok += 1,
            Err(e) => {
                let label = match &e {
                    ggml::Error::Rpc(r) => {
                        let kind = format!("{:?}", r.kind);
                        let kind = kind.split([' ', '{', '(']).next().unwrap_or("").to_owned();
                        format!("rpc, {}: {kind}", r.during)
                    }
                    other => {
                        let text = format!("{other:?}");
                        text.split([' ', '{', '(']).next().unwrap_or("").to_owned()
                    }
                };
                *errors.entry(label).or_default() += 1;
            }
        }
    }
    eprintln!("{sessions} hostile sessions: {ok} completed, errors:");
    for (label, n) in &errors {
        eprintln!("  {n:4}  {label}");
    }
    // The process is alive and computes locally.
    let ctx = Context::new(1 << 16)?;
    let a = ctx.tensor_from_array(&Array2::from_elem((2, 2), 2.0f32))?;
    let g = ctx.build_graph(&[ctx.mul_mat(a, a)?])?;
    Backend::cpu()?.compute(&g, &mut ctx.data()?)?;
    Ok(())
}
