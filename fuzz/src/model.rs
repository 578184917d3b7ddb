//! Small llama-architecture model files, written with the crate's GGUF
//! writer, for the model-file fuzzer and the llama layer's tests:
//!
//! - [`Spec`]: a valid model to start from (metadata, tensors, one of two
//!   tokenizers of its own), written by [`Spec::write`], with LoRA adapters
//!   for it ([`Spec::lora`]);
//! - [`Mutation`]: what the fuzzer changes, aware of the structure
//!   (hyperparameters, vocabulary, tensor types and shapes), drawn by
//!   [`mutations`];
//! - [`exercise`]: what a user does with a model (load, context, tokenize,
//!   decode, sample, embeddings, adapters), through the safe API only. Any
//!   outcome but a crash is acceptable for a mutated file; a valid one must
//!   run through.

use std::path::Path;

use ggml::gguf::{ArrayValue, Value, Writer};
use ggml::llama::{
    Batch, Context, ContextParams, FlashAttention, Model, ModelParams, Pooling, Sampler,
};
use ggml::Type;

/// With `GGML_FUZZ_VERBOSE` set, llama.cpp's log lines (through the `log`
/// crate) go to stderr.
pub fn verbose_logging() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            eprintln!("[{}] {}", r.level(), r.args());
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    if std::env::var_os("GGML_FUZZ_VERBOSE").is_some() && log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Which tokenizer a [`Spec`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// SentencePiece (`llama`): byte fallbacks and scored pieces.
    Spm,
    /// Byte-level BPE (`gpt2`) with merges.
    Bpe,
}

/// The shape of a valid model.
#[derive(Debug, Clone)]
pub struct Config {
    /// Layers.
    pub layers: usize,
    /// Embedding width.
    pub embd: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (a divisor of `heads`).
    pub heads_kv: usize,
    /// Feed-forward width.
    pub ff: usize,
    /// Experts (0: a dense feed-forward).
    pub experts: usize,
    /// Experts used per token.
    pub experts_used: usize,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// Whether the output matrix is the token embedding's (no `output.weight`).
    pub tied: bool,
    /// The type of the matrices.
    pub matrix_type: Type,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            layers: 2,
            embd: 64,
            heads: 4,
            heads_kv: 2,
            ff: 128,
            experts: 0,
            experts_used: 0,
            tokenizer: Tokenizer::Spm,
            tied: false,
            matrix_type: Type::F32,
        }
    }
}

impl Config {
    /// A random valid configuration.
    pub fn random(rng: &mut Rng) -> Config {
        let heads = *rng.pick(&[1, 2, 4, 8]);
        let head_dim = *rng.pick(&[8, 16, 32, 64]);
        let heads_kv = *rng.pick(&[1, 2, 4, 8].map(|k: usize| k.min(heads)));
        let experts = if rng.one_in(4) { *rng.pick(&[2, 4]) } else { 0 };
        let embd = heads * head_dim;
        let matrix_type = if embd % 256 == 0 && rng.one_in(3) {
            *rng.pick(&[Type::Q4_K, Type::Q6_K, Type::IQ4_XS, Type::Q2_K])
        } else {
            *rng.pick(&[Type::F32, Type::F16, Type::BF16, Type::Q8_0, Type::Q4_0])
        };
        let matrix_type = if embd % matrix_type.block_size() == 0 {
            matrix_type
        } else {
            Type::F16
        };
        let ff = if matrix_type.block_size() > 32 {
            256
        } else {
            *rng.pick(&[32, 64, 96])
        };
        Config {
            layers: 1 + rng.below(3),
            embd,
            heads,
            heads_kv: if heads % heads_kv == 0 { heads_kv } else { 1 },
            ff,
            experts,
            experts_used: if experts > 0 {
                1 + rng.below(experts)
            } else {
                0
            },
            tokenizer: if rng.one_in(2) {
                Tokenizer::Spm
            } else {
                Tokenizer::Bpe
            },
            tied: rng.one_in(3),
            matrix_type,
        }
    }
}

/// One tensor of a [`Spec`]: name, type, ndarray shape (rows first).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: Type,
    /// ndarray shape (ggml's `ne` reversed).
    pub shape: Vec<usize>,
    /// Values: deterministic noise, or (`nan`) NaN everywhere.
    pub nan: bool,
}

/// A model file to write: metadata in order, and tensors.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Metadata, in file order.
    pub metadata: Vec<(String, Value<'static>)>,
    /// Tensors, in file order.
    pub tensors: Vec<TensorSpec>,
    /// `general.alignment` to write with (32 when `None`).
    pub alignment: Option<u32>,
}

/// GPT-2's byte alphabet: the character byte `b` is written as.
pub fn gpt2_char(b: u8) -> char {
    let direct = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if direct(b) {
        return char::from_u32(b as u32).expect("a Latin-1 character");
    }
    let n = (0..b).filter(|&x| !direct(x)).count() as u32;
    char::from_u32(256 + n).expect("a code point below 0x144")
}

/// The words both tokenizers have pieces for.
const WORDS: &[&str] = &[
    "the", "a", "and", "hello", "world", "of", "end", "text", "is", "it", "on", "in",
];

impl Spec {
    /// A valid llama model of shape `cfg`.
    pub fn llama(cfg: &Config) -> Spec {
        let mut s = Spec {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: None,
        };
        let n_vocab = s.vocab(cfg.tokenizer);
        let (e, h, hkv, f, l) = (cfg.embd, cfg.heads, cfg.heads_kv, cfg.ff, cfg.layers);
        let hd = e / h;
        s.set("general.architecture", "llama");
        s.set("general.name", "fuzz model");
        s.set("llama.block_count", l as u32);
        s.set("llama.context_length", 256u32);
        s.set("llama.embedding_length", e as u32);
        s.set("llama.feed_forward_length", f as u32);
        s.set("llama.attention.head_count", h as u32);
        s.set("llama.attention.head_count_kv", hkv as u32);
        s.set("llama.rope.dimension_count", hd as u32);
        s.set("llama.rope.freq_base", 10000.0f32);
        s.set("llama.attention.layer_norm_rms_epsilon", 1e-5f32);
        s.set("llama.vocab_size", n_vocab as u32);
        if cfg.experts > 0 {
            s.set("llama.expert_count", cfg.experts as u32);
            s.set("llama.expert_used_count", cfg.experts_used as u32);
        }
        let m = cfg.matrix_type;
        s.add("token_embd.weight", m, &[n_vocab, e]);
        for i in 0..l {
            let b = |n: &str| format!("blk.{i}.{n}.weight");
            s.add(&b("attn_norm"), Type::F32, &[e]);
            s.add(&b("attn_q"), m, &[hd * h, e]);
            s.add(&b("attn_k"), m, &[hd * hkv, e]);
            s.add(&b("attn_v"), m, &[hd * hkv, e]);
            s.add(&b("attn_output"), m, &[e, hd * h]);
            s.add(&b("ffn_norm"), Type::F32, &[e]);
            if cfg.experts == 0 {
                s.add(&b("ffn_gate"), m, &[f, e]);
                s.add(&b("ffn_up"), m, &[f, e]);
                s.add(&b("ffn_down"), m, &[e, f]);
            } else {
                let x = cfg.experts;
                s.add(&b("ffn_gate_inp"), Type::F32, &[x, e]);
                s.add(&b("ffn_gate_exps"), m, &[x, f, e]);
                s.add(&b("ffn_up_exps"), m, &[x, f, e]);
                s.add(&b("ffn_down_exps"), m, &[x, e, f]);
            }
        }
        s.add("output_norm.weight", Type::F32, &[e]);
        if !cfg.tied {
            s.add("output.weight", m, &[n_vocab, e]);
        }
        s
    }

    /// Writes the tokenizer's keys; returns the vocabulary size.
    fn vocab(&mut self, tokenizer: Tokenizer) -> usize {
        let (mut tokens, mut types, mut scores): (Vec<String>, Vec<i32>, Vec<f32>) =
            Default::default();
        macro_rules! push {
            ($t:expr, $ty:expr, $score:expr) => {{
                tokens.push($t);
                types.push($ty);
                scores.push($score);
            }};
        }
        match tokenizer {
            Tokenizer::Spm => {
                push!("<unk>".into(), 2, 0.0);
                push!("<s>".into(), 3, 0.0);
                push!("</s>".into(), 3, 0.0);
                for b in 0..=255u8 {
                    push!(format!("<0x{b:02X}>"), 6, 0.0);
                }
                let mut pieces: Vec<String> = vec!["▁".into()];
                for w in WORDS {
                    pieces.push(format!("▁{w}"));
                }
                for c in "abcdefghijklmnopqrstuvwxyz,.".chars() {
                    pieces.push(c.to_string());
                }
                for (i, p) in pieces.into_iter().enumerate() {
                    push!(p, 1, -(i as f32));
                }
                self.set("tokenizer.ggml.model", "llama");
                self.set("tokenizer.ggml.bos_token_id", 1u32);
                self.set("tokenizer.ggml.eos_token_id", 2u32);
                self.set("tokenizer.ggml.unknown_token_id", 0u32);
                self.set("tokenizer.ggml.add_bos_token", true);
            }
            Tokenizer::Bpe => {
                for b in 0..=255u8 {
                    push!(gpt2_char(b).to_string(), 1, 0.0);
                }
                let g = gpt2_char(b' ');
                let mut merges = Vec::new();
                for w in WORDS {
                    // Merge the word left to right, then the space onto it.
                    let chars: Vec<char> = w.chars().collect();
                    let mut acc = chars[0].to_string();
                    for c in &chars[1..] {
                        merges.push(format!("{acc} {c}"));
                        acc.push(*c);
                        if !tokens.contains(&acc) {
                            push!(acc.clone(), 1, 0.0);
                        }
                    }
                    let spaced = format!("{g}{acc}");
                    merges.push(format!("{g} {acc}"));
                    if !tokens.contains(&spaced) {
                        push!(spaced, 1, 0.0);
                    }
                }
                push!("<|endoftext|>".into(), 3, 0.0);
                let eot = tokens.len() as u32 - 1;
                self.set("tokenizer.ggml.model", "gpt2");
                self.set("tokenizer.ggml.pre", "gpt-2");
                self.set("tokenizer.ggml.merges", merges);
                self.set("tokenizer.ggml.bos_token_id", eot);
                self.set("tokenizer.ggml.eos_token_id", eot);
            }
        }
        let n = tokens.len();
        self.set("tokenizer.ggml.tokens", tokens);
        self.set("tokenizer.ggml.token_type", types);
        if tokenizer == Tokenizer::Spm {
            self.set("tokenizer.ggml.scores", scores);
        }
        n
    }

    /// Sets `key` (replacing it in place, or appending).
    pub fn set(&mut self, key: &str, value: impl Into<Value<'static>>) {
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.metadata.retain(|(k, _)| k != key);
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value<'static>> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The strings of the array `key` (empty when it is not one).
    pub fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::Array(a)) => a
                .iter_str()
                .map(|it| it.map(str::to_owned).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn add(&mut self, name: &str, ty: Type, shape: &[usize]) {
        self.tensors.push(TensorSpec {
            name: name.to_owned(),
            ty,
            shape: shape.to_vec(),
            nan: false,
        });
    }

    /// The tensor `name`.
    pub fn tensor_mut(&mut self, name: &str) -> Option<&mut TensorSpec> {
        self.tensors.iter_mut().find(|t| t.name == name)
    }

    /// Writes the file.
    ///
    /// # Errors
    /// The writer's, for a spec it refuses (a shape that is not whole
    /// blocks of its type, say).
    pub fn write(&self, path: &Path) -> ggml::Result<()> {
        let imatrix: Vec<f32> = vec![1.0; 1 << 12];
        let raws: Vec<Vec<u8>> = self
            .tensors
            .iter()
            .map(|t| {
                if t.ty.can_quantize() || t.ty.is_float() {
                    Vec::new()
                } else {
                    raw_bytes(t)
                }
            })
            .collect();
        let mut w = Writer::new();
        if let Some(a) = self.alignment {
            w.set(ggml::gguf::ALIGNMENT_KEY, a)?;
        }
        for (k, v) in &self.metadata {
            w.set(k, v.clone())?;
        }
        for (t, raw) in self.tensors.iter().zip(&raws) {
            if t.ty.can_quantize() || t.ty.is_float() {
                let row = t.shape.last().copied().unwrap_or(1);
                let im = (t.ty.requires_imatrix() && row <= imatrix.len()).then(|| &imatrix[..row]);
                let (nan, seed) = (t.nan, name_seed(&t.name));
                w.add_rows(&t.name, t.ty, &t.shape, im, move |first, out| {
                    fill(seed, first, out, nan);
                    Ok(())
                })?;
            } else {
                w.add_raw(&t.name, t.ty, &t.shape, raw)?;
            }
        }
        w.write_to_file(path)?;
        Ok(())
    }

    /// A LoRA adapter of rank `rank` for this model, on every attention
    /// matrix, of type `ty`.
    pub fn lora(&self, rank: usize, ty: Type) -> Spec {
        let mut a = Spec {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: None,
        };
        a.set("general.type", "adapter");
        let arch = match self.get("general.architecture") {
            Some(Value::String(s)) => s.to_string(),
            _ => "llama".into(),
        };
        a.set("general.architecture", arch);
        a.set("adapter.type", "lora");
        a.set("adapter.lora.alpha", 16.0f32);
        for t in &self.tensors {
            let Some(base) = t.name.strip_suffix(".weight") else {
                continue;
            };
            if t.shape.len() == 2 && base.contains(".attn_") {
                let (out, inp) = (t.shape[0], t.shape[1]);
                a.add(&format!("{base}.weight.lora_a"), ty, &[rank, inp]);
                a.add(&format!("{base}.weight.lora_b"), ty, &[out, rank]);
            }
        }
        a
    }
}

/// A seed for a tensor's values from its name.
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Deterministic values in (-0.1, 0.1) for rows from `first` (NaN when
/// `nan`).
fn fill(seed: u64, first: usize, out: &mut [f32], nan: bool) {
    if nan {
        out.fill(f32::NAN);
        return;
    }
    let mut rng = Rng::new(seed ^ (first as u64).wrapping_mul(0x9E37_79B9));
    for v in out.iter_mut() {
        *v = ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2;
    }
}

/// Bytes for a tensor of a type the writer cannot produce from f32 (the
/// integer types, F64, Q8_1, Q8_K): small values as stored.
fn raw_bytes(t: &TensorSpec) -> Vec<u8> {
    let n: usize = t.shape.iter().product();
    let rows = n / t.shape.last().copied().unwrap_or(1).max(1);
    let row =
        t.ty.row_size(t.shape.last().copied().unwrap_or(1))
            .unwrap_or(0);
    let mut rng = Rng::new(name_seed(&t.name));
    (0..rows * row)
        .map(|_| (rng.next_u64() % 3) as u8)
        .collect()
}

/// One change to a valid [`Spec`].
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Set a key.
    Set(String, Value<'static>),
    /// Remove a key.
    Remove(String),
    /// Change a tensor's type.
    TensorType(String, Type),
    /// Change a tensor's shape.
    TensorShape(String, Vec<usize>),
    /// Remove a tensor.
    RemoveTensor(String),
    /// Fill a tensor with NaN.
    Nan(String),
    /// Replace token `i`'s text.
    Token(usize, String),
    /// Remove the tokens `from..to` (and their types and scores).
    RemoveTokens(usize, usize),
    /// Write the file with this `general.alignment`.
    Alignment(u32),
}

impl Mutation {
    /// Applies the mutation.
    pub fn apply(&self, s: &mut Spec) {
        match self {
            Mutation::Set(k, v) => s.set(k, v.clone()),
            Mutation::Remove(k) => s.remove(k),
            Mutation::TensorType(n, ty) => {
                if let Some(t) = s.tensor_mut(n) {
                    t.ty = *ty;
                }
            }
            Mutation::TensorShape(n, shape) => {
                if let Some(t) = s.tensor_mut(n) {
                    t.shape.clone_from(shape);
                }
            }
            Mutation::RemoveTensor(n) => s.tensors.retain(|t| &t.name != n),
            Mutation::Nan(n) => {
                if let Some(t) = s.tensor_mut(n) {
                    t.nan = true;
                }
            }
            Mutation::Token(i, text) => {
                let mut tokens = s.strings("tokenizer.ggml.tokens");
                if let Some(t) = tokens.get_mut(*i) {
                    t.clone_from(text);
                    s.set("tokenizer.ggml.tokens", tokens);
                }
            }
            Mutation::RemoveTokens(from, to) => {
                let mut tokens = s.strings("tokenizer.ggml.tokens");
                let to = (*to).min(tokens.len());
                let from = (*from).min(to);
                tokens.drain(from..to);
                s.set("tokenizer.ggml.tokens", tokens);
                for key in ["tokenizer.ggml.token_type", "tokenizer.ggml.scores"] {
                    let cut = match s.get(key) {
                        Some(Value::Array(a)) => {
                            let mut v: Vec<Value<'static>> =
                                a.iter().map(Value::into_owned).collect();
                            let to = to.min(v.len());
                            v.drain(from.min(to)..to);
                            Some(v)
                        }
                        _ => None,
                    };
                    match cut.as_deref() {
                        Some([Value::I32(_), ..]) => s.set(
                            key,
                            cut.unwrap()
                                .into_iter()
                                .map(|v| if let Value::I32(x) = v { x } else { 0 })
                                .collect::<Vec<i32>>(),
                        ),
                        Some([Value::F32(_), ..]) => s.set(
                            key,
                            cut.unwrap()
                                .into_iter()
                                .map(|v| if let Value::F32(x) = v { x } else { 0.0 })
                                .collect::<Vec<f32>>(),
                        ),
                        Some(_) => s.set(key, ArrayValue::new::<i32>(&[])),
                        None => {}
                    }
                }
            }
            Mutation::Alignment(a) => s.alignment = Some(*a),
        }
    }
}

/// u32 values at the edges of what llama.cpp accepts.
const EDGE_U32: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    16,
    63,
    64,
    100,
    511,
    512,
    513,
    1024,
    1025,
    4097,
    100_000,
    1 << 24,
    (1 << 24) + 1,
    u32::MAX / 2,
    u32::MAX,
];

const EDGE_F32: &[f32] = &[
    0.0,
    -0.0,
    -1.0,
    1e-30,
    1e30,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.5,
    2.0,
];

/// Hyperparameter keys (without the `llama.` prefix) the fuzzer changes.
const U32_KEYS: &[&str] = &[
    "block_count",
    "context_length",
    "embedding_length",
    "embedding_length_out",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "rope.dimension_count",
    "expert_count",
    "expert_used_count",
    "expert_group_count",
    "expert_group_used_count",
    "nextn_predict_layers",
    "pooling_type",
    "vocab_size",
    "rope.scaling.original_context_length",
];

const F32_KEYS: &[&str] = &[
    "attention.layer_norm_rms_epsilon",
    "rope.freq_base",
    "rope.scaling.factor",
    "rope.scaling.attn_factor",
];

const TOKENIZER_KEYS: &[&str] = &[
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.seperator_token_id",
];

/// Draws `count` mutations of `spec`.
pub fn mutations(spec: &Spec, rng: &mut Rng, count: usize) -> Vec<Mutation> {
    let layers = match spec.get("llama.block_count") {
        Some(Value::U32(n)) => *n as usize,
        _ => 1,
    };
    let n_tokens = spec.strings("tokenizer.ggml.tokens").len();
    (0..count)
        .map(|_| match rng.below(16) {
            0 | 1 => {
                let key = format!("llama.{}", rng.pick(U32_KEYS));
                let v = *rng.pick(EDGE_U32);
                if rng.one_in(3) {
                    // A per-layer array, uneven at one layer.
                    let mut arr = vec![v; layers];
                    let i = rng.below(layers);
                    arr[i] = *rng.pick(EDGE_U32);
                    Mutation::Set(key, arr.into())
                } else {
                    Mutation::Set(key, v.into())
                }
            }
            2 => Mutation::Set(
                format!("llama.{}", rng.pick(F32_KEYS)),
                (*rng.pick(EDGE_F32)).into(),
            ),
            3 => Mutation::Set(
                "llama.rope.scaling.type".into(),
                (*rng.pick(&["bogus", "yarn", "linear", "none", "longrope", "", "YARN"])).into(),
            ),
            4 => Mutation::Remove(spec.metadata[rng.below(spec.metadata.len())].0.clone()),
            5 | 6 => {
                let t = &spec.tensors[rng.below(spec.tensors.len())];
                Mutation::TensorType(t.name.clone(), *rng.pick(Type::ALL))
            }
            7 => {
                let t = &spec.tensors[rng.below(spec.tensors.len())];
                let mut shape = t.shape.clone();
                let i = rng.below(shape.len());
                shape[i] = *rng.pick(&[0, 1, shape[i] * 2, shape[i] + 32, 32]);
                if rng.one_in(4) {
                    shape.reverse();
                }
                Mutation::TensorShape(t.name.clone(), shape)
            }
            8 => Mutation::RemoveTensor(spec.tensors[rng.below(spec.tensors.len())].name.clone()),
            9 => Mutation::Nan(spec.tensors[rng.below(spec.tensors.len())].name.clone()),
            10 => {
                // A token twice, empty, with a NUL, or very long.
                let i = rng.below(n_tokens);
                let text = match rng.below(5) {
                    0 => spec.strings("tokenizer.ggml.tokens")[rng.below(n_tokens)].clone(),
                    1 => String::new(),
                    2 => "ab\0cd".into(),
                    3 => "x".repeat(*rng.pick(&[100, 3000, 70_000])),
                    _ => "<0x41>".into(),
                };
                Mutation::Token(i, text)
            }
            11 => {
                let from = rng.below(n_tokens);
                Mutation::RemoveTokens(from, from + *rng.pick(&[1, 10, 256, n_tokens]))
            }
            12 => Mutation::Set(
                (*rng.pick(TOKENIZER_KEYS)).into(),
                (*rng.pick(&[0u32, 1, 2, 3, n_tokens as u32, u32::MAX])).into(),
            ),
            13 => Mutation::Set(
                (*rng.pick(&[
                    "tokenizer.ggml.model",
                    "tokenizer.ggml.pre",
                    "general.architecture",
                ]))
                .into(),
                (*rng.pick(&[
                    "llama",
                    "gpt2",
                    "bert",
                    "t5",
                    "rwkv",
                    "none",
                    "test",
                    "plamo2",
                    "whitespace",
                    "default",
                    "gpt-4o",
                    "llama-bpe",
                    "llama-embed",
                    "qwen2",
                    "bogus",
                ]))
                .into(),
            ),
            14 => Mutation::Set(
                (*rng.pick(&[
                    "tokenizer.ggml.add_bos_token",
                    "tokenizer.ggml.add_eos_token",
                    "tokenizer.ggml.add_sep_token",
                ]))
                .into(),
                rng.one_in(2).into(),
            ),
            _ => match rng.below(3) {
                0 => Mutation::Alignment(*rng.pick(&[1, 8, 16, 64])),
                1 => Mutation::Set(
                    "llama.classifier.output_labels".into(),
                    (0..*rng.pick(&[1usize, 2, 64, 100, 300]))
                        .map(|i| format!("label{i}"))
                        .collect::<Vec<String>>()
                        .into(),
                ),
                _ => Mutation::Set(
                    format!("llama.{}", rng.pick(U32_KEYS)),
                    (*rng.pick(&["x", "12"])).into(),
                ),
            },
        })
        .collect()
}

/// How far [`exercise`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// The file could not be written (the writer refused the spec).
    NotWritten,
    /// Refused by this crate's model checks.
    RefusedByChecks,
    /// Refused by llama.cpp (a clean load error).
    RefusedByLlama,
    /// Loaded; the context could not be made.
    Loaded,
    /// A context; a decode failed.
    Context,
    /// Decoded and sampled (or refused there with an error).
    Decoded,
}

/// What [`exercise`] does besides loading: the parameters a user chooses.
#[derive(Debug, Clone)]
pub struct Use {
    /// Memory-map the file.
    pub mmap: bool,
    /// Load the vocabulary only.
    pub vocab_only: bool,
    /// Flash attention.
    pub flash: bool,
    /// Embeddings, with this pooling.
    pub embeddings: Option<Pooling>,
    /// KV cache types.
    pub kv: (Type, Type),
    /// A LoRA adapter of this type (and rank 4).
    pub lora: Option<Type>,
    /// Tokenize with special tokens added.
    pub add_special: bool,
    /// A long text to tokenize too.
    pub long_text: bool,
}

impl Use {
    /// The plain use: no map, no embeddings, f16 cache, no adapter.
    pub fn plain() -> Use {
        Use {
            mmap: false,
            vocab_only: false,
            flash: false,
            embeddings: None,
            kv: (Type::F16, Type::F16),
            lora: None,
            add_special: true,
            long_text: false,
        }
    }

    /// A random use.
    pub fn random(rng: &mut Rng) -> Use {
        let flash = rng.one_in(2);
        let quantized = [Type::Q8_0, Type::Q4_0, Type::IQ4_NL, Type::Q5_1];
        Use {
            mmap: rng.one_in(3),
            vocab_only: rng.one_in(8),
            flash,
            embeddings: if rng.one_in(4) {
                Some(*rng.pick(&[
                    Pooling::None,
                    Pooling::Mean,
                    Pooling::Cls,
                    Pooling::Last,
                    Pooling::Rank,
                ]))
            } else {
                None
            },
            // Quantized caches need head dimensions of whole blocks, and a
            // quantized V cache flash attention: mostly plain ones.
            kv: (
                if rng.one_in(4) {
                    *rng.pick(&quantized)
                } else {
                    *rng.pick(&[Type::F16, Type::F32, Type::BF16])
                },
                if flash && rng.one_in(4) {
                    *rng.pick(&quantized)
                } else {
                    *rng.pick(&[Type::F16, Type::F32, Type::BF16])
                },
            ),
            lora: if rng.one_in(4) {
                Some(*rng.pick(&[Type::F32, Type::F16, Type::Q8_0, Type::I32, Type::Q8_K]))
            } else {
                None
            },
            add_special: rng.one_in(2),
            long_text: rng.one_in(8),
        }
    }
}

/// Loads `path` (written from `spec`) and uses it as `how` says, through
/// the safe API; `dir` takes an adapter file. Returns how far it got: any
/// error ends the run early, which is fine; a crash is what is looked for.
pub fn exercise(path: &Path, spec: &Spec, how: &Use, dir: &Path) -> Reached {
    let mut params = ModelParams::new().vocab_only(how.vocab_only);
    if std::env::var_os("GGML_FUZZ_SKIP_MODEL_CHECKS").is_some() {
        // SAFETY: not safe at all: the way to show what the checks stop
        // (`scripts/fuzz --model-unchecked`, never in CI's property runs).
        params = unsafe { params.skip_model_checks(true) };
    }
    if how.mmap {
        // SAFETY: nothing modifies the file while the model is loaded.
        params = unsafe { params.mmap(true) };
    }
    let mut model = match Model::load_with(path, &params, |_| true) {
        Ok(m) => m,
        Err(ggml::llama::Error::InvalidModel { .. }) => return Reached::RefusedByChecks,
        Err(e) => {
            if std::env::var_os("GGML_FUZZ_VERBOSE").is_some() {
                eprintln!("load: {e}");
            }
            return Reached::RefusedByLlama;
        }
    };
    // The vocabulary, whatever else the model can do.
    let vocab = model.vocab();
    let text = "Hello world, the end of it. 123 \u{00e9}\u{4e16}";
    let mut tokens = vocab
        .tokenize(text, how.add_special, true)
        .unwrap_or_default();
    if how.long_text {
        let _ = vocab.tokenize(&"a".repeat(20_000), false, false);
    }
    let _ = vocab.detokenize(&tokens, false, true);
    for &t in &tokens {
        let _ = vocab.piece(t, true);
        let _ = vocab.text(t);
    }
    if how.vocab_only {
        return Reached::Loaded;
    }
    if let Some(ty) = how.lora {
        let adapter = dir.join("adapter.gguf");
        if spec.lora(4, ty).write(&adapter).is_ok() {
            let _ = model.load_lora(&adapter);
        }
    }
    let mut cparams = ContextParams::new()
        .n_ctx(64)
        .n_batch(32)
        .n_ubatch(32)
        .threads(1)
        .threads_batch(1)
        .flash_attn(if how.flash {
            FlashAttention::Enabled
        } else {
            FlashAttention::Disabled
        })
        .type_k(how.kv.0)
        .type_v(how.kv.1);
    if let Some(pooling) = how.embeddings {
        cparams = cparams.embeddings(true).pooling(pooling);
    }
    let mut ctx = match Context::new(&model, &cparams) {
        Ok(ctx) => ctx,
        Err(e) => {
            if std::env::var_os("GGML_FUZZ_VERBOSE").is_some() {
                eprintln!("context: {e}");
            }
            return Reached::Loaded;
        }
    };
    if let Some(lora) = model.lora(0) {
        let _ = ctx.set_loras(&[(lora, 0.5)]);
    }
    tokens.truncate(16);
    if tokens.is_empty() {
        tokens.push(0);
    }
    let Ok(batch) = Batch::from_prompt(&tokens) else {
        return Reached::Context;
    };
    if let Err(e) = ctx.decode(&batch) {
        if std::env::var_os("GGML_FUZZ_VERBOSE").is_some() {
            eprintln!("decode: {e}");
        }
        return Reached::Context;
    }
    let last = batch.len() - 1;
    if how.embeddings.is_some() {
        let _ = ctx.embeddings_ith(last);
        let _ = ctx.seq_embeddings(0);
        return Reached::Decoded;
    }
    let mut greedy = Sampler::greedy(&model);
    let _ = greedy.sample(&ctx, last);
    if let Ok(chain) = Sampler::builder(&model)
        .penalties(-1, 1.1, 0.1, 0.1)
        .and_then(|b| b.top_p(0.9, 1))
        .and_then(|b| b.temp(0.8))
    {
        let mut chain = chain.top_k(20).dist(Some(1)).build();
        if let Ok(t) = chain.sample(&ctx, last) {
            let mut next = Batch::new();
            if next.add(t, tokens.len() as i32, &[0], true).is_ok() {
                let _ = ctx.decode(&next);
            }
        }
    }
    // The cache: a shift (RoPE over the cached keys at the next decode),
    // a removal, and a decode after them.
    if ctx.shift_seq(0, 1.., -1).is_ok() {
        let _ = ctx.remove_tokens(Some(0), 4..);
        let mut next = Batch::new();
        if next.add(tokens[0], 4, &[0], true).is_ok() {
            let _ = ctx.decode(&next);
        }
    }
    let _ = ctx.state_bytes();
    Reached::Decoded
}
