//! llama.cpp over workers: the test model's layers on two workers generate
//! the same greedy tokens as the model on this machine.

use std::path::{Path, PathBuf};

use anyhow::Result;
use ggml::backend::rpc;
use ggml::backend::Device;
use ggml::llama::{Batch, Context, ContextParams, Model, ModelParams, Sampler};

use crate::workers::spawn;

/// SmolLM2-135M-Instruct Q4_1 (`scripts/fetch-test-model`), or the file
/// `LLAMA_TEST_MODEL` names.
fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLAMA_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "run scripts/fetch-test-model first");
    p
}

/// Greedy tokens after `prompt`.
fn greedy(model: &Model, prompt: &str, n: usize) -> Result<Vec<i32>> {
    let tokens = model.vocab().tokenize(prompt, true, false)?;
    let mut ctx = Context::new(
        model,
        &ContextParams::new().n_ctx(256).threads(2).threads_batch(2),
    )?;
    let mut sampler = Sampler::greedy(model);
    let mut batch = Batch::from_prompt(&tokens)?;
    let mut out = Vec::new();
    for pos in (tokens.len() as i32..).take(n) {
        ctx.decode(&batch)?;
        let token = sampler.sample(&ctx, batch.len() - 1)?;
        out.push(token);
        batch.clear();
        batch.add(token, pos, &[0], true)?;
    }
    Ok(out)
}

#[test]
fn the_test_model_generates_the_same_tokens_on_two_workers() -> Result<()> {
    let prompt = "The capital of France is";
    let local = greedy(&Model::load(model_path())?, prompt, 16)?;

    let (wa, wb) = (spawn(2)?, spawn(2)?);
    let (da, db) = (Device::rpc(&wa.endpoint)?, Device::rpc(&wb.endpoint)?);
    let params = ModelParams::new().devices([da, db]);
    let model = Model::load_with(model_path(), &params, |_| true)?;
    // The weights went to both workers.
    let (ta, tb) = (rpc::traffic(&da).unwrap(), rpc::traffic(&db).unwrap());
    assert!(ta.sent > 10 << 20 && tb.sent > 10 << 20, "{ta:?} {tb:?}");
    let remote = greedy(&model, prompt, 16)?;
    assert_eq!(remote, local);
    Ok(())
}

#[test]
fn a_worker_killed_under_a_model_is_an_error_of_decode() -> Result<()> {
    let (wa, wb) = (spawn(1)?, spawn(1)?);
    let (da, db) = (Device::rpc(&wa.endpoint)?, Device::rpc(&wb.endpoint)?);
    let model = Model::load_with(model_path(), &ModelParams::new().devices([da, db]), |_| {
        true
    })?;
    let tokens = model.vocab().tokenize("Hello", true, false)?;
    let mut ctx = Context::new(&model, &ContextParams::new().n_ctx(256))?;
    ctx.decode(&Batch::from_prompt(&tokens)?)?;
    wb.signal("KILL");
    let mut batch = Batch::from_prompt(&tokens)?;
    batch.clear();
    batch.add(tokens[0], tokens.len() as i32, &[0], true)?;
    match ctx.decode(&batch) {
        Err(ggml::llama::Error::Ggml(ggml::Error::Rpc(e))) => eprintln!("as expected: {e}"),
        other => panic!("expected an RPC error, got {other:?}"),
    }
    // The process goes on: the model on this machine still generates.
    let local = Model::load(model_path())?;
    assert_eq!(greedy(&local, "Hello", 2)?.len(), 2);
    Ok(())
}
