//! GGUF files, the format of every ggml and llama.cpp model: typed metadata,
//! tensors as zero-copy `ndarray` views or dequantized copies, loading into a
//! [`Context`](crate::Context) or a backend buffer, and a streaming
//! [`Writer`].
//!
//! ```no_run
//! use ggml::gguf::{Gguf, Writer};
//! use ggml::ndarray::Array2;
//! use ggml::Type;
//!
//! # fn main() -> ggml::Result<()> {
//! // Write a small file: metadata, an f32 matrix and a Q8_0 copy of it.
//! let weights = Array2::from_shape_fn((4, 64), |(i, j)| (i * 64 + j) as f32 / 100.0);
//! let mut w = Writer::new();
//! w.set("general.architecture", "demo")?;
//! w.set("demo.block_count", 4u32)?;
//! w.add_array("w.f32", &weights)?;
//! w.add_quantized("w.q8", Type::Q8_0, &weights, None)?;
//! w.write_to_file("demo.gguf")?;
//!
//! // Read it back. `open` memory-maps the file (see its safety contract);
//! // `Gguf::read` copies it into memory instead.
//! // SAFETY: nothing modifies demo.gguf while it is open.
//! let file = unsafe { Gguf::open("demo.gguf")? };
//! assert_eq!(file.architecture()?, Some("demo"));
//! assert_eq!(file.get::<u32>("demo.block_count")?, 4);
//! let view = file.tensor("w.f32")?.view::<f32>()?; // borrows the map
//! assert_eq!(view.shape(), &[4, 64]);
//! let q8 = file.tensor("w.q8")?.to_array::<f32>()?; // dequantized
//! assert!((q8[[3, 63]] - 2.55).abs() < 0.02);
//! # Ok(())
//! # }
//! ```
//!
//! # Untrusted files
//!
//! The reader is this crate's own: one pass over the file checks every
//! field against the bytes that remain and against ggml's limits before
//! anything is reserved for it, and a failure is an
//! [`Error::Gguf`] naming the file, the byte offset and
//! the [`Problem`]. ggml's `gguf_init_from_file` is never called: it aborts
//! on some malformed files and reads out of bounds on others (tensor sizes
//! that wrap, data past the end of the file).
//!
//! Memory for the index of a file is bounded: at most about four bytes per
//! byte of file ([`Gguf::index_bytes`]); values, arrays and strings are not
//! copied, they are decoded from the file when asked for.
//!
//! Files ggml could not read but the format allows (arrays of arrays;
//! tensors not packed back to back in order) are read, and
//! [`Gguf::ggml_incompatibility`] says so.
//!
//! # Split models
//!
//! [`Gguf::open`] and [`Gguf::read`] of the first shard of a split model
//! (`name-00001-of-00003.gguf`, with `split.count` > 1) open every shard and
//! present one model: the first shard's metadata, every shard's tensors.

mod load;
mod read;
mod tensor;
mod value;
mod write;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use crate::error::gguf::{GgufError, Problem};
pub use tensor::TensorInfo;
pub use value::{ArrayElement, ArrayValue, FromValue, Value, ValueType};
pub use write::Writer;

use read::Index;

/// Alignment of tensor data when `general.alignment` does not say.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// The key of the alignment (a `u32` power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Longest string ggml reads (1 GiB).
pub const MAX_STRING_LEN: u64 = 1 << 30;
/// Most elements of an array ggml reads (2^30).
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
/// Deepest nesting of arrays this reader accepts.
pub const MAX_NESTING: usize = 16;
/// The version this crate writes.
pub const VERSION: u32 = 3;

/// The bytes of one file.
enum Source {
    /// A read-only memory map.
    Map(memmap2::Mmap),
    /// Owned bytes, stored in `u64`s so that views of up to 8-byte types
    /// are aligned.
    Aligned(Vec<u64>, usize),
    /// Owned bytes as given.
    Vec(Vec<u8>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Map(m) => m,
            Source::Aligned(v, len) => {
                // SAFETY: `v` holds at least `len` initialised bytes (it was
                // filled from a slice of that length), u8 has no alignment.
                unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), *len) }
            }
            Source::Vec(v) => v,
        }
    }

    fn aligned_copy(bytes: &[u8]) -> Source {
        let mut v = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: `v` has room for `bytes.len()` bytes; the regions are
        // distinct allocations.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes.len())
        };
        Source::Aligned(v, bytes.len())
    }
}

/// One validated file.
struct Shard {
    source: Source,
    index: Index,
    path: Option<PathBuf>,
}

impl Shard {
    fn parse(source: Source, path: Option<PathBuf>) -> Result<Shard> {
        let index = read::parse(source.bytes()).map_err(|(offset, problem)| {
            Error::Gguf(Box::new(GgufError {
                path: path.clone(),
                offset,
                problem,
            }))
        })?;
        Ok(Shard {
            source,
            index,
            path,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.source.bytes()
    }

    fn error(&self, offset: u64, problem: Problem) -> Error {
        Error::Gguf(Box::new(GgufError {
            path: self.path.clone(),
            offset,
            problem,
        }))
    }

    fn value(&self, key: &str) -> Option<Value<'_>> {
        let kv = self.index.kvs[self.index.find_kv(self.bytes(), key)?];
        Some(Value::decode(kv.ty, kv.value(self.bytes())))
    }

    fn value_offset(&self, key: &str) -> u64 {
        self.index
            .find_kv(self.bytes(), key)
            .map_or(0, |i| self.index.kvs[i].value_at as u64)
    }
}

/// A validated GGUF file (or split model): metadata and tensor index, over
/// a memory map or bytes in memory. See the [module docs](self).
pub struct Gguf {
    shards: Vec<Shard>,
    /// (shard, index in it) of every tensor, shards in order.
    tensors: Vec<(u32, u32)>,
    /// Indices of `tensors` sorted by name.
    sorted: Vec<u32>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.shards[0].path)
            .field("shards", &self.shards.len())
            .field("version", &self.version())
            .field("metadata", &self.metadata_len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Memory-maps and validates the file at `path`; for the first shard of
    /// a split model, every shard (see the [module docs](self)).
    ///
    /// # Safety
    /// The file must not be modified or truncated while the returned value
    /// (or anything borrowed from it) is alive: its bytes are read in place,
    /// and a change made by another process (or this one) would be a data
    /// race, a truncation a `SIGBUS`. This is the contract of every memory
    /// map (`memmap2::Mmap::map`); llama.cpp maps model files the same way.
    /// [`Gguf::read`] copies the file into memory and has no such contract.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Gguf`].
    pub unsafe fn open(path: impl AsRef<Path>) -> Result<Gguf> {
        Self::open_with(path.as_ref(), &|p| {
            // SAFETY: the caller's contract.
            Shard::parse(unsafe { map_file(p)? }, Some(p.to_path_buf()))
        })
    }

    /// Reads the file at `path` into memory and validates it; for the first
    /// shard of a split model, every shard.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Gguf`].
    pub fn read(path: impl AsRef<Path>) -> Result<Gguf> {
        Self::open_with(path.as_ref(), &|p| {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            Shard::parse(Source::aligned_copy(&bytes), Some(p.to_path_buf()))
        })
    }

    /// Validates a file held in memory (copied, so that views are aligned).
    /// A split model's shards are separate files: open them by path.
    ///
    /// # Errors
    /// [`Error::Gguf`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Gguf> {
        Self::single(Shard::parse(Source::aligned_copy(bytes), None)?)
    }

    /// Validates a file held in memory, keeping the vector (no copy). Views
    /// need each tensor's data aligned for its element type, which a
    /// `Vec<u8>` does not promise ([`Error::Misaligned`] then; copies work).
    ///
    /// # Errors
    /// [`Error::Gguf`].
    pub fn from_vec(bytes: Vec<u8>) -> Result<Gguf> {
        Self::single(Shard::parse(Source::Vec(bytes), None)?)
    }

    /// Validates the file at `path` (every shard of a split model) as
    /// [`Gguf::open`] would, reading only its metadata with ordinary reads:
    /// no memory map, no tensor data. What [`Model::load`](crate::llama::Model::load)
    /// runs before llama.cpp sees a file.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Gguf`].
    pub fn check_file(path: impl AsRef<Path>) -> Result<()> {
        Self::read_index(path.as_ref()).map(drop)
    }

    fn single(shard: Shard) -> Result<Gguf> {
        let n = shard.index.tensors.len() as u32;
        let sorted = shard.index.tensor_sorted.clone();
        Ok(Gguf {
            shards: vec![shard],
            tensors: (0..n).map(|i| (0, i)).collect(),
            sorted,
        })
    }

    /// The metadata and tensor index of the file at `path` (every shard of
    /// a split model), validated as [`Gguf::check_file`] does: the bytes
    /// read hold no tensor data, so this is for the crate's own checks of
    /// a file's metadata, tensor names, types and shapes, never for tensor
    /// bytes (`TensorInfo::bytes` and what uses it would be out of range).
    pub(crate) fn read_index(path: &Path) -> Result<Gguf> {
        Self::open_with(path, &|p| {
            let (index, bytes) = check_one(p)?;
            Ok(Shard {
                source: Source::Vec(bytes),
                index,
                path: Some(p.to_path_buf()),
            })
        })
    }

    fn open_with(path: &Path, load: &dyn Fn(&Path) -> Result<Shard>) -> Result<Gguf> {
        let first = load(path)?;
        let count = split_value(&first, SPLIT_COUNT)?.unwrap_or(1);
        if count <= 1 {
            return Self::single(first);
        }
        let no = split_value(&first, SPLIT_NO)?.unwrap_or(0);
        if no != 0 {
            return Err(first.error(
                first.value_offset(SPLIT_NO),
                Problem::Split(format!(
                    "this is shard {} of {count}; open the first",
                    no + 1
                )),
            ));
        }
        let paths = split_paths(path, count).ok_or_else(|| {
            first.error(
                0,
                Problem::Split(format!(
                    "{count} shards, but the file name does not end in -00001-of-{count:05}.gguf"
                )),
            )
        })?;
        let mut shards = vec![first];
        for (i, p) in paths.iter().enumerate().skip(1) {
            let shard = load(p)?;
            let (no, n) = (
                split_value(&shard, SPLIT_NO)?,
                split_value(&shard, SPLIT_COUNT)?,
            );
            if no != Some(i as u16) || n != Some(count) {
                return Err(shard.error(
                    shard.value_offset(SPLIT_NO),
                    Problem::Split(format!(
                        "expected shard {} of {count}, found split.no {no:?}, split.count {n:?}",
                        i + 1
                    )),
                ));
            }
            shards.push(shard);
        }
        Self::join(shards)
    }

    /// One model of several validated shards.
    fn join(shards: Vec<Shard>) -> Result<Gguf> {
        let tensors: Vec<(u32, u32)> = shards
            .iter()
            .enumerate()
            .flat_map(|(s, sh)| (0..sh.index.tensors.len() as u32).map(move |i| (s as u32, i)))
            .collect();
        let mut g = Gguf {
            shards,
            tensors,
            sorted: Vec::new(),
        };
        let mut sorted: Vec<u32> = (0..g.tensors.len() as u32).collect();
        sorted.sort_unstable_by(|&a, &b| g.entry_name(a as usize).cmp(g.entry_name(b as usize)));
        if let Some(w) = sorted
            .windows(2)
            .find(|w| g.entry_name(w[0] as usize) == g.entry_name(w[1] as usize))
        {
            let (s, i) = g.tensors[w[0].max(w[1]) as usize];
            let shard = &g.shards[s as usize];
            let t = &shard.index.tensors[i as usize];
            return Err(shard.error(
                t.info_at as u64,
                Problem::Split(format!(
                    "tensor '{}' is in two shards",
                    g.entry_name(w[0] as usize)
                )),
            ));
        }
        g.sorted = sorted;
        let total = g.tensors.len();
        let first = &g.shards[0];
        if let Some(v) = first.value(SPLIT_TENSORS) {
            if v.as_i64() != Some(total as i64) {
                return Err(first.error(
                    first.value_offset(SPLIT_TENSORS),
                    Problem::Split(format!("{SPLIT_TENSORS} is {v}, the shards hold {total}")),
                ));
            }
        }
        Ok(g)
    }

    fn entry_name(&self, i: usize) -> &str {
        let (s, t) = self.tensors[i];
        let shard = &self.shards[s as usize];
        let e = &shard.index.tensors[t as usize];
        Index::text(shard.bytes(), e.name_at, e.name_len)
    }

    // ----- the file -----

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.shards[0].index.version
    }

    /// Alignment of tensor data (`general.alignment`, 32 by default).
    pub fn alignment(&self) -> usize {
        self.shards[0].index.alignment
    }

    /// Offset of the (first shard's) data section.
    pub fn data_offset(&self) -> usize {
        self.shards[0].index.data_offset
    }

    /// Number of files (1, or the shards of a split model).
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The files' paths (none for bytes in memory).
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().filter_map(|s| s.path.as_deref())
    }

    /// Total bytes of the file(s).
    pub fn file_len(&self) -> usize {
        self.shards.iter().map(|s| s.bytes().len()).sum()
    }

    /// Bytes this value holds besides the file(s): the index.
    pub fn index_bytes(&self) -> usize {
        use std::mem::size_of;
        let per_shard: usize = self
            .shards
            .iter()
            .map(|s| {
                s.index.kvs.capacity() * size_of::<read::Kv>()
                    + s.index.kv_sorted.capacity() * 4
                    + s.index.tensors.capacity() * size_of::<read::TensorEntry>()
                    + s.index.tensor_sorted.capacity() * 4
            })
            .sum();
        per_shard + self.tensors.capacity() * 8 + self.sorted.capacity() * 4
    }

    /// Why ggml's own reader (`gguf_init_from_file`) would refuse this file,
    /// when it would: arrays of arrays, or tensors not packed back to back
    /// in order (and for split models, each shard on its own).
    pub fn ggml_incompatibility(&self) -> Option<&str> {
        self.shards
            .iter()
            .find_map(|s| s.index.incompatibility.as_deref())
    }

    // ----- metadata -----

    /// Number of metadata keys.
    pub fn metadata_len(&self) -> usize {
        self.shards[0].index.kvs.len()
    }

    /// Every key and value, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, Value<'_>)> {
        let shard = &self.shards[0];
        let b = shard.bytes();
        shard.index.kvs.iter().map(move |kv| {
            (
                Index::text(b, kv.key_at, kv.key_len),
                Value::decode(kv.ty, kv.value(b)),
            )
        })
    }

    /// The value of `key`, if present.
    pub fn value(&self, key: &str) -> Option<Value<'_>> {
        self.shards[0].value(key)
    }

    /// The value of `key` as `T` (exactly its type: see [`FromValue`]).
    ///
    /// # Errors
    /// [`Error::MissingKey`], [`Error::ValueType`] naming the key, the wanted
    /// and the actual type.
    pub fn get<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<T> {
        self.get_opt(key)?.ok_or_else(|| Error::MissingKey {
            key: key.to_string(),
        })
    }

    /// The value of `key` as `T`, or `None` when the key is absent.
    ///
    /// # Errors
    /// [`Error::ValueType`] when present with another type.
    pub fn get_opt<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<Option<T>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => T::from_value(&v)
                .map(Some)
                .ok_or_else(|| value::type_error(key, T::WANTED, &v)),
        }
    }

    /// `general.architecture` (`llama`, `qwen2`, ...).
    ///
    /// # Errors
    /// [`Error::ValueType`] when it is not a string.
    pub fn architecture(&self) -> Result<Option<&str>> {
        self.get_opt("general.architecture")
    }

    /// `general.name`.
    ///
    /// # Errors
    /// [`Error::ValueType`] when it is not a string.
    pub fn name(&self) -> Result<Option<&str>> {
        self.get_opt("general.name")
    }

    /// `general.quantization_version` (2 for current ggml quantizations).
    ///
    /// # Errors
    /// [`Error::ValueType`] when it is not a `u32`.
    pub fn quantization_version(&self) -> Result<Option<u32>> {
        self.get_opt("general.quantization_version")
    }

    /// `general.file_type`: llama.cpp's `llama_ftype` (0 all f32, 1 mostly
    /// f16, 2 Q4_0, 7 Q8_0, 15 Q4_K_M, ...).
    ///
    /// # Errors
    /// [`Error::ValueType`] when it is not a `u32`.
    pub fn file_type(&self) -> Result<Option<u32>> {
        self.get_opt("general.file_type")
    }

    /// The architecture's own key `{architecture}.{suffix}`, e.g.
    /// `arch_get::<u32>("context_length")` for `llama.context_length`.
    ///
    /// # Errors
    /// [`Error::MissingKey`] (also without `general.architecture`),
    /// [`Error::ValueType`].
    pub fn arch_get<'a, T: FromValue<'a>>(&'a self, suffix: &str) -> Result<T> {
        let arch = self.architecture()?.ok_or_else(|| Error::MissingKey {
            key: "general.architecture".into(),
        })?;
        self.get(&format!("{arch}.{suffix}"))
    }

    // ----- tensors -----

    /// Number of tensors (in every shard).
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Every tensor, in file order (shard by shard).
    pub fn tensors(&self) -> impl Iterator<Item = TensorInfo<'_>> {
        (0..self.tensors.len()).map(|i| self.info(i))
    }

    /// The tensor named `name`.
    ///
    /// # Errors
    /// [`Error::MissingTensor`].
    pub fn tensor(&self, name: &str) -> Result<TensorInfo<'_>> {
        self.sorted
            .binary_search_by(|&i| self.entry_name(i as usize).cmp(name))
            .map(|p| self.info(self.sorted[p] as usize))
            .map_err(|_| Error::MissingTensor {
                name: name.to_string(),
            })
    }

    fn info(&self, i: usize) -> TensorInfo<'_> {
        let (s, t) = self.tensors[i];
        let shard = &self.shards[s as usize];
        TensorInfo::new(shard.bytes(), &shard.index.tensors[t as usize], s as usize)
    }
}

const SPLIT_NO: &str = "split.no";
const SPLIT_COUNT: &str = "split.count";
const SPLIT_TENSORS: &str = "split.tensors.count";

/// A `split.*` count (u16, as llama.cpp writes and reads them).
fn split_value(shard: &Shard, key: &str) -> Result<Option<u16>> {
    split_u16(&shard.index, shard.bytes(), shard.path.as_deref(), key)
}

/// A `split.*` count of a file's index over its bytes.
fn split_u16(index: &Index, bytes: &[u8], path: Option<&Path>, key: &str) -> Result<Option<u16>> {
    let Some(i) = index.find_kv(bytes, key) else {
        return Ok(None);
    };
    let kv = &index.kvs[i];
    match Value::decode(kv.ty, kv.value(bytes)) {
        Value::U16(v) => Ok(Some(v)),
        v => Err(gguf_error(
            path,
            kv.value_at as u64,
            Problem::Split(format!("{key} must be a u16, not {}", v.type_description())),
        )),
    }
}

/// The paths of every shard, from the first one's (`x-00001-of-0000N.gguf`).
fn split_paths(first: &Path, count: u16) -> Option<Vec<PathBuf>> {
    let name = first.file_name()?.to_str()?;
    let suffix = format!("-00001-of-{count:05}.gguf");
    let stem = name.strip_suffix(&suffix)?;
    Some(
        (1..=count)
            .map(|i| first.with_file_name(format!("{stem}-{i:05}-of-{count:05}.gguf")))
            .collect(),
    )
}

/// Maps a file read-only.
///
/// # Safety
/// As [`Gguf::open`].
unsafe fn map_file(path: &Path) -> Result<Source> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the caller's contract (the file does not change while mapped).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Source::Map(map))
}

/// The file name of shard `no` (1-based) of `count` for a model named
/// `stem` (llama.cpp's `llama_split_path`): `stem-00001-of-00003.gguf`.
pub fn split_file_name(stem: &str, no: usize, count: usize) -> String {
    format!("{stem}-{no:05}-of-{count:05}.gguf")
}

fn gguf_error(path: Option<&Path>, offset: u64, problem: Problem) -> Error {
    Error::Gguf(Box::new(GgufError {
        path: path.map(Path::to_path_buf),
        offset,
        problem,
    }))
}

/// Reads the metadata of one file, more and more of it until it parses:
/// the index and the bytes it indexes.
fn check_one(path: &Path) -> Result<(Index, Vec<u8>)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len() as usize;
    let mut bytes = Vec::new();
    let mut want = (1usize << 20).min(len);
    loop {
        let have = bytes.len();
        bytes.resize(want, 0);
        file.read_exact(&mut bytes[have..])
            .map_err(|e| Error::io(path, e))?;
        match read::parse_prefix(&bytes, len) {
            Ok(index) => return Ok((index, bytes)),
            Err((_, Problem::Truncated { .. })) if want < len => {
                want = want.saturating_mul(4).min(len)
            }
            Err((offset, problem)) => return Err(gguf_error(Some(path), offset, problem)),
        }
    }
}
