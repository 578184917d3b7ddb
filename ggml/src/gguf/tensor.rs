//! [`TensorInfo`]: one tensor of a file, and its data as bytes, as a
//! zero-copy `ndarray` view, or as a converted (dequantized) copy.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::convert;
use crate::data::{convertible, f32_to_elements, is_float_element};
use crate::error::{Error, Result};
use crate::shape::{self, MAX_DIMS};
use crate::types::{Element, Type};

use super::read::{Index, TensorEntry};

/// One tensor of a GGUF file: name, type, shape and data, borrowing the
/// file (nothing taken from it outlives the [`Gguf`](super::Gguf)).
#[derive(Clone, Copy)]
pub struct TensorInfo<'a> {
    name: &'a str,
    ty: Type,
    ne: [i64; MAX_DIMS],
    n_dims: usize,
    offset: usize,
    /// The data; empty in an index read without it (`Gguf::read_index`).
    data: &'a [u8],
    /// `ggml_nbytes`.
    len: usize,
    shard: usize,
}

impl std::fmt::Debug for TensorInfo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorInfo")
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("shape", &self.shape())
            .field("offset", &self.offset)
            .field("bytes", &self.len)
            .finish()
    }
}

impl<'a> TensorInfo<'a> {
    pub(super) fn new(file: &'a [u8], e: &TensorEntry, shard: usize) -> Self {
        TensorInfo {
            name: Index::text(file, e.name_at, e.name_len),
            ty: e.ty,
            ne: e.ne,
            n_dims: e.n_dims,
            offset: e.start,
            data: file.get(e.start..e.start + e.bytes).unwrap_or(&[]),
            len: e.bytes,
            shard,
        }
    }

    /// Name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Type.
    pub fn ty(&self) -> Type {
        self.ty
    }

    /// Shape in ndarray order, with as many axes as the file gives
    /// dimensions (a `[rows, cols]` matrix has `ne = [cols, rows]`).
    pub fn shape(&self) -> Vec<usize> {
        shape::shape_from_ne(&self.ne, self.n_dims)
    }

    /// ggml's `ne` (fastest-moving first, 1 beyond the file's dimensions).
    pub fn ne(&self) -> [i64; MAX_DIMS] {
        self.ne
    }

    /// Dimensions as stored in the file (0 to 4).
    pub fn n_dims(&self) -> usize {
        self.n_dims
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.ne.iter().product::<i64>() as usize
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of the data from the start of its file.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Which file of a split model holds it (0 for a single file).
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Bytes of data (`ggml_nbytes`).
    pub fn byte_len(&self) -> usize {
        self.len
    }

    /// The data, as stored (any type).
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// A zero-copy view of a plain tensor (`T` of its type), borrowing the
    /// file.
    ///
    /// # Errors
    /// [`Error::ElementType`] when `T` is not the tensor's type (quantized
    /// tensors have no view: see [`TensorInfo::to_array`]);
    /// [`Error::Misaligned`] when the data is not aligned for `T` (a file
    /// whose `general.alignment` is smaller than `T`, or bytes given with
    /// [`Gguf::from_vec`](super::Gguf::from_vec)); [`Error::Backend`] on a
    /// big-endian machine.
    pub fn view<T: Element>(&self) -> Result<ArrayViewD<'a, T>> {
        if T::TYPE != self.ty {
            return Err(Error::ElementType {
                name: self.name.to_string(),
                expected: T::TYPE,
                actual: self.ty,
            });
        }
        if cfg!(target_endian = "big") {
            return Err(Error::Backend(
                "GGUF views need a little-endian machine".into(),
            ));
        }
        if self.len == 0 {
            return Ok(ArrayViewD::from_shape(IxDyn(&self.shape()), &[][..]).expect("empty"));
        }
        let ptr = self.data.as_ptr();
        if ptr.align_offset(std::mem::align_of::<T>()) != 0 {
            return Err(Error::Misaligned {
                address: ptr as usize,
                align: std::mem::align_of::<T>(),
            });
        }
        // Every bit pattern is a valid T (sealed plain number types).
        // SAFETY: `data` holds len() values of T (sized when the file was
        // opened), aligned (checked above), borrowed for 'a, never written.
        let values = unsafe {
            std::slice::from_raw_parts(ptr.cast::<T>(), self.data.len() / size_of::<T>())
        };
        Ok(ArrayViewD::from_shape(IxDyn(&self.shape()), values).expect("size checked"))
    }

    /// A copy as an ndarray of `E`: the same type copied, float and
    /// quantized types converted (dequantized on all cores, like
    /// [`convert::to_f32`]); integers only to their own type.
    ///
    /// # Errors
    /// [`Error::UnsupportedConversion`], [`Error::NotDequantizable`].
    pub fn to_array<E: Element>(&self) -> Result<ArrayD<E>> {
        let (from, to) = (self.ty, E::TYPE);
        let shape = IxDyn(&self.shape());
        if from == to {
            let n = self.len();
            let mut out = vec![E::default(); n];
            // SAFETY: `out` has room for exactly `data.len()` bytes (n values
            // of the tensor's own type); any bytes are a valid E; the
            // regions are distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.as_ptr(),
                    out.as_mut_ptr().cast::<u8>(),
                    self.data.len(),
                )
            };
            return Ok(ArrayD::from_shape_vec(shape, out).expect("size checked"));
        }
        if !convertible(from, to)
            || !is_float_element(to)
            || !(from.is_float() || from.is_quantized())
        {
            return Err(Error::UnsupportedConversion { from, to });
        }
        if !from.can_dequantize() && from.is_quantized() {
            return Err(Error::NotDequantizable { ty: from });
        }
        let mut values = vec![0f32; self.len()];
        // ggml's f16/bf16/block routines read typed values: bytes that are
        // not aligned for them go through an aligned copy.
        match convert::to_f32(from, self.data, &mut values) {
            Err(Error::Misaligned { .. }) => self.dequantize_via_copy(&mut values)?,
            r => r?,
        }
        Ok(ArrayD::from_shape_vec(shape, f32_to_elements::<E>(values)).expect("size checked"))
    }

    /// Converts through an aligned copy of the bytes.
    fn dequantize_via_copy(&self, out: &mut [f32]) -> Result<()> {
        // The same 8-byte-aligned storage a file read into memory gets.
        let copy = super::Source::aligned_copy(self.data);
        convert::to_f32(self.ty, copy.bytes(), out)
    }
}
