//! Contexts: every precondition of a decode an error, outputs only of the
//! tokens that asked, the KV cache per sequence, state, embeddings,
//! several contexts on several threads.

use anyhow::Result;
use ggml::llama::{Batch, Context, ContextParams, Error as LlamaError, Pooling};
use ggml::Type;

use crate::support::{model, tiny};

fn small() -> ContextParams {
    ContextParams::new()
        .n_ctx(256)
        .n_batch(64)
        .n_ubatch(32)
        .threads(2)
        .threads_batch(2)
}

#[test]
fn context_parameters_are_checked() -> Result<()> {
    let m = tiny();
    let bad = [
        small().n_ctx(100_000),
        small().n_batch(0),
        small().n_ubatch(0),
        small().n_seq_max(0),
        small().n_seq_max(257),
        small().n_batch(2).n_seq_max(4),
        small().threads(0),
        small().threads_batch(100_000),
        small().type_k(Type::Q4_K),
    ];
    for p in bad {
        crate::assert_err!(Context::new(m, &p), LlamaError::InvalidParams(_));
    }
    let ctx = Context::new(m, &small())?;
    assert_eq!(
        (ctx.n_ctx(), ctx.n_batch(), ctx.n_ubatch(), ctx.n_seq_max()),
        (256, 64, 32, 1)
    );
    // Separate KV buffers per sequence: llama.cpp gives each the length.
    let ctx = Context::new(m, &small().n_seq_max(4))?;
    assert_eq!((ctx.n_ctx(), ctx.n_seq_max()), (1024, 4));
    Ok(())
}

#[test]
fn decode_preconditions_are_errors() -> Result<()> {
    let m = tiny();
    let mut ctx = Context::new(m, &small().n_seq_max(2))?;
    crate::assert_err!(ctx.decode(&Batch::new()), LlamaError::EmptyBatch);
    let long: Vec<i32> = (0..65).collect();
    crate::assert_err!(
        ctx.decode(&Batch::from_prompt(&long)?),
        LlamaError::BatchTooLarge {
            n_tokens: 65,
            limit: 64,
            ..
        }
    );
    crate::assert_err!(
        ctx.decode(&Batch::from_prompt(&[1, 49152])?),
        LlamaError::TokenOutOfRange { .. }
    );
    let mut b = Batch::new();
    b.add(5, 0, &[2], true)?;
    crate::assert_err!(
        ctx.decode(&b),
        LlamaError::SeqOutOfRange {
            seq: 2,
            n_seq_max: 2
        }
    );
    crate::assert_err!(
        Batch::new().add(5, -1, &[0], true),
        LlamaError::InvalidBatch(_)
    );
    crate::assert_err!(
        Batch::new().add(5, 0, &[], true),
        LlamaError::InvalidBatch(_)
    );
    crate::assert_err!(
        Batch::new().add(5, 0, &[1, 1], true),
        LlamaError::InvalidBatch(_)
    );
    // Positions that do not continue the sequence: llama.cpp's -1.
    ctx.decode(&Batch::from_prompt(&[10, 11, 12])?)?;
    let mut gap = Batch::new();
    gap.add(13, 10, &[0], true)?;
    crate::assert_err!(ctx.decode(&gap), LlamaError::InvalidBatch(_));
    // No outputs after a failed decode; then a good one works.
    crate::assert_err!(ctx.logits(), LlamaError::NoOutput { .. });
    let mut next = Batch::new();
    next.add(13, 3, &[0], true)?;
    ctx.decode(&next)?;
    assert_eq!(ctx.logits()?.shape(), [1, 49152]);
    Ok(())
}

#[test]
fn outputs_only_for_tokens_that_asked() -> Result<()> {
    let mut ctx = Context::new(tiny(), &small())?;
    crate::assert_err!(ctx.logits_ith(0), LlamaError::NoOutput { .. });
    let mut b = Batch::new();
    for (i, t) in [100, 200, 300, 400].into_iter().enumerate() {
        b.add(t, i as i32, &[0], i % 2 == 1)?;
    }
    ctx.decode(&b)?;
    assert_eq!(ctx.logits()?.nrows(), 2);
    assert_eq!(ctx.logits_ith(1)?, ctx.logits()?.row(0));
    assert_eq!(ctx.logits_ith(3)?, ctx.logits()?.row(1));
    crate::assert_err!(ctx.logits_ith(0), LlamaError::NoOutput { index: 0, .. });
    crate::assert_err!(ctx.logits_ith(4), LlamaError::NoOutput { index: 4, .. });
    crate::assert_err!(ctx.embeddings_ith(1), LlamaError::Embeddings(_));
    Ok(())
}

#[test]
fn a_full_kv_cache_is_recoverable() -> Result<()> {
    let mut ctx = Context::new(tiny(), &small().n_batch(256).n_ubatch(256))?;
    let tokens: Vec<i32> = (1000..1200).collect();
    ctx.decode(&Batch::from_prompt(&tokens)?)?;
    let mut more = Batch::new();
    more.add_sequence(&tokens[..100], 200, 0, false)?;
    crate::assert_err!(ctx.decode(&more), LlamaError::NoKvSlot);
    // Still usable: drop the first half and continue (positions shifted).
    assert!(ctx.remove_tokens(Some(0), 0..100)?);
    ctx.shift_seq(0, 100.., -100)?;
    assert_eq!(ctx.seq_positions(0)?, Some((0, 99)));
    let mut b = Batch::new();
    b.add_sequence(&tokens[..50], 100, 0, false)?;
    ctx.decode(&b)?;
    assert_eq!(ctx.seq_positions(0)?, Some((0, 149)));
    Ok(())
}

#[test]
fn sequences_in_the_cache() -> Result<()> {
    let mut ctx = Context::new(tiny(), &small().n_seq_max(3).kv_unified(true))?;
    let prompt = [100, 101, 102, 103];
    let mut b = Batch::new();
    b.add_sequence(&prompt, 0, 0, true)?;
    ctx.decode(&b)?;
    let first = ctx.logits_ith(3)?.to_owned();
    ctx.copy_seq(0, 1, ..)?;
    assert_eq!(ctx.seq_positions(1)?, Some((0, 3)));
    // The copied sequence continues like the original.
    let mut b0 = Batch::new();
    b0.add(104, 4, &[0], true)?;
    b0.add(104, 4, &[1], true)?;
    ctx.decode(&b0)?;
    assert_eq!(ctx.logits_ith(0)?, ctx.logits_ith(1)?);
    ctx.keep_seq(1)?;
    assert_eq!(ctx.seq_positions(0)?, None);
    crate::assert_err!(ctx.keep_seq(3), LlamaError::SeqOutOfRange { .. });
    crate::assert_err!(
        ctx.remove_tokens(Some(-1), ..),
        LlamaError::SeqOutOfRange { .. }
    );
    crate::assert_err!(ctx.divide_seq(1, .., 0), LlamaError::InvalidParams(_));
    crate::assert_err!(ctx.shift_seq(1, .., i32::MAX), LlamaError::InvalidParams(_));
    // Separate KV buffers: partial copies between sequences are refused.
    let mut sep = Context::new(tiny(), &small().n_seq_max(2))?;
    sep.decode(&Batch::from_prompt(&prompt)?)?;
    crate::assert_err!(sep.copy_seq(0, 1, 1..3), LlamaError::InvalidParams(_));
    sep.copy_seq(0, 1, ..)?;
    ctx.clear_memory(true);
    assert_eq!(ctx.seq_positions(1)?, None);
    let _ = first;
    Ok(())
}

#[test]
fn state_round_trips_through_bytes_and_files() -> Result<()> {
    let m = tiny();
    let mut ctx = Context::new(m, &small())?;
    let prompt = [300, 301, 302];
    ctx.decode(&Batch::from_prompt(&prompt)?)?;
    let state = ctx.state_bytes()?;
    let mut next = Batch::new();
    next.add(303, 3, &[0], true)?;
    ctx.decode(&next)?;
    let expected = ctx.logits()?.to_owned();
    // A fresh context with the saved state computes the same.
    let mut other = Context::new(m, &small())?;
    other.set_state_bytes(&state)?;
    crate::assert_err!(other.logits(), LlamaError::NoOutput { .. });
    other.decode(&next)?;
    assert_eq!(other.logits()?, expected);
    // Through a file, with the session's tokens.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.bin");
    let mut third = Context::new(m, &small())?;
    third.set_state_bytes(&state)?;
    third.save_state_file(&path, &prompt)?;
    let mut fourth = Context::new(m, &small())?;
    assert_eq!(fourth.load_state_file(&path)?, prompt);
    fourth.decode(&next)?;
    assert_eq!(fourth.logits()?, expected);
    // Garbage is refused, and the context stays usable.
    crate::assert_err!(
        fourth.set_state_bytes(&state[..state.len() / 2]),
        LlamaError::State(_)
    );
    crate::assert_err!(fourth.set_state_bytes(b"garbage"), LlamaError::State(_));
    std::fs::write(&path, b"garbage")?;
    crate::assert_err!(fourth.load_state_file(&path), LlamaError::State(_));
    fourth.decode(&Batch::from_prompt(&prompt)?)?;
    Ok(())
}

#[test]
fn embeddings_per_token_and_pooled() -> Result<()> {
    let m = model();
    let vocab = m.vocab();
    let tokens = vocab.tokenize("A sentence to embed.", true, false)?;
    let mut per_token = Context::new(
        m,
        &ContextParams::new()
            .n_ctx(512)
            .embeddings(true)
            .pooling(Pooling::None),
    )?;
    let mut b = Batch::new();
    b.add_sequence(&tokens, 0, 0, false)?;
    per_token.decode(&b)?;
    let last = per_token.embeddings_ith(tokens.len() - 1)?;
    assert_eq!(last.len(), m.n_embd_out());
    crate::assert_err!(per_token.logits(), LlamaError::NoOutput { .. });
    crate::assert_err!(per_token.seq_embeddings(0), LlamaError::Embeddings(_));
    // Mean pooling equals the mean of the per-token embeddings.
    let mut mean = Context::new(
        m,
        &ContextParams::new()
            .n_ctx(512)
            .embeddings(true)
            .pooling(Pooling::Mean),
    )?;
    mean.decode(&b)?;
    let pooled = mean.seq_embeddings(0)?;
    let expected: Vec<f32> = (0..m.n_embd_out())
        .map(|j| {
            (0..tokens.len())
                .map(|i| per_token.embeddings_ith(i).unwrap()[j])
                .sum::<f32>()
                / tokens.len() as f32
        })
        .collect();
    for (a, e) in pooled.iter().zip(&expected) {
        assert!((a - e).abs() <= 1e-3 * e.abs().max(1.0), "{a} vs {e}");
    }
    crate::assert_err!(mean.seq_embeddings(1), LlamaError::NoOutput { .. });
    crate::assert_err!(mean.embeddings_ith(0), LlamaError::Embeddings(_));
    Ok(())
}

#[test]
fn contexts_of_one_model_on_several_threads() -> Result<()> {
    let m = tiny();
    let prompt: Vec<i32> = (500..540).collect();
    let serial = {
        let mut c = Context::new(m, &small())?;
        c.decode(&Batch::from_prompt(&prompt)?)?;
        c.logits()?.to_owned()
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| -> ggml::llama::Result<_> {
                    let mut c = Context::new(m, &small().threads(1).threads_batch(1))?;
                    for _ in 0..3 {
                        c.clear_memory(true);
                        c.decode(&Batch::from_prompt(&prompt)?)?;
                    }
                    Ok(c.logits()?.to_owned())
                })
            })
            .collect();
        for h in handles {
            let got = h.join().unwrap().unwrap();
            let worst = got
                .iter()
                .zip(serial.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{worst}");
        }
    });
    Ok(())
}

#[test]
fn encoding_with_a_decoder_only_model_is_an_error() -> Result<()> {
    // llama.cpp builds the decoder's graph without its KV cache and
    // dereferences NULL.
    for m in [model(), tiny()] {
        let mut ctx = Context::new(m, &small())?;
        let batch = Batch::from_prompt(&[1, 2, 3])?;
        crate::assert_err!(
            ctx.encode(&batch),
            LlamaError::NotSupported { call: "encode", .. }
        );
        // The context is still usable.
        ctx.decode(&batch)?;
    }
    Ok(())
}
