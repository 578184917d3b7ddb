//! An interactive chat with a llama.cpp model: each line you type is a user
//! message; the model's chat template formats the conversation, and the KV
//! cache keeps what was already read, so each turn decodes only its new
//! tokens.
//!
//! ```text
//! cargo run --release --example chat -- MODEL [--system "You are ..."] [-n 256]
//! ```
//!
//! An empty line or end of input ends the chat. Greedy decoding.

use std::io::{BufRead, Write};

use anyhow::{Context as _, Result};
use clap::Parser;
use ggml::llama::{Batch, ChatMessage, Context, ContextParams, Model, Sampler};

/// An interactive chat with a llama.cpp model (greedy decoding; an empty
/// line or end of input ends it).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The model (a GGUF file with a chat template).
    model: String,
    /// A system message to start the conversation with.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    max_tokens: usize,
    /// Threads (all cores when absent).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (path, max_tokens) = (&args.model, args.max_tokens);
    let model = Model::load(path).with_context(|| format!("loading {path}"))?;
    let vocab = model.vocab();
    let mut params = ContextParams::new().n_ctx(4096.min(model.n_ctx_train()));
    if let Some(t) = args.threads {
        params = params.threads(t).threads_batch(t);
    }
    let mut ctx = Context::new(&model, &params)?;
    let mut sampler = Sampler::greedy(&model);
    let mut messages = Vec::new();
    if let Some(system) = args.system.clone() {
        messages.push(ChatMessage::new("system", system));
    }
    // The formatted conversation already in the KV cache.
    let mut cached = String::new();
    let mut pos = 0i32;
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        messages.push(ChatMessage::new("user", line.trim()));
        let formatted = model.apply_chat_template(&messages, true)?;
        // Only what the cache has not read yet; from scratch when the
        // template rewrote earlier turns.
        let new = match formatted.strip_prefix(&cached) {
            Some(rest) => rest.to_string(),
            None => {
                ctx.clear_memory(true);
                pos = 0;
                formatted.clone()
            }
        };
        let tokens = vocab.tokenize(&new, pos == 0, true)?;
        let mut batch = Batch::new();
        for chunk in tokens.chunks(ctx.n_batch() as usize) {
            batch.clear();
            batch.add_sequence(chunk, pos, 0, false)?;
            ctx.decode(&batch)?;
            pos += chunk.len() as i32;
        }
        cached = formatted;
        let mut reply = String::new();
        let mut ended = false;
        let mut text = vocab.text_stream(false);
        for _ in 0..max_tokens {
            let token = sampler.sample(&ctx, batch.len() - 1)?;
            // The end-of-turn token goes into the cache too, as the
            // template writes it after the reply.
            batch.clear();
            batch.add(token, pos, &[0], true)?;
            ctx.decode(&batch)?;
            pos += 1;
            if vocab.is_eog(token) {
                cached.push_str(&reply);
                cached.push_str(&String::from_utf8_lossy(&vocab.piece(token, true)?));
                ended = true;
                break;
            }
            let piece = text.push(token)?;
            print!("{piece}");
            std::io::stdout().flush()?;
            reply.push_str(&piece);
        }
        reply.push_str(&text.finish());
        if !ended {
            // Stopped at the token limit: the cache ends mid-reply.
            cached.push_str(&reply);
        }
        println!();
        messages.push(ChatMessage::new("assistant", reply));
    }
    Ok(())
}
