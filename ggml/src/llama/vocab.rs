//! [`Vocab`]: tokenizing, detokenizing, token pieces and attributes, with
//! every token id checked (llama.cpp terminates the process on an id
//! outside the vocabulary), and [`TextStream`], which turns a stream of
//! tokens into text without ever emitting a broken UTF-8 character.

use ggml_sys as sys;

use super::error::Error;
use super::error::Result;
use super::raw::RawVocab;

/// A token id. Ids given to this crate are checked against the vocabulary.
pub type Token = i32;

/// A model's vocabulary, borrowed from it.
#[derive(Clone, Copy)]
pub struct Vocab<'m> {
    raw: RawVocab<'m>,
}

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

fn special(t: Token) -> Option<Token> {
    (t >= 0).then_some(t)
}

impl<'m> Vocab<'m> {
    pub(crate) fn new(raw: RawVocab<'m>) -> Self {
        Vocab { raw }
    }

    pub(crate) fn raw(&self) -> RawVocab<'m> {
        self.raw
    }

    /// Number of tokens.
    pub fn n_tokens(&self) -> i32 {
        self.raw.n_tokens()
    }

    fn has_tokenizer(&self) -> bool {
        self.raw.has_tokenizer()
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
        special(self.raw.bos())
    }
    /// End of sequence.
    pub fn eos(&self) -> Option<Token> {
        special(self.raw.eos())
    }
    /// End of turn.
    pub fn eot(&self) -> Option<Token> {
        special(self.raw.eot())
    }
    /// Sentence separator.
    pub fn sep(&self) -> Option<Token> {
        special(self.raw.sep())
    }
    /// New line.
    pub fn nl(&self) -> Option<Token> {
        special(self.raw.nl())
    }
    /// Padding.
    pub fn pad(&self) -> Option<Token> {
        special(self.raw.pad())
    }
    /// Whether tokenizing adds a BOS token by default.
    pub fn adds_bos(&self) -> bool {
        self.raw.adds_bos()
    }

    /// Whether `token` ends generation (EOS, EOT, ...); `false` for ids
    /// outside the vocabulary.
    pub fn is_eog(&self, token: Token) -> bool {
        self.raw.is_eog(token)
    }

    /// The token's attributes.
    ///
    /// # Errors
    /// As [`Vocab::check`].
    pub fn attrs(&self, token: Token) -> Result<TokenAttrs> {
        self.check(token)?;
        Ok(TokenAttrs(self.raw.attr(token).expect("an id in range")))
    }

    /// The token's score.
    ///
    /// # Errors
    /// As [`Vocab::check`].
    pub fn score(&self, token: Token) -> Result<f32> {
        self.check(token)?;
        Ok(self.raw.score(token).expect("an id in range"))
    }

    /// The token's text as stored in the vocabulary (`Ġthe` for GPT-2
    /// vocabularies; see [`Vocab::piece`] for the text it stands for).
    ///
    /// # Errors
    /// As [`Vocab::check`].
    pub fn text(&self, token: Token) -> Result<&'m [u8]> {
        self.check(token)?;
        Ok(self.raw.text(token).expect("an id in range"))
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
        if text.len() > MAX_TOKENIZE_BYTES {
            return Err(Error::TooLong {
                what: "the text to tokenize",
                len: text.len(),
            });
        }
        let tokens = if text.len() <= INLINE_TOKENIZE_BYTES {
            self.tokenize_here(text, add_special, parse_special)?
        } else {
            let stack = (1 << 20) + STACK_PER_BYTE * text.len();
            let vocab = *self;
            std::thread::scope(|scope| {
                let worker = std::thread::Builder::new()
                    .name("ggml-tokenize".into())
                    .stack_size(stack)
                    .spawn_scoped(scope, move || {
                        vocab.tokenize_here(text, add_special, parse_special)
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
        let (ty, add_bos, add_eos) = (
            self.raw.vocab_type(),
            self.raw.adds_bos(),
            self.raw.adds_eos(),
        );
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
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>> {
        // A guess (retried with the exact count when short), bounded so that
        // a huge text does not reserve for it up front.
        let mut tokens = vec![0; (text.len() / 2 + 8).min(1 << 16)];
        loop {
            let n = self
                .raw
                .tokenize(text.as_bytes(), &mut tokens, add_special, parse_special)?;
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
            let n = self.raw.piece(token, &mut buf, special)?;
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
        let mut buf = vec![0u8; tokens.len().saturating_mul(4).saturating_add(16)];
        loop {
            let got = self
                .raw
                .detokenize(tokens, &mut buf, remove_special, unparse_special)?;
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
