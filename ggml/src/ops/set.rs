//! Writing into a strided view of a tensor: `set` (copy `b` in) and `acc`
//! (add `b` in), with `_1d` and `_2d` shorthands and `_inplace` forms.
//!
//! The view is `b`'s shape with byte strides `nb1`, `nb2`, `nb3` (and
//! element stride 1) starting `offset` bytes into the tensor. Rules checked
//! here beyond ggml's builder: the whole view inside the tensor (ggml's
//! kernels check where the last element starts, not where it ends, and
//! store the strides as `int32`); strides and offset of whole elements; a
//! view whose elements do not share bytes (ggml's threads write them at
//! once); `b` of the tensor's type with dense rows, not sharing memory with
//! the tensor when in place. The CPU sets f32 and i32, and accumulates f32,
//! in contiguous tensors.

use crate::error::Result;
use crate::layout::Layout;
use crate::ops::{overlaps, Decl, Family, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// Where [`Tensor::set`] and [`Tensor::acc`] write: byte strides of `b`'s
/// dimensions 1 to 3 in the tensor, and the byte offset of its first
/// element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewAt {
    /// Byte strides of dimensions 1, 2, 3.
    pub nb: [usize; 3],
    /// Byte offset of the first element.
    pub offset: usize,
}

impl ViewAt {
    /// `t`'s own strides from dimension 2 on, row stride `nb1`, `offset`
    /// bytes in (the views of `ggml_set_1d` and `ggml_set_2d`).
    fn within(t: &Tensor<'_>, nb1: usize, offset: usize) -> ViewAt {
        let nb = t.nb();
        ViewAt {
            nb: [nb1, nb[2], nb[3]],
            offset,
        }
    }
}

/// The declarations. Generic builders: `Params::i` gives the view's
/// strides and offset; bit 0 in place.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "set",
        family: Family::Set,
        builders: &[
            "ggml_set",
            "ggml_set_inplace",
            "ggml_set_1d",
            "ggml_set_1d_inplace",
            "ggml_set_2d",
            "ggml_set_2d_inplace",
        ],
        op: ggml_sys::GGML_OP_SET,
        arity: 2,
        cpu: cpu_set,
        backward: true,
        build: |_, t, p| write(t[0], t[1], fuzz_view(p), false, p.inplace()),
        raw: |_, ctx, t, p| {
            let v = fuzz_view(p);
            let f = if p.inplace() {
                ggml_sys::ggml_set_inplace
            } else {
                ggml_sys::ggml_set
            };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { f(ctx, t[0], t[1], v.nb[0], v.nb[1], v.nb[2], v.offset) }
        },
        ..BASE
    },
    Decl {
        name: "acc",
        family: Family::Set,
        builders: &["ggml_acc", "ggml_acc_inplace"],
        op: ggml_sys::GGML_OP_ACC,
        arity: 2,
        cpu: cpu_set,
        backward: true,
        build: |_, t, p| write(t[0], t[1], fuzz_view(p), true, p.inplace()),
        raw: |_, ctx, t, p| {
            let v = fuzz_view(p);
            let f = if p.inplace() {
                ggml_sys::ggml_acc_inplace
            } else {
                ggml_sys::ggml_acc
            };
            // SAFETY: none (the fuzzer's raw direction).
            unsafe { f(ctx, t[0], t[1], v.nb[0], v.nb[1], v.nb[2], v.offset) }
        },
        ..BASE
    },
];

fn fuzz_view(p: &crate::ops::Params) -> ViewAt {
    ViewAt {
        nb: [p.i[0], p.i[1], p.i[2]].map(|n| n.unsigned_abs() as usize),
        offset: p.i[3].unsigned_abs() as usize,
    }
}

/// Builds `set` or `acc` (`add`) of `b` into `a` at `at`.
fn write<'a>(
    a: Tensor<'a>,
    b: Tensor<'a>,
    at: ViewAt,
    add: bool,
    inplace: bool,
) -> Result<Tensor<'a>> {
    let name = if add { "acc" } else { "set" };
    let operands = [a, b];
    let rules = Rules::new(name, &operands)?;
    let types: &[Type] = if add {
        &[Type::F32]
    } else {
        &[Type::F32, Type::I32]
    };
    rules.require(types.contains(&a.ty()) && b.ty() == a.ty(), || {
        format!(
            "{name} needs {} tensors of one type",
            if add { "f32" } else { "f32 or i32" }
        )
    })?;
    rules.require(a.is_contiguous() && b.rows_are_dense(), || {
        "a contiguous tensor and b with dense rows".into()
    })?;
    rules.require(b.len() <= a.len(), || {
        "b may not have more elements than the tensor".into()
    })?;
    let small = |n: usize| n < (1 << 30);
    rules.require(at.nb.iter().all(|&n| small(n) && n % 4 == 0) && small(at.offset) && at.offset % 4 == 0, || {
        format!("strides {:?} and offset {} must be whole elements below 2^30 (ggml stores them as int32)", at.nb, at.offset)
    })?;
    let view = Layout {
        ty: a.ty(),
        ne: b.ne(),
        nb: [4, at.nb[0], at.nb[1], at.nb[2]],
    };
    let end = view.span().and_then(|s| s.checked_add(at.offset));
    rules.require(b.is_empty() || end.is_some_and(|e| e <= a.nbytes()), || {
        format!("the view of b's shape at offset {} with strides {:?} must lie inside the tensor's {} bytes", at.offset, at.nb, a.nbytes())
    })?;
    rules.require(view.is_injective(), || {
        "the view's elements may not share bytes".into()
    })?;
    if inplace {
        rules.require(!overlaps(&b, &a), || {
            "in place, b must not share memory with the tensor".into()
        })?;
    }
    rules.reserve_result(a.ty(), &a.ne(), inplace.then_some(&a))?;
    let ctx = rules.context().as_ptr();
    let [nb1, nb2, nb3] = at.nb;
    let build: SetFn = match (add, inplace) {
        (false, false) => ggml_sys::ggml_set,
        (false, true) => ggml_sys::ggml_set_inplace,
        (true, false) => ggml_sys::ggml_acc,
        (true, true) => ggml_sys::ggml_acc_inplace,
    };
    // SAFETY: live contiguous tensors of one supported type; b's elements
    // fit (the builder's assertion) and its view lies inside the tensor,
    // with strides and offset ggml stores exactly; room reserved.
    rules.wrap(unsafe { build(ctx, a.as_ptr(), b.as_ptr(), nb1, nb2, nb3, at.offset) })
}

/// The signature of `ggml_set`, `ggml_acc` and their in-place forms.
type SetFn = unsafe extern "C" fn(
    *mut ggml_sys::ggml_context,
    *mut ggml_sys::ggml_tensor,
    *mut ggml_sys::ggml_tensor,
    usize,
    usize,
    usize,
    usize,
) -> *mut ggml_sys::ggml_tensor;

impl<'ctx> Tensor<'ctx> {
    /// This tensor with `b` copied into the view `at` (see the module docs).
    ///
    /// # Errors
    /// [`Error::Op`](crate::Error::Op) for the rules of the module docs;
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory).
    pub fn set(self, b: Tensor<'ctx>, at: ViewAt) -> Result<Tensor<'ctx>> {
        write(self, b, at, false, false)
    }

    /// [`Tensor::set`] in place.
    ///
    /// # Errors
    /// As [`Tensor::set`].
    pub fn set_inplace(self, b: Tensor<'ctx>, at: ViewAt) -> Result<Tensor<'ctx>> {
        write(self, b, at, false, true)
    }

    /// [`Tensor::set`] with this tensor's own strides, `offset` bytes in
    /// (`ggml_set_1d`).
    ///
    /// # Errors
    /// As [`Tensor::set`].
    pub fn set_1d(self, b: Tensor<'ctx>, offset: usize) -> Result<Tensor<'ctx>> {
        let at = ViewAt::within(&self, self.nb()[1], offset);
        write(self, b, at, false, false)
    }

    /// [`Tensor::set_1d`] in place.
    ///
    /// # Errors
    /// As [`Tensor::set`].
    pub fn set_1d_inplace(self, b: Tensor<'ctx>, offset: usize) -> Result<Tensor<'ctx>> {
        let at = ViewAt::within(&self, self.nb()[1], offset);
        write(self, b, at, false, true)
    }

    /// [`Tensor::set`] with row stride `nb1` and this tensor's other
    /// strides (`ggml_set_2d`).
    ///
    /// # Errors
    /// As [`Tensor::set`].
    pub fn set_2d(self, b: Tensor<'ctx>, nb1: usize, offset: usize) -> Result<Tensor<'ctx>> {
        let at = ViewAt::within(&self, nb1, offset);
        write(self, b, at, false, false)
    }

    /// [`Tensor::set_2d`] in place.
    ///
    /// # Errors
    /// As [`Tensor::set`].
    pub fn set_2d_inplace(
        self,
        b: Tensor<'ctx>,
        nb1: usize,
        offset: usize,
    ) -> Result<Tensor<'ctx>> {
        let at = ViewAt::within(&self, nb1, offset);
        write(self, b, at, false, true)
    }

    /// This tensor with `b` added into the view `at` (f32).
    ///
    /// # Errors
    /// As [`Tensor::set`].
    pub fn acc(self, b: Tensor<'ctx>, at: ViewAt) -> Result<Tensor<'ctx>> {
        write(self, b, at, true, false)
    }

    /// [`Tensor::acc`] in place.
    ///
    /// # Errors
    /// As [`Tensor::set`].
    pub fn acc_inplace(self, b: Tensor<'ctx>, at: ViewAt) -> Result<Tensor<'ctx>> {
        write(self, b, at, true, true)
    }
}

/// The CPU's `set` and `acc`: contiguous f32 (or i32 for `set`) tensors of
/// one type and shape, `b` with dense rows, the view inside the tensor.
fn cpu_set(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    let [a, b] = crate::ops::sources::<2>(node)?;
    let types: &[Type] = if node.op() == ggml_sys::GGML_OP_ACC {
        &[Type::F32]
    } else {
        &[Type::F32, Type::I32]
    };
    if !types.contains(&a.ty()) || b.ty() != a.ty() || node.ty() != a.ty() || node.ne() != a.ne() {
        return Err("the CPU sets f32 or i32 and accumulates f32, of one type and shape");
    }
    if !a.is_contiguous() || !node.is_contiguous() || !b.rows_are_dense() {
        return Err("contiguous tensors and b with dense rows");
    }
    let p = node.op_params();
    if p[..4].iter().any(|&v| v < 0) {
        return Err("strides and offset at least 0");
    }
    let view = Layout {
        ty: a.ty(),
        ne: b.ne(),
        nb: [4, p[0] as usize, p[1] as usize, p[2] as usize],
    };
    let inside = view
        .span()
        .and_then(|s| s.checked_add(p[3] as usize))
        .is_some_and(|e| e <= a.nbytes());
    if !b.is_empty() && (!inside || !view.is_injective()) {
        return Err("the view must lie inside the tensor without sharing bytes");
    }
    Ok(())
}
