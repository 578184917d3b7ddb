//! [`Sampler`]: a chain of llama.cpp's samplers (greedy, temperature, top-k,
//! top-p, min-p, typical, penalties, DRY, mirostat, grammar, logit bias,
//! seeded distribution) applied to a context's logits.
//!
//! Sampling itself is done here, not by `llama_sampler_sample` (which
//! aborts when the chain selects nothing): the logits row is checked, the
//! chain applied, the selection checked, then accepted. Accepting a token a
//! grammar forbids is an error, checked before llama.cpp would throw.

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;

use ggml_sys as sys;

use super::context::Context;
use super::error::Error;
use super::error::Result;
use super::model::Model;
use super::raw::{self, samplers, RawSampler};
use super::vocab::{Token, Vocab};

/// A sampler chain, built with [`Sampler::builder`]. Owns llama.cpp's
/// chain; borrows the model (grammar and DRY samplers read its
/// vocabulary). `Send`, not `Sync`.
pub struct Sampler<'m> {
    chain: NonNull<sys::llama_sampler>,
    /// Positions of grammar samplers in the chain.
    grammars: Vec<i32>,
    vocab: Vocab<'m>,
    candidates: Vec<sys::llama_token_data>,
    _model: PhantomData<&'m Model>,
}

// SAFETY: samplers hold heap state only (RNG, histories, grammar stacks)
// and read the model's vocabulary, which is `Sync`.
unsafe impl Send for Sampler<'_> {}

impl Drop for Sampler<'_> {
    fn drop(&mut self) {
        // SAFETY: the chain owns its members and frees them with itself.
        unsafe { raw::free_sampler(self.chain) };
    }
}

impl std::fmt::Debug for Sampler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("samplers", &self.raw().chain_len())
            .finish()
    }
}

/// Builds a [`Sampler`]: samplers apply in the order added; the last must
/// select a token (greedy, dist, mirostat).
pub struct SamplerBuilder<'m> {
    sampler: Sampler<'m>,
    /// The longest token history a penalty looks back on: the model's
    /// training context (no context of this crate is longer), at most
    /// [`MAX_PENALTY_WINDOW`].
    window: i32,
}

/// The longest history (in tokens) [`SamplerBuilder::penalties`] and
/// [`SamplerBuilder::dry`] keep: llama.cpp allocates their window up front
/// (2^24 tokens: 64 MiB of token ids).
pub const MAX_PENALTY_WINDOW: i32 = 1 << 24;

impl std::fmt::Debug for SamplerBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerBuilder")
            .field("sampler", &self.sampler)
            .field("window", &self.window)
            .finish()
    }
}

fn check_finite(name: &str, values: &[f32]) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::InvalidParams(format!(
            "{name}: parameters must be finite, got {values:?}"
        )))
    }
}

fn check_unit(name: &str, p: f32) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::InvalidParams(format!("{name}: {p} is not in 0..=1")))
    }
}

impl<'m> SamplerBuilder<'m> {
    fn push(
        mut self,
        made: Result<Option<NonNull<sys::llama_sampler>>>,
        grammar: bool,
    ) -> Result<Self> {
        let member = made?.ok_or(if grammar {
            Error::GrammarParse
        } else {
            Error::InvalidParams("llama.cpp refused the sampler".into())
        })?;
        if grammar {
            let n = self.sampler.raw().chain_len();
            self.sampler.grammars.push(n);
        }
        // SAFETY: a sampler just made, nobody else holds it.
        unsafe { self.sampler.raw().chain_add(member) }?;
        Ok(self)
    }

    /// Picks the most likely token (the first of equals).
    pub fn greedy(self) -> Self {
        // Only a failed allocation of a few bytes can fail here.
        self.push(samplers::greedy(), false).expect("greedy")
    }

    /// Picks a token at random by probability, seeded (`None`: a random
    /// seed).
    pub fn dist(self, seed: Option<u32>) -> Self {
        let seed = seed.unwrap_or(sys::LLAMA_DEFAULT_SEED);
        // Only a failed allocation of a few bytes can fail here.
        self.push(samplers::dist(seed), false).expect("dist")
    }

    /// Divides logits by `t` (≤ 0: keeps only the most likely).
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for a value that is not finite.
    pub fn temp(self, t: f32) -> Result<Self> {
        check_finite("temp", &[t])?;
        self.push(samplers::temp(t), false)
    }

    /// Keeps the `k` most likely tokens (`k` ≤ 0: all).
    pub fn top_k(self, k: i32) -> Self {
        // Only a failed allocation of a few bytes can fail here.
        self.push(samplers::top_k(k), false).expect("top_k")
    }

    /// Keeps the most likely tokens whose probabilities add up to `p`, at
    /// least `min_keep`.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for `p` outside 0..=1.
    pub fn top_p(self, p: f32, min_keep: usize) -> Result<Self> {
        check_unit("top_p", p)?;
        self.push(samplers::top_p(p, min_keep), false)
    }

    /// Keeps the tokens at least `p` times as likely as the most likely.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for `p` outside 0..=1.
    pub fn min_p(self, p: f32, min_keep: usize) -> Result<Self> {
        check_unit("min_p", p)?;
        self.push(samplers::min_p(p, min_keep), false)
    }

    /// Locally typical sampling with mass `p`.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for `p` outside 0..=1.
    pub fn typical(self, p: f32, min_keep: usize) -> Result<Self> {
        check_unit("typical", p)?;
        self.push(samplers::typical(p, min_keep), false)
    }

    /// The history length llama.cpp gets for `last_n`: -1 (the whole
    /// context) and windows longer than any context are the model's
    /// training context length.
    fn window(&self, what: &str, last_n: i32) -> Result<i32> {
        match last_n {
            -1 => Ok(self.window),
            n if n < -1 => Err(Error::InvalidParams(format!("{what}: last_n {last_n}"))),
            n => Ok(n.min(self.window)),
        }
    }

    /// Repetition penalties over the last `last_n` tokens accepted (0:
    /// none, -1: the whole context): `repeat` divides (1: off), `freq` and
    /// `present` subtract.
    ///
    /// The history is at most the model's training context length (no
    /// context is longer), and at most [`MAX_PENALTY_WINDOW`]: -1 and
    /// longer windows are that.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for values that are not finite, or
    /// `last_n` below -1.
    pub fn penalties(self, last_n: i32, repeat: f32, freq: f32, present: f32) -> Result<Self> {
        check_finite("penalties", &[repeat, freq, present])?;
        let last_n = self.window("penalties", last_n)?;
        let n_vocab = self.sampler.vocab.n_tokens();
        self.push(
            samplers::penalties(n_vocab, last_n, repeat, freq, present),
            false,
        )
    }

    /// DRY ("don't repeat yourself") penalties over the last `last_n`
    /// tokens (0: none, -1: the whole context, bounded as for
    /// [`SamplerBuilder::penalties`]), with these sequence breakers
    /// (`["\n", ":", "\"", "*"]` is llama.cpp's default).
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for values that are not finite, a
    /// breaker with a NUL byte.
    pub fn dry(
        self,
        multiplier: f32,
        base: f32,
        allowed_length: i32,
        last_n: i32,
        breakers: &[&str],
    ) -> Result<Self> {
        check_finite("dry", &[multiplier, base])?;
        let last_n = self.window("dry", last_n)?;
        let owned: Vec<CString> = breakers
            .iter()
            .map(|b| CString::new(*b))
            .collect::<Result<_, _>>()
            .map_err(|_| Error::InteriorNul {
                what: "a DRY breaker",
            })?;
        let breakers: Vec<&std::ffi::CStr> = owned.iter().map(CString::as_c_str).collect();
        let vocab = self.sampler.vocab.raw();
        self.push(
            samplers::dry(vocab, multiplier, base, allowed_length, last_n, &breakers),
            false,
        )
    }

    /// Mirostat 2.0 (selects a token): target surprise `tau`, learning rate
    /// `eta`.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for values that are not finite.
    pub fn mirostat_v2(self, seed: Option<u32>, tau: f32, eta: f32) -> Result<Self> {
        check_finite("mirostat_v2", &[tau, eta])?;
        let seed = seed.unwrap_or(sys::LLAMA_DEFAULT_SEED);
        self.push(samplers::mirostat_v2(seed, tau, eta), false)
    }

    /// Mirostat 1.0 (selects a token).
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for values that are not finite or `m`
    /// below 1.
    pub fn mirostat(self, seed: Option<u32>, tau: f32, eta: f32, m: i32) -> Result<Self> {
        check_finite("mirostat", &[tau, eta])?;
        if m < 1 {
            return Err(Error::InvalidParams(format!("mirostat: m {m}")));
        }
        let n_vocab = self.sampler.vocab.n_tokens();
        let seed = seed.unwrap_or(sys::LLAMA_DEFAULT_SEED);
        self.push(samplers::mirostat(n_vocab, seed, tau, eta, m), false)
    }

    /// Constrains tokens to a GBNF grammar starting at rule `root`.
    ///
    /// The grammar is first checked against bounds within which llama.cpp's
    /// recursive grammar code cannot overflow the stack or exhaust memory
    /// ([`MAX_GRAMMAR_NESTING`](super::MAX_GRAMMAR_NESTING),
    /// [`MAX_GRAMMAR_RULES`](super::MAX_GRAMMAR_RULES),
    /// [`MAX_GRAMMAR_ELEMENTS`](super::MAX_GRAMMAR_ELEMENTS)). Some small
    /// grammars still take exponential time: run grammars from untrusted
    /// sources in a process you can stop.
    ///
    /// # Errors
    /// [`Error::GrammarParse`] when llama.cpp cannot parse it;
    /// [`Error::GrammarLimit`] beyond the bounds;
    /// [`Error::InteriorNul`].
    pub fn grammar(self, gbnf: &str, root: &str) -> Result<Self> {
        super::check::check_grammar(gbnf)?;
        let g = CString::new(gbnf).map_err(|_| Error::InteriorNul {
            what: "the grammar",
        })?;
        let r = CString::new(root).map_err(|_| Error::InteriorNul {
            what: "the grammar root",
        })?;
        let vocab = self.sampler.vocab.raw();
        self.push(samplers::grammar(vocab, &g, &r), true)
    }

    /// Adds `bias` to the logits of these tokens.
    ///
    /// # Errors
    /// [`Error::TokenOutOfRange`], [`Error::InvalidParams`] for a
    /// bias that is NaN.
    pub fn logit_bias(self, biases: &[(Token, f32)]) -> Result<Self> {
        let mut raw = Vec::with_capacity(biases.len());
        for &(token, bias) in biases {
            self.sampler.vocab.check(token)?;
            if bias.is_nan() || bias == f32::INFINITY {
                // -inf excludes a token; +inf would make NaN probabilities.
                return Err(Error::InvalidParams(format!(
                    "logit_bias: {bias} for token {token} (finite, or -inf to exclude it)"
                )));
            }
            raw.push(sys::llama_logit_bias { token, bias });
        }
        let n_vocab = self.sampler.vocab.n_tokens();
        self.push(samplers::logit_bias(n_vocab, &raw), false)
    }

    /// The chain.
    pub fn build(self) -> Sampler<'m> {
        self.sampler
    }
}

impl<'m> Sampler<'m> {
    /// A new chain for `model`'s vocabulary.
    pub fn builder(model: &'m Model) -> SamplerBuilder<'m> {
        // Only a failed allocation of a few bytes can fail here.
        let chain = samplers::chain(true).ok().flatten().expect("a chain");
        SamplerBuilder {
            sampler: Sampler {
                chain,
                grammars: Vec::new(),
                vocab: model.vocab(),
                candidates: Vec::new(),
                _model: PhantomData,
            },
            window: (model.n_ctx_train().clamp(1, MAX_PENALTY_WINDOW as u32)) as i32,
        }
    }

    /// The raw handle of the chain.
    fn raw(&self) -> RawSampler<'_> {
        // SAFETY: the chain lives as long as the borrow; `Sampler` is not
        // `Sync`.
        unsafe { RawSampler::new(self.chain) }
    }

    /// A greedy chain: the most likely token each time (deterministic).
    pub fn greedy(model: &'m Model) -> Sampler<'m> {
        Self::builder(model).greedy().build()
    }

    /// Samples a token from the logits of token `index` of `ctx`'s last
    /// batch, and accepts it (samplers with state record it).
    ///
    /// # Errors
    /// [`Error::NoOutput`] (as [`Context::logits_ith`]),
    /// [`Error::NoTokenSelected`] when the chain selects nothing (or
    /// excludes every token), [`Error::NonFinite`] for a logit that is
    /// NaN or infinite (or a sampler that made one),
    /// [`Error::InvalidParams`] for a context of another model.
    pub fn sample(&mut self, ctx: &Context<'m>, index: usize) -> Result<Token> {
        if ctx.model().vocab().raw().as_ptr() != self.vocab.raw().as_ptr() {
            return Err(Error::InvalidParams("a context of another model".into()));
        }
        let logits = ctx.logits_ith(index)?;
        // llama.cpp's samplers sort candidates by logit and probability:
        // a NaN breaks the sort's ordering (undefined behaviour), an
        // infinity makes NaN probabilities.
        if let Some((id, &v)) = logits.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "logit",
                token: id as Token,
                value: v,
            });
        }
        self.candidates.clear();
        self.candidates
            .extend(
                logits
                    .iter()
                    .enumerate()
                    .map(|(id, &logit)| sys::llama_token_data {
                        id: id as Token,
                        logit,
                        p: 0.0,
                    }),
            );
        let mut array = sys::llama_token_data_array {
            data: self.candidates.as_mut_ptr(),
            size: self.candidates.len(),
            selected: -1,
            sorted: false,
        };
        // The chain's members one by one (as the chain applies them), each
        // given candidates it can sort: extreme parameters (a temperature
        // near 0, huge penalties) or every token excluded would otherwise
        // hand the next one infinities or NaN probabilities.
        for i in 0..self.raw().chain_len() {
            // SAFETY: candidates with ids in the vocabulary, finite logits
            // and probabilities, in memory live through the call, which the
            // member filters, sorts and selects in place.
            unsafe { self.raw().member(i).apply(&mut array) }?;
            self.check_candidates(&array)?;
        }
        let n = array.size;
        if array.selected < 0 || array.selected as usize >= n {
            return Err(Error::NoTokenSelected);
        }
        let token = self.candidates[array.selected as usize].id;
        self.accept(token)?;
        Ok(token)
    }

    /// Checks what a sampler left in `array`: the candidates still ours,
    /// and sortable (no NaN, no +inf logit, some candidate left unless one
    /// is selected).
    fn check_candidates(&mut self, array: &sys::llama_token_data_array) -> Result<()> {
        if array.data != self.candidates.as_mut_ptr() || array.size > self.candidates.len() {
            return Err(Error::NoTokenSelected);
        }
        let live = &self.candidates[..array.size];
        if let Some(c) = live
            .iter()
            .find(|c| c.logit.is_nan() || c.logit == f32::INFINITY || c.p.is_nan())
        {
            return Err(Error::NonFinite {
                what: "candidate after a sampler",
                token: c.id,
                value: if c.p.is_nan() { c.p } else { c.logit },
            });
        }
        if array.selected < 0 && live.iter().all(|c| c.logit == f32::NEG_INFINITY) {
            // Every token excluded (a grammar's dead end, biases of -inf).
            return Err(Error::NoTokenSelected);
        }
        Ok(())
    }

    /// Records `token` as chosen (penalties, grammars and mirostat keep
    /// state), as when a prompt's tokens are fed.
    ///
    /// # Errors
    /// [`Error::TokenOutOfRange`]; [`Error::GrammarRejected`]
    /// when a grammar of the chain does not allow it here (nothing is
    /// recorded then).
    pub fn accept(&mut self, token: Token) -> Result<()> {
        self.vocab.check(token)?;
        let chain = self.raw();
        for &i in &self.grammars {
            let mut one = [sys::llama_token_data {
                id: token,
                logit: 0.0,
                p: 0.0,
            }];
            let mut array = sys::llama_token_data_array {
                data: one.as_mut_ptr(),
                size: 1,
                selected: -1,
                sorted: false,
            };
            // SAFETY: the grammar sampler alone on one candidate in range:
            // it sets the logit to -inf when the grammar forbids the token
            // (the same rules accepting it would throw on).
            unsafe { chain.member(i).apply(&mut array) }?;
            if one[0].logit == f32::NEG_INFINITY {
                return Err(Error::GrammarRejected { token });
            }
        }
        // SAFETY: a token in range the grammars allow.
        unsafe { chain.accept(token) }
    }

    /// Resets the samplers' state (histories, grammars, RNG seeds kept).
    ///
    /// # Panics
    /// When llama.cpp runs out of memory rebuilding a grammar's state.
    pub fn reset(&mut self) {
        if let Err(e) = self.raw().reset() {
            panic!("{e}");
        }
    }
}
