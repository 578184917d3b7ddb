//! [`Vocab`]: tokenizing, detokenizing, token pieces and attributes, with
//! every token id checked (llama.cpp terminates the process on an id
//! outside the vocabulary), and [`TextStream`], which turns a stream of
//! tokens into text without ever emitting a broken UTF-8 character.

use std::marker::PhantomData;

use ggml_sys as sys;

use super::barrier;
use super::error::Error;
use super::error::Result;
use super::model::Model;

/// A token id. Ids given to this crate are checked against the vocabulary.
pub type Token = i32;

/// A model's vocabulary, borrowed from it.
#[derive(Clone, Copy)]
pub struct Vocab<'m> {
    raw: *const sys::llama_vocab,
    _model: PhantomData<&'m Model>,
}

// SAFETY: the vocabulary is read-only after loading; llama.cpp documents
// tokenization as thread-safe.
unsafe impl Send for Vocab<'_> {}
// SAFETY: as above.
unsafe impl Sync for Vocab<'_> {}

impl std::fmt::Debug for Vocab<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab")
            .field("n_tokens", &self.n_tokens())
            .finish()
    }
}

/// A token's attributes (`llama_token_attr` bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenAttrs(pub u32);

impl TokenAttrs {
    /// A control token (`<|im_start|>`, ...).
    pub fn is_control(self) -> bool {
        self.0 & sys::LLAMA_TOKEN_ATTR_CONTROL != 0
    }
    /// A normal text token.
    pub fn is_normal(self) -> bool {
        self.0 & sys::LLAMA_TOKEN_ATTR_NORMAL != 0
    }
    /// A byte token (`<0x0A>`).
    pub fn is_byte(self) -> bool {
        self.0 & sys::LLAMA_TOKEN_ATTR_BYTE != 0
    }
    /// The unknown token.
    pub fn is_unknown(self) -> bool {
        self.0 & sys::LLAMA_TOKEN_ATTR_UNKNOWN != 0
    }
    /// A user-defined token.
    pub fn is_user_defined(self) -> bool {
        self.0 & sys::LLAMA_TOKEN_ATTR_USER_DEFINED != 0
    }
}

/// Longest text [`Vocab::tokenize`] takes (8 MiB: the helper thread's
/// stack for it is 4 GiB of address space, most of it never touched).
pub const MAX_TOKENIZE_BYTES: usize = 8 << 20;

/// Texts up to this long are tokenized on the calling thread (at most
/// about 0.6 MB of llama.cpp's regex recursion, within the 2 MiB a Rust
/// thread has).
const INLINE_TOKENIZE_BYTES: usize = 2048;

/// Stack given to the helper thread per byte of text.
const STACK_PER_BYTE: usize = 512;

/// A vocabulary handle sent to the tokenizing helper thread.
#[derive(Clone, Copy)]
struct SendVocab<'m>(Vocab<'m>);

// SAFETY: tokenizing only reads the vocabulary, which llama.cpp documents
// as thread-safe; the model is `Sync` and outlives the scoped thread.
unsafe impl Send for SendVocab<'_> {}

fn special(t: Token) -> Option<Token> {
    (t >= 0).then_some(t)
}

impl<'m> Vocab<'m> {
    pub(crate) fn new(raw: *const sys::llama_vocab) -> Self {
        Vocab {
            raw,
            _model: PhantomData,
        }
    }

    pub(crate) fn raw(&self) -> *const sys::llama_vocab {
        self.raw
    }

    /// Number of tokens.
    pub fn n_tokens(&self) -> i32 {
        // SAFETY: a live vocabulary (the model outlives 'm); all the calls
        // below take it and plain values.
        unsafe { sys::llama_vocab_n_tokens(self.raw) }
    }

    fn has_tokenizer(&self) -> bool {
        // SAFETY: see n_tokens.
        unsafe { sys::llama_vocab_type(self.raw) != sys::LLAMA_VOCAB_TYPE_NONE }
    }

    /// Checks that `token` is in the vocabulary (and that there is one).
    ///
    /// # Errors
    /// [`Error::TokenOutOfRange`], [`Error::NoVocab`].
    pub fn check(&self, token: Token) -> Result<Token> {
        if !self.has_tokenizer() {
            return Err(Error::NoVocab);
        }
        let n_vocab = self.n_tokens();
        if (0..n_vocab).contains(&token) {
            Ok(token)
        } else {
            Err(Error::TokenOutOfRange { token, n_vocab })
        }
    }

    /// Beginning of sequence.
    pub fn bos(&self) -> Option<Token> {
        // SAFETY: see n_tokens.
        special(unsafe { sys::llama_vocab_bos(self.raw) })
    }
    /// End of sequence.
    pub fn eos(&self) -> Option<Token> {
        // SAFETY: see n_tokens.
        special(unsafe { sys::llama_vocab_eos(self.raw) })
    }
    /// End of turn.
    pub fn eot(&self) -> Option<Token> {
        // SAFETY: see n_tokens.
        special(unsafe { sys::llama_vocab_eot(self.raw) })
    }
    /// Sentence separator.
    pub fn sep(&self) -> Option<Token> {
        // SAFETY: see n_tokens.
        special(unsafe { sys::llama_vocab_sep(self.raw) })
    }
    /// New line.
    pub fn nl(&self) -> Option<Token> {
        // SAFETY: see n_tokens.
        special(unsafe { sys::llama_vocab_nl(self.raw) })
    }
    /// Padding.
    pub fn pad(&self) -> Option<Token> {
        // SAFETY: see n_tokens.
        special(unsafe { sys::llama_vocab_pad(self.raw) })
    }
    /// Whether tokenizing adds a BOS token by default.
    pub fn adds_bos(&self) -> bool {
        // SAFETY: see n_tokens.
        unsafe { sys::llama_vocab_get_add_bos(self.raw) }
    }

    /// Whether `token` ends generation (EOS, EOT, ...); `false` for ids
    /// outside the vocabulary.
    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: see n_tokens; llama.cpp looks the id up in a set (any id).
        unsafe { sys::llama_vocab_is_eog(self.raw, token) }
    }

    /// The token's attributes.
    ///
    /// # Errors
    /// As [`Vocab::check`].
    pub fn attrs(&self, token: Token) -> Result<TokenAttrs> {
        self.check(token)?;
        // SAFETY: an id in range.
        Ok(TokenAttrs(unsafe {
            sys::llama_vocab_get_attr(self.raw, token)
        }))
    }

    /// The token's score.
    ///
    /// # Errors
    /// As [`Vocab::check`].
    pub fn score(&self, token: Token) -> Result<f32> {
        self.check(token)?;
        // SAFETY: an id in range.
        Ok(unsafe { sys::llama_vocab_get_score(self.raw, token) })
    }

    /// The token's text as stored in the vocabulary (`Ġthe` for GPT-2
    /// vocabularies; see [`Vocab::piece`] for the text it stands for).
    ///
    /// # Errors
    /// As [`Vocab::check`].
    pub fn text(&self, token: Token) -> Result<&'m [u8]> {
        self.check(token)?;
        // SAFETY: an id in range; the string is owned by the model ('m).
        let p = unsafe { sys::llama_vocab_get_text(self.raw, token) };
        // SAFETY: a NUL-terminated string owned by the model.
        Ok(unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes())
    }

    /// Tokenizes `text`: `add_special` adds BOS/EOS as the model wants,
    /// `parse_special` turns special-token text (`<|im_start|>`) into those
    /// tokens instead of plain text.
    ///
    /// Texts longer than 2 KiB are tokenized on a helper thread: several of
    /// llama.cpp's pre-tokenizers match with `std::regex`, which recurses
    /// once per character of a run (about 300 bytes of stack each), and the
    /// helper's stack is sized for the text ([`MAX_TOKENIZE_BYTES`] at most).
    ///
    /// # Errors
    /// [`Error::NoVocab`], [`Error::TooLong`];
    /// [`Error::NotSupported`] for `add_special` when the model adds a
    /// special token its vocabulary lacks (llama.cpp asserts), or when the
    /// helper thread cannot be started.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>> {
        if !self.has_tokenizer() {
            return Err(Error::NoVocab);
        }
        if add_special {
            self.check_add_special()?;
        }
        let len = i32::try_from(text.len())
            .ok()
            .filter(|_| text.len() <= MAX_TOKENIZE_BYTES)
            .ok_or(Error::TooLong {
                what: "the text to tokenize",
                len: text.len(),
            })?;
        let tokens = if text.len() <= INLINE_TOKENIZE_BYTES {
            self.tokenize_here(text, len, add_special, parse_special)?
        } else {
            let stack = (1 << 20) + STACK_PER_BYTE * text.len();
            let vocab = SendVocab(*self);
            std::thread::scope(|scope| {
                let worker = std::thread::Builder::new()
                    .name("ggml-tokenize".into())
                    .stack_size(stack)
                    .spawn_scoped(scope, move || {
                        let vocab = vocab;
                        vocab.0.tokenize_here(text, len, add_special, parse_special)
                    })
                    .map_err(|e| Error::NotSupported {
                        call: "tokenize",
                        reason: format!(
                            "no thread with {} MiB of stack for a text of {} bytes: {e}",
                            stack >> 20,
                            text.len()
                        ),
                    })?;
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })?
        };
        // Tokenizers without an unknown token emit -1 for what they cannot
        // place; every other call refuses such an id.
        let n_vocab = self.n_tokens();
        if let Some(&bad) = tokens.iter().find(|&&t| !(0..n_vocab).contains(&t)) {
            return Err(Error::TokenOutOfRange {
                token: bad,
                n_vocab,
            });
        }
        Ok(tokens)
    }

    /// Whether `add_special` is safe: llama.cpp asserts that the special
    /// tokens it adds exist.
    fn check_add_special(&self) -> Result<()> {
        // SAFETY: see n_tokens; these getters read fields.
        let (ty, add_bos, add_eos) = unsafe {
            (
                sys::llama_vocab_type(self.raw),
                sys::llama_vocab_get_add_bos(self.raw),
                sys::llama_vocab_get_add_eos(self.raw),
            )
        };
        let missing = match ty {
            sys::LLAMA_VOCAB_TYPE_WPM => {
                // BERT's tokenizer adds both whatever its flags say.
                [(self.bos().is_none(), "BOS"), (self.sep().is_none(), "SEP")]
            }
            sys::LLAMA_VOCAB_TYPE_RWKV | sys::LLAMA_VOCAB_TYPE_TEST => return Ok(()),
            _ => [
                (add_bos && self.bos().is_none(), "BOS"),
                (add_eos && self.eos().is_none(), "EOS"),
            ],
        };
        match missing.iter().find(|(m, _)| *m) {
            None => Ok(()),
            Some((_, what)) => Err(Error::NotSupported {
                call: "tokenize",
                reason: format!(
                    "add_special: the model adds a {what} token its vocabulary does not have"
                ),
            }),
        }
    }

    /// Tokenizes on this thread (see [`Vocab::tokenize`] for the stack).
    fn tokenize_here(
        &self,
        text: &str,
        len: i32,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>> {
        // A guess (retried with the exact count when short), bounded so that
        // a huge text does not reserve for it up front.
        let mut tokens = vec![0; (text.len() / 2 + 8).min(1 << 16)];
        loop {
            let cap = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
            let mut n = 0;
            // SAFETY: `text` for `len` bytes; `tokens` has room for `cap`.
            let status = unsafe {
                sys::ggml_sys_try_llama_tokenize(
                    self.raw,
                    text.as_ptr().cast(),
                    len,
                    tokens.as_mut_ptr(),
                    cap,
                    add_special,
                    parse_special,
                    &mut n,
                )
            };
            barrier::check("llama_tokenize", status)?;
            if n == i32::MIN {
                return Err(Error::TooLong {
                    what: "the tokenized text",
                    len: text.len(),
                });
            }
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            tokens.resize((-n) as usize, 0);
        }
    }

    /// The bytes a token stands for (a byte token is one raw byte, so a
    /// piece need not be UTF-8 on its own: see [`TextStream`]). Control
    /// tokens give their text only when `special`.
    ///
    /// # Errors
    /// As [`Vocab::check`].
    pub fn piece(&self, token: Token, special: bool) -> Result<Vec<u8>> {
        self.check(token)?;
        let mut buf = vec![0u8; 32];
        loop {
            let mut n = 0;
            // SAFETY: an id in range; a buffer of buf.len() bytes.
            let status = unsafe {
                sys::ggml_sys_try_llama_token_to_piece(
                    self.raw,
                    token,
                    buf.as_mut_ptr().cast(),
                    buf.len() as i32,
                    0,
                    special,
                    &mut n,
                )
            };
            barrier::check("llama_token_to_piece", status)?;
            if n >= 0 {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            buf.resize((-n) as usize, 0);
        }
    }

    /// The text of `tokens` (invalid UTF-8 replaced): `remove_special` drops
    /// BOS/EOS as the model adds them, `unparse_special` writes special
    /// tokens as their text.
    ///
    /// # Errors
    /// As [`Vocab::check`] for any token; [`Error::TooLong`].
    pub fn detokenize(
        &self,
        tokens: &[Token],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<String> {
        for &t in tokens {
            self.check(t)?;
        }
        let n = i32::try_from(tokens.len()).map_err(|_| Error::TooLong {
            what: "the tokens to detokenize",
            len: tokens.len(),
        })?;
        let mut buf = vec![0u8; tokens.len().saturating_mul(4).saturating_add(16)];
        loop {
            let cap = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            let mut got = 0;
            // SAFETY: every id in range; `n` tokens; a buffer of `cap` bytes.
            let status = unsafe {
                sys::ggml_sys_try_llama_detokenize(
                    self.raw,
                    tokens.as_ptr(),
                    n,
                    buf.as_mut_ptr().cast(),
                    cap,
                    remove_special,
                    unparse_special,
                    &mut got,
                )
            };
            barrier::check("llama_detokenize", status)?;
            if got >= 0 {
                buf.truncate(got as usize);
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
            if got == i32::MIN {
                return Err(Error::TooLong {
                    what: "the detokenized text",
                    len: buf.len(),
                });
            }
            buf.resize((-got) as usize, 0);
        }
    }

    /// A streaming decoder of this vocabulary's tokens to text.
    pub fn text_stream(&self, special: bool) -> TextStream<'m> {
        TextStream {
            vocab: *self,
            special,
            pending: Vec::new(),
        }
    }
}

/// Turns tokens into text as they come: the text of each token, except the
/// bytes of a UTF-8 character that continues in the next token, which wait
/// for it. Never emits a broken character; [`TextStream::finish`] returns
/// what is left (invalid bytes replaced).
#[derive(Debug)]
pub struct TextStream<'m> {
    vocab: Vocab<'m>,
    special: bool,
    pending: Vec<u8>,
}

impl TextStream<'_> {
    /// The complete text `token` finishes.
    ///
    /// # Errors
    /// As [`Vocab::check`].
    pub fn push(&mut self, token: Token) -> Result<String> {
        let piece = self.vocab.piece(token, self.special)?;
        self.pending.extend_from_slice(&piece);
        Ok(self.take_complete())
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"),
                    );
                    match e.error_len() {
                        // An incomplete character at the end: wait for more.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Bytes that can never be UTF-8: replace them.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + n);
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end of the stream.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}
