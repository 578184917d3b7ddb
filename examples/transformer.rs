//! Generates text with the llama transformer written in this crate's ops
//! (`ggml::transformer`), not llama.cpp's graph: weights from the GGUF file
//! in backend memory, a key/value cache, one graph per step shape.
//!
//! ```text
//! cargo run --release --example transformer -- MODEL.gguf "PROMPT" [-n N] [--temp T] [--seed S] [--threads T] [--flash-attn]
//! ```
//!
//! The tokenizer is llama.cpp's (the file's vocabulary, loaded alone);
//! everything after it is the crate's. `--temp 0` (the default) is greedy.
//! Prints the prompt and its continuation to stdout, timings to stderr.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Parser;
use ggml::backend::Backend;
use ggml::llama::{Model as Vocabulary, ModelParams, Token};
use ggml::transformer::{Model, Options};

/// Generates text with the crate's own llama transformer.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The model (a GGUF file of the llama architecture).
    model: String,
    /// The prompt.
    prompt: String,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 64)]
    n_predict: usize,
    /// Sampling temperature (0: greedy, deterministic).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Threads (all cores when absent).
    #[arg(long)]
    threads: Option<usize>,
    /// Attention through flash_attn_ext.
    #[arg(long)]
    flash_attn: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();

    // The model first: a file of another architecture is refused here,
    // naming it.
    let mut backend = Backend::cpu()?;
    if let Some(t) = args.threads {
        backend.set_threads(t)?;
    }
    let started = Instant::now();
    let options = Options {
        n_ctx: (args.prompt.len() + args.n_predict + 16).next_multiple_of(256),
        flash_attn: args.flash_attn,
        ..Options::default()
    };
    let model = Model::load(&args.model, &backend, options)
        .with_context(|| format!("loading {}", args.model))?;
    let load = started.elapsed();
    let vocab_model =
        Vocabulary::load_with(&args.model, &ModelParams::new().vocab_only(true), |_| true)
            .with_context(|| format!("loading the vocabulary of {}", args.model))?;
    let vocab = vocab_model.vocab();
    let prompt = vocab.tokenize(&args.prompt, true, false)?;
    anyhow::ensure!(!prompt.is_empty(), "the prompt has no tokens");
    anyhow::ensure!(
        prompt.len() + args.n_predict <= options.n_ctx,
        "{} prompt tokens and {} more do not fit the context of {}",
        prompt.len(),
        args.n_predict,
        options.n_ctx
    );
    let mut session = model.session(backend)?;

    print!("{}", args.prompt);
    std::io::stdout().flush()?;
    let mut text = vocab.text_stream(false);
    // splitmix64 of the seed: a well-mixed, nonzero xorshift state.
    let mut rng = {
        let mut z = args.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) | 1
    };
    let started = Instant::now();
    let mut logits = session.decode(&prompt, false)?;
    let prompt_time = started.elapsed();
    let started = Instant::now();
    let mut generated = 0;
    while generated < args.n_predict {
        let token = pick(
            logits.row(0).as_slice().expect("a dense row"),
            args.temp,
            &mut rng,
        );
        if vocab.is_eog(token) {
            break;
        }
        print!("{}", text.push(token)?);
        std::io::stdout().flush()?;
        generated += 1;
        if generated == args.n_predict {
            break;
        }
        logits = session.decode(&[token], false)?;
    }
    println!("{}", text.finish());
    let gen_time = started.elapsed();
    eprintln!(
        "\nload {:.2} s; prompt: {} tokens, {:.1} tokens/s; generation: {} tokens, {:.1} tokens/s",
        load.as_secs_f64(),
        prompt.len(),
        prompt.len() as f64 / prompt_time.as_secs_f64(),
        generated,
        generated.saturating_sub(1) as f64 / gen_time.as_secs_f64().max(1e-9),
    );
    Ok(())
}

/// The next token: the argmax at temperature 0, else a draw from the
/// softmax of `logits / temp` (xorshift, seeded).
fn pick(logits: &[f32], temp: f32, rng: &mut u64) -> Token {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as Token)
    };
    if temp <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - max) / temp) as f64).exp())
        .collect();
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let mut target = (*rng >> 11) as f64 / (1u64 << 53) as f64 * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target <= 0.0 {
            return i as Token;
        }
    }
    argmax()
}
