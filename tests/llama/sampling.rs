//! Sampler chains and chat templates.

use anyhow::Result;
use ggml::llama::{
    apply_chat_template, builtin_templates, Batch, ChatMessage, Context, ContextParams,
    Error as LlamaError, Sampler,
};

use crate::support::model;

fn context_after(prompt: &str) -> Result<(Context<'static>, usize)> {
    let m = model();
    let tokens = m.vocab().tokenize(prompt, true, true)?;
    let mut ctx = Context::new(
        m,
        &ContextParams::new().n_ctx(512).threads(2).threads_batch(2),
    )?;
    ctx.decode(&Batch::from_prompt(&tokens)?)?;
    Ok((ctx, tokens.len() - 1))
}

#[test]
fn a_chain_that_selects_nothing_is_an_error() -> Result<()> {
    let (ctx, last) = context_after("Once upon a time")?;
    let mut s = Sampler::builder(model()).top_k(10).temp(0.8)?.build();
    crate::assert_err!(s.sample(&ctx, last), LlamaError::NoTokenSelected);
    crate::assert_err!(s.sample(&ctx, last + 1), LlamaError::NoOutput { .. });
    Ok(())
}

#[test]
fn every_sampler_builds_and_samples() -> Result<()> {
    let (ctx, last) = context_after("Once upon a time")?;
    let m = model();
    let vocab = m.vocab();
    let chains = [
        Sampler::builder(m)
            .top_k(40)
            .top_p(0.9, 1)?
            .min_p(0.05, 1)?
            .temp(0.7)?
            .dist(Some(1))
            .build(),
        Sampler::builder(m).typical(0.9, 1)?.dist(Some(2)).build(),
        Sampler::builder(m)
            .penalties(64, 1.1, 0.1, 0.1)?
            .greedy()
            .build(),
        Sampler::builder(m)
            .dry(0.8, 1.75, 2, -1, &["\n", ":", "\"", "*"])?
            .greedy()
            .build(),
        Sampler::builder(m).mirostat_v2(Some(3), 5.0, 0.1)?.build(),
        Sampler::builder(m)
            .mirostat(Some(4), 5.0, 0.1, 100)?
            .build(),
    ];
    for mut s in chains {
        let t = s.sample(&ctx, last)?;
        vocab.check(t)?;
    }
    crate::assert_err!(
        Sampler::builder(m).top_p(2.0, 1),
        LlamaError::InvalidParams(_)
    );
    crate::assert_err!(
        Sampler::builder(m).temp(f32::NAN),
        LlamaError::InvalidParams(_)
    );
    crate::assert_err!(
        Sampler::builder(m).mirostat(None, 5.0, 0.1, 0),
        LlamaError::InvalidParams(_)
    );
    crate::assert_err!(
        Sampler::builder(m).logit_bias(&[(49152, 1.0)]),
        LlamaError::TokenOutOfRange { .. }
    );
    Ok(())
}

#[test]
fn a_seeded_distribution_repeats_itself() -> Result<()> {
    let (ctx, last) = context_after("My favourite colour is")?;
    let draw = |seed| -> Result<Vec<i32>> {
        let mut s = Sampler::builder(model())
            .temp(1.5)?
            .dist(Some(seed))
            .build();
        (0..20).map(|_| Ok(s.sample(&ctx, last)?)).collect()
    };
    let a = draw(42)?;
    assert_eq!(a, draw(42)?);
    assert_ne!(a, draw(43)?);
    Ok(())
}

#[test]
fn logit_bias_steers_greedy() -> Result<()> {
    let (ctx, last) = context_after("Once upon a time")?;
    let mut s = Sampler::builder(model())
        .logit_bias(&[(12345, 1000.0)])?
        .greedy()
        .build();
    assert_eq!(s.sample(&ctx, last)?, 12345);
    Ok(())
}

#[test]
fn grammars_constrain_and_refuse_tokens_they_forbid() -> Result<()> {
    let m = model();
    let vocab = m.vocab();
    let (ctx, last) = context_after("Is the sky blue? Answer:")?;
    let grammar = r#"root ::= " yes" | " no""#;
    let mut s = Sampler::builder(m)
        .grammar(grammar, "root")?
        .greedy()
        .build();
    let t = s.sample(&ctx, last)?;
    let piece = String::from_utf8(vocab.piece(t, false)?)?;
    assert!(
        " yes".starts_with(&piece) || " no".starts_with(&piece),
        "{piece:?}"
    );
    // A token the grammar forbids: an error, and the grammar is unchanged.
    let mut g = Sampler::builder(m)
        .grammar(grammar, "root")?
        .greedy()
        .build();
    let hello = vocab.tokenize(" hello", false, false)?[0];
    crate::assert_err!(g.accept(hello), LlamaError::GrammarRejected { .. });
    // End of generation before the grammar is done: refused too.
    crate::assert_err!(
        g.accept(vocab.eos().unwrap()),
        LlamaError::GrammarRejected { .. }
    );
    for t in vocab.tokenize(" yes", false, false)? {
        g.accept(t)?;
    }
    crate::assert_err!(
        Sampler::builder(m).grammar("root ::= undefined_rule", "root"),
        LlamaError::GrammarParse
    );
    crate::assert_err!(
        Sampler::builder(m).grammar("root ::= \"x\"", "nope"),
        LlamaError::GrammarParse
    );
    Ok(())
}

#[test]
fn chat_templates() -> Result<()> {
    let m = model();
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi!"),
    ];
    let text = m.apply_chat_template(&messages, true)?;
    assert_eq!(
        text,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(builtin_templates().iter().any(|t| t == "chatml"));
    let llama3 = apply_chat_template("llama3", &messages, false)?;
    assert!(
        llama3.contains("<|start_header_id|>user<|end_header_id|>"),
        "{llama3}"
    );
    crate::assert_err!(
        apply_chat_template("not a template", &messages, true),
        LlamaError::UnknownTemplate
    );
    crate::assert_err!(
        apply_chat_template("chatml", &[ChatMessage::new("user", "a\0b")], true),
        LlamaError::InteriorNul { .. }
    );
    Ok(())
}

#[test]
fn a_penalty_window_of_minus_one_is_the_whole_context() -> Result<()> {
    // llama.cpp clamps -1 to 0, which turns the sampler off; here it means
    // the whole context. A present penalty of 1000 over the whole history
    // keeps greedy sampling from picking the same token twice from the
    // same logits row.
    let (ctx, last) = context_after("Once upon a time")?;
    let m = model();
    let chains = [
        Sampler::builder(m)
            .penalties(-1, 1.0, 0.0, 1000.0)?
            .greedy()
            .build(),
        Sampler::builder(m)
            .penalties(i32::MAX, 1.0, 0.0, 1000.0)?
            .greedy()
            .build(),
    ];
    for mut s in chains {
        let first = s.sample(&ctx, last)?;
        assert_ne!(s.sample(&ctx, last)?, first);
    }
    // Without the window (0) the penalty is off: the same token again.
    let mut off = Sampler::builder(m)
        .penalties(0, 1.0, 0.0, 1000.0)?
        .greedy()
        .build();
    let first = off.sample(&ctx, last)?;
    assert_eq!(off.sample(&ctx, last)?, first);
    // DRY over the whole history builds and samples; huge windows are
    // bounded, not 16 GiB reserved (llama.cpp's std::bad_alloc).
    for last_n in [-1, i32::MAX] {
        let mut dry = Sampler::builder(m)
            .dry(0.8, 1.75, 2, last_n, &["\n"])?
            .greedy()
            .build();
        m.vocab().check(dry.sample(&ctx, last)?)?;
    }
    crate::assert_err!(
        Sampler::builder(m).penalties(-2, 1.0, 0.0, 0.0),
        LlamaError::InvalidParams(_)
    );
    Ok(())
}
