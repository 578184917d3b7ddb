//! The GGUF parser: validates a whole file's header, metadata and tensor
//! index in one pass over its bytes and keeps only offsets into them.
//!
//! Every field is bounds-checked before it is read, every count against the
//! bytes that remain before anything is reserved for it, and every size with
//! checked arithmetic ([`crate::size`]). What ggml's own reader would refuse
//! but the format allows (arrays of arrays, tensors not packed back to back)
//! is accepted and recorded in [`Index::incompatibility`].

use crate::shape::MAX_DIMS;
use crate::size::{self, Ne};
use crate::types::Type;

use super::value::ValueType;
use super::{DEFAULT_ALIGNMENT, MAX_ARRAY_LEN, MAX_NESTING, MAX_STRING_LEN};
use crate::error::gguf::Problem;

/// ggml's `GGML_MAX_NAME`: tensor names are shorter.
pub(crate) const MAX_NAME: usize = ggml_sys::GGML_MAX_NAME as usize;

/// Fewest bytes a key/value pair takes: key length, one key byte, value
/// type, a one-byte value.
const MIN_KV: usize = 8 + 1 + 4 + 1;
/// Fewest bytes a tensor info takes: name length, dimension count, type,
/// offset.
const MIN_TENSOR: usize = 8 + 4 + 4 + 8;

/// A problem at an offset (the path is added by the caller).
pub(crate) type Fail = (u64, Problem);
type Parse<T> = Result<T, Fail>;

/// One key/value pair: where its key and value are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kv {
    /// Offset of the key's bytes.
    pub key_at: usize,
    /// Length of the key.
    pub key_len: usize,
    /// The value's type.
    pub ty: ValueType,
    /// Offset of the value's encoding.
    pub value_at: usize,
    /// One past its end.
    pub value_end: usize,
}

/// One tensor info, checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TensorEntry {
    /// Offset of the name's bytes.
    pub name_at: usize,
    /// Length of the name.
    pub name_len: usize,
    /// Dimensions as stored.
    pub n_dims: usize,
    /// Elements per dimension (1 beyond `n_dims`).
    pub ne: Ne,
    /// Type.
    pub ty: Type,
    /// Offset of the data from the start of the file.
    pub start: usize,
    /// Bytes of data.
    pub bytes: usize,
    /// Offset of the info's own fields (for messages).
    pub info_at: usize,
}

/// A validated file: header values and indexes into its bytes.
#[derive(Debug)]
pub(crate) struct Index {
    pub version: u32,
    pub kvs: Vec<Kv>,
    /// Indices of `kvs` sorted by key bytes (binary search).
    pub kv_sorted: Vec<u32>,
    pub tensors: Vec<TensorEntry>,
    /// Indices of `tensors` sorted by name bytes.
    pub tensor_sorted: Vec<u32>,
    pub alignment: usize,
    pub data_offset: usize,
    /// Why ggml's reader would refuse the file, if it would.
    pub incompatibility: Option<String>,
}

impl Kv {
    /// The value's encoding.
    pub(crate) fn value<'b>(&self, bytes: &'b [u8]) -> &'b [u8] {
        &bytes[self.value_at..self.value_end]
    }
}

impl Index {
    /// The bytes of a key or name.
    pub(crate) fn text(bytes: &[u8], at: usize, len: usize) -> &str {
        std::str::from_utf8(&bytes[at..at + len]).expect("validated when opened")
    }

    /// Position in `kvs` of `key`.
    pub(crate) fn find_kv(&self, bytes: &[u8], key: &str) -> Option<usize> {
        self.kv_sorted
            .binary_search_by(|&i| {
                let kv = &self.kvs[i as usize];
                bytes[kv.key_at..kv.key_at + kv.key_len].cmp(key.as_bytes())
            })
            .ok()
            .map(|p| self.kv_sorted[p] as usize)
    }
}

/// What is being read, for messages (built only when one is needed).
#[derive(Clone, Copy)]
enum What<'k> {
    Field(&'static str),
    Value(&'k str),
    Elements(&'k str),
}

impl std::fmt::Display for What<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::Field(s) => f.write_str(s),
            What::Value(k) => write!(f, "the value of '{k}'"),
            What::Elements(k) => write!(f, "the elements of '{k}'"),
        }
    }
}

/// A reading position over the file.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }

    fn truncated(&self, what: impl std::fmt::Display, needed: u64) -> Fail {
        (
            self.at as u64,
            Problem::Truncated {
                what: what.to_string(),
                needed,
                available: self.remaining() as u64,
            },
        )
    }

    fn take(&mut self, n: usize, what: What<'_>) -> Parse<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.truncated(what, n as u64));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: What<'_>) -> Parse<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("length N"))
    }

    fn u32(&mut self, what: &'static str) -> Parse<u32> {
        self.array(What::Field(what)).map(u32::from_le_bytes)
    }

    fn i32(&mut self, what: &'static str) -> Parse<i32> {
        self.array(What::Field(what)).map(i32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Parse<u64> {
        self.array(What::Field(what)).map(u64::from_le_bytes)
    }

    fn i64(&mut self, what: &'static str) -> Parse<i64> {
        self.array(What::Field(what)).map(i64::from_le_bytes)
    }

    /// A string's bytes (length ≤ [`MAX_STRING_LEN`], UTF-8): `(offset, len)`.
    fn string(&mut self, what: What<'_>) -> Parse<(usize, usize)> {
        let at = self.at;
        let len = self.array(what).map(u64::from_le_bytes)?;
        if len > MAX_STRING_LEN {
            return Err((
                at as u64,
                Problem::TooMany {
                    what: format!("length of {what}"),
                    count: len,
                    limit: MAX_STRING_LEN,
                },
            ));
        }
        let start = self.at;
        let bytes = self.take(len as usize, what)?;
        if std::str::from_utf8(bytes).is_err() {
            return Err((
                start as u64,
                Problem::InvalidUtf8 {
                    what: what.to_string(),
                },
            ));
        }
        Ok((start, len as usize))
    }

    /// A count of items of at least `min_size` bytes each, checked against
    /// what remains (so that nothing reserved for it exceeds the file).
    fn count(&mut self, what: &dyn Fn() -> String, min_size: usize, limit: u64) -> Parse<usize> {
        let at = self.at as u64;
        let n = self.u64("a count")?;
        if n > limit {
            return Err((
                at,
                Problem::TooMany {
                    what: what(),
                    count: n,
                    limit,
                },
            ));
        }
        let fits = (self.remaining() / min_size) as u64;
        if n > fits {
            return Err((
                at,
                Problem::Truncated {
                    what: format!("{n} × {} (at least {min_size} bytes each)", what()),
                    needed: n.saturating_mul(min_size as u64),
                    available: self.remaining() as u64,
                },
            ));
        }
        Ok(n as usize)
    }
}

/// Parses and validates a whole file.
pub(crate) fn parse(b: &[u8]) -> Parse<Index> {
    parse_prefix(b, b.len())
}

/// Parses and validates the first bytes `b` of a file of `file_len` bytes
/// (tensor data is checked against `file_len`, never read). A
/// [`Problem::Truncated`] when `b` is shorter than the file means: read more.
pub(crate) fn parse_prefix(b: &[u8], file_len: usize) -> Parse<Index> {
    let mut c = Cursor { b, at: 0 };
    let magic: [u8; 4] = c.array(What::Field("the magic"))?;
    if &magic != b"GGUF" {
        return Err((0, Problem::Magic(magic)));
    }
    let version = c.u32("the version")?;
    if version != 0 && version & 0xFFFF == 0 {
        return Err((4, Problem::BigEndian));
    }
    if !(2..=3).contains(&version) {
        return Err((4, Problem::Version(version)));
    }
    // Counts are int64 in ggml; negative ones are refused as huge ones.
    let max = i64::MAX as u64;
    let n_tensors = c.count(&|| "tensor count".into(), MIN_TENSOR, max)?;
    let n_kv = c.count(&|| "metadata count".into(), MIN_KV, max)?;
    let mut incompatibility = None;

    let mut kvs = Vec::with_capacity(n_kv);
    for _ in 0..n_kv {
        kvs.push(parse_kv(&mut c, &mut incompatibility)?);
    }
    let kv_sorted = sorted(kvs.len(), |i| {
        let kv = &kvs[i];
        &b[kv.key_at..kv.key_at + kv.key_len]
    });
    if let Some((_, i)) = first_duplicate(&kv_sorted, |i| {
        let kv = &kvs[i];
        &b[kv.key_at..kv.key_at + kv.key_len]
    }) {
        let kv = &kvs[i];
        let key = Index::text(b, kv.key_at, kv.key_len).to_string();
        return Err(((kv.key_at - 8) as u64, Problem::DuplicateKey(key)));
    }
    let alignment = alignment(b, &kvs, &kv_sorted)?;

    let mut tensors = Vec::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        tensors.push(parse_tensor(&mut c)?);
    }
    let name = |i: usize| {
        let t: &TensorEntry = &tensors[i];
        &b[t.name_at..t.name_at + t.name_len]
    };
    let tensor_sorted = sorted(tensors.len(), name);
    if let Some((_, i)) = first_duplicate(&tensor_sorted, name) {
        let t = &tensors[i];
        return Err((
            (t.name_at - 8) as u64,
            Problem::TensorName {
                name: Index::text(b, t.name_at, t.name_len).to_string(),
                reason: "used by two tensors".into(),
            },
        ));
    }

    // ggml pads to the data section only when there are tensors.
    let data_offset = if n_tensors > 0 {
        size::pad(c.at, alignment).unwrap_or(usize::MAX)
    } else {
        c.at
    };
    if data_offset > file_len {
        return Err((
            c.at as u64,
            Problem::DataStart {
                start: data_offset as u64,
                file_len: file_len as u64,
            },
        ));
    }
    place_tensors(
        b,
        file_len,
        &mut tensors,
        data_offset,
        alignment,
        &mut incompatibility,
    )?;
    check_overlaps(b, &tensors)?;
    Ok(Index {
        version,
        kvs,
        kv_sorted,
        tensors,
        tensor_sorted,
        alignment,
        data_offset,
        incompatibility,
    })
}

fn parse_kv(c: &mut Cursor<'_>, incompatibility: &mut Option<String>) -> Parse<Kv> {
    let key_field = c.at as u64;
    let (key_at, key_len) = c.string(What::Field("a metadata key"))?;
    let key = Index::text(c.b, key_at, key_len);
    if key.is_empty() {
        return Err((key_field, Problem::EmptyKey));
    }
    if key.contains('\0') {
        return Err((
            key_field,
            Problem::Nul {
                what: "key",
                text: key.to_string(),
            },
        ));
    }
    let type_at = c.at as u64;
    let raw = c.i32("a value type")?;
    let ty = ValueType::from_raw(raw).ok_or_else(|| {
        (
            type_at,
            Problem::ValueType {
                key: key.to_string(),
                raw,
            },
        )
    })?;
    let value_at = c.at;
    skip_value(c, ty, key, 0, incompatibility)?;
    Ok(Kv {
        key_at,
        key_len,
        ty,
        value_at,
        value_end: c.at,
    })
}

/// Validates (and steps over) one value of type `ty`.
fn skip_value(
    c: &mut Cursor<'_>,
    ty: ValueType,
    key: &str,
    depth: usize,
    incompatibility: &mut Option<String>,
) -> Parse<()> {
    if let Some(size) = ty.fixed_size() {
        c.take(size, What::Value(key))?;
        return Ok(());
    }
    if ty == ValueType::String {
        c.string(What::Value(key))?;
        return Ok(());
    }
    if depth >= MAX_NESTING {
        return Err((
            c.at as u64,
            Problem::Nesting {
                key: key.to_string(),
                limit: MAX_NESTING,
            },
        ));
    }
    let type_at = c.at as u64;
    let raw = c.i32("an array element type")?;
    let elem = ValueType::from_raw(raw).ok_or_else(|| {
        (
            type_at,
            Problem::ValueType {
                key: key.to_string(),
                raw,
            },
        )
    })?;
    let n = c.count(
        &|| format!("elements of '{key}' ({elem})"),
        elem.min_size(),
        MAX_ARRAY_LEN,
    )?;
    match elem.fixed_size() {
        Some(size) => {
            c.take(n * size, What::Elements(key))?;
        }
        None => {
            if elem == ValueType::Array && incompatibility.is_none() {
                *incompatibility = Some(format!(
                    "key '{key}' is an array of arrays, which ggml cannot read"
                ));
            }
            for _ in 0..n {
                skip_value(c, elem, key, depth + 1, incompatibility)?;
            }
        }
    }
    Ok(())
}

/// `general.alignment`, checked as ggml checks it, or the default.
fn alignment(b: &[u8], kvs: &[Kv], sorted: &[u32]) -> Parse<usize> {
    let found = sorted.binary_search_by(|&i| {
        let kv = &kvs[i as usize];
        b[kv.key_at..kv.key_at + kv.key_len].cmp(super::ALIGNMENT_KEY.as_bytes())
    });
    let Ok(p) = found else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let kv = &kvs[sorted[p] as usize];
    if kv.ty != ValueType::U32 {
        return Err((
            kv.value_at as u64,
            Problem::Alignment(format!("must be a u32, not {}", kv.ty)),
        ));
    }
    let v = u32::from_le_bytes(b[kv.value_at..kv.value_at + 4].try_into().unwrap());
    if !v.is_power_of_two() {
        return Err((
            kv.value_at as u64,
            Problem::Alignment(format!("{v} is not a power of two")),
        ));
    }
    Ok(v as usize)
}

fn parse_tensor(c: &mut Cursor<'_>) -> Parse<TensorEntry> {
    let info_at = c.at;
    let (name_at, name_len) = c.string(What::Field("a tensor name"))?;
    let name = Index::text(c.b, name_at, name_len).to_string();
    if name_len >= MAX_NAME {
        return Err((
            info_at as u64,
            Problem::TensorName {
                name,
                reason: format!(
                    "{name_len} bytes (ggml names have at most {})",
                    MAX_NAME - 1
                ),
            },
        ));
    }
    if name.contains('\0') {
        return Err((
            info_at as u64,
            Problem::Nul {
                what: "tensor name",
                text: name,
            },
        ));
    }
    let dims_at = c.at as u64;
    let n_dims = c.u32("a dimension count")?;
    if n_dims as usize > MAX_DIMS {
        return Err((dims_at, Problem::Dims { name, n_dims }));
    }
    let ne_at = c.at as u64;
    let mut ne = [1i64; MAX_DIMS];
    for d in ne.iter_mut().take(n_dims as usize) {
        *d = c.i64("a dimension")?;
    }
    let type_at = c.at as u64;
    let raw = c.i32("a tensor type")?;
    let ty = u32::try_from(raw)
        .ok()
        .and_then(Type::from_raw)
        .ok_or_else(|| {
            (
                type_at,
                Problem::TensorType {
                    name: name.clone(),
                    raw,
                },
            )
        })?;
    size::check_shape("GGUF tensor", ty, &ne).map_err(|e| {
        (
            ne_at,
            Problem::Shape {
                name: name.clone(),
                reason: e.to_string(),
            },
        )
    })?;
    let offset_at = c.at;
    let offset = c.u64("a tensor offset")?;
    Ok(TensorEntry {
        name_at,
        name_len,
        n_dims: n_dims as usize,
        ne,
        ty,
        // Relative for now; `place_tensors` makes it absolute.
        start: offset.min(usize::MAX as u64) as usize,
        bytes: size::dense_bytes(ty, &ne),
        info_at: offset_at,
    })
}

/// Makes offsets absolute and checks each tensor lies in the file, aligned;
/// notes whether the layout is ggml's (packed in order).
fn place_tensors(
    b: &[u8],
    file_len: usize,
    tensors: &mut [TensorEntry],
    data_offset: usize,
    alignment: usize,
    incompatibility: &mut Option<String>,
) -> Parse<()> {
    let mut expected = Some(0usize);
    for t in tensors.iter_mut() {
        let name = || Index::text(b, t.name_at, t.name_len).to_string();
        let relative = t.start;
        if relative % alignment != 0 {
            return Err((
                t.info_at as u64,
                Problem::Misaligned {
                    name: name(),
                    offset: relative as u64,
                    alignment: alignment as u64,
                },
            ));
        }
        let start = data_offset.checked_add(relative);
        let end = start.and_then(|s| s.checked_add(t.bytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= file_len => t.start = s,
            _ => {
                return Err((
                    t.info_at as u64,
                    Problem::OutOfFile {
                        name: name(),
                        start: (data_offset as u64).saturating_add(relative as u64),
                        end: (data_offset as u64)
                            .saturating_add(relative as u64)
                            .saturating_add(t.bytes as u64),
                        file_len: file_len as u64,
                    },
                ))
            }
        }
        if expected != Some(relative) && incompatibility.is_none() {
            *incompatibility = Some(format!(
                "tensor '{}' is not where ggml expects it (tensors packed in order)",
                name()
            ));
        }
        expected = expected.and_then(|e| e.checked_add(size::pad(t.bytes, alignment)?));
    }
    Ok(())
}

/// Refuses tensors that share bytes.
fn check_overlaps(b: &[u8], tensors: &[TensorEntry]) -> Parse<()> {
    let mut by_start: Vec<&TensorEntry> = tensors.iter().filter(|t| t.bytes > 0).collect();
    by_start.sort_unstable_by_key(|t| t.start);
    for w in by_start.windows(2) {
        if w[0].start + w[0].bytes > w[1].start {
            return Err((
                w[1].info_at as u64,
                Problem::Overlap {
                    first: Index::text(b, w[0].name_at, w[0].name_len).to_string(),
                    second: Index::text(b, w[1].name_at, w[1].name_len).to_string(),
                },
            ));
        }
    }
    Ok(())
}

/// `0..n` sorted by `key`.
fn sorted<'k>(n: usize, key: impl Fn(usize) -> &'k [u8]) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    v.sort_unstable_by(|&a, &b| key(a as usize).cmp(key(b as usize)));
    v
}

/// The first pair of equal keys in sorted order: (earlier, later) in file
/// order.
fn first_duplicate<'k>(sorted: &[u32], key: impl Fn(usize) -> &'k [u8]) -> Option<(usize, usize)> {
    sorted.windows(2).find_map(|w| {
        let (a, b) = (w[0] as usize, w[1] as usize);
        (key(a) == key(b)).then(|| (a.min(b), a.max(b)))
    })
}
