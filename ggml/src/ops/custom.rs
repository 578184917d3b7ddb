//! Custom ops: Rust closures as graph nodes (`ggml_custom_4d`,
//! `ggml_map_custom1/2/3`, and their in-place forms `ggml_custom_inplace`,
//! `ggml_map_custom1/2/3_inplace`).
//!
//! The closure is `Fn(CustomCall) + Send + Sync + 'static`: the CPU backend
//! calls it from every graph thread that has work (up to the op's
//! [`Tasks`]), each time with that thread's share of the result's rows (rows
//! are ggml's dimensions 1 to 3 flattened) as an exclusive f32 view, and the
//! operands whole as shared f32 views. Shares never overlap, so the views
//! alias nothing:
//! - out of place, the result is new memory (zeros until written) and no
//!   operand is in it;
//! - in place, the result is the first operand's memory: `out` holds that
//!   operand's values when the closure starts, and the operand is *not*
//!   among `inputs` (other threads write its other rows meanwhile). It must
//!   be contiguous (the rows are handed out densely), and the other operands
//!   must share no byte with it (they are read whole while its rows are
//!   written; the operand itself as another input included).
//!
//! A panic is caught on the thread that raised it, the other threads finish,
//! and once ggml has returned the computation is
//! [`Error::CustomOpPanicked`]: nothing
//! unwinds into C. The context keeps the closure alive as long as any of its
//! graphs can run it (its own lifetime). Only the CPU runs Rust closures:
//! other backends (the RPC backend would ship a function pointer to another
//! process) refuse the node when computing.
//!
//! Types: f32 results and operands (of any strides in whole elements).

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use ndarray::{ArrayViewD, ArrayViewMut2, IxDyn, ShapeBuilder};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::{Decl, Family, Params, Rules, BASE};
use crate::tensor::Tensor;
use crate::types::Type;

/// How many graph threads run a custom op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tasks {
    /// Every thread of the computation.
    #[default]
    All,
    /// At most this many (fewer when the computation has fewer threads).
    Exactly(NonZeroUsize),
}

impl Tasks {
    fn as_raw(self) -> i32 {
        match self {
            Tasks::All => ggml_sys::GGML_N_TASKS_MAX,
            Tasks::Exactly(n) => n.get().min(i32::MAX as usize) as i32,
        }
    }
}

/// One thread's call of a custom op's closure.
#[derive(Debug)]
pub struct CustomCall<'a> {
    /// This thread's rows of the result: `[rows, ne0]`, row `i` being row
    /// `first_row + i` of the result. In place, they hold the first
    /// operand's values when the call starts.
    pub out: ArrayViewMut2<'a, f32>,
    /// The result's row that `out` starts at.
    pub first_row: usize,
    /// The operands, whole, in ndarray order; in place, all but the first
    /// (whose rows are `out`).
    pub inputs: &'a [ArrayViewD<'a, f32>],
    /// This thread's number, `0..nth`.
    pub ith: usize,
    /// The number of threads running the op.
    pub nth: usize,
}

/// The closure type custom ops keep.
type Closure = Box<dyn Fn(CustomCall<'_>) + Send + Sync>;

/// A closure of a custom op, owned by its context.
pub(crate) struct CustomFn {
    name: &'static str,
    f: Closure,
    /// Whether the node computes in place: its first source is its own
    /// memory, handed out as `out`, not as an input.
    inplace: bool,
    /// The first panic of a computation.
    panic: Mutex<Option<String>>,
}

impl crate::context::Kept for CustomFn {
    /// Takes the panic a computation left, as an error.
    fn take_error(&self) -> Option<Error> {
        let message = self
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(Error::CustomOpPanicked {
            op: self.name.to_owned(),
            message,
        })
    }
}

/// The declarations: `custom` (`ggml_custom_4d`, `ggml_custom_inplace`) and
/// `map_custom` (`ggml_map_custom1/2/3` and their in-place forms).
/// Generic builders (for the fuzzer): the op with a closure writing each
/// row's index, panicking on the thread of the first row when bit 1 of
/// `Params::flags` is set; bit 0 selects the in-place form; `Params::i[3]`
/// tasks (0: all); `custom`'s shape from `Params::i[0..2]`.
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "custom",
        family: Family::Custom,
        builders: &["ggml_custom_4d", "ggml_custom_inplace"],
        op: ggml_sys::GGML_OP_CUSTOM,
        arity: 1,
        cpu: cpu_custom,
        build: |_, t, p| {
            if p.inplace() {
                return t[0].custom_inplace(&[], tasks_of(p), fuzz_closure(p));
            }
            let shape: Vec<usize> =
                p.i.iter()
                    .take(2)
                    .map(|&n| n.unsigned_abs().min(64) as usize)
                    .collect();
            t[0].context()
                .custom(&shape, &t[..1], tasks_of(p), fuzz_closure(p))
        },
        ..BASE
    },
    Decl {
        name: "map_custom",
        family: Family::Custom,
        builders: &[
            "ggml_map_custom1",
            "ggml_map_custom2",
            "ggml_map_custom3",
            "ggml_map_custom1_inplace",
            "ggml_map_custom2_inplace",
            "ggml_map_custom3_inplace",
        ],
        op: ggml_sys::GGML_OP_MAP_CUSTOM1,
        arity: 1,
        cpu: cpu_custom,
        build: |_, t, p| fuzz_map(&t[..1], p),
        ..BASE
    },
    Decl {
        name: "map_custom2",
        family: Family::Custom,
        op: ggml_sys::GGML_OP_MAP_CUSTOM2,
        arity: 2,
        cpu: cpu_custom,
        build: |_, t, p| fuzz_map(&t[..2], p),
        ..BASE
    },
    Decl {
        name: "map_custom3",
        family: Family::Custom,
        op: ggml_sys::GGML_OP_MAP_CUSTOM3,
        arity: 3,
        cpu: cpu_custom,
        build: |_, t, p| fuzz_map(&t[..3], p),
        ..BASE
    },
];

/// The fuzzer's `map_custom1/2/3` (by operand count), in place when bit 0
/// of `Params::flags` is set.
fn fuzz_map<'a>(t: &[Tensor<'a>], p: &Params) -> Result<Tensor<'a>> {
    map_custom(t, tasks_of(p), Box::new(fuzz_closure(p)), p.inplace())
}

/// The fuzzer's task count: `Params::i[3]` (0: all).
fn tasks_of(p: &Params) -> Tasks {
    NonZeroUsize::new(p.i[3].unsigned_abs().min(64) as usize).map_or(Tasks::All, Tasks::Exactly)
}

/// The fuzzer's closure: reads every input whole and writes each row's
/// index, panicking on the thread of the first row when bit 1 of
/// `Params::flags` is set.
fn fuzz_closure(p: &Params) -> impl Fn(CustomCall<'_>) + Send + Sync + 'static {
    let panics = p.flag(1);
    move |call| {
        if panics && call.first_row == 0 {
            panic!("asked to");
        }
        let seen = call
            .inputs
            .iter()
            .map(|a| a.iter().filter(|v| v.is_nan()).count())
            .sum::<usize>();
        let first = call.first_row;
        let mut out = call.out;
        for (i, mut row) in out.outer_iter_mut().enumerate() {
            row.fill((first + i + seen.min(1)) as f32);
        }
    }
}

/// Whether `t` can be an operand: f32 with strides of whole elements.
fn viewable(t: &Tensor<'_>) -> bool {
    t.ty() == Type::F32 && t.nb().iter().all(|&s| s % 4 == 0)
}

/// Whether `a` and `b` share a byte of memory (the same tensor included):
/// the memory of views is placed by their root's.
fn shares_memory(a: &Tensor<'_>, b: &Tensor<'_>) -> bool {
    let ((ra, oa), (rb, ob)) = (a.memory_root(), b.memory_root());
    if ra != rb || a.is_empty() || b.is_empty() {
        return false;
    }
    oa < ob.saturating_add(b.nbytes()) && ob < oa.saturating_add(a.nbytes())
}

/// Checks the in-place rules of a custom op writing `a` (a contiguous
/// result that no other operand in `others` shares memory with), and
/// reserves the view of `a` that is its result.
fn reserve_in_place<'a>(
    rules: &Rules<'_, 'a>,
    a: &Tensor<'a>,
    others: &[Tensor<'a>],
) -> Result<()> {
    rules.require(a.is_contiguous(), || {
        "in place, the first operand must be contiguous (the closure gets its rows densely)".into()
    })?;
    rules.require(!others.iter().any(|b| shares_memory(a, b)), || {
        "in place, no other operand may share memory with the first (they are read whole while its rows are written)"
            .into()
    })?;
    rules.reserve_result(Type::F32, &a.ne(), Some(a))
}

impl Context {
    /// A custom op computing an f32 tensor of `shape` (ndarray order) from
    /// `inputs` (f32, at most 9) with the closure `f` (see the module docs).
    ///
    /// # Errors
    /// [`Error::Op`] for more than 9 inputs or inputs that are not f32 with
    /// strides of whole elements; [`Error::InvalidShape`],
    /// [`Error::OutOfMemory`], [`Error::WrongContext`].
    pub fn custom<'a, F>(
        &'a self,
        shape: &[usize],
        inputs: &[Tensor<'a>],
        tasks: Tasks,
        f: F,
    ) -> Result<Tensor<'a>>
    where
        F: Fn(CustomCall<'_>) + Send + Sync + 'static,
    {
        let ne = crate::shape::ne_from_shape(shape)?;
        for t in inputs {
            self.owns(t, "an operand")?;
        }
        let rules = Rules::new("custom", inputs)?;
        rules.require(inputs.len() < ggml_sys::GGML_MAX_SRC as usize, || {
            format!("at most {} operands", ggml_sys::GGML_MAX_SRC - 1)
        })?;
        rules.require(inputs.iter().all(viewable), || {
            "operands must be f32 with strides of whole elements".into()
        })?;
        self.reserve_tensor("custom", Type::F32, &ne)?;
        let userdata = self.keep_custom("custom", Box::new(f), false);
        let mut args: Vec<*mut ggml_sys::ggml_tensor> = inputs.iter().map(Tensor::as_ptr).collect();
        // SAFETY: operands of this context, fewer than GGML_MAX_SRC (ggml's
        // assertion); a valid f32 shape with room reserved; the trampoline
        // and its userdata live as long as the context.
        self.wrap(unsafe {
            ggml_sys::ggml_custom_4d(
                self.as_ptr(),
                Type::F32.as_raw(),
                ne[0],
                ne[1],
                ne[2],
                ne[3],
                args.as_mut_ptr(),
                args.len() as i32,
                Some(trampoline_4d),
                tasks.as_raw(),
                userdata,
            )
        })
    }

    /// Keeps `f` for as long as the context lives; its address is the
    /// trampolines' userdata.
    fn keep_custom(&self, name: &'static str, f: Closure, inplace: bool) -> *mut c_void {
        let boxed = Box::new(CustomFn {
            name,
            f,
            inplace,
            panic: Mutex::new(None),
        });
        let ptr = &*boxed as *const CustomFn as *mut c_void;
        self.kept.borrow_mut().push(boxed);
        ptr
    }

    /// The first panic a custom op of this context left, as an error.
    pub(crate) fn take_custom_panic(&self) -> Option<Error> {
        self.kept.borrow().iter().find_map(|c| c.take_error())
    }
}

impl<'ctx> Tensor<'ctx> {
    /// A custom op of this tensor (`ggml_map_custom1`): an f32 result of its
    /// shape, computed by `f` (see the module docs).
    ///
    /// # Errors
    /// [`Error::Op`] unless this tensor is f32 with strides of whole
    /// elements; [`Error::OutOfMemory`].
    pub fn map_custom1<F>(self, tasks: Tasks, f: F) -> Result<Tensor<'ctx>>
    where
        F: Fn(CustomCall<'_>) + Send + Sync + 'static,
    {
        map_custom(&[self], tasks, Box::new(f), false)
    }

    /// A custom op of this tensor and `b` (`ggml_map_custom2`): an f32
    /// result of this tensor's shape.
    ///
    /// # Errors
    /// As [`Tensor::map_custom1`], for both operands.
    pub fn map_custom2<F>(self, b: Tensor<'ctx>, tasks: Tasks, f: F) -> Result<Tensor<'ctx>>
    where
        F: Fn(CustomCall<'_>) + Send + Sync + 'static,
    {
        map_custom(&[self, b], tasks, Box::new(f), false)
    }

    /// A custom op of this tensor, `b` and `c` (`ggml_map_custom3`): an f32
    /// result of this tensor's shape.
    ///
    /// # Errors
    /// As [`Tensor::map_custom1`], for the three operands.
    pub fn map_custom3<F>(
        self,
        b: Tensor<'ctx>,
        c: Tensor<'ctx>,
        tasks: Tasks,
        f: F,
    ) -> Result<Tensor<'ctx>>
    where
        F: Fn(CustomCall<'_>) + Send + Sync + 'static,
    {
        map_custom(&[self, b, c], tasks, Box::new(f), false)
    }

    /// [`Tensor::map_custom1`] in place (`ggml_map_custom1_inplace`): the
    /// result is this tensor's memory, `out` holding its values when `f`
    /// starts, and `inputs` empty (see the module docs).
    ///
    /// # Errors
    /// [`Error::Op`] unless this tensor is contiguous f32;
    /// [`Error::OutOfMemory`].
    pub fn map_custom1_inplace<F>(self, tasks: Tasks, f: F) -> Result<Tensor<'ctx>>
    where
        F: Fn(CustomCall<'_>) + Send + Sync + 'static,
    {
        map_custom(&[self], tasks, Box::new(f), true)
    }

    /// [`Tensor::map_custom2`] in place (`ggml_map_custom2_inplace`): the
    /// result is this tensor's memory, `out` holding its values when `f`
    /// starts, and `inputs` is `[b]`.
    ///
    /// # Errors
    /// [`Error::Op`] unless this tensor is contiguous f32 and `b` f32 with
    /// strides of whole elements, sharing no memory with this tensor (nor
    /// being it); [`Error::OutOfMemory`].
    pub fn map_custom2_inplace<F>(self, b: Tensor<'ctx>, tasks: Tasks, f: F) -> Result<Tensor<'ctx>>
    where
        F: Fn(CustomCall<'_>) + Send + Sync + 'static,
    {
        map_custom(&[self, b], tasks, Box::new(f), true)
    }

    /// [`Tensor::map_custom3`] in place (`ggml_map_custom3_inplace`): the
    /// result is this tensor's memory, `out` holding its values when `f`
    /// starts, and `inputs` is `[b, c]`.
    ///
    /// # Errors
    /// As [`Tensor::map_custom2_inplace`], for `b` and `c`.
    pub fn map_custom3_inplace<F>(
        self,
        b: Tensor<'ctx>,
        c: Tensor<'ctx>,
        tasks: Tasks,
        f: F,
    ) -> Result<Tensor<'ctx>>
    where
        F: Fn(CustomCall<'_>) + Send + Sync + 'static,
    {
        map_custom(&[self, b, c], tasks, Box::new(f), true)
    }

    /// A custom op computing this tensor in place from `inputs` (f32, at
    /// most 8) with the closure `f` (`ggml_custom_inplace`): the result is
    /// this tensor's memory, `out` holding its values when `f` starts, and
    /// `inputs` the closure's inputs (see the module docs).
    ///
    /// # Errors
    /// [`Error::Op`] for more than 8 inputs, inputs that are not f32 with
    /// strides of whole elements or share memory with this tensor, or this
    /// tensor not contiguous f32; [`Error::OutOfMemory`],
    /// [`Error::WrongContext`].
    pub fn custom_inplace<F>(
        self,
        inputs: &[Tensor<'ctx>],
        tasks: Tasks,
        f: F,
    ) -> Result<Tensor<'ctx>>
    where
        F: Fn(CustomCall<'_>) + Send + Sync + 'static,
    {
        let operands: Vec<Tensor<'ctx>> = std::iter::once(self)
            .chain(inputs.iter().copied())
            .collect();
        let rules = Rules::new("custom_inplace", &operands)?;
        // ggml keeps the tensor in src[0] and the inputs after it.
        rules.require(operands.len() < ggml_sys::GGML_MAX_SRC as usize, || {
            format!("at most {} inputs", ggml_sys::GGML_MAX_SRC - 2)
        })?;
        rules.require(operands.iter().all(viewable), || {
            "operands must be f32 with strides of whole elements".into()
        })?;
        reserve_in_place(&rules, &self, inputs)?;
        let ctx = rules.context();
        let userdata = ctx.keep_custom("custom_inplace", Box::new(f), true);
        let mut args: Vec<*mut ggml_sys::ggml_tensor> = inputs.iter().map(Tensor::as_ptr).collect();
        // Preconditions: operands of this context, fewer than GGML_MAX_SRC - 1
        // inputs (ggml's assertion); a contiguous f32 tensor whose view is
        // the result (room reserved), no input sharing its memory; the
        // trampoline and its userdata live as long as the context.
        // SAFETY: every precondition named just above is met.
        rules.wrap(unsafe {
            ggml_sys::ggml_custom_inplace(
                ctx.as_ptr(),
                self.as_ptr(),
                args.as_mut_ptr(),
                args.len() as i32,
                Some(trampoline_4d),
                tasks.as_raw(),
                userdata,
            )
        })
    }
}

/// Builds `ggml_map_custom1/2/3` of `operands` (one to three), or their
/// in-place forms.
fn map_custom<'a>(
    operands: &[Tensor<'a>],
    tasks: Tasks,
    f: Closure,
    inplace: bool,
) -> Result<Tensor<'a>> {
    let op = if inplace {
        "map_custom_inplace"
    } else {
        "map_custom"
    };
    let rules = Rules::new(op, operands)?;
    rules.require(operands.iter().all(viewable), || {
        "operands must be f32 with strides of whole elements".into()
    })?;
    let a = operands[0];
    if inplace {
        reserve_in_place(&rules, &a, &operands[1..])?;
    } else {
        rules.reserve_result(Type::F32, &a.ne(), None)?;
    }
    let ctx = rules.context();
    let userdata = ctx.keep_custom(op, f, inplace);
    let (c, n) = (ctx.as_ptr(), tasks.as_raw());
    let p = |i: usize| operands[i].as_ptr();
    use ggml_sys as g;
    // Preconditions: f32 operands of one context; room for the result (a's type and
    // shape, or in place a view of contiguous `a` that no other operand
    // shares memory with) reserved; the trampolines and userdata live as
    // long as the context. The builders assert only the task count, which
    // `Tasks` keeps positive or GGML_N_TASKS_MAX.
    // SAFETY: every precondition named just above is met.
    rules.wrap(unsafe {
        match operands.len() {
            1 => {
                let build = if inplace {
                    g::ggml_map_custom1_inplace
                } else {
                    g::ggml_map_custom1
                };
                build(c, p(0), Some(trampoline_1), n, userdata)
            }
            2 => {
                let build = if inplace {
                    g::ggml_map_custom2_inplace
                } else {
                    g::ggml_map_custom2
                };
                build(c, p(0), p(1), Some(trampoline_2), n, userdata)
            }
            _ => {
                let build = if inplace {
                    g::ggml_map_custom3_inplace
                } else {
                    g::ggml_map_custom3
                };
                build(c, p(0), p(1), p(2), Some(trampoline_3), n, userdata)
            }
        }
    })
}

/// The C callbacks ggml calls, one per signature (`ggml_custom_op_t`,
/// `ggml_custom1/2/3_op_t`): each ignores the operands it is passed (they
/// are the node's sources, which [`run`] reads) and runs the node's closure.
macro_rules! trampolines {
    ($($name:ident($($src:ident),*);)*) => {$(
        unsafe extern "C" fn $name(
            dst: *mut ggml_sys::ggml_tensor,
            $($src: *const ggml_sys::ggml_tensor,)*
            ith: i32,
            nth: i32,
            userdata: *mut c_void,
        ) {
            $(let _ = $src;)*
            // SAFETY: ggml passes the node and the userdata given when it
            // was built (a custom node of this module).
            unsafe { run(dst, ith, nth, userdata) }
        }
    )*};
}

trampolines! {
    trampoline_4d();
    trampoline_1(a);
    trampoline_2(a, b);
    trampoline_3(a, b, c);
}

/// A shared f32 view of `t`'s data.
///
/// # Safety
/// `t` is a live f32 tensor with data, strides of whole elements (checked
/// when the op was built), not written during `'a`.
unsafe fn input_view<'a>(t: *const ggml_sys::ggml_tensor) -> Option<ArrayViewD<'a, f32>> {
    // SAFETY: the caller's contract.
    let t = unsafe { &*t };
    let dims = (0..4).rev().map(|i| t.ne[i] as usize).collect::<Vec<_>>();
    let strides = (0..4).rev().map(|i| t.nb[i] / 4).collect::<Vec<_>>();
    let span = if dims.contains(&0) {
        0
    } else {
        1 + dims
            .iter()
            .zip(&strides)
            .map(|(&d, &s)| (d - 1) * s)
            .sum::<usize>()
    };
    let data = t.data.cast::<f32>();
    if span > 0 && (data.is_null() || data as usize % 4 != 0) {
        return None;
    }
    let slice: &[f32] = if span == 0 {
        &[]
    } else {
        // SAFETY: `span` elements of the tensor's data (ggml keeps a
        // tensor's span inside its buffer), aligned, unwritten meanwhile.
        unsafe { std::slice::from_raw_parts(data, span) }
    };
    let strides = if span == 0 { vec![0; 4] } else { strides };
    ArrayViewD::from_shape(IxDyn(&dims).strides(IxDyn(&strides)), slice).ok()
}

/// One thread's share of a custom op: views made, the closure called, a
/// panic caught.
///
/// # Safety
/// Called by ggml's CPU backend on a custom node this module built: `dst` a
/// live contiguous f32 tensor with data, its sources f32 inputs checked when
/// built (in place, the first source being `dst`'s memory and no other
/// sharing it), `userdata` a [`CustomFn`] its context keeps.
unsafe fn run(dst: *mut ggml_sys::ggml_tensor, ith: i32, nth: i32, userdata: *mut c_void) {
    // SAFETY: the caller's contract: the context owns the closure.
    let custom = unsafe { &*(userdata as *const CustomFn) };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: a live node (the caller's contract).
        let d = unsafe { &*dst };
        let ne0 = d.ne[0] as usize;
        let rows = (d.ne[1] * d.ne[2] * d.ne[3]) as usize;
        let (ith, nth) = (ith.max(0) as usize, nth.max(1) as usize);
        let per = rows.div_ceil(nth);
        let first = (per * ith).min(rows);
        let last = (first + per).min(rows);
        if first == last || ne0 == 0 {
            return;
        }
        // In place, the first source is the node's own memory: it is `out`,
        // not an input.
        let inputs: Vec<ArrayViewD<'_, f32>> = d
            .src
            .iter()
            .take_while(|s| !s.is_null())
            .skip(usize::from(custom.inplace))
            // SAFETY: sources of the node: f32 inputs checked when it was
            // built, read only while it computes (none is its memory).
            .filter_map(|&s| unsafe { input_view(s) })
            .collect();
        // Preconditions: the node is contiguous f32 (made by ggml for this op, or
        // in place a view of a contiguous f32 operand); this thread's rows
        // `first..last` are accessed by it alone (the shares are disjoint),
        // and no input shares the node's memory.
        // SAFETY: every precondition named just above is met.
        let out = unsafe {
            std::slice::from_raw_parts_mut(
                d.data.cast::<f32>().add(first * ne0),
                (last - first) * ne0,
            )
        };
        let out = ArrayViewMut2::from_shape((last - first, ne0), out).expect("rows of ne0 values");
        (custom.f)(CustomCall {
            out,
            first_row: first,
            inputs: &inputs,
            ith,
            nth,
        });
    }));
    if let Err(payload) = outcome {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let mut slot = custom.panic.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(message);
    }
}

/// The CPU runs custom ops whose result is contiguous f32 and whose
/// operands are f32 with strides of whole elements; in place (the node a
/// view), the first operand is exactly the node's memory and no other
/// operand shares it.
fn cpu_custom(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    if node.ty() != Type::F32 || !node.is_contiguous() {
        return Err("a custom op's result must be contiguous f32");
    }
    let sources: Vec<Tensor<'_>> = (0..ggml_sys::GGML_MAX_SRC as usize)
        .filter_map(|i| node.src(i))
        .collect();
    if !sources.iter().all(viewable) {
        return Err("a custom op's operands must be f32 with strides of whole elements");
    }
    if node.memory_root().0 != *node {
        let a = sources
            .first()
            .ok_or("an in-place custom op has its operand")?;
        if a.memory_root() != node.memory_root() || a.layout() != node.layout() {
            return Err("an in-place custom op's result must be its first operand's memory");
        }
        if sources[1..].iter().any(|b| shares_memory(a, b)) {
            return Err("an in-place custom op's other operands must not share its memory");
        }
    }
    Ok(())
}

/// Whether `op` runs a Rust closure (only the CPU can).
pub(crate) fn is_custom(op: ggml_sys::ggml_op) -> bool {
    matches!(
        op,
        ggml_sys::GGML_OP_CUSTOM
            | ggml_sys::GGML_OP_MAP_CUSTOM1
            | ggml_sys::GGML_OP_MAP_CUSTOM2
            | ggml_sys::GGML_OP_MAP_CUSTOM3
    )
}
