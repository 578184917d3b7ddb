//! Embeds lines of text with a llama.cpp model (mean pooling), prints each
//! normalised embedding's first values and the cosine similarity of every
//! pair of lines.
//!
//! ```text
//! cargo run --release --example embed -- MODEL [LINE ...]   # or lines on standard input
//! ```

use std::io::BufRead;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use ggml::llama::{Batch, Context, ContextParams, Model, Pooling};
use ggml::ndarray::Array1;

/// Embeds lines of text with a llama.cpp model (mean pooling) and prints
/// the cosine similarity of every pair.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The model (a GGUF file).
    model: String,
    /// The lines to embed (standard input's lines when none).
    lines: Vec<String>,
    /// Threads (all cores when absent).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let path = &args.model;
    let lines: Vec<String> = if args.lines.is_empty() {
        std::io::stdin().lock().lines().collect::<Result<_, _>>()?
    } else {
        args.lines.clone()
    };
    let lines: Vec<String> = lines.into_iter().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        bail!("no lines to embed");
    }
    let model = Model::load(path).with_context(|| format!("loading {path}"))?;
    let vocab = model.vocab();
    let tokenized = lines
        .iter()
        .map(|l| vocab.tokenize(l, true, false))
        .collect::<ggml::llama::Result<Vec<_>>>()?;
    let longest = tokenized.iter().map(Vec::len).max().unwrap_or(1).max(1) as u32;
    let params = ContextParams::new()
        .n_ctx(longest.next_multiple_of(256))
        .n_batch(longest)
        .n_ubatch(longest)
        .embeddings(true)
        .pooling(Pooling::Mean);
    let mut ctx = Context::new(&model, &params)?;
    let mut embeddings = Vec::new();
    for (line, tokens) in lines.iter().zip(&tokenized) {
        ctx.clear_memory(true);
        let mut batch = Batch::new();
        batch.add_sequence(tokens, 0, 0, false)?;
        ctx.decode(&batch)?;
        let e: Array1<f32> = ctx.seq_embeddings(0)?.to_owned();
        let norm = e.dot(&e).sqrt().max(f32::MIN_POSITIVE);
        let e = e / norm;
        let head: Vec<String> = e.iter().take(6).map(|v| format!("{v:+.4}")).collect();
        println!("[{} …] ({} values) {line}", head.join(", "), e.len());
        embeddings.push(e);
    }
    if embeddings.len() > 1 {
        println!("\ncosine similarity:");
        for i in 0..embeddings.len() {
            for j in i + 1..embeddings.len() {
                println!(
                    "  {:.4}  {:?} / {:?}",
                    embeddings[i].dot(&embeddings[j]),
                    lines[i],
                    lines[j]
                );
            }
        }
    }
    Ok(())
}
