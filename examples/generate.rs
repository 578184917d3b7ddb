//! Generates text from a prompt with a llama.cpp model, streamed as it
//! comes, then prints prompt and generation speed from llama.cpp's own
//! counters.
//!
//! ```text
//! cargo run --release --example generate -- MODEL "prompt" [-n 64] [--temp 0] [--seed S] [--threads T]
//! ```
//!
//! `--temp 0` (the default) is greedy and deterministic; a positive
//! temperature samples (top-k 40, top-p 0.95, min-p 0.05, then the
//! temperature), seeded with `--seed`. The test model: `scripts/fetch-test-model`.

use std::io::Write;

use anyhow::{Context as _, Result};
use clap::Parser;
use ggml::llama::{Batch, Context, ContextParams, Model, Sampler};

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
}

fn main() -> Result<()> {
    let Args {
        model: model_path,
        prompt,
        n_predict,
        temp,
        seed,
        threads,
    } = Args::parse();
    let model = Model::load(&model_path).with_context(|| format!("loading {model_path}"))?;
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
