//! What can be wrong with a GGUF file, and where: [`GgufError`] (inside
//! [`Error::Gguf`](crate::Error::Gguf)) carries the file, the byte offset of
//! the field at fault and a [`Problem`].

use std::fmt;
use std::path::PathBuf;

/// A malformed GGUF file (or a GGUF file that cannot be written as asked):
/// which file, the byte offset of the offending field, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufError {
    /// The file, when there is one (not for bytes in memory).
    pub path: Option<PathBuf>,
    /// Offset in the file of the field that is wrong (for writing: of the
    /// item that cannot be written, or 0).
    pub offset: u64,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "GGUF file {}: ", p.display())?,
            None => f.write_str("GGUF: ")?,
        }
        write!(f, "{} (at byte {})", self.problem, self.offset)
    }
}

impl std::error::Error for GgufError {}

/// What is wrong with a GGUF file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The file ends inside a field.
    #[error("file ends in {what}: {needed} bytes needed, {available} left")]
    Truncated {
        /// The field being read.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file (magic {0:02x?}, expected \"GGUF\")")]
    Magic([u8; 4]),
    /// A big-endian GGUF file (ggml reads native little-endian files only).
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    /// A version other than 2 and 3.
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    /// A count or length beyond what ggml accepts or the file can hold.
    #[error("{what} {count} exceeds the limit of {limit}")]
    TooMany {
        /// What is counted.
        what: String,
        /// The count in the file.
        count: u64,
        /// The most allowed.
        limit: u64,
    },
    /// Text that is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The string at fault.
        what: String,
    },
    /// A key or tensor name containing a NUL byte (ggml would cut it there).
    #[error("{what} {text:?} contains a NUL byte")]
    Nul {
        /// A key or a tensor name.
        what: &'static str,
        /// The text (lossily decoded).
        text: String,
    },
    /// An empty key.
    #[error("empty metadata key")]
    EmptyKey,
    /// A key that appears twice.
    #[error("duplicate metadata key '{0}'")]
    DuplicateKey(String),
    /// An unknown value type.
    #[error("key '{key}': unknown value type {raw}")]
    ValueType {
        /// The key.
        key: String,
        /// The raw type.
        raw: i32,
    },
    /// Arrays nested deeper than [`MAX_NESTING`](crate::gguf::MAX_NESTING).
    #[error("key '{key}': arrays nested more than {limit} deep")]
    Nesting {
        /// The key.
        key: String,
        /// The limit.
        limit: usize,
    },
    /// `general.alignment` of the wrong type or not a power of two.
    #[error("general.alignment {0}")]
    Alignment(String),
    /// A tensor name that is too long, or used twice.
    #[error("tensor name '{name}': {reason}")]
    TensorName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// More than four dimensions.
    #[error("tensor '{name}' has {n_dims} dimensions (ggml has at most 4)")]
    Dims {
        /// The tensor.
        name: String,
        /// Its dimension count.
        n_dims: u32,
    },
    /// A tensor type ggml does not have.
    #[error("tensor '{name}' has unknown type {raw}")]
    TensorType {
        /// The tensor.
        name: String,
        /// The raw type.
        raw: i32,
    },
    /// A shape ggml cannot hold (negative, too large, not whole blocks).
    #[error("tensor '{name}': {reason}")]
    Shape {
        /// The tensor.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A data offset that is not a multiple of the alignment.
    #[error(
        "tensor '{name}': data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    Misaligned {
        /// The tensor.
        name: String,
        /// Its offset within the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// Tensor data reaching past the end of the file.
    #[error("tensor '{name}': data at bytes {start}..{end} of the file, which has {file_len}")]
    OutOfFile {
        /// The tensor.
        name: String,
        /// First byte (from the start of the file).
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// Two tensors sharing bytes.
    #[error("tensors '{first}' and '{second}' overlap")]
    Overlap {
        /// The tensor starting first.
        first: String,
        /// The one starting inside it.
        second: String,
    },
    /// The data section starts past the end of the file.
    #[error(
        "the data section starts at byte {start}, past the end of the file ({file_len} bytes)"
    )]
    DataStart {
        /// Where it starts.
        start: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// Shards of a split model that do not fit together.
    #[error("split model: {0}")]
    Split(String),
    /// Something that cannot be written.
    #[error("cannot write: {0}")]
    Write(String),
}
