//! Serves this machine's devices to other machines with ggml's RPC server
//! (the one llama.cpp's `rpc-server` runs), so that their programs can put
//! graphs or a model's layers here (`ggml::backend::Device::rpc`,
//! `examples/generate --rpc`).
//!
//! ```text
//! cargo run --release --features rpc --example rpc-worker -- --port 50052
//! cargo run --release --features rpc --example rpc-worker -- --host 10.0.0.2 --port 50052 --allow-remote
//! ```
//!
//! Loopback by default. ggml's protocol has no authentication or
//! encryption, and the worker trusts its client: listen on another address
//! (`--allow-remote`) on a trusted network only. One client at a time; stop
//! the worker by ending the process.

use anyhow::{Context as _, Result};
use clap::Parser;
use ggml::backend::rpc::Worker;
use ggml::backend::Device;

/// Serves this machine's devices over ggml's RPC protocol.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (numeric IPv4).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 50052)]
    port: u16,
    /// Device to serve, by name (`CPU`, `CUDA0`, ...; repeatable). Default:
    /// the CPU.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Threads of the CPU backend (all cores when absent).
    #[arg(long)]
    threads: Option<usize>,
    /// Directory where large weights are cached, so that a client loading
    /// the same model again sends only their hashes.
    #[arg(long)]
    cache: Option<std::path::PathBuf>,
    /// Listen on an address other than loopback (no authentication, no
    /// encryption: trusted networks only).
    #[arg(long)]
    allow_remote: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let devices = args
        .devices
        .iter()
        .map(|name| Device::by_name(name).with_context(|| format!("device {name}")))
        .collect::<Result<Vec<_>>>()?;
    let mut worker = Worker::new(args.port)
        .host(&args.host)
        .devices(devices)
        .allow_remote(args.allow_remote);
    if let Some(t) = args.threads {
        worker = worker.threads(t);
    }
    if let Some(dir) = &args.cache {
        worker = worker.cache_dir(dir);
    }
    if args.allow_remote {
        eprintln!(
            "warning: listening on {}: ggml's RPC protocol has no authentication or encryption, \
             and the worker trusts whoever connects; use this on a trusted network only",
            worker.endpoint()
        );
    }
    match worker.serve()? {}
}
