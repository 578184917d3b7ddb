//! Loading, metadata, and generation against llama.cpp's C API: greedy
//! tokens equal, logits within 1e-4.

use anyhow::Result;
use ggml::llama::{
    Batch, Context, ContextParams, Error as LlamaError, FlashAttention, Model, ModelParams, Sampler,
};
use ggml::Error;

use crate::support::{ids, model, model_path, run_c};

const PROMPT: &str = "The history of the Roman Empire began";

/// The context both sides use (see scripts/llama-ref/llama_ref.c).
fn params(threads: usize) -> ContextParams {
    ContextParams::new()
        .n_ctx(1024)
        .n_batch(512)
        .n_ubatch(512)
        .threads(threads)
        .threads_batch(threads)
        .flash_attn(FlashAttention::Disabled)
}

#[test]
fn metadata() -> Result<()> {
    let m = model();
    assert_eq!(m.architecture().as_deref(), Some("llama"));
    assert_eq!(m.name().as_deref(), Some("Smollm2 135M 8k Lc100K Mix1 Ep2"));
    assert_eq!(
        (m.n_embd(), m.n_layer(), m.n_head(), m.n_ctx_train()),
        (576, 30, 9, 8192)
    );
    assert!(
        (130_000_000..140_000_000).contains(&m.n_params()),
        "{}",
        m.n_params()
    );
    assert!(m.size() > 80_000_000);
    assert!(m.description().contains("Q4_1"), "{}", m.description());
    assert_eq!(m.meta("llama.block_count").as_deref(), Some("30"));
    assert_eq!(m.meta("no.such.key"), None);
    let all = m.metadata();
    assert!(all
        .iter()
        .any(|(k, v)| k == "general.architecture" && v == "llama"));
    assert!(m.chat_template(None).unwrap().contains("<|im_start|>"));
    Ok(())
}

#[test]
fn greedy_generation_equals_the_c_program() -> Result<()> {
    let m = model();
    let vocab = m.vocab();
    let mut ctx = Context::new(m, &params(2))?;
    let prompt = vocab.tokenize(PROMPT, true, true)?;
    let mut sampler = Sampler::greedy(m);
    let mut batch = Batch::from_prompt(&prompt)?;
    let mut ours = Vec::new();
    for pos in prompt.len() as i32..prompt.len() as i32 + 40 {
        ctx.decode(&batch)?;
        let t = sampler.sample(&ctx, batch.len() - 1)?;
        ours.push(t);
        if vocab.is_eog(t) {
            break;
        }
        batch.clear();
        batch.add(t, pos, &[0], true)?;
    }
    let theirs = ids(&run_c(&[
        "greedy",
        model_path().to_str().unwrap(),
        PROMPT,
        "40",
        "2",
    ]));
    assert!(ours.len() >= 32, "{ours:?}");
    assert_eq!(ours, theirs);
    // Deterministic: again, in a fresh context.
    let mut ctx2 = Context::new(m, &params(2))?;
    ctx2.decode(&Batch::from_prompt(&prompt)?)?;
    assert_eq!(Sampler::greedy(m).sample(&ctx2, prompt.len() - 1)?, ours[0]);
    let perf = ctx.perf();
    assert_eq!(perf.prompt_tokens, prompt.len() as u64);
    assert!(perf.generation_tokens >= 31);
    assert!(perf.prompt_tokens_per_second() > 0.0 && perf.generation_tokens_per_second() > 0.0);
    Ok(())
}

#[test]
fn prompt_logits_agree_with_the_c_program() -> Result<()> {
    let m = model();
    let n_vocab = m.vocab().n_tokens() as usize;
    let mut ctx = Context::new(m, &params(2))?;
    let prompt = m.vocab().tokenize(PROMPT, true, true)?;
    let mut batch = Batch::new();
    batch.add_sequence(&prompt, 0, 0, true)?;
    ctx.decode(&batch)?;
    let ours = ctx.logits()?;
    assert_eq!(ours.shape(), [prompt.len(), n_vocab]);
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("logits.f32");
    let n = ids(&run_c(&[
        "logits",
        model_path().to_str().unwrap(),
        PROMPT,
        "2",
        out.to_str().unwrap(),
    ]))[0];
    assert_eq!(n as usize, prompt.len());
    let bytes = std::fs::read(&out)?;
    let theirs: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let mut worst = 0f32;
    for (a, b) in ours.iter().zip(&theirs) {
        worst = worst.max((a - b).abs());
    }
    assert!(worst <= 1e-4, "largest difference {worst}");
    // One row by batch index, and the same row of the whole matrix.
    assert_eq!(ctx.logits_ith(3)?, ours.row(3));
    Ok(())
}

#[test]
fn loading_refuses_what_is_not_a_model() -> Result<()> {
    let dir = tempfile::tempdir()?;
    crate::assert_err!(
        Model::load(dir.path().join("missing.gguf")),
        LlamaError::Ggml(Error::Io { .. })
    );
    let text = dir.path().join("text.gguf");
    std::fs::write(&text, "not a model at all")?;
    crate::assert_err!(Model::load(&text), LlamaError::Ggml(Error::Gguf(_)));
    // A valid GGUF file that is not a model llama.cpp knows.
    let mut w = ggml::gguf::Writer::new();
    w.set("general.architecture", "no-such-architecture")?;
    let other = dir.path().join("other.gguf");
    w.write_to_file(&other)?;
    crate::assert_err!(Model::load(&other), LlamaError::InvalidModel { .. });
    // Trusted, it reaches llama.cpp, which refuses it.
    // SAFETY: a file llama.cpp refuses cleanly (an unknown architecture).
    let trusted = unsafe { ModelParams::new().skip_model_checks(true) };
    crate::assert_err!(
        Model::load_with(&other, &trusted, |_| true),
        LlamaError::ModelLoad { .. }
    );
    // The real model cut in the middle.
    let bytes = std::fs::read(model_path())?;
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2])?;
    crate::assert_err!(Model::load(&cut), LlamaError::Ggml(Error::Gguf(_)));
    Ok(())
}

#[test]
fn progress_can_cancel_and_panics_come_back() -> Result<()> {
    let mut seen = Vec::new();
    let m = Model::load_with(model_path(), &ModelParams::new(), |p| {
        seen.push(p);
        true
    })?;
    assert!(seen.len() > 2 && *seen.last().unwrap() == 1.0, "{seen:?}");
    drop(m);
    crate::assert_err!(
        Model::load_with(model_path(), &ModelParams::new(), |p| p < 0.5),
        LlamaError::Cancelled
    );
    let r = std::panic::catch_unwind(|| {
        Model::load_with(model_path(), &ModelParams::new(), |_| panic!("boom"))
    });
    assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"boom"));
    Ok(())
}

#[test]
fn a_memory_mapped_model_computes_the_same() -> Result<()> {
    // SAFETY: the test model is not modified while the test runs.
    let mapped = Model::load_with(
        model_path(),
        &unsafe { ModelParams::new().mmap(true) },
        |_| true,
    )?;
    let prompt = mapped.vocab().tokenize(PROMPT, true, true)?;
    let mut a = Context::new(&mapped, &params(2))?;
    let mut b = Context::new(model(), &params(2))?;
    a.decode(&Batch::from_prompt(&prompt)?)?;
    b.decode(&Batch::from_prompt(&prompt)?)?;
    assert_eq!(a.logits()?, b.logits()?);
    Ok(())
}
