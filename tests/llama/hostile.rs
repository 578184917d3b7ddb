//! Model files llama.cpp trusts: each is valid GGUF, and each aborted the
//! process or crashed in a safe call before the crate checked its values.
//! Each is an error now (mostly `InvalidModel` at load, naming the key or
//! tensor), and the layer's other defences (the exception barrier, grammar
//! bounds, KV cache checks) hold against what gets through.

use anyhow::Result;
use ggml::gguf::Value;
use ggml::llama::{
    Batch, Context, ContextParams, Error as LlamaError, FlashAttention, Model, ModelParams,
    Pooling, Sampler,
};
use ggml::Type;
use ggml_fuzz::model::{Config, Mutation, Spec, Tokenizer};

/// Writes `spec` into a fresh directory and loads it.
fn load(spec: &Spec) -> Result<(tempfile::TempDir, ggml::llama::Result<Model>)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("model.gguf");
    spec.write(&path)?;
    let model = Model::load(&path);
    Ok((dir, model))
}

/// The default tiny llama model with `change` applied.
fn with(change: impl FnOnce(&mut Spec)) -> Spec {
    let mut s = Spec::llama(&Config::default());
    change(&mut s);
    s
}

/// Asserts that `spec` is refused at load, naming `item`.
fn refused(spec: &Spec, item: &str) -> Result<()> {
    let (_dir, model) = load(spec)?;
    match model {
        Err(LlamaError::InvalidModel {
            item: got, reason, ..
        }) => {
            assert!(
                got.contains(item),
                "refused for {got} ({reason}), expected {item}"
            );
            Ok(())
        }
        Err(e) => panic!("expected InvalidModel naming {item}, got {e}"),
        Ok(_) => panic!("expected InvalidModel naming {item}, the model loaded"),
    }
}

fn small() -> ContextParams {
    ContextParams::new()
        .n_ctx(64)
        .n_batch(32)
        .n_ubatch(32)
        .threads(1)
        .threads_batch(1)
}

#[test]
fn the_files_written_here_are_valid_and_run() -> Result<()> {
    // The starting point of every case below (and of the fuzzer): loads,
    // decodes and samples, with each tokenizer, dense and with experts.
    for cfg in [
        Config::default(),
        Config {
            tokenizer: Tokenizer::Bpe,
            tied: true,
            ..Config::default()
        },
        Config {
            experts: 4,
            experts_used: 2,
            matrix_type: Type::Q8_0,
            ..Config::default()
        },
    ] {
        let (_dir, model) = load(&Spec::llama(&cfg))?;
        let model = model?;
        let tokens = model
            .vocab()
            .tokenize("hello world, the end", true, false)?;
        let mut ctx = Context::new(&model, &small())?;
        ctx.decode(&Batch::from_prompt(&tokens)?)?;
        model
            .vocab()
            .check(Sampler::greedy(&model).sample(&ctx, tokens.len() - 1)?)?;
    }
    Ok(())
}

#[test]
fn hyperparameters_llama_cpp_asserts_on_are_refused() -> Result<()> {
    let u32_cases: &[(&str, u32)] = &[
        ("llama.block_count", 0),
        ("llama.block_count", 100_000),
        ("llama.expert_count", 1_000_000),
        ("llama.expert_used_count", 2), // without experts
        ("llama.nextn_predict_layers", 2),
        ("llama.embedding_length_out", 128),
        ("llama.pooling_type", 7),
        ("llama.attention.head_count_kv", 3), // 4 heads
    ];
    for &(key, v) in u32_cases {
        refused(&with(|s| s.set(key, v)), key)?;
    }
    refused(
        &with(|s| s.set("llama.rope.scaling.type", "bogus")),
        "llama.rope.scaling.type",
    )?;
    for eps in [f32::NAN, -1.0] {
        refused(
            &with(|s| s.set("llama.attention.layer_norm_rms_epsilon", eps)),
            "layer_norm_rms_epsilon",
        )?;
    }
    // KV heads that differ between layers (the cache is sized per layer,
    // the graph with layer 0's).
    refused(
        &with(|s| s.set("llama.attention.head_count_kv", vec![2u32, 4])),
        "llama.attention.head_count_kv",
    )?;
    // Keys of 16 and values of 8 with tensors shaped to match: llama.cpp
    // loads it and aborts making a context.
    let spec = with(|s| {
        s.set("llama.attention.key_length", 16u32);
        s.set("llama.attention.value_length", 8u32);
        s.set("llama.rope.dimension_count", 16u32);
        for l in 0..2 {
            s.tensor_mut(&format!("blk.{l}.attn_v.weight"))
                .unwrap()
                .shape = vec![16, 64];
        }
    });
    refused(&spec, "llama.attention.key_length")?;
    // 100 classifier labels for an embedding of 64: rank pooling read 100
    // scores per sequence out of 64 values.
    let labels: Vec<String> = (0..100).map(|i| format!("class {i}")).collect();
    refused(
        &with(|s| s.set("llama.classifier.output_labels", labels)),
        "llama.classifier.output_labels",
    )?;
    // An odd head dimension: the CPU's RoPE asserts at decode.
    let odd = Config {
        embd: 60,
        heads: 4,
        heads_kv: 2,
        ..Config::default()
    };
    refused(&Spec::llama(&odd), "llama.attention.key_length")?;
    Ok(())
}

#[test]
fn tensor_types_without_kernels_are_refused() -> Result<()> {
    // A weight stored as I32 (a NULL dot product at decode), an I8
    // embedding (get_rows aborts), F64 and Q8_1 matrices, an F16 norm (the
    // element-wise multiply aborts), F16 RoPE frequencies (an assert inside
    // the load itself).
    let cases: &[(&str, Type)] = &[
        ("blk.0.attn_q.weight", Type::I32),
        ("token_embd.weight", Type::I8),
        ("blk.1.ffn_down.weight", Type::F64),
        ("output.weight", Type::Q8_1),
        ("blk.0.attn_norm.weight", Type::F16),
    ];
    for &(name, ty) in cases {
        refused(&with(|s| s.tensor_mut(name).unwrap().ty = ty), name)?;
    }
    let spec = with(|s| {
        s.tensors.push(ggml_fuzz::model::TensorSpec {
            name: "rope_freqs.weight".into(),
            ty: Type::F16,
            shape: vec![8],
            nan: false,
        });
    });
    refused(&spec, "rope_freqs.weight")?;
    // A memory-mapped load computes in the file: its tensors must be
    // 32-byte aligned.
    let spec = with(|s| s.alignment = Some(8));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("model.gguf");
    spec.write(&path)?;
    // SAFETY: nothing modifies the file.
    let mapped = unsafe { ModelParams::new().mmap(true) };
    crate::assert_err!(
        Model::load_with(&path, &mapped, |_| true),
        LlamaError::InvalidModel { .. }
    );
    Model::load(&path)?; // read into memory, it is fine
    Ok(())
}

#[test]
fn vocabularies_llama_cpp_trusts_are_refused() -> Result<()> {
    // A token listed twice (llama.cpp asserts every text is unique),
    // also when the copy differs only after a NUL.
    refused(
        &with(|s| Mutation::Token(290, "▁the".into()).apply(s)),
        "tokenizer.ggml.tokens",
    )?;
    refused(
        &with(|s| Mutation::Token(290, "▁the\0x".into()).apply(s)),
        "tokenizer.ggml.tokens",
    )?;
    // SentencePiece without byte tokens: tokenizing threw out of
    // llama_tokenize.
    let no_bytes = with(|s| {
        Mutation::RemoveTokens(3, 259).apply(s);
        s.remove("llama.vocab_size");
    });
    refused(&no_bytes, "tokenizer.ggml.tokens")?;
    // Tokenizers this crate does not validate.
    refused(
        &with(|s| s.set("tokenizer.ggml.model", "bert")),
        "tokenizer.ggml.model",
    )?;
    // A token longer than the grammar sampler's recursion allows.
    refused(
        &with(|s| Mutation::Token(290, "x".repeat(5000)).apply(s)),
        "tokenizer.ggml.tokens",
    )?;
    // BPE with the whitespace pre-tokenizer: llama.cpp asserts on "a  b".
    let bpe = Config {
        tokenizer: Tokenizer::Bpe,
        ..Config::default()
    };
    let mut spec = Spec::llama(&bpe);
    spec.set("tokenizer.ggml.pre", "whitespace");
    refused(&spec, "tokenizer.ggml.pre")?;
    Ok(())
}

#[test]
fn exceptions_from_llama_cpp_are_errors() -> Result<()> {
    // The file the checks refuse (no byte tokens), loaded unchecked:
    // tokenizing text without a piece throws std::out_of_range inside
    // llama.cpp, which used to abort the process. The barrier turns it
    // into an error; the model stays usable.
    let spec = with(|s| Mutation::RemoveTokens(3, 259).apply(s));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("model.gguf");
    spec.write(&path)?;
    // SAFETY: the one hazard of this file is the exception under test.
    let trusted = unsafe { ModelParams::new().vocab_only(true).skip_model_checks(true) };
    let model = Model::load_with(&path, &trusted, |_| true)?;
    crate::assert_err!(
        model.vocab().tokenize("Z\u{e9}", false, false),
        LlamaError::Exception {
            call: "llama_tokenize",
            ..
        }
    );
    model.vocab().tokenize("the", false, false)?;
    Ok(())
}

#[test]
fn add_special_without_the_token_to_add_is_an_error() -> Result<()> {
    // GLM's pre-tokenizer has no BOS, the file asks to add one: llama.cpp
    // asserted (`tokenize("", add_special = true)`).
    let bpe = Config {
        tokenizer: Tokenizer::Bpe,
        ..Config::default()
    };
    let mut spec = Spec::llama(&bpe);
    spec.set("tokenizer.ggml.pre", "glm4");
    spec.remove("tokenizer.ggml.bos_token_id");
    spec.set("tokenizer.ggml.add_bos_token", true);
    let (_dir, model) = load(&spec)?;
    let model = model?;
    assert_eq!(model.vocab().bos(), None);
    crate::assert_err!(
        model.vocab().tokenize("", true, false),
        LlamaError::NotSupported {
            call: "tokenize",
            ..
        }
    );
    model.vocab().tokenize("hello", false, false)?;
    Ok(())
}

#[test]
fn lora_adapters_of_types_without_kernels_are_refused() -> Result<()> {
    let spec = Spec::llama(&Config::default());
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("model.gguf");
    spec.write(&path)?;
    let mut model = Model::load(&path)?;
    // lora_a of I32 with the right shapes loaded, applied, then crashed at
    // decode.
    let bad = dir.path().join("bad.gguf");
    spec.lora(4, Type::I32).write(&bad)?;
    crate::assert_err!(model.load_lora(&bad), LlamaError::InvalidModel { .. });
    // A key llama.cpp reads with ggml's type-asserting getter.
    let mut typed = spec.lora(4, Type::F32);
    typed.set("adapter.lora.alpha", 16u32);
    let typed_path = dir.path().join("typed.gguf");
    typed.write(&typed_path)?;
    crate::assert_err!(
        model.load_lora(&typed_path),
        LlamaError::InvalidModel { .. }
    );
    // The same adapter in f32 works.
    let good = dir.path().join("good.gguf");
    spec.lora(4, Type::F32).write(&good)?;
    let index = model.load_lora(&good)?;
    let lora = model.lora(index).expect("loaded");
    let mut ctx = Context::new(&model, &small())?;
    ctx.set_loras(&[(lora, 1.0)])?;
    ctx.decode(&Batch::from_prompt(&[1, 280, 281])?)?;
    Ok(())
}

#[test]
fn kv_cache_layouts_llama_cpp_cannot_serve_are_errors() -> Result<()> {
    let spec = Spec::llama(&Config::default()); // heads of 16
    let (_dir, model) = load(&spec)?;
    let model = model?;
    // A Q8_0 key cache for heads of 16 values: llama.cpp checks the block
    // size only with flash attention, and asserted without.
    crate::assert_err!(
        Context::new(&model, &small().type_k(Type::Q8_0)),
        LlamaError::InvalidParams(_)
    );
    // Shifting a BF16 key cache: the CPU's RoPE has no BF16 kernel.
    let mut ctx = Context::new(&model, &small().type_k(Type::BF16))?;
    ctx.decode(&Batch::from_prompt(&[1, 280, 281, 282])?)?;
    crate::assert_err!(ctx.shift_seq(0, 1.., -1), LlamaError::NotSupported { .. });
    // A quantized key cache whose heads are not multiples of 64: llama.cpp
    // has no rotation matrix for it and dereferenced NULL.
    let wide = Config {
        embd: 128,
        heads: 4,
        heads_kv: 2,
        ..Config::default()
    }; // heads of 32
    let (_dir2, wide) = load(&Spec::llama(&wide))?;
    let wide = wide?;
    let mut ctx = Context::new(
        &wide,
        &small()
            .type_k(Type::Q8_0)
            .flash_attn(FlashAttention::Enabled),
    )?;
    ctx.decode(&Batch::from_prompt(&[1, 280, 281, 282])?)?;
    crate::assert_err!(ctx.shift_seq(0, 1.., -1), LlamaError::NotSupported { .. });
    crate::assert_err!(ctx.divide_seq(0, .., 2), LlamaError::NotSupported { .. });
    // An f16 cache shifts.
    let mut ctx = Context::new(&model, &small())?;
    ctx.decode(&Batch::from_prompt(&[1, 280, 281, 282])?)?;
    ctx.shift_seq(0, 1.., -1)?;
    let mut next = Batch::new();
    next.add(283, 3, &[0], true)?;
    ctx.decode(&next)?;
    Ok(())
}

#[test]
fn grammars_deeper_than_the_stack_are_refused() -> Result<()> {
    let (_dir, model) = load(&Spec::llama(&Config::default()))?;
    let model = model?;
    // 100,000 nested parentheses overflowed llama.cpp's parser; a chain of
    // 200,000 rules its left-recursion check.
    let deep = format!(
        "root ::= {}\"a\"{}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let chain: String = (0..200_000)
        .map(|i| format!("r{i} ::= r{}\n", i + 1))
        .chain(std::iter::once("r200000 ::= \"a\"\n".to_string()))
        .collect();
    for g in [deep.as_str(), chain.as_str()] {
        crate::assert_err!(
            Sampler::builder(&model).grammar(g, "root"),
            LlamaError::GrammarLimit { .. }
        );
    }
    // A real grammar passes.
    let _ = Sampler::builder(&model).grammar("root ::= (\"the\" | \"a\")+", "root")?;
    Ok(())
}

#[test]
fn nan_weights_are_an_error_when_sampling() -> Result<()> {
    // NaN logits break the order llama.cpp's samplers sort by.
    let spec = with(|s| s.tensor_mut("output.weight").unwrap().nan = true);
    let (_dir, model) = load(&spec)?;
    let model = model?;
    let mut ctx = Context::new(&model, &small())?;
    ctx.decode(&Batch::from_prompt(&[1, 280, 281])?)?;
    crate::assert_err!(
        Sampler::greedy(&model).sample(&ctx, 2),
        LlamaError::NonFinite { .. }
    );
    Ok(())
}

#[test]
fn embeddings_with_rank_pooling_stay_in_bounds() -> Result<()> {
    // Labels up to the embedding width are fine, with the user's rank
    // pooling too.
    let labels: Vec<String> = (0..64).map(|i| format!("class {i}")).collect();
    let spec = with(|s| s.set("llama.classifier.output_labels", Value::from(labels)));
    let (_dir, model) = load(&spec)?;
    let model = model?;
    let mut ctx = Context::new(
        &model,
        &small().n_seq_max(2).embeddings(true).pooling(Pooling::Rank),
    )?;
    let mut batch = Batch::new();
    for (i, t) in [1, 280, 281].into_iter().enumerate() {
        batch.add(t, i as i32, &[0], true)?;
        batch.add(t, i as i32, &[1], true)?;
    }
    ctx.decode(&batch)?;
    assert_eq!(ctx.seq_embeddings(1)?.len(), 64);
    Ok(())
}
