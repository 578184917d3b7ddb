//! [`Writer`]: builds a GGUF file from metadata and tensors (ndarrays,
//! quantized on request, raw bytes, tensors of a context, rows produced on
//! demand, readers) and streams it out: tensor data is produced while the
//! file is written, one chunk at a time, so a file larger than memory can be
//! written.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ndarray::{ArrayBase, Data, Dimension};

use crate::convert;
use crate::data::TensorData;
use crate::error::{Error, Result};
use crate::shape;
use crate::size::{self, Ne};
use crate::tensor::Tensor;
use crate::types::{Element, Type};

use super::read::MAX_NAME;
use super::value::{Value, ValueType};
use super::{
    split_file_name, Gguf, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAX_ARRAY_LEN, MAX_NESTING,
    MAX_STRING_LEN, VERSION,
};
use crate::error::gguf::{GgufError, Problem};

/// Bytes of f32 values converted per chunk when quantizing (4 MiB).
const CHUNK_VALUES: usize = 1 << 20;

/// A sink for a tensor's bytes, chunk by chunk.
type Sink<'s> = &'s mut dyn FnMut(&[u8]) -> Result<()>;
/// Produces a tensor's bytes into a sink when the file is written.
type Producer<'a> = Box<dyn FnOnce(Sink<'_>) -> Result<()> + 'a>;

struct Pending<'a> {
    name: String,
    ty: Type,
    ne: Ne,
    n_dims: usize,
    bytes: usize,
    produce: Producer<'a>,
}

/// Builds and writes a GGUF file (version 3, little-endian).
///
/// Metadata is set with [`Writer::set`] (in order; setting a key again
/// replaces its value in place). Tensors are declared with their data
/// source; the data is read, converted or quantized only while
/// [`Writer::write_to`] / [`Writer::write_to_file`] runs, in chunks, so the
/// sources must live as long as the writer (`'a`).
///
/// Tensor data is aligned to `general.alignment` when it is set (a `u32`
/// power of two; unlike ggml's own writer, which always uses 32), else 32.
///
/// ```no_run
/// # use ggml::gguf::Writer;
/// # use ggml::Type;
/// # fn main() -> ggml::Result<()> {
/// // A file bigger than memory: rows produced as they are written.
/// let mut w = Writer::new();
/// w.set("general.architecture", "demo")?;
/// w.add_rows("big", Type::Q4_0, &[1 << 20, 4096], None, |first_row, out| {
///     for (i, v) in out.iter_mut().enumerate() {
///         *v = ((first_row * 4096 + i) % 17) as f32;
///     }
///     Ok(())
/// })?;
/// w.write_to_file("big.gguf")?;
/// # Ok(())
/// # }
/// ```
pub struct Writer<'a> {
    kvs: Vec<(String, Value<'a>)>,
    tensors: Vec<Pending<'a>>,
    alignment: usize,
}

impl Default for Writer<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("metadata", &self.kvs.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

fn refuse(problem: Problem) -> Error {
    Error::Gguf(Box::new(GgufError {
        path: None,
        offset: 0,
        problem,
    }))
}

fn write_problem(msg: String) -> Error {
    refuse(Problem::Write(msg))
}

/// Checks a value can be written and read back (by ggml, nesting aside).
fn check_value(key: &str, v: &Value<'_>, depth: usize) -> Result<()> {
    match v {
        Value::String(s) if s.len() as u64 > MAX_STRING_LEN => Err(write_problem(format!(
            "the string of '{key}' has {} bytes (at most {MAX_STRING_LEN})",
            s.len()
        ))),
        Value::Array(a) => {
            if a.len() as u64 > MAX_ARRAY_LEN {
                return Err(write_problem(format!(
                    "'{key}' has {} elements (at most {MAX_ARRAY_LEN})",
                    a.len()
                )));
            }
            if depth >= MAX_NESTING {
                return Err(refuse(Problem::Nesting {
                    key: key.to_string(),
                    limit: MAX_NESTING,
                }));
            }
            if matches!(a.elem_type(), ValueType::String | ValueType::Array) {
                for e in a.iter() {
                    check_value(key, &e, depth + 1)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

impl<'a> Writer<'a> {
    /// An empty file: no metadata, no tensors.
    pub fn new() -> Self {
        Writer {
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Sets `key` to `value` (replacing an earlier value in place).
    /// `general.alignment` must be a `u32` power of two and sets the
    /// alignment of tensor data.
    ///
    /// # Errors
    /// [`Error::Gguf`] for an empty key, a NUL in it, strings over 1 GiB,
    /// arrays over 2^30 elements or nested more than
    /// [`MAX_NESTING`](super::MAX_NESTING) deep, a bad alignment.
    pub fn set(&mut self, key: &str, value: impl Into<Value<'a>>) -> Result<()> {
        let value = value.into();
        if key.is_empty() {
            return Err(refuse(Problem::EmptyKey));
        }
        if key.contains('\0') {
            return Err(refuse(Problem::Nul {
                what: "key",
                text: key.to_string(),
            }));
        }
        if key.len() as u64 > MAX_STRING_LEN {
            return Err(write_problem(format!("a key of {} bytes", key.len())));
        }
        check_value(key, &value, 0)?;
        if key == ALIGNMENT_KEY {
            match value {
                Value::U32(v) if v.is_power_of_two() => self.alignment = v as usize,
                ref v => {
                    return Err(refuse(Problem::Alignment(format!(
                        "must be a u32 power of two, not {} {v}",
                        v.type_description()
                    ))))
                }
            }
        }
        match self.kvs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.kvs.push((key.to_string(), value)),
        }
        Ok(())
    }

    /// Removes `key`; returns its value if it was set.
    pub fn remove(&mut self, key: &str) -> Option<Value<'a>> {
        let i = self.kvs.iter().position(|(k, _)| k == key)?;
        if key == ALIGNMENT_KEY {
            self.alignment = DEFAULT_ALIGNMENT;
        }
        Some(self.kvs.remove(i).1)
    }

    /// Sets every key of `file` (borrowing its values), except the
    /// `split.*` keys of a split model.
    ///
    /// # Errors
    /// As [`Writer::set`].
    pub fn copy_metadata(&mut self, file: &'a Gguf) -> Result<()> {
        for (k, v) in file.metadata() {
            if !k.starts_with("split.") {
                self.set(k, v)?;
            }
        }
        Ok(())
    }

    /// The metadata set so far, in order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.kvs.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of tensors declared.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    fn declare(
        &mut self,
        name: &str,
        ty: Type,
        shape: &[usize],
        produce: Producer<'a>,
    ) -> Result<()> {
        if name.is_empty() || name.len() >= MAX_NAME || name.contains('\0') {
            return Err(refuse(Problem::TensorName {
                name: name.to_string(),
                reason: format!(
                    "names are 1 to {} bytes without NUL (ggml's limit)",
                    MAX_NAME - 1
                ),
            }));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(refuse(Problem::TensorName {
                name: name.to_string(),
                reason: "already declared".into(),
            }));
        }
        let ne = shape::ne_from_shape(shape)?;
        size::check_shape("GGUF tensor", ty, &ne)?;
        self.tensors.push(Pending {
            name: name.to_string(),
            ty,
            ne,
            n_dims: shape.len(),
            bytes: size::dense_bytes(ty, &ne),
            produce,
        });
        Ok(())
    }

    /// Declares a tensor of type `ty` and ndarray shape `shape` whose data
    /// is `bytes`, as stored (any type; e.g. copied from another file).
    ///
    /// # Errors
    /// [`Error::Gguf`] for a bad or duplicate name, shape errors
    /// ([`Error::InvalidShape`], [`Error::BlockSize`], [`Error::TooLarge`]),
    /// [`Error::LengthMismatch`] when `bytes` is not the tensor's size.
    pub fn add_raw(
        &mut self,
        name: &str,
        ty: Type,
        shape: &[usize],
        bytes: &'a [u8],
    ) -> Result<()> {
        let ne = shape::ne_from_shape(shape)?;
        size::check_shape("GGUF tensor", ty, &ne)?;
        let expected = size::dense_bytes(ty, &ne);
        if bytes.len() != expected {
            return Err(Error::LengthMismatch {
                what: "GGUF tensor bytes",
                expected,
                actual: bytes.len(),
            });
        }
        self.declare(name, ty, shape, Box::new(move |sink| sink(bytes)))
    }

    /// Declares a tensor holding `array` (any layout) in its own type.
    ///
    /// # Errors
    /// As [`Writer::add_raw`].
    pub fn add_array<E, S, D>(&mut self, name: &str, array: &'a ArrayBase<S, D>) -> Result<()>
    where
        E: Element,
        S: Data<Elem = E>,
        D: Dimension,
    {
        let produce: Producer<'a> = match array.as_slice() {
            Some(values) => Box::new(move |sink| sink(element_bytes(values))),
            None => Box::new(move |sink| {
                let mut chunk = Vec::with_capacity(CHUNK_VALUES.min(array.len()));
                for v in array.iter() {
                    chunk.push(*v);
                    if chunk.len() == CHUNK_VALUES {
                        sink(element_bytes(&chunk))?;
                        chunk.clear();
                    }
                }
                sink(element_bytes(&chunk))
            }),
        };
        self.declare(name, E::TYPE, array.shape(), produce)
    }

    /// Declares a tensor of type `ty` (a float type or any type ggml
    /// quantizes to) holding `array` converted: quantized chunk by chunk
    /// while the file is written, on all cores, with the importance matrix
    /// (one weight per column) where the type needs or takes one.
    ///
    /// # Errors
    /// As [`Writer::add_raw`], plus [`convert::check_quantizable`]'s
    /// (checked now); values the type cannot hold
    /// ([`Error::NonFinite`], [`Error::OutOfRange`]) are found while writing.
    pub fn add_quantized<S, D>(
        &mut self,
        name: &str,
        ty: Type,
        array: &'a ArrayBase<S, D>,
        imatrix: Option<&'a [f32]>,
    ) -> Result<()>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        let row_len = array.shape().last().copied().unwrap_or(1);
        convert::check_quantizable(ty, row_len, imatrix)?;
        let slice = array.as_slice();
        // Rows are asked for in order: a strided array is walked once.
        let mut elements = array.iter();
        self.add_rows(name, ty, array.shape(), imatrix, move |first, out| {
            match slice {
                Some(s) => {
                    let start = first * row_len;
                    out.copy_from_slice(&s[start..start + out.len()]);
                }
                None => {
                    for (o, v) in out.iter_mut().zip(&mut elements) {
                        *o = *v;
                    }
                }
            }
            Ok(())
        })
    }

    /// Declares a tensor of type `ty` and ndarray shape `shape` whose rows
    /// (of `shape`'s last axis) are produced while the file is written:
    /// `fill(first_row, values)` fills whole rows starting at row
    /// `first_row`, a few MiB at a time, which are then converted to `ty`.
    /// Nothing holds the whole tensor: the way to write files larger than
    /// memory.
    ///
    /// # Errors
    /// As [`Writer::add_quantized`]; an error `fill` returns ends the write
    /// with that error.
    pub fn add_rows<F>(
        &mut self,
        name: &str,
        ty: Type,
        shape: &[usize],
        imatrix: Option<&'a [f32]>,
        mut fill: F,
    ) -> Result<()>
    where
        F: FnMut(usize, &mut [f32]) -> Result<()> + 'a,
    {
        let row_len = shape.last().copied().unwrap_or(1);
        convert::check_quantizable(ty, row_len, imatrix)?;
        let rows: usize = shape.iter().rev().skip(1).product();
        let rows_per_chunk = (CHUNK_VALUES / row_len.max(1)).max(1);
        let row_size = ty.row_size(row_len).unwrap_or(0);
        self.declare(
            name,
            ty,
            shape,
            Box::new(move |sink| {
                if row_len == 0 {
                    return Ok(());
                }
                let mut values = vec![0f32; rows_per_chunk.min(rows) * row_len];
                let mut out = vec![0u8; rows_per_chunk.min(rows) * row_size];
                let mut first = 0;
                while first < rows {
                    let n = rows_per_chunk.min(rows - first);
                    let (v, o) = (&mut values[..n * row_len], &mut out[..n * row_size]);
                    fill(first, v)?;
                    convert::from_f32(ty, v, o, row_len, imatrix)?;
                    sink(o)?;
                    first += n;
                }
                Ok(())
            }),
        )
    }

    /// Declares a tensor whose bytes (as stored, any type) are read from
    /// `reader` while the file is written; it must give exactly the
    /// tensor's size.
    ///
    /// # Errors
    /// As [`Writer::add_raw`] (the length is checked while writing).
    pub fn add_reader<R: Read + 'a>(
        &mut self,
        name: &str,
        ty: Type,
        shape: &[usize],
        mut reader: R,
    ) -> Result<()> {
        self.declare(
            name,
            ty,
            shape,
            Box::new(move |sink| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Error::io("(tensor reader)", e)),
                    };
                    sink(&buf[..n])?;
                }
            }),
        )
    }

    /// Declares `t`, a contiguous tensor of a context, under `name` (its
    /// own name when `None`); its bytes are read (from wherever it is,
    /// device memory included) while the file is written.
    ///
    /// # Errors
    /// As [`Writer::add_raw`]; [`Error::NotContiguous`],
    /// [`Error::WrongContext`] while writing.
    pub fn add_tensor<'ctx>(
        &mut self,
        name: Option<&str>,
        data: &'a TensorData<'ctx>,
        t: Tensor<'ctx>,
    ) -> Result<()> {
        let own = t.name();
        let name = name.unwrap_or(&own);
        if !t.is_contiguous() {
            return Err(t.not_contiguous("Writer::add_tensor"));
        }
        self.declare(
            name,
            t.ty(),
            &t.shape(),
            Box::new(move |sink| sink(&data.read_bytes(t)?)),
        )
    }

    /// Writes the file to `out`; returns the bytes written.
    ///
    /// # Errors
    /// [`Error::Io`], and any error a tensor's source gives (a tensor whose
    /// source gives more or fewer bytes than its size: [`Error::Gguf`]).
    pub fn write_to(self, out: impl Write) -> Result<u64> {
        let alignment = self.alignment;
        let kvs: Vec<(&str, &Value<'_>)> = self.kvs.iter().map(|(k, v)| (k.as_str(), v)).collect();
        write_file(out, &kvs, self.tensors, alignment)
    }

    /// Writes the file to `path` (created or truncated; removed again if
    /// writing fails); returns the bytes written.
    ///
    /// # Errors
    /// As [`Writer::write_to`].
    pub fn write_to_file(self, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let result = self.write_to(file).map_err(|e| with_path(e, path));
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Writes a split model: shards of at most `max_tensors` tensors and
    /// (where one tensor allows) `max_bytes` bytes of data each, named
    /// `{stem}-00001-of-0000N.gguf` next to `path` (whose `.gguf` extension
    /// is dropped), as llama.cpp and gguf-py name them. The first shard
    /// holds all metadata, every shard `split.no`, `split.count` (u16) and
    /// `split.tensors.count` (i32). Returns the files written.
    ///
    /// # Errors
    /// As [`Writer::write_to_file`]; [`Error::Gguf`] for more than 65,535
    /// shards or tensors over `i32::MAX`.
    pub fn write_split(
        self,
        path: impl AsRef<Path>,
        max_tensors: usize,
        max_bytes: usize,
    ) -> Result<Vec<PathBuf>> {
        let path = path.as_ref();
        let stem = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.strip_suffix(".gguf").unwrap_or(n).to_string())
            .ok_or_else(|| write_problem(format!("no file name in {}", path.display())))?;
        let total = self.tensors.len();
        let total_i32 = i32::try_from(total).map_err(|_| {
            write_problem(format!("{total} tensors (split.tensors.count is an i32)"))
        })?;
        // Group tensors into shards, in order.
        let mut shards: Vec<Vec<Pending<'a>>> = vec![Vec::new()];
        let mut shard_bytes = 0usize;
        for t in self.tensors {
            let current = shards.last().expect("one shard");
            let over = current.len() >= max_tensors.max(1)
                || (shard_bytes.saturating_add(t.bytes) > max_bytes && !current.is_empty());
            if over {
                shards.push(Vec::new());
                shard_bytes = 0;
            }
            shard_bytes = shard_bytes
                .saturating_add(size::pad(t.bytes, self.alignment).unwrap_or(usize::MAX));
            shards.last_mut().expect("one shard").push(t);
        }
        let count = u16::try_from(shards.len()).map_err(|_| {
            write_problem(format!("{} shards (split.count is a u16)", shards.len()))
        })?;
        let mut written = Vec::new();
        for (i, tensors) in shards.into_iter().enumerate() {
            let p = path.with_file_name(split_file_name(&stem, i + 1, count as usize));
            let split = [
                ("split.no", Value::U16(i as u16)),
                ("split.count", Value::U16(count)),
                ("split.tensors.count", Value::I32(total_i32)),
            ];
            let mut kvs: Vec<(&str, &Value<'_>)> = Vec::new();
            if i == 0 {
                kvs.extend(
                    self.kvs
                        .iter()
                        .filter(|(k, _)| !k.starts_with("split."))
                        .map(|(k, v)| (k.as_str(), v)),
                );
            }
            if self.alignment != DEFAULT_ALIGNMENT && i > 0 {
                // Every shard is read on its own: each says its alignment.
                kvs.extend(
                    self.kvs
                        .iter()
                        .filter(|(k, _)| k == ALIGNMENT_KEY)
                        .map(|(k, v)| (k.as_str(), v)),
                );
            }
            kvs.extend(split.iter().map(|(k, v)| (*k, v)));
            let file = std::fs::File::create(&p).map_err(|e| Error::io(&p, e))?;
            if let Err(e) = write_file(file, &kvs, tensors, self.alignment) {
                let _ = std::fs::remove_file(&p);
                return Err(with_path(e, &p));
            }
            written.push(p);
        }
        Ok(written)
    }
}

/// Adds `path` to a GGUF error that has none.
fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Gguf(mut g) if g.path.is_none() => {
            g.path = Some(path.to_path_buf());
            Error::Gguf(g)
        }
        e => e,
    }
}

/// The bytes of plain values (little-endian machines: as stored).
fn element_bytes<E: Element>(values: &[E]) -> &[u8] {
    // SAFETY: Element types are plain numbers without padding; the bytes
    // are read only.
    unsafe {
        std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
    }
}

/// A writer that counts bytes.
struct Counting<W: Write> {
    out: BufWriter<W>,
    at: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("(GGUF output)", e))?;
        self.at += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, alignment: usize) -> Result<()> {
        let rem = (self.at % alignment as u64) as usize;
        if rem != 0 {
            self.put(&vec![0u8; alignment - rem])?;
        }
        Ok(())
    }
}

fn write_file<W: Write>(
    out: W,
    kvs: &[(&str, &Value<'_>)],
    tensors: Vec<Pending<'_>>,
    alignment: usize,
) -> Result<u64> {
    if cfg!(target_endian = "big") {
        return Err(write_problem(
            "GGUF files are written on little-endian machines only".into(),
        ));
    }
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        Value::String((*k).into()).encode(&mut head);
        head.extend_from_slice(&(v.value_type() as i32).to_le_bytes());
        v.encode(&mut head);
    }
    let mut offset = 0usize;
    for t in &tensors {
        Value::String(t.name.as_str().into()).encode(&mut head);
        head.extend_from_slice(&(t.n_dims as u32).to_le_bytes());
        for d in &t.ne[..t.n_dims] {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&(t.ty.as_raw() as i32).to_le_bytes());
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = size::pad(t.bytes, alignment)
            .and_then(|b| offset.checked_add(b))
            .ok_or_else(|| write_problem("tensor data over usize::MAX bytes".into()))?;
    }
    let mut w = Counting {
        out: BufWriter::with_capacity(1 << 20, out),
        at: 0,
    };
    w.put(&head)?;
    drop(head);
    w.pad(alignment)?;
    for t in tensors {
        let start = w.at;
        let (name, expected) = (t.name, t.bytes as u64);
        (t.produce)(&mut |chunk: &[u8]| {
            if w.at - start + chunk.len() as u64 > expected {
                return Err(write_problem(format!(
                    "tensor '{name}': its source gives more than its {expected} bytes"
                )));
            }
            w.put(chunk)
        })?;
        if w.at - start != expected {
            return Err(write_problem(format!(
                "tensor '{name}': its source gave {} of its {expected} bytes",
                w.at - start
            )));
        }
        w.pad(alignment)?;
    }
    w.out.flush().map_err(|e| Error::io("(GGUF output)", e))?;
    Ok(w.at)
}
