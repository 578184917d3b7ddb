//! A structure-aware generator of malformed GGUF files, and the property
//! every file must have (`oracle::check`, shared with `tests/gguf`).
//!
//! A seed becomes a [`Model`] of a file (header, keys of every value type
//! including nested and lying arrays, tensor infos with extreme shapes,
//! types and offsets, an alignment, a data section that fits or not),
//! encoded the way a writer would (offsets packed as ggml lays them out
//! unless the model says otherwise), then damaged: truncated, bytes flipped,
//! extreme integers spliced in at field boundaries, ranges inserted or
//! removed. One case in four damages a real file instead (the gguf-py
//! fixtures, an ggml-style file of ours).

use arbitrary::{Arbitrary, Unstructured};
use ggml::Type;

#[path = "../../tests/gguf/oracle.rs"]
#[allow(dead_code)]
pub mod oracle;

/// Integers that sit on limits.
const EXTREMES: [u64; 16] = [
    0,
    1,
    2,
    31,
    32,
    63,
    64,
    (1 << 30) + 1,
    1 << 30,
    (1 << 31) - 1,
    1 << 32,
    (1 << 62) - 1,
    1 << 62,
    i64::MAX as u64,
    0x471c_71c7_1c71_c720,
    u64::MAX,
];

/// A key, from a pool that collides, or arbitrary bytes.
#[derive(Debug, Arbitrary)]
pub enum Key {
    /// One of a few names (duplicates, NUL, invalid UTF-8, empty).
    Pool(u8),
    /// Any bytes.
    Bytes(Vec<u8>),
}

const KEYS: [&[u8]; 8] = [
    b"general.alignment",
    b"general.architecture",
    b"a",
    b"a\0b",
    b"",
    b"\xff\xfe",
    b"split.count",
    b"tokenizer.ggml.tokens",
];

/// A value.
#[derive(Debug, Arbitrary)]
pub enum Val {
    /// A scalar of raw type `t % 13` with these bytes.
    Scalar(u8, u64),
    /// A string.
    Str(Vec<u8>),
    /// An array.
    Arr(Arr),
    /// A value of an arbitrary raw type, then these bytes.
    Raw(i32, Vec<u8>),
}

/// An array.
#[derive(Debug, Arbitrary)]
pub enum Arr {
    /// Fixed-size elements of raw type `t % 13` (as u64s cut to size).
    Scalars(u8, Vec<u64>),
    /// Strings.
    Strs(Vec<Vec<u8>>),
    /// Arrays (their depth is bounded by the input's size).
    Nested(Vec<Arr>),
    /// A claimed element type and count, and these bytes.
    Claimed(i32, u8, Vec<u8>),
}

/// A dimension.
#[derive(Debug, Arbitrary)]
pub enum Dim {
    /// A small one (a multiple of 32 when even, so block types work).
    Small(u8),
    /// An extreme (as i64), maybe negated.
    Extreme(u8, bool),
}

/// A tensor type.
#[derive(Debug, Arbitrary)]
pub enum Ty {
    /// A type ggml has.
    Known(u8),
    /// Any raw value.
    Raw(i32),
}

/// A tensor's data offset.
#[derive(Debug, Arbitrary)]
pub enum Offset {
    /// Where ggml expects it.
    Packed,
    /// Packed plus this many bytes.
    Shifted(u16),
    /// The previous tensor's.
    SameAsPrevious,
    /// An extreme value.
    Extreme(u8),
}

/// A tensor info.
#[derive(Debug, Arbitrary)]
pub struct TensorModel {
    name: Key,
    dims: Vec<Dim>,
    ty: Ty,
    offset: Offset,
}

/// Damage done to the encoded bytes.
#[derive(Debug, Arbitrary)]
pub enum Damage {
    /// Cut the file at this fraction (/65536) of its length.
    Truncate(u16),
    /// XOR a byte.
    Xor(u32, u8),
    /// Write an extreme u64 at an 8-byte-aligned position of the header area.
    Splice64(u32, u8),
    /// Write an i32 at a position.
    Splice32(u32, i32),
    /// Insert bytes.
    Insert(u32, Vec<u8>),
    /// Remove bytes.
    Remove(u32, u8),
}

/// A file to encode.
#[derive(Debug, Arbitrary)]
pub struct Model {
    version: u8,
    alignment: Option<u8>,
    kvs: Vec<(Key, Val)>,
    tensors: Vec<TensorModel>,
    /// Bytes of data beyond (or, negative, short of) what the tensors need.
    tail: i16,
    damage: Vec<Damage>,
}

fn key(k: &Key) -> Vec<u8> {
    match k {
        Key::Pool(i) => KEYS[*i as usize % KEYS.len()].to_vec(),
        Key::Bytes(b) => b.clone(),
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

/// Bytes of a fixed-size raw type (0 for strings, arrays, unknown).
fn fixed(t: i32) -> usize {
    match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => 0,
    }
}

fn put_arr(out: &mut Vec<u8>, a: &Arr) {
    match a {
        Arr::Scalars(t, vals) => {
            let t = (*t % 13) as i32;
            let t = if fixed(t) == 0 { 4 } else { t };
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&(vals.len() as u64).to_le_bytes());
            for v in vals {
                out.extend_from_slice(&v.to_le_bytes()[..fixed(t)]);
            }
        }
        Arr::Strs(s) => {
            out.extend_from_slice(&8i32.to_le_bytes());
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            for x in s {
                put_str(out, x);
            }
        }
        Arr::Nested(inner) => {
            out.extend_from_slice(&9i32.to_le_bytes());
            out.extend_from_slice(&(inner.len() as u64).to_le_bytes());
            for x in inner {
                put_arr(out, x);
            }
        }
        Arr::Claimed(t, count, bytes) => {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&EXTREMES[*count as usize % EXTREMES.len()].to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

fn put_val(out: &mut Vec<u8>, v: &Val) {
    match v {
        Val::Scalar(t, bits) => {
            let t = (*t % 13) as i32;
            let t = if fixed(t) == 0 { 5 } else { t };
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&bits.to_le_bytes()[..fixed(t)]);
        }
        Val::Str(s) => {
            out.extend_from_slice(&8i32.to_le_bytes());
            put_str(out, s);
        }
        Val::Arr(a) => {
            out.extend_from_slice(&9i32.to_le_bytes());
            put_arr(out, a);
        }
        Val::Raw(t, bytes) => {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// ggml's byte size of a tensor, when the shape is sane (else 0).
fn nbytes(ty: i32, ne: &[i64]) -> u64 {
    let Some(t) = u32::try_from(ty).ok().and_then(|r| Type::try_from(r).ok()) else {
        return 0;
    };
    if ne.iter().any(|&d| d < 0) {
        return 0;
    }
    let row = ne.first().map_or(Some(t.type_size() as u64), |&n| {
        (t.type_size() as u64)
            .checked_mul(n as u64)
            .map(|b| b / t.block_size() as u64)
    });
    ne.iter()
        .skip(1)
        .try_fold(row.unwrap_or(0), |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(0)
}

impl Model {
    /// The file's bytes, damaged.
    pub fn encode(&self) -> Vec<u8> {
        let align = match self.alignment {
            Some(a) if a < 9 => 1u64 << a,
            Some(a) => EXTREMES[a as usize % EXTREMES.len()],
            None => 32,
        };
        let mut out = b"GGUF".to_vec();
        let version = match self.version {
            0..=200 => 3u32,
            201..=240 => 2,
            v => (v as u32) << 16 | (v as u32 & 3),
        };
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        let n_kv = self.kvs.len() + usize::from(self.alignment.is_some());
        out.extend_from_slice(&(n_kv as u64).to_le_bytes());
        if self.alignment.is_some() {
            put_str(&mut out, b"general.alignment");
            out.extend_from_slice(&4i32.to_le_bytes());
            out.extend_from_slice(&(align as u32).to_le_bytes());
        }
        for (k, v) in &self.kvs {
            put_str(&mut out, &key(k));
            put_val(&mut out, v);
        }
        let pad = |x: u64| x.checked_next_multiple_of(align.max(1)).unwrap_or(x);
        let (mut packed, mut previous, mut data) = (0u64, 0u64, 0u64);
        for t in &self.tensors {
            put_str(&mut out, &key(&t.name));
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            let ne: Vec<i64> = t
                .dims
                .iter()
                .map(|d| match d {
                    Dim::Small(n) if n % 2 == 0 => (*n as i64 / 2) * 32,
                    Dim::Small(n) => *n as i64 / 2,
                    Dim::Extreme(i, neg) => {
                        let v = EXTREMES[*i as usize % EXTREMES.len()] as i64;
                        if *neg {
                            v.wrapping_neg()
                        } else {
                            v
                        }
                    }
                })
                .collect();
            for d in &ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            let ty = match t.ty {
                Ty::Known(i) => Type::ALL[i as usize % Type::ALL.len()].as_raw() as i32,
                Ty::Raw(r) => r,
            };
            out.extend_from_slice(&ty.to_le_bytes());
            let offset = match t.offset {
                Offset::Packed => packed,
                Offset::Shifted(s) => packed.saturating_add(s as u64),
                Offset::SameAsPrevious => previous,
                Offset::Extreme(i) => EXTREMES[i as usize % EXTREMES.len()],
            };
            out.extend_from_slice(&offset.to_le_bytes());
            let n = nbytes(ty, &ne);
            packed = packed.saturating_add(pad(n));
            previous = offset;
            data = data.max(offset.saturating_add(n).min(1 << 22));
        }
        if !self.tensors.is_empty() {
            let at = out.len() as u64;
            out.resize(pad(at).min(at + 4096) as usize, 0);
        }
        let data = (data as i64 + self.tail as i64).clamp(0, 1 << 22) as usize;
        let start = out.len();
        out.extend((0..data).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        debug_assert!(out.len() >= start);
        damage(out, &self.damage)
    }
}

fn damage(mut out: Vec<u8>, ops: &[Damage]) -> Vec<u8> {
    for d in ops.iter().take(8) {
        let len = out.len().max(1);
        match d {
            Damage::Truncate(f) => out.truncate(out.len() * *f as usize / 65536),
            Damage::Xor(p, x) => {
                let p = *p as usize % len;
                if let Some(b) = out.get_mut(p) {
                    *b ^= x;
                }
            }
            Damage::Splice64(p, i) => {
                let p = (*p as usize % len) & !7;
                let v = EXTREMES[*i as usize % EXTREMES.len()].to_le_bytes();
                for (k, b) in v.iter().enumerate() {
                    if let Some(slot) = out.get_mut(p + k) {
                        *slot = *b;
                    }
                }
            }
            Damage::Splice32(p, v) => {
                let p = *p as usize % len;
                for (k, b) in v.to_le_bytes().iter().enumerate() {
                    if let Some(slot) = out.get_mut(p + k) {
                        *slot = *b;
                    }
                }
            }
            Damage::Insert(p, bytes) => {
                let p = (*p as usize % len).min(out.len());
                out.splice(p..p, bytes.iter().copied().take(64));
            }
            Damage::Remove(p, n) => {
                let p = (*p as usize % len).min(out.len());
                let end = (p + *n as usize).min(out.len());
                out.drain(p..end);
            }
        }
    }
    out
}

/// Real files to damage.
const REAL: [&[u8]; 3] = [
    include_bytes!("../../tests/fixtures/gguf/python-all-types.gguf"),
    include_bytes!("../../tests/fixtures/gguf/python-nested.gguf"),
    include_bytes!("../../tests/fixtures/gguf/python-split-00001-of-00003.gguf"),
];

/// The file of `seed`.
pub fn file_from_seed(seed: u64) -> Vec<u8> {
    file_from_bytes(&crate::seed_bytes(seed))
}

/// The file `bytes` describe (the libFuzzer target's input).
pub fn file_from_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut u = Unstructured::new(bytes);
    let real = u.int_in_range(0..=7u8).unwrap_or(0);
    if real < 2 {
        let base = REAL[u.int_in_range(0..=2usize).unwrap_or(0)].to_vec();
        let ops: Vec<Damage> = Arbitrary::arbitrary(&mut u).unwrap_or_default();
        return damage(base, &ops);
    }
    match Model::arbitrary(&mut u) {
        Ok(m) => m.encode(),
        Err(_) => bytes.to_vec(),
    }
}
