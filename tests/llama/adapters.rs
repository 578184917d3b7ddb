//! LoRA adapters (made here for the tiny model) and control vectors.

use anyhow::Result;
use ggml::gguf::Writer;
use ggml::llama::{Batch, Context, ContextParams, Error as LlamaError, Model};
use ggml::ndarray::Array2;
use ggml::Error;

use crate::support::tiny_path;

/// A LoRA adapter of rank 4 on layer 0's attn_q of the tiny model
/// (`in_dim` must be 64 to fit it).
fn write_adapter(path: &std::path::Path, in_dim: usize) -> Result<()> {
    let a = Array2::from_shape_fn((4, in_dim), |(i, j)| ((i * 7 + j) % 5) as f32 * 0.1);
    let b = Array2::from_shape_fn((64, 4), |(i, j)| ((i + j * 3) % 7) as f32 * 0.1 - 0.3);
    let mut w = Writer::new();
    w.set("general.architecture", "llama")?;
    w.set("general.type", "adapter")?;
    w.set("adapter.type", "lora")?;
    w.set("adapter.lora.alpha", 4.0f32)?;
    w.add_array("blk.0.attn_q.weight.lora_a", &a)?;
    w.add_array("blk.0.attn_q.weight.lora_b", &b)?;
    w.write_to_file(path)?;
    Ok(())
}

fn logits(ctx: &mut Context<'_>) -> Result<Array2<f32>> {
    ctx.clear_memory(true);
    ctx.decode(&Batch::from_prompt(&[100, 200, 300, 400])?)?;
    Ok(ctx.logits()?.to_owned())
}

fn params() -> ContextParams {
    ContextParams::new().n_ctx(128).threads(2).threads_batch(2)
}

#[test]
fn lora_adapters_apply_with_a_scale() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (good, bad) = (dir.path().join("lora.gguf"), dir.path().join("bad.gguf"));
    write_adapter(&good, 64)?;
    write_adapter(&bad, 32)?;
    let mut model = Model::load(tiny_path())?;
    crate::assert_err!(model.load_lora(&bad), LlamaError::Adapter(_));
    crate::assert_err!(
        model.load_lora(dir.path().join("missing.gguf")),
        LlamaError::Ggml(Error::Io { .. })
    );
    let i = model.load_lora(&good)?;
    let other = Model::load(tiny_path())?;
    {
        let lora = model.lora(i).unwrap();
        let mut ctx = Context::new(&model, &params())?;
        let base = logits(&mut ctx)?;
        ctx.set_loras(&[(lora, 0.0)])?;
        assert_eq!(logits(&mut ctx)?, base, "scale 0 changes nothing");
        ctx.set_loras(&[(lora, 1.0)])?;
        let with = logits(&mut ctx)?;
        assert_ne!(with, base);
        ctx.set_loras(&[])?;
        assert_eq!(logits(&mut ctx)?, base);
        // An adapter of another model is refused.
        let mut other_ctx = Context::new(&other, &params())?;
        crate::assert_err!(other_ctx.set_loras(&[(lora, 1.0)]), LlamaError::Adapter(_));
    }
    model.remove_lora(i)?;
    assert_eq!(model.lora_count(), 0);
    crate::assert_err!(model.remove_lora(0), LlamaError::Adapter(_));
    Ok(())
}

#[test]
fn control_vectors() -> Result<()> {
    let model = Model::load(tiny_path())?;
    let mut ctx = Context::new(&model, &params())?;
    let base = logits(&mut ctx)?;
    let n = model.n_embd() * model.n_layer();
    ctx.set_control_vector(&vec![0.0; n], 1, model.n_layer())?;
    assert_eq!(logits(&mut ctx)?, base);
    ctx.set_control_vector(&vec![0.5; n], 1, model.n_layer())?;
    assert_ne!(logits(&mut ctx)?, base);
    ctx.clear_control_vector();
    assert_eq!(logits(&mut ctx)?, base);
    crate::assert_err!(
        ctx.set_control_vector(&vec![0.0; n - 1], 1, 2),
        LlamaError::Adapter(_)
    );
    crate::assert_err!(
        ctx.set_control_vector(&vec![0.0; n], 0, 2),
        LlamaError::Adapter(_)
    );
    crate::assert_err!(
        ctx.set_control_vector(&vec![0.0; n], 1, 3),
        LlamaError::Adapter(_)
    );
    Ok(())
}
