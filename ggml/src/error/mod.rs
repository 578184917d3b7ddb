//! The crate's error type: one enum whose variants carry the shapes, types and
//! sizes involved, so that a failed precondition reads like a diagnosis.
//!
//! ggml stops the process with `GGML_ASSERT` when a precondition fails; this
//! crate checks those preconditions first and returns one of these instead.
//!
//! The module sits at the bottom of the crate and depends on nothing above
//! it: the data of GGUF errors lives here too ([`gguf`], re-exported as
//! `ggml::gguf::{GgufError, Problem}`), and the llama layer, above, has an
//! error type of its own ([`crate::llama::Error`]) that holds this one.

pub mod gguf;
pub(crate) mod rpc;

use crate::types::Type;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when using ggml through this crate.
///
/// Shapes are given in ggml's order (`ne`, fastest-moving axis first) and named
/// `ne`, or in ndarray's order and named `shape`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An RPC worker failed, could not be reached, or was asked for
    /// something its protocol cannot carry (the `rpc` feature).
    #[error(transparent)]
    Rpc(Box<rpc::RpcError>),

    /// The loaded ggml library is not the one the bindings were generated from.
    #[error(transparent)]
    Abi(#[from] ggml_sys::abi::AbiMismatch),

    /// `ggml_init` failed (could not allocate the context's memory).
    #[error("could not create a ggml context of {mem_size} bytes")]
    ContextInit {
        /// Requested size.
        mem_size: usize,
    },

    /// The context has no room left for what was asked.
    #[error(
        "context out of memory: {what} needs {needed} bytes, {available} of {mem_size} are free"
    )]
    OutOfMemory {
        /// What was being created.
        what: String,
        /// Bytes needed.
        needed: usize,
        /// Bytes free.
        available: usize,
        /// Total size of the context.
        mem_size: usize,
    },

    /// The tensor has no data (it lives in a `no_alloc` context, or in a
    /// backend buffer the host cannot read).
    #[error("tensor '{name}' has no host data (no_alloc context or device buffer)")]
    NoData {
        /// Name of the tensor.
        name: String,
    },

    /// A tensor (or graph) of another context was passed.
    #[error("{what} belongs to another context")]
    WrongContext {
        /// What was passed.
        what: &'static str,
    },

    /// The data access token of this context is already taken.
    #[error(
        "the data of this context is already borrowed (one `TensorData` per context at a time)"
    )]
    DataBorrowed,

    /// An empty, too long or otherwise invalid shape.
    #[error("invalid shape {shape:?}: {reason}")]
    InvalidShape {
        /// The shape, in ndarray order.
        shape: Vec<usize>,
        /// Why it is invalid.
        reason: String,
    },

    /// Two shapes that must be equal are not.
    #[error("{op}: shapes differ: {lhs:?} vs {rhs:?} (ndarray order)")]
    ShapeMismatch {
        /// Operation.
        op: &'static str,
        /// First shape.
        lhs: Vec<usize>,
        /// Second shape.
        rhs: Vec<usize>,
    },

    /// `rhs` cannot be broadcast (repeated) to `lhs`.
    #[error("{op}: cannot broadcast shape {rhs:?} to {lhs:?}: each dimension of the left must be a multiple of the right's (ndarray order)")]
    NotBroadcastable {
        /// Operation.
        op: &'static str,
        /// Target shape.
        lhs: Vec<usize>,
        /// Shape to broadcast.
        rhs: Vec<usize>,
    },

    /// `mul_mat` operands whose inner dimensions or batches do not agree.
    #[error("mul_mat: cannot multiply a {a:?} by b {b:?} (ggml ne order): need a.ne[0] == b.ne[0] and b.ne[2], b.ne[3] multiples of a's")]
    MatMulShape {
        /// ne of `a`.
        a: [i64; 4],
        /// ne of `b`.
        b: [i64; 4],
    },

    /// A row length that is not a multiple of the type's block size.
    #[error("{ty} stores blocks of {block_size} values, but the row length (last ndarray axis, ne[0]) is {row_len}")]
    BlockSize {
        /// The type.
        ty: Type,
        /// Its block size.
        block_size: usize,
        /// The offending row length.
        row_len: usize,
    },

    /// The type can only be quantized with an importance matrix.
    #[error("quantizing to {ty} needs an importance matrix; use a `quantize_with_imatrix` function or another type")]
    RequiresImatrix {
        /// The type.
        ty: Type,
    },

    /// An importance matrix of the wrong length.
    #[error("importance matrix has {len} values but rows have {row_len}")]
    ImatrixLength {
        /// Given length.
        len: usize,
        /// Row length.
        row_len: usize,
    },

    /// ggml has no quantization routine for the type.
    #[error("ggml cannot quantize to {ty}")]
    NotQuantizable {
        /// The type.
        ty: Type,
    },

    /// ggml has no dequantization routine for the type.
    #[error("ggml cannot convert {ty} to f32")]
    NotDequantizable {
        /// The type.
        ty: Type,
    },

    /// A quantized tensor where a zero-copy view was asked for.
    #[error("tensor '{name}' is {ty}, which has no element-wise view; ask for a dequantized copy (`to_array`) instead")]
    QuantizedView {
        /// Name of the tensor.
        name: String,
        /// Its type.
        ty: Type,
    },

    /// A view of the wrong element type.
    #[error("tensor '{name}' is {actual}, not {expected}")]
    ElementType {
        /// Name of the tensor.
        name: String,
        /// Element type asked for.
        expected: Type,
        /// Type of the tensor.
        actual: Type,
    },

    /// A conversion ggml does not support (or this crate refuses, like integers to floats).
    #[error("unsupported conversion from {from} to {to}")]
    UnsupportedConversion {
        /// Source type.
        from: Type,
        /// Destination type.
        to: Type,
    },

    /// Copy between two different quantized types without permission.
    #[error("copying {from} to {to} requantizes (loses precision twice); allow it explicitly")]
    RequantizeNotAllowed {
        /// Source type.
        from: Type,
        /// Destination type.
        to: Type,
    },

    /// A non-contiguous tensor where contiguity is required.
    #[error("{op} needs a contiguous tensor, but '{name}' has ne {ne:?} and byte strides {nb:?}")]
    NotContiguous {
        /// Operation.
        op: &'static str,
        /// Name of the tensor.
        name: String,
        /// Its ne.
        ne: [i64; 4],
        /// Its byte strides.
        nb: [usize; 4],
    },

    /// A byte stride that is not a multiple of the element size.
    #[error("byte stride {stride} is not a multiple of the element size {elem_size}")]
    Stride {
        /// The stride.
        stride: usize,
        /// The element size.
        elem_size: usize,
    },

    /// Data not aligned for its element type (an odd view offset, say).
    #[error("data at {address:#x} is not aligned to {align} bytes for its element type")]
    Misaligned {
        /// Address of the data.
        address: usize,
        /// Alignment the element type needs.
        align: usize,
    },

    /// A view reaching outside its source tensor.
    #[error("view of {needed} bytes at offset {offset} exceeds the {available} bytes of '{name}'")]
    ViewOutOfBounds {
        /// Name of the source.
        name: String,
        /// Offset of the view.
        offset: usize,
        /// Bytes the view spans.
        needed: usize,
        /// Bytes of the source.
        available: usize,
    },

    /// Axes that are not a permutation of 0..4.
    #[error("permute axes {axes:?} are not a permutation of 0, 1, 2, 3")]
    InvalidAxes {
        /// The axes.
        axes: [usize; 4],
    },

    /// A `ggml_type` value this crate does not know.
    #[error("unknown ggml_type value {0}")]
    UnknownType(u32),

    /// A graph computation stopped because the abort callback asked it to.
    #[error("graph computation aborted")]
    Aborted,

    /// The closure of a custom op ([`crate::ops::custom`]) panicked on a
    /// graph thread; the panic was caught there and the computation
    /// finished (the op's result is unspecified).
    #[error("custom op '{op}' panicked: {message}")]
    CustomOpPanicked {
        /// The op's name.
        op: String,
        /// The panic's message (or a placeholder for non-string payloads).
        message: String,
    },

    /// A graph computation failed.
    #[error("graph computation failed with status {status} ({message})")]
    Compute {
        /// `ggml_status` value.
        status: i32,
        /// What it means.
        message: String,
    },

    /// A backend could not be found or used.
    #[error("backend error: {0}")]
    Backend(String),

    /// A size that does not fit ggml's integer types: more than `i64::MAX`
    /// elements, or more than `isize::MAX` bytes (which ggml would wrap).
    #[error("{what}: a {ty} tensor of shape {shape:?} is too large ({limit})")]
    TooLarge {
        /// What was being made.
        what: &'static str,
        /// Its type.
        ty: Type,
        /// Its shape, in ndarray order with four axes.
        shape: Vec<usize>,
        /// The limit it exceeds.
        limit: &'static str,
    },

    /// A NaN or infinite value where a quantized type is produced (ggml's
    /// quantizers abort or compute garbage on them).
    #[error("value {value} at index {index} (row-major) is not finite; {ty} cannot represent it")]
    NonFinite {
        /// Position of the first such value in the input, row-major.
        index: usize,
        /// The value.
        value: f32,
        /// The type being produced.
        ty: Type,
    },

    /// A value too large for the grid search of the i-quants (IQ1, IQ2,
    /// IQ3 types), whose error sums overflow and abort past it.
    #[error(
        "value {value} at index {index} (row-major) is beyond ±{limit}, the most {ty} quantizes"
    )]
    OutOfRange {
        /// Position of the first such value in the input, row-major.
        index: usize,
        /// The value.
        value: f32,
        /// The type being produced.
        ty: Type,
        /// The largest magnitude accepted.
        limit: f32,
    },

    /// An importance matrix with a NaN, infinite or negative weight (or,
    /// for the i-quants, one above their limit).
    #[error("importance matrix weight {value} at index {index} is not a finite non-negative number in range")]
    InvalidImatrix {
        /// Position of the weight.
        index: usize,
        /// The weight.
        value: f32,
    },

    /// A layout ggml's kernels cannot take for this type: a quantized tensor
    /// whose rows would no longer be whole blocks (transposed or permuted
    /// away from `ne[0]`), or strides that are not whole elements.
    #[error(transparent)]
    Layout(Box<LayoutError>),

    /// A destination whose elements overlap each other, or that overlaps the
    /// source: ggml's threads would write the same bytes at once, or read
    /// bytes another thread writes.
    #[error("{op}: destination '{dst}' {reason}")]
    Overlap {
        /// Operation.
        op: &'static str,
        /// Name of the destination.
        dst: String,
        /// How it overlaps.
        reason: &'static str,
    },

    /// A graph node the backend computing it has no kernel for (found when
    /// the graph is computed, node by node).
    #[error("node '{node}' ({op}, types {types:?}) cannot be computed on {backend}: {reason}")]
    UnsupportedNode {
        /// Name of the node.
        node: String,
        /// Its operation.
        op: &'static str,
        /// Types of the node's sources, then of the node.
        types: Vec<Type>,
        /// The backend (`"the CPU backend"`, or a device's backend by name).
        backend: String,
        /// What its kernels lack.
        reason: &'static str,
    },

    /// Slices whose lengths do not agree (the conversion functions).
    #[error("{what}: expected {expected} values, got {actual}")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Length it must have.
        expected: usize,
        /// Length it has.
        actual: usize,
    },

    /// Thread count of zero.
    #[error("thread count must be at least 1")]
    ZeroThreads,

    /// No device matches a request (`Device::by_type`, `by_name`, ...).
    #[error("no {wanted} device{advice}")]
    NoDevice {
        /// What was asked for (`"GPU"`, `"named 'CUDA1'"`, `"number 3"`).
        wanted: String,
        /// What to do about it (which feature to enable), or empty.
        advice: String,
    },

    /// A device's backend could not be started.
    #[error("could not start a backend on device '{device}'")]
    BackendInit {
        /// The device's name.
        device: String,
    },

    /// A backend buffer could not be allocated (out of device memory, or
    /// larger than the buffer type allows).
    #[error("could not allocate {size} bytes of {buffer_type} memory{detail}")]
    BufferAlloc {
        /// The buffer type's name (`"CPU"`, `"CUDA0"`, ...).
        buffer_type: String,
        /// Bytes asked for.
        size: usize,
        /// More about the failure, or empty.
        detail: String,
    },

    /// Backend buffers are for `no_alloc` contexts: an allocating context's
    /// tensors already have memory in its arena.
    #[error("{what} needs a no_alloc context (this one allocates tensor data in its arena)")]
    NotNoAlloc {
        /// The call.
        what: &'static str,
    },

    /// Nothing left to allocate: every tensor of the context or graph
    /// already has memory.
    #[error("{what}: every tensor already has memory")]
    AlreadyAllocated {
        /// The call.
        what: &'static str,
    },

    /// A tensor's memory cannot be used by the backend asked to compute it
    /// (a tensor in host memory computed on a GPU, in another device's
    /// buffer, ...).
    #[error("tensor '{name}' is in {place}, which {backend} cannot use")]
    UnsupportedBuffer {
        /// The tensor.
        name: String,
        /// Where its memory is (a buffer type's name, or "the context's arena").
        place: String,
        /// The backend.
        backend: String,
    },

    /// A zero-copy view of memory that may change or disappear behind the
    /// view: device memory, or compute memory an allocator lends. Use the
    /// copying functions (`to_array`, `copy_from_array`).
    #[error(
        "tensor '{name}' is in {place}; reach it by copies (to_array, copy_from_array), not views"
    )]
    NotViewable {
        /// The tensor.
        name: String,
        /// Where its memory is.
        place: &'static str,
    },

    /// An allocator or scheduler could not change its memory now.
    #[error("busy: {what}")]
    Busy {
        /// Why.
        what: &'static str,
    },

    /// A graph has more tensors than the scheduler was sized for.
    #[error("a graph of {tensors} tensors does not fit a scheduler sized for {capacity}")]
    GraphTooLarge {
        /// Tensors (nodes and leaves) of the graph.
        tensors: usize,
        /// What the scheduler holds.
        capacity: usize,
    },

    /// Backends a scheduler cannot use as given.
    #[error("scheduler backends: {reason} (got {count})")]
    SchedulerBackends {
        /// How many were given.
        count: usize,
        /// What is wrong.
        reason: &'static str,
    },

    /// A graph the scheduler cannot place: a tensor that no backend both
    /// reaches and has a kernel for, a tensor of an allocating context, an
    /// empty tensor without memory, a graph without nodes.
    #[error("the scheduler cannot place tensor '{name}': {reason}")]
    Unschedulable {
        /// The tensor.
        name: String,
        /// Why.
        reason: String,
    },

    /// A malformed GGUF file (which file, the byte offset, what is wrong),
    /// or one that cannot be written as asked.
    #[error(transparent)]
    Gguf(Box<gguf::GgufError>),

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: IoError,
    },

    /// A metadata key that is not there.
    #[error("no metadata key '{key}'")]
    MissingKey {
        /// The key.
        key: String,
    },

    /// A metadata value of another type than asked for.
    #[error("metadata key '{key}' is {actual}, not {wanted}")]
    ValueType {
        /// The key (empty for an array element type).
        key: String,
        /// The type asked for.
        wanted: String,
        /// The type it has.
        actual: String,
    },

    /// A tensor name that is not there.
    #[error("no tensor named '{name}'")]
    MissingTensor {
        /// The name.
        name: String,
    },

    /// The call needs a context that allocates its tensors' memory.
    #[error("{what} needs an allocating context (this one is no_alloc)")]
    NoAllocContext {
        /// The call.
        what: &'static str,
    },

    /// An operation the backend does not offer (events on the CPU, ...).
    #[error("{backend} does not support {what}")]
    NotSupported {
        /// The backend or device.
        backend: String,
        /// The operation.
        what: &'static str,
    },

    /// A model file (or the options to run it) that the
    /// [`transformer`](crate::transformer) cannot run: another
    /// architecture, a missing tensor, a shape or hyperparameter out of
    /// range, tokens beyond the context.
    #[error("model: {item}: {reason}")]
    Model {
        /// The key, tensor or option at fault.
        item: String,
        /// What is wrong, with the values involved.
        reason: String,
    },

    /// An op's operands (or parameters) break a rule of the op: what its
    /// ggml builder asserts, or what its values must satisfy. Every op
    /// declared in [`crate::ops`] reports its rules through this variant.
    #[error(transparent)]
    Op(Box<OpError>),
}

/// The details of [`Error::Op`]: the op, its operands and the rule broken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{op}: {rule} (operands: {})", Operands(operands))]
pub struct OpError {
    /// The op, as this crate names it (`"rms_norm"`, `"rope_ext"`, ...).
    pub op: &'static str,
    /// The operands in order (type and ggml `ne`).
    pub operands: Vec<Operand>,
    /// The rule broken, in words, with the values involved.
    pub rule: String,
}

/// One operand of an op, as errors describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operand {
    /// Its type.
    pub ty: Type,
    /// Its `ne` (ggml's order, fastest-moving first).
    pub ne: [i64; 4],
}

impl std::fmt::Display for Operand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.ty, self.ne)
    }
}

/// Operands joined by commas (for [`OpError`]'s message).
struct Operands<'a>(&'a [Operand]);

impl std::fmt::Display for Operands<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, o) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            o.fmt(f)?;
        }
        Ok(())
    }
}

/// The details of [`Error::Layout`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{op}: '{name}' ({ty}, ne {ne:?}, byte strides {nb:?}, offset {offset}) has a layout ggml cannot use: {reason}")]
pub struct LayoutError {
    /// Operation.
    pub op: &'static str,
    /// Name of the tensor.
    pub name: String,
    /// Its type.
    pub ty: Type,
    /// Its ne (or the requested one).
    pub ne: [i64; 4],
    /// Its byte strides (or the requested ones).
    pub nb: [usize; 4],
    /// Byte offset (views), else 0.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// An I/O error inside [`Error::Io`]: the system's error, shared so that
/// [`Error`] stays `Clone`; equal when kind and message are.
#[derive(Debug, Clone)]
pub struct IoError(std::sync::Arc<std::io::Error>);

impl IoError {
    /// The system's error.
    pub fn get_ref(&self) -> &std::io::Error {
        &self.0
    }

    /// Its kind.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }
}

impl From<std::io::Error> for IoError {
    fn from(e: std::io::Error) -> Self {
        IoError(std::sync::Arc::new(e))
    }
}

impl PartialEq for IoError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, e: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source: e.into(),
        }
    }
}

/// The fallible conversion of a raw type value, here because the type table
/// (`types`) sits beneath this module and knows nothing of errors.
impl TryFrom<ggml_sys::ggml_type> for Type {
    type Error = Error;

    /// Converts a raw `ggml_type`; a value this crate does not know is an error.
    fn try_from(value: ggml_sys::ggml_type) -> Result<Self> {
        // A match, not `ok_or`: an eager error would be dropped (a call to
        // the error's drop glue) on every successful conversion.
        match Type::from_raw(value) {
            Some(ty) => Ok(ty),
            None => Err(Error::UnknownType(value)),
        }
    }
}
