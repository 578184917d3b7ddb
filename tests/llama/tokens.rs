//! Tokenizing and detokenizing, against llama.cpp's C API, and the checks
//! on token ids.

use anyhow::Result;
use ggml::llama::{Error as LlamaError, Model, ModelParams};

use crate::support::{ids, model, model_path, run_c};

const TEXTS: &[&str] = &[
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew\n\nlines",
    "Ünïcödé: naïve café, Ærøskøbing, Straße",
    "日本語のテキストと中文",
    "emoji 🦀🔥👍🏽 and 👨‍👩‍👧‍👦",
    "<|im_start|>user\nHi<|im_end|>",
    "numbers 1234567890 3.14159 -42",
    "",
];

#[test]
fn tokenization_matches_llamas_c_api() -> Result<()> {
    let vocab = model().vocab();
    let path = model_path();
    for text in TEXTS {
        let ours = vocab.tokenize(text, true, true)?;
        let theirs = ids(&run_c(&["tokenize", path.to_str().unwrap(), text]));
        assert_eq!(ours, theirs, "{text:?}");
    }
    Ok(())
}

#[test]
fn detokenization_round_trips() -> Result<()> {
    let vocab = model().vocab();
    for text in TEXTS {
        let tokens = vocab.tokenize(text, false, true)?;
        assert_eq!(vocab.detokenize(&tokens, false, true)?, *text, "{text:?}");
        // Piece by piece through the streaming decoder: the same text, and
        // never a broken character on the way.
        let mut stream = vocab.text_stream(true);
        let mut joined = String::new();
        for &t in &tokens {
            joined.push_str(&stream.push(t)?);
        }
        joined.push_str(&stream.finish());
        assert_eq!(joined, *text);
    }
    Ok(())
}

#[test]
fn a_character_split_across_tokens_waits_for_its_end() -> Result<()> {
    let vocab = model().vocab();
    // GPT-2 vocabularies spell rare characters as several byte tokens.
    let tokens = vocab.tokenize("𒀭", false, false)?;
    assert!(tokens.len() > 1, "{tokens:?}");
    let mut stream = vocab.text_stream(false);
    let mut pieces = Vec::new();
    for &t in &tokens {
        pieces.push(stream.push(t)?);
    }
    assert!(
        pieces[..pieces.len() - 1].iter().all(String::is_empty),
        "{pieces:?}"
    );
    assert_eq!(pieces.last().unwrap(), "𒀭");
    Ok(())
}

#[test]
fn special_tokens_and_attributes() -> Result<()> {
    let vocab = model().vocab();
    assert_eq!(vocab.n_tokens(), 49152);
    assert_eq!(vocab.bos(), Some(1));
    assert_eq!(vocab.eos(), Some(2));
    assert!(vocab.is_eog(2));
    assert!(!vocab.is_eog(1000));
    assert!(!vocab.is_eog(-5));
    assert!(vocab.attrs(1)?.is_control());
    assert!(vocab.attrs(1000)?.is_normal());
    assert_eq!(vocab.text(1)?, b"<|im_start|>");
    assert_eq!(vocab.piece(1, true)?, b"<|im_start|>");
    assert_eq!(vocab.piece(1, false)?, b"");
    Ok(())
}

#[test]
fn token_ids_outside_the_vocabulary_are_errors() -> Result<()> {
    let vocab = model().vocab();
    for bad in [-1, 49152, i32::MAX, i32::MIN] {
        crate::assert_err!(vocab.piece(bad, true), LlamaError::TokenOutOfRange { token, n_vocab: 49152 } if *token == bad);
        crate::assert_err!(vocab.text(bad), LlamaError::TokenOutOfRange { .. });
        crate::assert_err!(vocab.attrs(bad), LlamaError::TokenOutOfRange { .. });
        crate::assert_err!(vocab.score(bad), LlamaError::TokenOutOfRange { .. });
        crate::assert_err!(
            vocab.detokenize(&[5, bad], false, false),
            LlamaError::TokenOutOfRange { .. }
        );
    }
    Ok(())
}

#[test]
fn a_vocabulary_only_model_tokenizes_but_makes_no_context() -> Result<()> {
    let m = Model::load_with(model_path(), &ModelParams::new().vocab_only(true), |_| true)?;
    assert_eq!(
        m.vocab().tokenize("Hello world", false, false)?,
        vec![19556, 905]
    );
    crate::assert_err!(
        ggml::llama::Context::new(&m, &ggml::llama::ContextParams::new()),
        LlamaError::InvalidParams(_)
    );
    Ok(())
}
