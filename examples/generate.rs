//! Generates text from a prompt with a llama.cpp model, streamed as it
//! comes, then prints prompt and generation speed from llama.cpp's own
//! counters.
//!
//! ```text
//! cargo run --release --example generate -- MODEL "prompt" [-n 64] [--temp 0] [--seed S] [--threads T]
//! cargo run --release --features rpc --example generate -- MODEL "prompt" --rpc 10.0.0.2:50052,10.0.0.3:50052
//! ```
//!
//! `--rpc` (the `rpc` feature) puts the model's layers on RPC workers
//! (`examples/rpc-worker`), split by their free memory.
//!
//! `--temp 0` (the default) is greedy and deterministic; a positive
//! temperature samples (top-k 40, top-p 0.95, min-p 0.05, then the
//! temperature), seeded with `--seed`. The test model: `scripts/fetch-test-model`.

use std::io::Write;

use anyhow::{Context as _, Result};
use clap::Parser;
use ggml::llama::{Batch, Context, ContextParams, Model, ModelParams, Sampler};

/// Generates text from a prompt with a llama.cpp model.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The model (a GGUF file; for a split model, its first shard).
    model: String,
    /// The prompt.
    prompt: String,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 64)]
    n_predict: usize,
    /// Sampling temperature (0: greedy, deterministic).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Seed of the sampler (random when absent).
    #[arg(long)]
    seed: Option<u32>,
    /// Threads (all cores when absent).
    #[arg(long)]
    threads: Option<usize>,
    /// RPC workers (HOST:PORT, comma-separated) to put the layers on (the
    /// `rpc` feature).
    #[arg(long, value_delimiter = ',')]
    rpc: Vec<String>,
}

fn main() -> Result<()> {
    let Args {
        model: model_path,
        prompt,
        n_predict,
        temp,
        seed,
        threads,
        rpc,
    } = Args::parse();
    let params = model_params(&rpc)?;
    let model = Model::load_with(&model_path, &params, |_| true)
        .with_context(|| format!("loading {model_path}"))?;
    let vocab = model.vocab();
    let prompt_tokens = vocab.tokenize(&prompt, true, false)?;
    let mut params = ContextParams::new()
        .n_ctx((prompt_tokens.len() + n_predict + 16).next_multiple_of(256) as u32);
    if let Some(t) = threads {
        params = params.threads(t).threads_batch(t);
    }
    let mut ctx = Context::new(&model, &params)?;
    let mut sampler = if temp <= 0.0 {
        Sampler::greedy(&model)
    } else {
        Sampler::builder(&model)
            .top_k(40)
            .top_p(0.95, 1)?
            .min_p(0.05, 1)?
            .temp(temp)?
            .dist(seed)
            .build()
    };

    print!("{prompt}");
    let mut text = vocab.text_stream(false);
    let mut batch = Batch::from_prompt(&prompt_tokens)?;
    let mut pos = prompt_tokens.len() as i32;
    let mut generated = 0;
    while generated < n_predict {
        ctx.decode(&batch)?;
        let token = sampler.sample(&ctx, batch.len() - 1)?;
        if vocab.is_eog(token) {
            break;
        }
        print!("{}", text.push(token)?);
        std::io::stdout().flush()?;
        batch.clear();
        batch.add(token, pos, &[0], true)?;
        pos += 1;
        generated += 1;
    }
    println!("{}", text.finish());

    let perf = ctx.perf();
    eprintln!(
        "\nprompt: {} tokens, {:.1} tokens/s; generation: {} tokens, {:.1} tokens/s ({})",
        perf.prompt_tokens,
        perf.prompt_tokens_per_second(),
        perf.generation_tokens,
        perf.generation_tokens_per_second(),
        model.description()
    );
    Ok(())
}

/// The model's devices: the workers given, else the default.
#[cfg(feature = "rpc")]
fn model_params(workers: &[String]) -> Result<ModelParams> {
    if workers.is_empty() {
        return Ok(ModelParams::new());
    }
    let devices = workers
        .iter()
        .map(|w| ggml::backend::Device::rpc(w).with_context(|| format!("RPC worker {w}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(ModelParams::new().devices(devices))
}

/// The model's devices (a build without the `rpc` feature takes no workers).
#[cfg(not(feature = "rpc"))]
fn model_params(workers: &[String]) -> Result<ModelParams> {
    anyhow::ensure!(
        workers.is_empty(),
        "--rpc needs the rpc feature: cargo run --release --features rpc --example generate ..."
    );
    Ok(ModelParams::new())
}
