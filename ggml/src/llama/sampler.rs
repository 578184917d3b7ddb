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

use super::barrier;
use super::context::Context;
use super::error::Error;
use super::error::Result;
use super::model::Model;
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
        unsafe { sys::llama_sampler_free(self.chain.as_ptr()) };
    }
}

impl std::fmt::Debug for Sampler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: a live chain.
        let n = unsafe { sys::llama_sampler_chain_n(self.chain.as_ptr()) };
        f.debug_struct("Sampler").field("samplers", &n).finish()
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

/// A sampler made by `make` (a `ggml_sys_try_llama_sampler_init_*` call
/// writing its result), through the exception barrier.
fn made(
    call: &'static str,
    make: impl FnOnce(*mut *mut sys::llama_sampler) -> std::ffi::c_int,
) -> Result<*mut sys::llama_sampler> {
    let mut raw = std::ptr::null_mut();
    barrier::check(call, make(&mut raw))?;
    Ok(raw)
}

impl<'m> SamplerBuilder<'m> {
    fn push(mut self, raw: Result<*mut sys::llama_sampler>, grammar: bool) -> Result<Self> {
        let raw = raw?;
        let raw = NonNull::new(raw).ok_or(if grammar {
            Error::GrammarParse
        } else {
            Error::InvalidParams("llama.cpp refused the sampler".into())
        })?;
        if grammar {
            // SAFETY: a live chain.
            let n = unsafe { sys::llama_sampler_chain_n(self.sampler.chain.as_ptr()) };
            self.sampler.grammars.push(n);
        }
        // SAFETY: the chain takes ownership of a sampler nobody else holds.
        let status = unsafe {
            sys::ggml_sys_try_llama_sampler_chain_add(self.sampler.chain.as_ptr(), raw.as_ptr())
        };
        if let Err(e) = barrier::check("llama_sampler_chain_add", status) {
            // SAFETY: not added: still ours.
            unsafe { sys::llama_sampler_free(raw.as_ptr()) };
            return Err(e);
        }
        Ok(self)
    }

    /// Picks the most likely token (the first of equals).
    pub fn greedy(self) -> Self {
        // SAFETY: a constructor without preconditions.
        let raw = made("llama_sampler_init_greedy", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_greedy(r)
        });
        // Only a failed allocation of a few bytes can fail here.
        self.push(raw, false).expect("greedy")
    }

    /// Picks a token at random by probability, seeded (`None`: a random
    /// seed).
    pub fn dist(self, seed: Option<u32>) -> Self {
        let seed = seed.unwrap_or(sys::LLAMA_DEFAULT_SEED);
        // SAFETY: a constructor without preconditions.
        let raw = made("llama_sampler_init_dist", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_dist(seed, r)
        });
        // Only a failed allocation of a few bytes can fail here.
        self.push(raw, false).expect("dist")
    }

    /// Divides logits by `t` (≤ 0: keeps only the most likely).
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for a value that is not finite.
    pub fn temp(self, t: f32) -> Result<Self> {
        check_finite("temp", &[t])?;
        // SAFETY: a finite value.
        let raw = made("llama_sampler_init_temp", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_temp(t, r)
        });
        self.push(raw, false)
    }

    /// Keeps the `k` most likely tokens (`k` ≤ 0: all).
    pub fn top_k(self, k: i32) -> Self {
        // SAFETY: any k.
        let raw = made("llama_sampler_init_top_k", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_top_k(k, r)
        });
        // Only a failed allocation of a few bytes can fail here.
        self.push(raw, false).expect("top_k")
    }

    /// Keeps the most likely tokens whose probabilities add up to `p`, at
    /// least `min_keep`.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for `p` outside 0..=1.
    pub fn top_p(self, p: f32, min_keep: usize) -> Result<Self> {
        check_unit("top_p", p)?;
        // SAFETY: checked values.
        let raw = made("llama_sampler_init_top_p", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_top_p(p, min_keep, r)
        });
        self.push(raw, false)
    }

    /// Keeps the tokens at least `p` times as likely as the most likely.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for `p` outside 0..=1.
    pub fn min_p(self, p: f32, min_keep: usize) -> Result<Self> {
        check_unit("min_p", p)?;
        // SAFETY: checked values.
        let raw = made("llama_sampler_init_min_p", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_min_p(p, min_keep, r)
        });
        self.push(raw, false)
    }

    /// Locally typical sampling with mass `p`.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for `p` outside 0..=1.
    pub fn typical(self, p: f32, min_keep: usize) -> Result<Self> {
        check_unit("typical", p)?;
        // SAFETY: checked values.
        let raw = made("llama_sampler_init_typical", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_typical(p, min_keep, r)
        });
        self.push(raw, false)
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
        // SAFETY: checked values; a bounded window.
        let raw = made("llama_sampler_init_penalties", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_penalties(
                n_vocab, last_n, repeat, freq, present, r,
            )
        });
        self.push(raw, false)
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
        let mut ptrs: Vec<*const std::ffi::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        let vocab = self.sampler.vocab.raw();
        // SAFETY: a live vocabulary; breaker strings alive through the call
        // (llama.cpp copies them).
        let raw = made("llama_sampler_init_dry", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_dry(
                vocab,
                multiplier,
                base,
                allowed_length,
                last_n,
                ptrs.as_mut_ptr(),
                ptrs.len(),
                r,
            )
        });
        self.push(raw, false)
    }

    /// Mirostat 2.0 (selects a token): target surprise `tau`, learning rate
    /// `eta`.
    ///
    /// # Errors
    /// [`Error::InvalidParams`] for values that are not finite.
    pub fn mirostat_v2(self, seed: Option<u32>, tau: f32, eta: f32) -> Result<Self> {
        check_finite("mirostat_v2", &[tau, eta])?;
        let seed = seed.unwrap_or(sys::LLAMA_DEFAULT_SEED);
        // SAFETY: checked values.
        let raw = made("llama_sampler_init_mirostat_v2", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_mirostat_v2(seed, tau, eta, r)
        });
        self.push(raw, false)
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
        // SAFETY: checked values.
        let raw = made("llama_sampler_init_mirostat", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_mirostat(n_vocab, seed, tau, eta, m, r)
        });
        self.push(raw, false)
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
        // SAFETY: a live vocabulary (kept by the sampler, which borrows the
        // model); NUL-terminated strings; NULL on a parse error.
        let raw = made("llama_sampler_init_grammar", |out| unsafe {
            sys::ggml_sys_try_llama_sampler_init_grammar(vocab, g.as_ptr(), r.as_ptr(), out)
        });
        self.push(raw, true)
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
        let n =
            i32::try_from(raw.len()).map_err(|_| Error::InvalidParams("too many biases".into()))?;
        let n_vocab = self.sampler.vocab.n_tokens();
        // SAFETY: `n` entries with ids in range (copied by llama.cpp).
        let sampler = made("llama_sampler_init_logit_bias", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_init_logit_bias(n_vocab, n, raw.as_ptr(), r)
        });
        self.push(sampler, false)
    }

    /// The chain.
    pub fn build(self) -> Sampler<'m> {
        self.sampler
    }
}

impl<'m> Sampler<'m> {
    /// A new chain for `model`'s vocabulary.
    pub fn builder(model: &'m Model) -> SamplerBuilder<'m> {
        // SAFETY: returns a struct of defaults.
        let mut params = unsafe { sys::llama_sampler_chain_default_params() };
        params.no_perf = true;
        // SAFETY: plain parameters; never NULL (it allocates).
        let chain = made("llama_sampler_chain_init", |r| unsafe {
            sys::ggml_sys_try_llama_sampler_chain_init(params, r)
        });
        // Only a failed allocation of a few bytes can fail here.
        let chain = NonNull::new(chain.expect("chain")).expect("chain");
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
        if ctx.model().vocab().raw() != self.vocab.raw() {
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
        // SAFETY: a live chain.
        let members = unsafe { sys::llama_sampler_chain_n(self.chain.as_ptr()) };
        for i in 0..members {
            // SAFETY: a live chain; `i` is the index of a member.
            let member = unsafe { sys::llama_sampler_chain_get(self.chain.as_ptr(), i) };
            // SAFETY: a member of the chain (each has an `apply`); an array
            // of candidates with ids in range, finite logits and
            // probabilities, which it filters, sorts and selects in place.
            let status = unsafe { sys::ggml_sys_try_llama_sampler_apply(member, &mut array) };
            barrier::check("llama_sampler_apply", status)?;
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
        for &i in &self.grammars {
            // SAFETY: a live chain; `i` is the index of a member.
            let g = unsafe { sys::llama_sampler_chain_get(self.chain.as_ptr(), i) };
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
            let status = unsafe { sys::ggml_sys_try_llama_sampler_apply(g, &mut array) };
            barrier::check("llama_sampler_apply", status)?;
            if one[0].logit == f32::NEG_INFINITY {
                return Err(Error::GrammarRejected { token });
            }
        }
        // SAFETY: a live chain; a token in range the grammars allow.
        let status = unsafe { sys::ggml_sys_try_llama_sampler_accept(self.chain.as_ptr(), token) };
        barrier::check("llama_sampler_accept", status)
    }

    /// Resets the samplers' state (histories, grammars, RNG seeds kept).
    ///
    /// # Panics
    /// When llama.cpp runs out of memory rebuilding a grammar's state.
    pub fn reset(&mut self) {
        // SAFETY: a live chain.
        let status = unsafe { sys::ggml_sys_try_llama_sampler_reset(self.chain.as_ptr()) };
        if let Err(e) = barrier::check("llama_sampler_reset", status) {
            panic!("{e}");
        }
    }
}
