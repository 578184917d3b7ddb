//! [`TensorData`]: the one token per context through which tensor data is
//! viewed (zero-copy `ndarray` views, strided where the tensor is), copied to
//! and from ndarrays (converting and (de)quantizing), copied between tensors,
//! and computed.
//!
//! Borrowing rules, enforced by the compiler: a view borrows the token (shared
//! for [`TensorData::view`], exclusive for [`TensorData::view_mut`]), and
//! computing a graph or writing a tensor borrows it exclusively. So no safe
//! code can hold two mutable views, a view across a computation, or a view
//! after the context is gone.

use std::borrow::Cow;

use half::{bf16, f16};
use ndarray::{
    ArrayBase, ArrayD, ArrayView, ArrayViewMut, Data, DataMut, Dimension, IxDyn, ShapeBuilder,
};

mod io;

use crate::context::Context;
use crate::convert;
use crate::error::{Error, Result};
use crate::shape::{self, MAX_DIMS};
use crate::tensor::Tensor;
use crate::types::{Element, Type};

/// Access to the data of a context's tensors. Get it with [`Context::data`].
pub struct TensorData<'ctx> {
    ctx: &'ctx Context,
}

impl Drop for TensorData<'_> {
    fn drop(&mut self) {
        self.ctx.release_data();
    }
}

impl std::fmt::Debug for TensorData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorData")
            .field("ctx", &self.ctx)
            .finish()
    }
}

/// ndarray shape and element strides of `t` with `rank` axes, for elements of
/// `elem_size` bytes.
fn layout(t: &Tensor<'_>, rank: usize, elem_size: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    let (ne, nb) = (t.ne(), t.nb());
    let used = t.n_dims();
    if rank < used || rank > MAX_DIMS {
        return Err(Error::InvalidShape {
            shape: t.shape(),
            reason: format!("cannot be seen with {rank} axes (it has {used}; at most {MAX_DIMS})"),
        });
    }
    let shape = shape::shape_from_ne(&ne, rank);
    let mut strides = Vec::with_capacity(rank);
    for i in (0..rank).rev() {
        if nb[i] % elem_size != 0 {
            return Err(Error::Stride {
                stride: nb[i],
                elem_size,
            });
        }
        strides.push(nb[i] / elem_size);
    }
    Ok((shape, strides))
}

/// Elements a strided layout spans: 1 + Σ (dim − 1) · stride (0 if empty).
fn span(shape: &[usize], strides: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    1 + shape
        .iter()
        .zip(strides)
        .map(|(&d, &s)| (d - 1) * s)
        .sum::<usize>()
}

fn check_element<T: Element>(t: &Tensor<'_>, base: *mut u8) -> Result<()> {
    let ty = t.ty();
    if ty.is_quantized() {
        return Err(Error::QuantizedView { name: t.name(), ty });
    }
    if ty != T::TYPE {
        return Err(Error::ElementType {
            name: t.name(),
            expected: T::TYPE,
            actual: ty,
        });
    }
    let (address, align) = (base as usize, std::mem::align_of::<T>());
    if address % align != 0 {
        return Err(Error::Misaligned { address, align });
    }
    Ok(())
}

fn view_error(t: &Tensor<'_>, err: ndarray::ShapeError) -> Error {
    Error::InvalidShape {
        shape: t.shape(),
        reason: format!("not expressible as an ndarray view: {err}"),
    }
}

/// Shape, element strides and element span of a view of `t` as `T`s with
/// `rank` axes, after checking the data is there and is of type `T`.
fn checked_layout<T: Element>(
    t: &Tensor<'_>,
    base: *mut u8,
    rank: usize,
) -> Result<(Vec<usize>, Vec<usize>, usize)> {
    check_element::<T>(t, base)?;
    let (shape, mut strides) = layout(t, rank, std::mem::size_of::<T>())?;
    if shape.contains(&0) {
        // Nothing to reach: ndarray checks the strides of the other axes
        // against the (empty) slice.
        strides.fill(0);
    }
    let len = span(&shape, &strides);
    Ok((shape, strides, len))
}

/// A shared view with `rank` axes. Caller guarantees no exclusive access to
/// the tensor's bytes for `'a`.
///
/// # Safety
/// The tensor's data must not be written during `'a`.
unsafe fn raw_view<'a, T: Element>(
    t: &Tensor<'_>,
    base: *mut u8,
    rank: usize,
) -> Result<ArrayView<'a, T, IxDyn>> {
    let (shape, strides, len) = checked_layout::<T>(t, base, rank)?;
    // SAFETY: the data is host memory of at least `len` elements (ggml keeps a
    // tensor's span inside its buffer), aligned for T (checked), and not
    // written during 'a (caller).
    let slice = unsafe { std::slice::from_raw_parts(base.cast::<T>(), len) };
    ArrayView::from_shape(IxDyn(&shape).strides(IxDyn(&strides)), slice)
        .map_err(|e| view_error(t, e))
}

/// An exclusive view with `rank` axes.
///
/// # Safety
/// No other access to the tensor's bytes during `'a`.
unsafe fn raw_view_mut<'a, T: Element>(
    t: &Tensor<'_>,
    base: *mut u8,
    rank: usize,
) -> Result<ArrayViewMut<'a, T, IxDyn>> {
    let (shape, strides, len) = checked_layout::<T>(t, base, rank)?;
    // SAFETY: as in `raw_view`, and exclusive (caller); ndarray rejects strides
    // under which two indices would alias.
    let slice = unsafe { std::slice::from_raw_parts_mut(base.cast::<T>(), len) };
    ArrayViewMut::from_shape(IxDyn(&shape).strides(IxDyn(&strides)), slice)
        .map_err(|e| view_error(t, e))
}

/// The bytes of `t`'s data, which must be contiguous.
///
/// # Safety
/// No write to the bytes during `'a`.
unsafe fn raw_bytes<'a>(t: &Tensor<'_>, base: *mut u8) -> &'a [u8] {
    // SAFETY: contiguous host data of `nbytes` bytes (caller checked).
    unsafe { std::slice::from_raw_parts(base, t.nbytes()) }
}

/// # Safety
/// No other access to the bytes during `'a`.
unsafe fn raw_bytes_mut<'a>(t: &Tensor<'_>, base: *mut u8) -> &'a mut [u8] {
    // SAFETY: contiguous host data of `nbytes` bytes, exclusive (caller).
    unsafe { std::slice::from_raw_parts_mut(base, t.nbytes()) }
}

/// Byte offsets of every row (`ne[0]` values) of `t`, in ndarray (row-major) order.
fn row_offsets(t: &Tensor<'_>) -> impl Iterator<Item = usize> {
    let (ne, nb) = (t.ne(), t.nb());
    (0..ne[3] as usize).flat_map(move |i3| {
        (0..ne[2] as usize).flat_map(move |i2| {
            (0..ne[1] as usize).map(move |i1| i1 * nb[1] + i2 * nb[2] + i3 * nb[3])
        })
    })
}

/// Reads every element of `t` as f32, in ndarray order.
///
/// # Safety
/// No write to the tensor's bytes during the call.
unsafe fn read_f32(t: &Tensor<'_>, base: *mut u8) -> Result<Vec<f32>> {
    let ty = t.ty();
    if !(ty.is_float() || ty.is_quantized()) {
        return Err(Error::UnsupportedConversion {
            from: ty,
            to: Type::F32,
        });
    }
    let mut out = vec![0f32; t.len()];
    if t.is_contiguous() {
        // SAFETY: contiguous host data, not written meanwhile (caller).
        convert::to_f32(ty, unsafe { raw_bytes(t, base) }, &mut out)?;
    } else if t.rows_are_dense() {
        let row_len = t.ne()[0] as usize;
        let row_size = ty.row_bytes(row_len);
        for (row, offset) in out.chunks_mut(row_len.max(1)).zip(row_offsets(t)) {
            // SAFETY: each row is `row_size` dense bytes inside the tensor.
            let bytes = unsafe { std::slice::from_raw_parts(base.add(offset), row_size) };
            convert::to_f32(ty, bytes, row)?;
        }
    } else {
        // A transposed float tensor: gather through a strided view.
        match ty {
            Type::F32 => {
                // SAFETY: not written meanwhile (caller).
                out.copy_from_slice(&standard(unsafe { raw_view::<f32>(t, base, MAX_DIMS)? }))
            }
            Type::F16 => convert::f16_to_f32(
                // SAFETY: not written meanwhile (the caller's contract).
                &standard(unsafe { raw_view::<f16>(t, base, MAX_DIMS)? }),
                &mut out,
            ),
            Type::BF16 => convert::bf16_to_f32(
                // SAFETY: not written meanwhile (the caller's contract).
                &standard(unsafe { raw_view::<bf16>(t, base, MAX_DIMS)? }),
                &mut out,
            ),
            _ => return Err(t.not_contiguous("reading")),
        }
    }
    Ok(out)
}

/// The elements of a view in ndarray order, as one slice (copied if needed).
fn standard<T: Clone>(view: ArrayView<'_, T, IxDyn>) -> Vec<T> {
    view.as_standard_layout().iter().cloned().collect()
}

/// Writes f32 values (ndarray order) into `t`, converting or quantizing.
///
/// # Safety
/// No other access to the tensor's bytes during the call.
unsafe fn write_f32(
    t: &Tensor<'_>,
    base: *mut u8,
    src: &[f32],
    imatrix: Option<&[f32]>,
) -> Result<()> {
    let ty = t.ty();
    if !(ty.is_float() || ty.is_quantized()) {
        return Err(Error::UnsupportedConversion {
            from: Type::F32,
            to: ty,
        });
    }
    let row_len = t.ne()[0] as usize;
    convert::check_quantizable(ty, row_len, imatrix)?;
    if t.is_contiguous() {
        // SAFETY: contiguous host data, exclusive (caller).
        return convert::from_f32(ty, src, unsafe { raw_bytes_mut(t, base) }, row_len, imatrix);
    }
    if t.rows_are_dense() {
        let row_size = ty.row_bytes(row_len);
        for (row, offset) in src.chunks(row_len.max(1)).zip(row_offsets(t)) {
            // SAFETY: each row is `row_size` dense bytes inside the tensor, exclusive.
            let bytes = unsafe { std::slice::from_raw_parts_mut(base.add(offset), row_size) };
            convert::from_f32(ty, row, bytes, row_len, imatrix)?;
        }
        return Ok(());
    }
    let shape = shape::shape_from_ne(&t.ne(), MAX_DIMS);
    fn as_array<T>(shape: &[usize], v: Vec<T>) -> ndarray::ArrayD<T> {
        ndarray::Array::from_shape_vec(IxDyn(shape), v).expect("length matches")
    }
    match ty {
        // SAFETY: exclusive (caller).
        Type::F32 => unsafe { raw_view_mut::<f32>(t, base, MAX_DIMS)? }
            .assign(&as_array(&shape, src.to_vec())),
        Type::F16 => {
            let mut h = vec![f16::ZERO; src.len()];
            convert::f32_to_f16(src, &mut h);
            // SAFETY: exclusive access (the caller's contract).
            unsafe { raw_view_mut::<f16>(t, base, MAX_DIMS)? }.assign(&as_array(&shape, h));
        }
        Type::BF16 => {
            let mut h = vec![bf16::ZERO; src.len()];
            convert::f32_to_bf16(src, &mut h);
            // SAFETY: exclusive access (the caller's contract).
            unsafe { raw_view_mut::<bf16>(t, base, MAX_DIMS)? }.assign(&as_array(&shape, h));
        }
        _ => return Err(t.not_contiguous("writing")),
    }
    Ok(())
}

/// The values of an ndarray of a float element type as f32, in ndarray order.
fn array_to_f32<E: Element, S: Data<Elem = E>, D: Dimension>(
    src: &ArrayBase<S, D>,
) -> Result<Cow<'_, [f32]>> {
    if E::TYPE == Type::F32 {
        if let Some(slice) = src.as_slice() {
            // SAFETY: E is f32 (its sealed TYPE says so): borrow, no copy.
            return Ok(Cow::Borrowed(unsafe {
                std::slice::from_raw_parts(slice.as_ptr().cast(), slice.len())
            }));
        }
    }
    let standard = src.as_standard_layout();
    let slice = standard.as_slice().expect("standard layout");
    let mut out = vec![0f32; slice.len()];
    match E::TYPE {
        Type::F32 => {
            // SAFETY: E is f32 (its TYPE says so and Element is sealed).
            out.copy_from_slice(unsafe {
                std::slice::from_raw_parts(slice.as_ptr().cast(), slice.len())
            })
        }
        Type::F16 => convert::f16_to_f32(
            // SAFETY: E is f16 per its sealed TYPE.
            unsafe { std::slice::from_raw_parts(slice.as_ptr().cast(), slice.len()) },
            &mut out,
        ),
        Type::BF16 => convert::bf16_to_f32(
            // SAFETY: E is bf16 per its sealed TYPE.
            unsafe { std::slice::from_raw_parts(slice.as_ptr().cast(), slice.len()) },
            &mut out,
        ),
        Type::F64 => {
            // SAFETY: E is f64 per its sealed TYPE.
            let s: &[f64] =
                unsafe { std::slice::from_raw_parts(slice.as_ptr().cast(), slice.len()) };
            out.iter_mut().zip(s).for_each(|(o, &v)| *o = v as f32);
        }
        _ => unreachable!("integer arrays are rejected before"),
    }
    Ok(Cow::Owned(out))
}

/// f32 values converted to `E` (a float element type); f32 itself is moved,
/// not copied.
pub(crate) fn f32_to_elements<E: Element>(mut src: Vec<f32>) -> Vec<E> {
    if let Some(same) = (&mut src as &mut dyn std::any::Any).downcast_mut::<Vec<E>>() {
        return std::mem::take(same);
    }
    let mut out = vec![E::default(); src.len()];
    match E::TYPE {
        Type::F16 => convert::f32_to_f16(
            &src,
            // SAFETY: E is f16 per its sealed TYPE.
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len()) },
        ),
        // SAFETY: E is bf16 per its sealed TYPE.
        Type::BF16 => convert::f32_to_bf16(&src, unsafe {
            std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len())
        }),
        Type::F64 => {
            let o: &mut [f64] =
                // SAFETY: E is f64 per its sealed TYPE.
                unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len()) };
            o.iter_mut().zip(&src).for_each(|(o, &v)| *o = f64::from(v));
        }
        _ => unreachable!("f32 is moved above; integer arrays are rejected before"),
    }
    out
}

pub(crate) fn is_float_element(ty: Type) -> bool {
    matches!(ty, Type::F32 | Type::F16 | Type::BF16 | Type::F64)
}

/// Whether values of `from` may be converted to `to` (beyond equal types):
/// between float types (f64 included) and quantized ones; integers only to
/// their own type.
pub(crate) fn convertible(from: Type, to: Type) -> bool {
    let floaty = |t: Type| is_float_element(t) || t.is_quantized();
    from == to || (floaty(from) && floaty(to))
}

/// Copies `src` into a fresh or exclusively held tensor `t`.
///
/// # Safety
/// No other access to `t`'s bytes during the call.
unsafe fn write_array<E: Element, S: Data<Elem = E>, D: Dimension>(
    t: &Tensor<'_>,
    base: *mut u8,
    src: &ArrayBase<S, D>,
    imatrix: Option<&[f32]>,
) -> Result<()> {
    if shape::ne_from_shape(src.shape())? != t.ne() {
        return Err(Error::ShapeMismatch {
            op: "copy from ndarray",
            lhs: src.shape().to_vec(),
            rhs: t.shape(),
        });
    }
    let (from, to) = (E::TYPE, t.ty());
    if from == to {
        check_element::<E>(t, base)?;
        if let (Some(s), true) = (src.as_slice(), t.is_contiguous()) {
            // SAFETY: contiguous, aligned (checked), exclusive (caller); same
            // element type and count.
            let dst = unsafe { std::slice::from_raw_parts_mut(base.cast::<E>(), s.len()) };
            dst.copy_from_slice(s);
        } else {
            let mut source = src.view().into_dyn();
            if source.ndim() == 0 {
                source = source.insert_axis(ndarray::Axis(0));
            }
            // SAFETY: exclusive (caller); same padded shape (checked above).
            unsafe { raw_view_mut::<E>(t, base, source.ndim())? }.assign(&source);
        }
        return Ok(());
    }
    if !convertible(from, to) || !is_float_element(from) || (to == Type::F64 && from != Type::F64) {
        return Err(Error::UnsupportedConversion { from, to });
    }
    let values = array_to_f32(src)?;
    // SAFETY: exclusive (caller).
    unsafe { write_f32(t, base, &values, imatrix) }
}

impl Context {
    /// The context's data access token, through which tensor data is viewed,
    /// copied and computed.
    ///
    /// There is one per context at a time: while it lives, a second call
    /// returns [`Error::DataBorrowed`].
    ///
    /// # Errors
    /// [`Error::DataBorrowed`] while another token of this context exists.
    pub fn data(&self) -> Result<TensorData<'_>> {
        if !self.take_data() {
            return Err(Error::DataBorrowed);
        }
        Ok(TensorData { ctx: self })
    }
}

impl<'ctx> TensorData<'ctx> {
    /// The context whose data this is.
    pub fn context(&self) -> &'ctx Context {
        self.ctx
    }

    fn check(&self, t: &Tensor<'_>) -> Result<()> {
        self.ctx.owns(t, "the tensor")
    }

    /// A zero-copy view of `t` with [`Tensor::n_dims`] axes, strided as the
    /// tensor is (a permuted or transposed tensor is a strided view).
    ///
    /// Views reach memory the context owns: its arena, or host memory of a
    /// backend buffer it owns ([`Context::allocate`] with the CPU's buffer
    /// type). Device memory, and compute memory an allocator lends, are
    /// reached by copies ([`TensorData::to_array`]).
    ///
    /// # Errors
    /// [`Error::QuantizedView`] for quantized tensors (use
    /// [`TensorData::to_array`]), [`Error::ElementType`] when `T` is not the
    /// tensor's type, [`Error::NotViewable`], [`Error::NoData`],
    /// [`Error::WrongContext`].
    pub fn view<T: Element>(&self, t: Tensor<'ctx>) -> Result<ArrayView<'_, T, IxDyn>> {
        self.view_as::<T, IxDyn>(t)
    }

    /// A zero-copy view with the dimensionality `D` (leading axes of length 1
    /// are added up to `D`'s rank; `IxDyn` means [`Tensor::n_dims`] axes).
    ///
    /// # Errors
    /// As [`TensorData::view`], plus [`Error::InvalidShape`] when `D` has fewer
    /// axes than the tensor uses.
    pub fn view_as<T: Element, D: Dimension>(
        &self,
        t: Tensor<'ctx>,
    ) -> Result<ArrayView<'_, T, D>> {
        self.check(&t)?;
        let base = self.ctx.pinned(|| io::viewable(self.ctx, &t))?;
        let rank = D::NDIM.unwrap_or_else(|| t.n_dims());
        // SAFETY: memory the context owns, freed only with it; `&self`
        // borrows the context's only token shared for the view's lifetime,
        // so nothing writes tensor data meanwhile.
        let view = unsafe { raw_view::<T>(&t, base, rank)? };
        Ok(view.into_dimensionality::<D>().expect("rank matches"))
    }

    /// A zero-copy mutable view of `t` with [`Tensor::n_dims`] axes.
    ///
    /// # Errors
    /// As [`TensorData::view`].
    pub fn view_mut<T: Element>(&mut self, t: Tensor<'ctx>) -> Result<ArrayViewMut<'_, T, IxDyn>> {
        self.view_mut_as::<T, IxDyn>(t)
    }

    /// A zero-copy mutable view with the dimensionality `D`.
    ///
    /// # Errors
    /// As [`TensorData::view_as`].
    pub fn view_mut_as<T: Element, D: Dimension>(
        &mut self,
        t: Tensor<'ctx>,
    ) -> Result<ArrayViewMut<'_, T, D>> {
        self.check(&t)?;
        let base = self.ctx.pinned(|| io::viewable(self.ctx, &t))?;
        let rank = D::NDIM.unwrap_or_else(|| t.n_dims());
        // SAFETY: memory the context owns; `&mut self` borrows the context's
        // only token exclusively for the view's lifetime: no other view or
        // computation exists meanwhile.
        let view = unsafe { raw_view_mut::<T>(&t, base, rank)? };
        Ok(view.into_dimensionality::<D>().expect("rank matches"))
    }

    /// The raw bytes of a contiguous tensor (any type, quantized included),
    /// in memory the context owns (as for [`TensorData::view`]).
    ///
    /// # Errors
    /// [`Error::NotContiguous`], [`Error::NotViewable`], [`Error::NoData`],
    /// [`Error::WrongContext`].
    pub fn bytes(&self, t: Tensor<'ctx>) -> Result<&[u8]> {
        self.check(&t)?;
        if !t.is_contiguous() {
            return Err(t.not_contiguous("bytes"));
        }
        let base = self.ctx.pinned(|| io::viewable(self.ctx, &t))?;
        // SAFETY: owned memory; shared borrow of the token: no writer meanwhile.
        Ok(unsafe { raw_bytes(&t, base) })
    }

    /// The raw bytes of a contiguous tensor, writable.
    ///
    /// # Errors
    /// As [`TensorData::bytes`].
    pub fn bytes_mut(&mut self, t: Tensor<'ctx>) -> Result<&mut [u8]> {
        self.check(&t)?;
        if !t.is_contiguous() {
            return Err(t.not_contiguous("bytes_mut"));
        }
        let base = self.ctx.pinned(|| io::viewable(self.ctx, &t))?;
        // SAFETY: owned memory; exclusive borrow of the token.
        Ok(unsafe { raw_bytes_mut(&t, base) })
    }

    /// A copy of the raw bytes of a contiguous tensor, wherever it is
    /// (device memory included).
    ///
    /// # Errors
    /// [`Error::NotContiguous`], [`Error::NoData`], [`Error::WrongContext`].
    pub fn read_bytes(&self, t: Tensor<'ctx>) -> Result<Vec<u8>> {
        self.check(&t)?;
        if !t.is_contiguous() {
            return Err(t.not_contiguous("read_bytes"));
        }
        self.ctx.pinned(|| {
            io::read(self.ctx, &t, |base| {
                // SAFETY: shared token borrow: no writer meanwhile.
                Ok(unsafe { raw_bytes(&t, base) }.to_vec())
            })
        })
    }

    /// Overwrites the raw bytes of a contiguous tensor, wherever it is.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] unless `bytes` is as long as the tensor,
    /// [`Error::NotContiguous`], [`Error::NoData`], [`Error::WrongContext`].
    pub fn write_bytes(&mut self, t: Tensor<'ctx>, bytes: &[u8]) -> Result<()> {
        self.check(&t)?;
        if !t.is_contiguous() {
            return Err(t.not_contiguous("write_bytes"));
        }
        if bytes.len() != t.nbytes() {
            return Err(Error::LengthMismatch {
                what: "write_bytes",
                expected: t.nbytes(),
                actual: bytes.len(),
            });
        }
        self.ctx.pinned(|| {
            io::write(self.ctx, &t, |base| {
                // SAFETY: exclusive token borrow; same length.
                unsafe { raw_bytes_mut(&t, base) }.copy_from_slice(bytes);
                Ok(())
            })
        })
    }

    /// A copy of `t` as an ndarray of `E` with [`Tensor::n_dims`] axes,
    /// dequantizing quantized tensors and converting between float types
    /// (f32, f16, bf16, f64). Integer tensors convert only to their own type.
    /// Works wherever the tensor is (device memory included).
    ///
    /// # Errors
    /// [`Error::UnsupportedConversion`], [`Error::NotDequantizable`],
    /// [`Error::NoData`], [`Error::WrongContext`].
    pub fn to_array<E: Element>(&self, t: Tensor<'ctx>) -> Result<ArrayD<E>> {
        self.to_array_as::<E, IxDyn>(t)
    }

    /// A copy of `t` as an ndarray of `E` with dimensionality `D`.
    ///
    /// # Errors
    /// As [`TensorData::to_array`], plus [`Error::InvalidShape`].
    pub fn to_array_as<E: Element, D: Dimension>(
        &self,
        t: Tensor<'ctx>,
    ) -> Result<ndarray::Array<E, D>> {
        self.check(&t)?;
        let rank = D::NDIM.unwrap_or_else(|| t.n_dims());
        let (from, to) = (t.ty(), E::TYPE);
        if from != to {
            if !convertible(from, to) || !is_float_element(to) {
                return Err(Error::UnsupportedConversion { from, to });
            }
            if from.is_quantized() && !from.can_dequantize() {
                return Err(Error::NotDequantizable { ty: from });
            }
        }
        if rank < t.n_dims() || rank > MAX_DIMS {
            return Err(Error::InvalidShape {
                shape: t.shape(),
                reason: format!("cannot be seen with {rank} axes"),
            });
        }
        let shape = shape::shape_from_ne(&t.ne(), rank);
        let array = self.ctx.pinned(|| {
            io::read(self.ctx, &t, |base| {
                if from == to {
                    // SAFETY: shared token borrow: no writer meanwhile; the
                    // view is dropped before `base` is.
                    let v = unsafe { raw_view::<E>(&t, base, t.n_dims())? };
                    v.as_standard_layout()
                        .into_owned()
                        .into_shape_with_order(IxDyn(&shape))
                        .map_err(|e| view_error(&t, e))
                } else {
                    // SAFETY: as above.
                    let values = unsafe { read_f32(&t, base)? };
                    Ok(
                        ArrayD::from_shape_vec(IxDyn(&shape), f32_to_elements::<E>(values))
                            .expect("length matches"),
                    )
                }
            })
        })?;
        Ok(array.into_dimensionality::<D>().expect("rank matches"))
    }

    /// Copies `t` into `out` (same shape up to leading axes of length 1),
    /// converting like [`TensorData::to_array`].
    ///
    /// # Errors
    /// As [`TensorData::to_array`], plus [`Error::ShapeMismatch`].
    pub fn copy_to_array<E: Element, S: DataMut<Elem = E>, D: Dimension>(
        &self,
        t: Tensor<'ctx>,
        out: &mut ArrayBase<S, D>,
    ) -> Result<()> {
        self.check(&t)?;
        if shape::ne_from_shape(out.shape())? != t.ne() {
            return Err(Error::ShapeMismatch {
                op: "copy to ndarray",
                lhs: t.shape(),
                rhs: out.shape().to_vec(),
            });
        }
        // Fast paths: a contiguous tensor into a dense array, without a
        // whole-tensor temporary (for host memory).
        if t.is_contiguous() && !t.is_empty() {
            if let Some(dst) = out.as_slice_mut() {
                let same = t.ty() == E::TYPE;
                let to_f32 = E::TYPE == Type::F32 && (t.ty().is_float() || t.ty().can_dequantize());
                if same || to_f32 {
                    return self.ctx.pinned(|| {
                        io::read(self.ctx, &t, |base| {
                            if same {
                                check_element::<E>(&t, base)?;
                                // SAFETY: contiguous, aligned (checked), of
                                // type E; no writer meanwhile (shared token).
                                let src = unsafe {
                                    std::slice::from_raw_parts(base.cast::<E>(), dst.len())
                                };
                                dst.copy_from_slice(src);
                                return Ok(());
                            }
                            // SAFETY: E is f32 (sealed TYPE).
                            let dst: &mut [f32] = unsafe {
                                std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast(), dst.len())
                            };
                            // SAFETY: no writer meanwhile (shared token).
                            convert::to_f32(t.ty(), unsafe { raw_bytes(&t, base) }, dst)
                        })
                    });
                }
            }
        }
        let rank = out.ndim().max(t.n_dims());
        let copy = self.to_array_as::<E, IxDyn>(t)?;
        let copy = copy
            .into_shape_with_order(IxDyn(&shape::shape_from_ne(&t.ne(), rank)))
            .map_err(|e| view_error(&t, e))?;
        let out_shape = out.shape().to_vec();
        out.assign(
            &copy
                .into_shape_with_order(IxDyn(&out_shape))
                .map_err(|e| view_error(&t, e))?
                .into_dimensionality::<D>()
                .expect("rank"),
        );
        Ok(())
    }

    /// Copies an ndarray (any layout) into `t` (same shape up to leading axes
    /// of length 1), converting between float types and quantizing when `t` is
    /// quantized. Integer arrays go only into tensors of their own type.
    /// Works wherever the tensor is (device memory included).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`], [`Error::UnsupportedConversion`],
    /// [`Error::BlockSize`], [`Error::RequiresImatrix`], [`Error::NoData`],
    /// [`Error::WrongContext`].
    pub fn copy_from_array<E: Element, S: Data<Elem = E>, D: Dimension>(
        &mut self,
        t: Tensor<'ctx>,
        src: &ArrayBase<S, D>,
    ) -> Result<()> {
        self.check(&t)?;
        self.ctx.pinned(|| {
            io::write(self.ctx, &t, |base| {
                // SAFETY: exclusive borrow of the token.
                unsafe { write_array(&t, base, src, None) }
            })
        })
    }

    /// Like [`TensorData::copy_from_array`], quantizing with an importance
    /// matrix (one weight per value of a row), as some types require.
    ///
    /// # Errors
    /// As [`TensorData::copy_from_array`], plus [`Error::ImatrixLength`].
    pub fn quantize_from_array_with_imatrix<S: Data<Elem = f32>, D: Dimension>(
        &mut self,
        t: Tensor<'ctx>,
        src: &ArrayBase<S, D>,
        imatrix: &[f32],
    ) -> Result<()> {
        self.check(&t)?;
        self.ctx.pinned(|| {
            io::write(self.ctx, &t, |base| {
                // SAFETY: exclusive borrow of the token.
                unsafe { write_array(&t, base, src, Some(imatrix)) }
            })
        })
    }

    /// Copies tensor `src` into tensor `dst` of the same shape, converting and
    /// (de)quantizing like the ndarray copies. Copying between two different
    /// quantized types requantizes and needs `allow_requantize`. Copying a
    /// tensor to itself does nothing.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`], [`Error::RequantizeNotAllowed`],
    /// [`Error::UnsupportedConversion`], [`Error::NoData`], [`Error::WrongContext`].
    pub fn copy_tensor(
        &mut self,
        src: Tensor<'ctx>,
        dst: Tensor<'ctx>,
        allow_requantize: bool,
    ) -> Result<()> {
        self.check(&src)?;
        self.check(&dst)?;
        if src.ne() != dst.ne() {
            return Err(Error::ShapeMismatch {
                op: "copy_tensor",
                lhs: src.shape(),
                rhs: dst.shape(),
            });
        }
        let (from, to) = (src.ty(), dst.ty());
        if from == to {
            if from.is_quantized() && !(src.rows_are_dense() && dst.rows_are_dense()) {
                return Err(src.not_contiguous("copy_tensor"));
            }
        } else {
            if from.is_quantized() && to.is_quantized() && !allow_requantize {
                return Err(Error::RequantizeNotAllowed { from, to });
            }
            let floaty = |t: Type| t.is_float() || t.is_quantized();
            if !(floaty(from) && floaty(to)) {
                return Err(Error::UnsupportedConversion { from, to });
            }
        }
        let ctx = self.ctx;
        ctx.pinned(|| {
            // Both must have memory, even when nothing is copied.
            io::located(ctx, &src)?;
            io::located(ctx, &dst)?;
            if src == dst || src.is_empty() {
                return Ok(());
            }
            if from == to {
                // Gather into a buffer first: src and dst may be views of one another.
                let unit = if from.is_quantized() {
                    from.row_bytes(src.ne()[0] as usize)
                } else {
                    from.type_size()
                };
                // SAFETY: exclusive token; reads complete before writes begin.
                let buffer = io::read(ctx, &src, |base| Ok(unsafe { gather(&src, base, unit) }))?;
                io::write(ctx, &dst, |base| {
                    // SAFETY: exclusive token; as many units as gathered.
                    unsafe { scatter(&dst, base, unit, &buffer) };
                    Ok(())
                })
            } else {
                // SAFETY: exclusive token; the f32 copy is complete before writing.
                let values = io::read(ctx, &src, |base| unsafe { read_f32(&src, base) })?;
                // SAFETY: exclusive token.
                io::write(ctx, &dst, |base| unsafe {
                    write_f32(&dst, base, &values, None)
                })
            }
        })
    }
}

/// Copies the units (elements, or whole rows for quantized types) of `t` out in
/// ndarray order.
///
/// # Safety
/// No write to `t`'s bytes during the call.
unsafe fn gather(t: &Tensor<'_>, base: *mut u8, unit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.nbytes());
    let (ne, nb) = (t.ne(), t.nb());
    let per_row = if t.ty().is_quantized() {
        1
    } else {
        ne[0] as usize
    };
    for offset in row_offsets(t) {
        for i0 in 0..per_row {
            // SAFETY: in-bounds unit of the tensor's data.
            let p = unsafe { base.add(offset + i0 * nb[0]) };
            // SAFETY: `unit` bytes from `p` are inside the tensor's data.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(p, unit) });
        }
    }
    out
}

/// Writes units produced by [`gather`] into `t`.
///
/// # Safety
/// No other access to `t`'s bytes during the call.
unsafe fn scatter(t: &Tensor<'_>, base: *mut u8, unit: usize, data: &[u8]) {
    let (ne, nb) = (t.ne(), t.nb());
    let per_row = if t.ty().is_quantized() {
        1
    } else {
        ne[0] as usize
    };
    let mut chunks = data.chunks(unit);
    for offset in row_offsets(t) {
        for i0 in 0..per_row {
            let chunk = chunks.next().expect("as many units as gathered");
            // SAFETY: in-bounds unit of the tensor's data, exclusive.
            unsafe {
                std::ptr::copy_nonoverlapping(chunk.as_ptr(), base.add(offset + i0 * nb[0]), unit)
            };
        }
    }
}

impl Context {
    /// A new tensor of `E`'s type holding a copy of `src` (any layout).
    ///
    /// # Errors
    /// [`Error::InvalidShape`], [`Error::OutOfMemory`], [`Error::NoData`]
    /// (in a `no_alloc` context).
    pub fn tensor_from_array<E: Element, S: Data<Elem = E>, D: Dimension>(
        &self,
        src: &ArrayBase<S, D>,
    ) -> Result<Tensor<'_>> {
        self.tensor_from_array_as(E::TYPE, src)
    }

    /// A new tensor of type `ty` holding `src` converted or quantized.
    ///
    /// # Errors
    /// As [`Context::tensor_from_array`], plus those of
    /// [`TensorData::copy_from_array`].
    pub fn tensor_from_array_as<E: Element, S: Data<Elem = E>, D: Dimension>(
        &self,
        ty: Type,
        src: &ArrayBase<S, D>,
    ) -> Result<Tensor<'_>> {
        let t = self.new_tensor(ty, src.shape())?;
        if self.is_no_alloc() && !t.is_empty() {
            return Err(Error::NoData { name: t.name() });
        }
        // SAFETY: `t` is brand new, in the arena: no view of its bytes can
        // exist.
        unsafe { write_array(&t, t.data_ptr(), src, None)? };
        Ok(t)
    }
}
