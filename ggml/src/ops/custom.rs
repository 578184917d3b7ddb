//! Custom ops: Rust closures as graph nodes (`ggml_custom_4d`,
//! `ggml_map_custom1/2/3`).
//!
//! The closure is `Fn(CustomCall) + Send + Sync + 'static`: the CPU backend
//! calls it from every graph thread that has work (up to the op's
//! [`Tasks`]), each time with that thread's share of the result's rows (rows
//! are ggml's dimensions 1 to 3 flattened) as an exclusive f32 view, and the
//! operands whole as shared f32 views. Shares never overlap and the operands
//! are never the result's memory (ggml computes custom ops out of place), so
//! the views alias nothing.
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
    /// `first_row + i` of the result.
    pub out: ArrayViewMut2<'a, f32>,
    /// The result's row that `out` starts at.
    pub first_row: usize,
    /// The operands, whole, in ndarray order.
    pub inputs: &'a [ArrayViewD<'a, f32>],
    /// This thread's number, `0..nth`.
    pub ith: usize,
    /// The number of threads running the op.
    pub nth: usize,
}

/// A closure of a custom op, owned by its context.
pub(crate) struct CustomFn {
    name: String,
    f: Box<dyn Fn(CustomCall<'_>) + Send + Sync>,
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
            op: self.name.clone(),
            message,
        })
    }
}

/// The declarations: `custom` (`ggml_custom_4d`) and `map_custom` (`ggml_map_custom1/2/3`).
/// Generic builder (for the fuzzer): `map_custom1` with a closure writing
/// each row's index, panicking on the thread of the first row when bit 1 of
/// `Params::flags` is set; `Params::i[0]` tasks (0: all).
pub(crate) const DECLS: &[Decl] = &[
    Decl {
        name: "custom",
        family: Family::Custom,
        builders: &["ggml_custom_4d"],
        op: ggml_sys::GGML_OP_CUSTOM,
        arity: 1,
        cpu: cpu_custom,
        build: |_, t, p| {
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
        builders: &["ggml_map_custom1", "ggml_map_custom2", "ggml_map_custom3"],
        op: ggml_sys::GGML_OP_MAP_CUSTOM1,
        arity: 1,
        cpu: cpu_custom,
        build: fuzz_build,
        ..BASE
    },
    Decl {
        name: "map_custom2",
        family: Family::Custom,
        op: ggml_sys::GGML_OP_MAP_CUSTOM2,
        arity: 2,
        cpu: cpu_custom,
        build: |_, t, p| t[0].map_custom2(t[1], tasks_of(p), fuzz_closure(p)),
        ..BASE
    },
    Decl {
        name: "map_custom3",
        family: Family::Custom,
        op: ggml_sys::GGML_OP_MAP_CUSTOM3,
        arity: 3,
        cpu: cpu_custom,
        build: |_, t, p| t[0].map_custom3(t[1], t[2], tasks_of(p), fuzz_closure(p)),
        ..BASE
    },
];

fn fuzz_build<'a>(_: &Decl, t: &[Tensor<'a>], p: &Params) -> Result<Tensor<'a>> {
    t[0].map_custom1(tasks_of(p), fuzz_closure(p))
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
        let userdata = self.keep_custom("custom", Box::new(f));
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
    fn keep_custom(&self, name: &str, f: Box<dyn Fn(CustomCall<'_>) + Send + Sync>) -> *mut c_void {
        let boxed = Box::new(CustomFn {
            name: name.to_owned(),
            f,
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
        map_custom(&[self], tasks, Box::new(f))
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
        map_custom(&[self, b], tasks, Box::new(f))
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
        map_custom(&[self, b, c], tasks, Box::new(f))
    }
}

/// Builds `ggml_map_custom1/2/3` of `operands`.
fn map_custom<'a>(
    operands: &[Tensor<'a>],
    tasks: Tasks,
    f: Box<dyn Fn(CustomCall<'_>) + Send + Sync>,
) -> Result<Tensor<'a>> {
    let rules = Rules::new("map_custom", operands)?;
    rules.require(operands.iter().all(viewable), || {
        "operands must be f32 with strides of whole elements".into()
    })?;
    let a = operands[0];
    rules.reserve_result(Type::F32, &a.ne(), None)?;
    let ctx = rules.context();
    let userdata = ctx.keep_custom("map_custom", f);
    let n = tasks.as_raw();
    let p = |i: usize| operands[i].as_ptr();
    // SAFETY: f32 operands of one context; room for the result (a's type and
    // shape) reserved; the trampolines and userdata live as long as the
    // context. The builders assert nothing.
    rules.wrap(unsafe {
        match operands.len() {
            1 => ggml_sys::ggml_map_custom1(ctx.as_ptr(), p(0), Some(trampoline_1), n, userdata),
            2 => ggml_sys::ggml_map_custom2(
                ctx.as_ptr(),
                p(0),
                p(1),
                Some(trampoline_2),
                n,
                userdata,
            ),
            _ => ggml_sys::ggml_map_custom3(
                ctx.as_ptr(),
                p(0),
                p(1),
                p(2),
                Some(trampoline_3),
                n,
                userdata,
            ),
        }
    })
}

unsafe extern "C" fn trampoline_4d(
    dst: *mut ggml_sys::ggml_tensor,
    ith: i32,
    nth: i32,
    userdata: *mut c_void,
) {
    // SAFETY: ggml passes the node and the userdata given when it was built.
    unsafe { run(dst, ith, nth, userdata) }
}

unsafe extern "C" fn trampoline_1(
    dst: *mut ggml_sys::ggml_tensor,
    _: *const ggml_sys::ggml_tensor,
    ith: i32,
    nth: i32,
    userdata: *mut c_void,
) {
    // SAFETY: as in `trampoline_4d` (the operands are the node's sources).
    unsafe { run(dst, ith, nth, userdata) }
}

unsafe extern "C" fn trampoline_2(
    dst: *mut ggml_sys::ggml_tensor,
    _: *const ggml_sys::ggml_tensor,
    _: *const ggml_sys::ggml_tensor,
    ith: i32,
    nth: i32,
    userdata: *mut c_void,
) {
    // SAFETY: as in `trampoline_4d`.
    unsafe { run(dst, ith, nth, userdata) }
}

unsafe extern "C" fn trampoline_3(
    dst: *mut ggml_sys::ggml_tensor,
    _: *const ggml_sys::ggml_tensor,
    _: *const ggml_sys::ggml_tensor,
    _: *const ggml_sys::ggml_tensor,
    ith: i32,
    nth: i32,
    userdata: *mut c_void,
) {
    // SAFETY: as in `trampoline_4d`.
    unsafe { run(dst, ith, nth, userdata) }
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
/// built, `userdata` a [`CustomFn`] its context keeps.
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
        let inputs: Vec<ArrayViewD<'_, f32>> = d
            .src
            .iter()
            .take_while(|s| !s.is_null())
            // SAFETY: sources of the node: f32 inputs checked when it was
            // built, read only while it computes.
            .filter_map(|&s| unsafe { input_view(s) })
            .collect();
        // SAFETY: the node is contiguous f32 (made by ggml for this op);
        // this thread's rows `first..last` are written by it alone (the
        // shares are disjoint), and no operand is the node's memory.
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
/// operands are f32 with strides of whole elements.
fn cpu_custom(node: &Tensor<'_>) -> std::result::Result<(), &'static str> {
    if node.ty() != Type::F32 || !node.is_contiguous() {
        return Err("a custom op's result must be contiguous f32");
    }
    for i in 0..ggml_sys::GGML_MAX_SRC as usize {
        if let Some(s) = node.src(i) {
            if !viewable(&s) {
                return Err("a custom op's operands must be f32 with strides of whole elements");
            }
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
