//! The crate's own llama transformer (`ggml::transformer`, written in the
//! safe ops) against llama.cpp's graph on the same file: the logits of every
//! position of a prompt, and greedy tokens; on the test model and on a
//! differently shaped model written here.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use ggml::backend::Backend;
use ggml::gguf::{Gguf, Writer};
use ggml::llama::{Batch, Context, ContextParams, FlashAttention, Model, Token};
use ggml::ndarray::{Array2, ArrayView1};
use ggml::transformer::{self, Options};
use ggml::{Error, Type};

use crate::support::{model, model_path};

const THREADS: usize = 2;

/// A prompt of more than 64 tokens.
const PROMPT: &str = "The history of the Roman Empire began with the founding of the city \
    of Rome, according to legend in 753 BC, by the twins Romulus and Remus. Over the \
    following centuries the small settlement on the Tiber grew into a republic that \
    dominated the Italian peninsula, then the whole Mediterranean world, before it \
    became an empire under Augustus.";

/// The index of the largest value.
fn argmax(row: ArrayView1<'_, f32>) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

/// llama.cpp's logits of every prompt position, then `n_gen` greedy tokens.
fn llama_cpp(
    model: &Model,
    prompt: &[Token],
    flash: bool,
    n_gen: usize,
) -> Result<(Array2<f32>, Vec<Token>)> {
    let params = ContextParams::new()
        .n_ctx(512)
        .n_batch(512)
        .n_ubatch(512)
        .threads(THREADS)
        .threads_batch(THREADS)
        .flash_attn(if flash {
            FlashAttention::Enabled
        } else {
            FlashAttention::Disabled
        });
    let mut ctx = Context::new(model, &params)?;
    let mut batch = Batch::new();
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(t, i as i32, &[0], true)?;
    }
    ctx.decode(&batch)?;
    let logits = ctx.logits()?.to_owned();
    let mut tokens = Vec::new();
    let mut next = argmax(logits.row(prompt.len() - 1)) as Token;
    for i in 0..n_gen {
        tokens.push(next);
        batch.clear();
        batch.add(next, (prompt.len() + i) as i32, &[0], true)?;
        ctx.decode(&batch)?;
        next = argmax(ctx.logits_ith(0)?) as Token;
    }
    Ok((logits, tokens))
}

/// The crate's transformer: the same.
fn ours(
    path: &Path,
    prompt: &[Token],
    flash: bool,
    n_gen: usize,
) -> Result<(Array2<f32>, Vec<Token>)> {
    let mut backend = Backend::cpu()?;
    backend.set_threads(THREADS)?;
    let options = Options {
        n_ctx: 512,
        flash_attn: flash,
        ..Options::default()
    };
    let model = transformer::Model::load(path, &backend, options)?;
    let mut session = model.session(backend)?;
    let logits = session.decode(prompt, true)?;
    let mut tokens = Vec::new();
    let mut next = argmax(logits.row(prompt.len() - 1)) as Token;
    for _ in 0..n_gen {
        tokens.push(next);
        let step = session.decode(&[next], false)?;
        next = argmax(step.row(0)) as Token;
    }
    Ok((logits, tokens))
}

/// Compares the logits of every position: the largest difference within
/// `tol`, and the same argmax everywhere but where llama.cpp's two
/// candidates are within `tol` of each other (a tie at this precision).
/// Returns the largest difference.
fn compare(what: &str, ours: &Array2<f32>, theirs: &Array2<f32>, tol: f32) -> f32 {
    assert_eq!(ours.dim(), theirs.dim(), "{what}: logits shapes");
    let max = ours
        .iter()
        .zip(theirs)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "{what}: largest logit difference {max:.2e} over {} positions",
        ours.nrows()
    );
    assert!(max <= tol, "{what}: logits differ by {max} (> {tol})");
    for (i, (a, b)) in ours.rows().into_iter().zip(theirs.rows()).enumerate() {
        let (ia, ib) = (argmax(a), argmax(b));
        assert!(
            ia == ib || (b[ib] - b[ia]).abs() <= tol,
            "{what}: argmax at position {i}: {ia} ({}) against {ib} ({})",
            b[ia],
            b[ib]
        );
    }
    max
}

// Tolerance: both sides run the same ggml kernels on the same quantized
// weights; what differs is the order of some sums (llama.cpp views a
// transposed V cache where we copy it, and pads the cache differently), so
// f32 rounding, amplified through 30 layers, moves logits (magnitude ~20)
// by ~1e-3. 1e-2 leaves margin without hiding a wrong op (a wrong mask, RoPE
// or scale moves them by whole units).
const TOL: f32 = 1e-2;

#[test]
fn the_test_model_gives_llama_cpp_logits_and_greedy_tokens() -> Result<()> {
    let m = model();
    let prompt = m.vocab().tokenize(PROMPT, true, false)?;
    assert!(prompt.len() >= 64, "{} prompt tokens", prompt.len());
    for flash in [false, true] {
        let (want, want_tokens) = llama_cpp(m, &prompt, flash, 64)?;
        let (got, got_tokens) = ours(&model_path(), &prompt, flash, 64)?;
        compare(
            &format!("test model, flash attention {flash}"),
            &got,
            &want,
            TOL,
        );
        assert_eq!(
            got_tokens, want_tokens,
            "64 greedy tokens, flash attention {flash}"
        );
    }
    Ok(())
}

/// A llama model shaped unlike the test model, written here: 3 layers of
/// width 128, 8 query heads over 2 key/value heads (GQA 4) of 16, RoPE base
/// 50000, an untied output head, f16, Q8_0, Q4_0 and f32 weights mixed.
fn other_model_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-models");
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("gqa4.gguf.{}", std::process::id()));
        write_other(&tmp).expect("the model is written");
        let path = dir.join("gqa4.gguf");
        std::fs::rename(&tmp, &path).unwrap();
        path
    })
}

fn write_other(path: &Path) -> Result<()> {
    let real = Gguf::read(model_path())?;
    let (n_embd, n_ff, n_layer, n_head, n_head_kv) = (128usize, 320usize, 3usize, 8usize, 2usize);
    let hd = n_embd / n_head;
    let n_vocab = real
        .get::<ggml::gguf::ArrayValue>("tokenizer.ggml.tokens")?
        .len();
    let mut w = Writer::new();
    for (k, v) in real.metadata() {
        if k.starts_with("tokenizer.") {
            w.set(k, v)?;
        }
    }
    w.set("general.architecture", "llama")?;
    w.set("general.name", "GQA-4 test model")?;
    w.set("llama.block_count", n_layer as u32)?;
    w.set("llama.context_length", 1024u32)?;
    w.set("llama.embedding_length", n_embd as u32)?;
    w.set("llama.feed_forward_length", n_ff as u32)?;
    w.set("llama.attention.head_count", n_head as u32)?;
    w.set("llama.attention.head_count_kv", n_head_kv as u32)?;
    w.set("llama.rope.dimension_count", hd as u32)?;
    w.set("llama.rope.freq_base", 50_000f32)?;
    w.set("llama.attention.layer_norm_rms_epsilon", 1e-6f32)?;
    w.set("llama.vocab_size", n_vocab as u32)?;
    let noise = |seed: usize, scale: f32| {
        move |first: usize, out: &mut [f32]| {
            for (i, v) in out.iter_mut().enumerate() {
                let x = (first * 1_000_003 + i * 7919 + seed * 104_729) as u64;
                let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                *v = (h as f32 / (1u64 << 24) as f32 - 0.5) * scale;
            }
            Ok(())
        }
    };
    let kv = hd * n_head_kv;
    w.add_rows(
        "token_embd.weight",
        Type::F16,
        &[n_vocab, n_embd],
        None,
        noise(1, 2.0),
    )?;
    for l in 0..n_layer {
        let s = 10 * (l + 1);
        let n = |role: &str| format!("blk.{l}.{role}");
        w.add_rows(
            &n("attn_norm.weight"),
            Type::F32,
            &[n_embd],
            None,
            noise(s, 1.0),
        )?;
        w.add_rows(
            &n("attn_q.weight"),
            Type::Q8_0,
            &[n_embd, n_embd],
            None,
            noise(s + 1, 0.4),
        )?;
        w.add_rows(
            &n("attn_k.weight"),
            Type::F16,
            &[kv, n_embd],
            None,
            noise(s + 2, 0.4),
        )?;
        w.add_rows(
            &n("attn_v.weight"),
            Type::Q4_0,
            &[kv, n_embd],
            None,
            noise(s + 3, 0.4),
        )?;
        w.add_rows(
            &n("attn_output.weight"),
            Type::F16,
            &[n_embd, n_embd],
            None,
            noise(s + 4, 0.3),
        )?;
        w.add_rows(
            &n("ffn_norm.weight"),
            Type::F32,
            &[n_embd],
            None,
            noise(s + 5, 1.0),
        )?;
        w.add_rows(
            &n("ffn_gate.weight"),
            Type::Q4_0,
            &[n_ff, n_embd],
            None,
            noise(s + 6, 0.3),
        )?;
        w.add_rows(
            &n("ffn_up.weight"),
            Type::Q8_0,
            &[n_ff, n_embd],
            None,
            noise(s + 7, 0.3),
        )?;
        w.add_rows(
            &n("ffn_down.weight"),
            Type::F16,
            &[n_embd, n_ff],
            None,
            noise(s + 8, 0.3),
        )?;
    }
    w.add_rows(
        "output_norm.weight",
        Type::F32,
        &[n_embd],
        None,
        noise(98, 1.0),
    )?;
    w.add_rows(
        "output.weight",
        Type::Q8_0,
        &[n_vocab, n_embd],
        None,
        noise(99, 0.5),
    )?;
    w.write_to_file(path)?;
    Ok(())
}

#[test]
fn a_differently_shaped_model_written_here_gives_llama_cpp_logits() -> Result<()> {
    let path = other_model_path();
    let m = Model::load(path)?;
    let prompt = m.vocab().tokenize(PROMPT, true, false)?;
    for flash in [false, true] {
        let (want, want_tokens) = llama_cpp(&m, &prompt, flash, 16)?;
        let (got, got_tokens) = ours(path, &prompt, flash, 16)?;
        compare(
            &format!("GQA-4 model, flash attention {flash}"),
            &got,
            &want,
            TOL,
        );
        assert_eq!(
            got_tokens, want_tokens,
            "16 greedy tokens, flash attention {flash}"
        );
    }
    Ok(())
}

#[test]
fn files_it_cannot_run_and_prompts_beyond_the_context_are_errors() -> Result<()> {
    let backend = Backend::cpu()?;
    let dir = tempfile::tempdir()?;
    let real = Gguf::read(other_model_path())?;
    // Rewrites the model with `key` set to `value` and without the tensor
    // `drop`.
    let variant =
        |name: &str, key: &str, value: ggml::gguf::Value<'static>, drop: &str| -> Result<PathBuf> {
            let mut w = Writer::new();
            w.copy_metadata(&real)?;
            w.set(key, value)?;
            for t in real.tensors().filter(|t| t.name() != drop) {
                w.add_raw(t.name(), t.ty(), &t.shape(), t.bytes())?;
            }
            let p = dir.path().join(name);
            w.write_to_file(&p)?;
            Ok(p)
        };
    let model_error = |p: &Path| match transformer::Model::load(p, &backend, Options::default()) {
        Err(Error::Model { item, reason }) => format!("{item}: {reason}"),
        Err(e) => panic!("{}: another error: {e}", p.display()),
        Ok(_) => panic!("{} loads", p.display()),
    };

    let arch = variant("arch.gguf", "general.architecture", "qwen2".into(), "")?;
    assert!(model_error(&arch).contains("qwen2"));
    let missing = variant(
        "missing.gguf",
        "general.name",
        "x".into(),
        "blk.1.ffn_up.weight",
    )?;
    assert!(model_error(&missing).contains("blk.1.ffn_up.weight"));
    let heads = variant(
        "heads.gguf",
        "llama.attention.head_count_kv",
        4u32.into(),
        "",
    )?;
    let e = model_error(&heads);
    assert!(e.contains("attn_k.weight"), "{e}");

    // A prompt longer than the context.
    let options = Options {
        n_ctx: 16,
        ..Options::default()
    };
    let model = transformer::Model::load(other_model_path(), &backend, options)?;
    let mut session = model.session(Backend::cpu()?)?;
    let long: Vec<Token> = (0..17).collect();
    assert!(matches!(
        session.decode(&long, false),
        Err(Error::Model { .. })
    ));
    assert!(matches!(
        session.decode(&[-1], false),
        Err(Error::Model { .. })
    ));
    session.decode(&long[..16], false)?;
    assert!(matches!(
        session.decode(&[1], false),
        Err(Error::Model { .. })
    ));
    Ok(())
}

#[test]
fn logits_do_not_depend_on_how_the_input_is_split_into_steps() -> Result<()> {
    let path = other_model_path();
    let m = Model::load(path)?;
    let mut tokens = m.vocab().tokenize(PROMPT, true, false)?;
    while tokens.len() < 300 {
        tokens.extend_from_within(1..60);
    }
    tokens.truncate(300);
    let options = Options {
        n_ctx: 1024,
        n_batch: 64,
        max_graphs: 6,
        ..Options::default()
    };
    let backend = Backend::cpu()?;
    let model = transformer::Model::load(path, &backend, options)?;
    let whole = model.session(Backend::cpu()?)?.decode(&tokens, true)?;
    // Steps of 1, 2, 3, ... tokens: more shapes than the 6 graphs, so the
    // widest shapes serve the later steps.
    let mut session = model.session(backend)?;
    let mut rows = Vec::new();
    let (mut at, mut len) = (0, 1);
    while at < tokens.len() {
        let end = (at + len).min(tokens.len());
        let logits = session.decode(&tokens[at..end], true)?;
        rows.extend(logits.rows().into_iter().map(|r| r.to_owned()));
        at = end;
        len += 1;
    }
    assert_eq!(session.n_past(), tokens.len());
    let stepped = ggml::ndarray::stack(
        ggml::ndarray::Axis(0),
        &rows.iter().map(|r| r.view()).collect::<Vec<_>>(),
    )?;
    compare("split into steps", &stepped, &whole, 1e-3);
    Ok(())
}

#[test]
fn through_a_scheduler_the_logits_are_the_same() -> Result<()> {
    let path = other_model_path();
    let m = Model::load(path)?;
    let prompt = m.vocab().tokenize(PROMPT, true, false)?;
    let backend = Backend::cpu()?;
    let model = transformer::Model::load(path, &backend, Options::default())?;
    let direct = model.session(backend)?.decode(&prompt, true)?;
    let sched = ggml::backend::Scheduler::new(vec![Backend::cpu()?], model.graph_size())?;
    let mut session = model.session_scheduled(sched)?;
    let scheduled = session.decode(&prompt, true)?;
    compare("through a scheduler", &scheduled, &direct, 0.0);
    let step = session.decode(&prompt[..1], false)?;
    assert_eq!(step.dim(), (1, model.hparams().n_vocab));
    let small = ggml::backend::Scheduler::new(vec![Backend::cpu()?], 16)?;
    assert!(matches!(
        model.session_scheduled(small),
        Err(Error::GraphTooLarge { .. })
    ));
    Ok(())
}
