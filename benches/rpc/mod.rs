//! The RPC rows (the `rpc` feature): W8's step through one loopback worker,
//! and the test model's generation with its layers on two loopback workers,
//! each beside the same work on this machine in the same child process, and
//! the bytes moved per step or token. Workers are this executable started
//! again (`--rpc-worker PORT:THREADS`), serving ggml's own server.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ggml::backend::rpc::{self, Worker};
use ggml::backend::{Backend, Device};

use super::{llama_sizes, report, w8_on, w8_sizes, Options, Res};

/// In a worker child: serve until the parent goes (stdin closes).
pub fn serve(spec: &str) -> Res {
    let (port, threads) = spec.split_once(':').ok_or("--rpc-worker PORT:THREADS")?;
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    match Worker::new(port.parse()?)
        .threads(threads.parse()?)
        .serve()? {}
}

/// A worker child, killed when dropped.
struct Proc(Child, String);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(threads: usize) -> Res<Proc> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(std::env::current_exe()?)
        .args(["--rpc-worker", &format!("{port}:{threads}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let p = Proc(child, format!("127.0.0.1:{port}"));
    let start = Instant::now();
    while TcpStream::connect(&p.1).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the worker did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(p)
}

fn sent_and_received(d: &Device) -> u64 {
    rpc::traffic(d).map_or(0, |t| t.sent + t.received)
}

pub fn rpc(o: &Options) -> Res {
    // Each worker's threads (GGML_BENCH_RPC_THREADS; default all cores: on
    // one machine the workers then share the cores with each other and
    // with this process).
    let threads = std::env::var("GGML_BENCH_RPC_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(ggml::available_cores);
    // W8 through one worker, then locally.
    let (n, layers, batch) = w8_sizes(o);
    let flop = 2.0 * (n * n * batch * layers) as f64;
    {
        let w = spawn(threads)?;
        let device = Device::rpc(&w.1)?;
        let s = w8_on(o, Backend::new(device)?)?;
        report(
            o,
            "W8 backend step Q4_0",
            Some("rpc, 1 loopback worker"),
            s,
            flop,
            "flop",
        );
        let steps = bytes_per_w8_step(o, device)?;
        report(
            o,
            "W8 bytes moved per step",
            Some("rpc, 1 loopback worker"),
            1.0,
            steps,
            "bytes/step",
        );
    }
    let s = w8_on(o, Backend::cpu()?)?;
    report(
        o,
        "W8 backend step Q4_0",
        Some("local, same child"),
        s,
        flop,
        "flop",
    );

    // Generation with the layers on two workers, then locally.
    if let Some(path) = &o.llama_model {
        let (_, tg) = llama_sizes(o);
        let (wa, wb) = (spawn(threads)?, spawn(threads)?);
        let (da, db) = (Device::rpc(&wa.1)?, Device::rpc(&wb.1)?);
        let params = ggml::llama::ModelParams::new().devices([da, db]);
        let model = ggml::llama::Model::load_with(path, &params, |_| true)?;
        let before = sent_and_received(&da) + sent_and_received(&db);
        let s = generate(o, &model, tg)?;
        let moved = (sent_and_received(&da) + sent_and_received(&db) - before) as f64;
        for d in [da, db] {
            if let Some(t) = rpc::traffic(&d) {
                eprintln!(
                    "{}: {} graphs sent, {} recomputed",
                    d.name(),
                    t.graphs,
                    t.recomputes
                );
            }
        }
        report(
            o,
            &format!("L2 generate {tg} tokens"),
            Some("rpc, 2 loopback workers"),
            s,
            tg as f64,
            "token",
        );
        report(
            o,
            "L2 bytes moved per token",
            Some("rpc, 2 loopback workers"),
            1.0,
            moved / (o.reps * tg) as f64,
            "bytes/step",
        );
        drop(model);
        let local = ggml::llama::Model::load(path)?;
        let s = generate(o, &local, tg)?;
        report(
            o,
            &format!("L2 generate {tg} tokens"),
            Some("local, same child"),
            s,
            tg as f64,
            "token",
        );
    }
    Ok(())
}

/// Bytes moved (both ways) by one W8 step on a worker's device: two runs
/// of W8 that differ only in their number of timed steps (each uploads the
/// weights once and sends its graph once), the difference per step.
fn bytes_per_w8_step(o: &Options, device: Device) -> Res<f64> {
    let run = |reps: usize| -> Res<u64> {
        let mut once = o.clone();
        once.reps = reps;
        let before = sent_and_received(&device);
        w8_on(&once, Backend::new(device)?)?;
        Ok(sent_and_received(&device) - before)
    };
    let (one, two) = (run(1)?, run(2)?);
    Ok(two.saturating_sub(one) as f64 / super::SHORT_REPS as f64)
}

/// Best time of `tg` greedy tokens after a short prompt.
fn generate(o: &Options, model: &ggml::llama::Model, tg: usize) -> Res<f64> {
    use ggml::llama::{Batch, Context, ContextParams, Sampler};
    let threads = ggml::available_cores();
    let params = ContextParams::new()
        .n_ctx((tg + 64).next_multiple_of(256) as u32)
        .threads(threads)
        .threads_batch(threads);
    let mut ctx = Context::new(model, &params)?;
    let mut sampler = Sampler::greedy(model);
    let n_vocab = model.vocab().n_tokens();
    let prompt: Vec<i32> = (0..16).map(|i| (i * 7919 + 13) % n_vocab).collect();
    let mut best = f64::INFINITY;
    let mut batch = Batch::new();
    for _ in 0..o.reps {
        ctx.clear_memory(true);
        ctx.decode(&Batch::from_prompt(&prompt)?)?;
        let mut token = sampler.sample(&ctx, prompt.len() - 1)?;
        let t = Instant::now();
        for i in 0..tg {
            batch.clear();
            batch.add(token, (prompt.len() + i) as i32, &[0], true)?;
            ctx.decode(&batch)?;
            token = sampler.sample(&ctx, 0)?;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}
