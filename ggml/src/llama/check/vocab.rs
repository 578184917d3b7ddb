//! The vocabulary of a model file: what llama.cpp's tokenizers assume of
//! it and do not check (they abort, loop, overflow the stack or throw from
//! a call later when it does not hold).

use std::collections::HashSet;

use super::{Finding, MAX_TOKEN_BYTES, MAX_VOCAB};
use crate::gguf::{ArrayValue, Gguf, Value};

/// Tokenizer models this crate validates (`tokenizer.ggml.model`).
pub(crate) const TOKENIZERS: &[&str] = &["none", "no_vocab", "llama", "gpt2"];

/// BPE pre-tokenizers that replace spaces by `▁` themselves (llama.cpp's
/// `escape_whitespaces`): their tokens are not decoded byte by byte.
const ESCAPING_PRES: &[&str] = &["gemma4", "granite-embed-multi-311m", "mmbert", "sarvam-moe"];

/// The most bytes llama.cpp's display decoding of a BPE vocabulary may
/// produce at load (it grows with the square of a token's length).
const MAX_DECODED_BYTES: usize = 256 << 20;

/// A string value as llama.cpp reads it: cut at its first NUL.
fn c_str(s: &str) -> &str {
    s.split('\0').next().unwrap_or("")
}

/// Checks the vocabulary keys (`tokenizer.*`) of `file`.
pub(crate) fn check(file: &Gguf, arch: Option<&str>) -> Result<(), Finding> {
    const MODEL: &str = "tokenizer.ggml.model";
    let model = match file.value(MODEL) {
        Some(Value::String(s)) => c_str(&s).to_owned(),
        // llama.cpp refuses a missing or mistyped key itself.
        _ => return Ok(()),
    };
    if !TOKENIZERS.contains(&model.as_str()) {
        return Err(Finding::new(
            MODEL,
            format!(
                "tokenizer '{model}' is not one this crate validates ({})",
                TOKENIZERS.join(", ")
            ),
        ));
    }
    if model == "none" || model == "no_vocab" {
        if let Some(arch) = arch {
            let key = format!("{arch}.vocab_size");
            if let Some(n) = file.value(&key).and_then(|v| v.as_i64()) {
                if n > MAX_VOCAB as i64 {
                    return Err(Finding::new(
                        key,
                        format!("{n} tokens (at most {MAX_VOCAB})"),
                    ));
                }
            }
        }
        return Ok(());
    }
    const TOKENS: &str = "tokenizer.ggml.tokens";
    let Some(Value::Array(tokens)) = file.value(TOKENS) else {
        return Ok(()); // llama.cpp refuses it
    };
    let Ok(texts) = tokens.iter_str() else {
        return Ok(()); // not strings: llama.cpp refuses it
    };
    let n = tokens.len();
    if n == 0 || n > MAX_VOCAB {
        return Err(Finding::new(
            TOKENS,
            format!("{n} tokens (1 to {MAX_VOCAB} are accepted)"),
        ));
    }
    // llama.cpp's effective texts: cut at NUL, an empty one named by index.
    let mut seen: HashSet<std::borrow::Cow<'_, str>> = HashSet::with_capacity(n);
    for (i, text) in texts.enumerate() {
        if text.len() > MAX_TOKEN_BYTES {
            return Err(Finding::new(
                TOKENS,
                format!(
                    "token {i} is {} bytes (at most {MAX_TOKEN_BYTES})",
                    text.len()
                ),
            ));
        }
        let effective = match c_str(text) {
            "" => std::borrow::Cow::Owned(format!("[EMPTY_{i}]")),
            t => std::borrow::Cow::Borrowed(t),
        };
        if !seen.insert(effective.clone()) {
            // llama.cpp asserts that every text is unique.
            return Err(Finding::new(
                TOKENS,
                format!("token {i} ({effective:?}) is listed twice"),
            ));
        }
    }
    if let Some(arch) = arch {
        let key = format!("{arch}.vocab_size");
        if let Some(v) = file.value(&key).and_then(|v| v.as_i64()) {
            if v != n as i64 {
                return Err(Finding::new(
                    key,
                    format!("{v}, but the vocabulary has {n} tokens"),
                ));
            }
        }
    }
    match model.as_str() {
        "llama" => check_byte_fallback(&seen),
        "gpt2" => check_bpe(file, &tokens),
        _ => Ok(()),
    }
}

/// SentencePiece falls back to byte tokens for text it has no piece for,
/// and throws (out of a tokenize call) when a byte has none.
fn check_byte_fallback(texts: &HashSet<std::borrow::Cow<'_, str>>) -> Result<(), Finding> {
    for b in 0..=255u8 {
        let hex = format!("<0x{b:02X}>");
        let raw = (b != 0 && b < 0x80).then(|| (b as char).to_string());
        if !texts.contains(hex.as_str()) && !raw.is_some_and(|r| texts.contains(r.as_str())) {
            return Err(Finding::new(
                "tokenizer.ggml.tokens",
                format!("no token for byte 0x{b:02X} ({hex}), which tokenizing falls back to"),
            ));
        }
    }
    Ok(())
}

/// The GPT-2 byte alphabet: code points that stand for one byte.
fn is_byte_char(c: char) -> bool {
    matches!(c as u32, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF | 0x100..=0x143)
}

fn check_bpe(file: &Gguf, tokens: &ArrayValue<'_>) -> Result<(), Finding> {
    const PRE: &str = "tokenizer.ggml.pre";
    let pre = match file.value(PRE) {
        Some(Value::String(s)) => c_str(&s).to_owned(),
        _ => String::new(),
    };
    if pre == "whitespace" {
        // Its splitter leaves runs of spaces in words, which llama.cpp's
        // merge lookup asserts never happens.
        return Err(Finding::new(
            PRE,
            "pre-tokenizer 'whitespace' with tokenizer 'gpt2' (llama.cpp asserts on runs of spaces)",
        ));
    }
    if ESCAPING_PRES.contains(&pre.as_str()) {
        return Ok(());
    }
    // At load llama.cpp decodes every token for display; each character
    // outside the byte alphabet appends a marker and the whole token.
    let mut total = 0usize;
    for text in tokens.iter_str().into_iter().flatten() {
        let text = c_str(text);
        for c in text.chars() {
            total = total.saturating_add(if is_byte_char(c) {
                1
            } else {
                13 + 2 * c.len_utf8() + text.len()
            });
        }
        if total > MAX_DECODED_BYTES {
            return Err(Finding::new(
                "tokenizer.ggml.tokens",
                format!(
                    "decoding the tokens takes over {} MiB (llama.cpp does it at load)",
                    MAX_DECODED_BYTES >> 20
                ),
            ));
        }
    }
    Ok(())
}
