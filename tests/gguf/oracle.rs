//! ggml's own reader as the reference: what `gguf_init_from_buffer` (with
//! `no_alloc` and no context, its only mode safe on untrusted input) reads
//! from a file, in the same form as what ours reads, to compare.

use std::ffi::CStr;

use ggml::gguf::{ArrayValue, Gguf, Problem, Value, ValueType};
use ggml::sys;
use ggml::Error;

/// A file as a reader sees it: every key with its value, every tensor.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub version: u32,
    pub alignment: usize,
    pub data_offset: usize,
    pub kvs: Vec<(String, String)>,
    /// name, type id, ne, offset relative to the data section, bytes
    pub tensors: Vec<(String, u32, [i64; 4], usize, usize)>,
}

/// Every element of a value, recursively (Display shortens arrays).
pub fn full(v: &Value<'_>) -> String {
    full_cut(v, false)
}

/// As [`full`], strings cut at their first NUL when `c_strings` (what
/// ggml's accessors, which return C strings, can show).
fn full_cut(v: &Value<'_>, c_strings: bool) -> String {
    match v {
        Value::Array(a) => format!(
            "{}[{}]",
            a.elem_type(),
            a.iter()
                .map(|e| full_cut(&e, c_strings))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::String(s) if c_strings => {
            let cut = s.split('\0').next().unwrap_or("");
            format!("string:{}", Value::from(cut))
        }
        v => format!("{}:{v}", v.value_type()),
    }
}

/// What our reader read.
pub fn ours(g: &Gguf) -> Summary {
    ours_cut(g, false)
}

/// What our reader read, as ggml's C accessors would show it.
pub fn ours_as_c(g: &Gguf) -> Summary {
    ours_cut(g, true)
}

fn ours_cut(g: &Gguf, c_strings: bool) -> Summary {
    Summary {
        version: g.version(),
        alignment: g.alignment(),
        data_offset: g.data_offset(),
        kvs: g
            .metadata()
            .map(|(k, v)| (k.to_string(), full_cut(&v, c_strings)))
            .collect(),
        tensors: g
            .tensors()
            .map(|t| {
                (
                    t.name().to_string(),
                    t.ty().as_raw(),
                    t.ne(),
                    t.offset() - g.data_offset(),
                    t.byte_len(),
                )
            })
            .collect(),
    }
}

fn arr<T: ggml::gguf::ArrayElement>(ctx: *const sys::gguf_context, id: i64) -> Value<'static> {
    // SAFETY: `id` is an array of T's type (checked by the caller); ggml
    // returns a pointer to n elements.
    unsafe {
        let n = sys::gguf_get_arr_n(ctx, id);
        if n == 0 {
            return Value::Array(ArrayValue::new::<T>(&[]));
        }
        let p = sys::gguf_get_arr_data(ctx, id).cast::<T>();
        Value::Array(ArrayValue::new(std::slice::from_raw_parts(p, n)))
    }
}

/// What ggml reads, or `None` when it refuses the file.
pub fn ggml(bytes: &[u8]) -> Option<Summary> {
    if bytes.is_empty() {
        return None;
    }
    silence_ggml();
    // Preconditions: a live buffer; no_alloc with a NULL context, ggml's mode that
    // neither aborts nor allocates from declared sizes; every accessor is
    // called with an id below its count and a type ggml just reported; the
    // context is freed once.
    // SAFETY: every precondition named just above is met.
    unsafe {
        let ctx = sys::gguf_init_from_buffer(
            bytes.as_ptr().cast(),
            bytes.len(),
            sys::gguf_init_params {
                no_alloc: true,
                ctx: std::ptr::null_mut(),
            },
        );
        if ctx.is_null() {
            return None;
        }
        let mut kvs = Vec::new();
        for id in 0..sys::gguf_get_n_kv(ctx) {
            let key = CStr::from_ptr(sys::gguf_get_key(ctx, id))
                .to_string_lossy()
                .into_owned();
            let ty = ValueType::from_raw(sys::gguf_get_kv_type(ctx, id) as i32).unwrap();
            let v: Value<'static> = match ty {
                ValueType::U8 => sys::gguf_get_val_u8(ctx, id).into(),
                ValueType::I8 => sys::gguf_get_val_i8(ctx, id).into(),
                ValueType::U16 => sys::gguf_get_val_u16(ctx, id).into(),
                ValueType::I16 => sys::gguf_get_val_i16(ctx, id).into(),
                ValueType::U32 => sys::gguf_get_val_u32(ctx, id).into(),
                ValueType::I32 => sys::gguf_get_val_i32(ctx, id).into(),
                ValueType::F32 => sys::gguf_get_val_f32(ctx, id).into(),
                ValueType::U64 => sys::gguf_get_val_u64(ctx, id).into(),
                ValueType::I64 => sys::gguf_get_val_i64(ctx, id).into(),
                ValueType::F64 => sys::gguf_get_val_f64(ctx, id).into(),
                ValueType::Bool => sys::gguf_get_val_bool(ctx, id).into(),
                ValueType::String => CStr::from_ptr(sys::gguf_get_val_str(ctx, id))
                    .to_string_lossy()
                    .into_owned()
                    .into(),
                ValueType::Array => {
                    let et = ValueType::from_raw(sys::gguf_get_arr_type(ctx, id) as i32).unwrap();
                    match et {
                        ValueType::U8 => arr::<u8>(ctx, id),
                        ValueType::I8 => arr::<i8>(ctx, id),
                        ValueType::U16 => arr::<u16>(ctx, id),
                        ValueType::I16 => arr::<i16>(ctx, id),
                        ValueType::U32 => arr::<u32>(ctx, id),
                        ValueType::I32 => arr::<i32>(ctx, id),
                        ValueType::F32 => arr::<f32>(ctx, id),
                        ValueType::U64 => arr::<u64>(ctx, id),
                        ValueType::I64 => arr::<i64>(ctx, id),
                        ValueType::F64 => arr::<f64>(ctx, id),
                        ValueType::Bool => match arr::<u8>(ctx, id) {
                            Value::Array(a) => {
                                let b: Vec<bool> =
                                    a.to_vec::<u8>().unwrap().iter().map(|&x| x != 0).collect();
                                b.into()
                            }
                            _ => unreachable!(),
                        },
                        ValueType::String => {
                            let n = sys::gguf_get_arr_n(ctx, id);
                            let s: Vec<String> = (0..n)
                                .map(|i| {
                                    CStr::from_ptr(sys::gguf_get_arr_str(ctx, id, i))
                                        .to_string_lossy()
                                        .into_owned()
                                })
                                .collect();
                            s.into()
                        }
                        ValueType::Array => unreachable!("ggml refuses nested arrays"),
                    }
                }
            };
            kvs.push((key, full(&v)));
        }
        let mut tensors = Vec::new();
        for id in 0..sys::gguf_get_n_tensors(ctx) {
            let name = CStr::from_ptr(sys::gguf_get_tensor_name(ctx, id))
                .to_string_lossy()
                .into_owned();
            let ty = sys::gguf_get_tensor_type(ctx, id);
            let ne_ptr = sys::gguf_get_tensor_ne(ctx, id);
            let mut ne = [0i64; 4];
            ne.copy_from_slice(std::slice::from_raw_parts(ne_ptr, 4));
            tensors.push((
                name,
                ty,
                ne,
                sys::gguf_get_tensor_offset(ctx, id),
                sys::gguf_get_tensor_size(ctx, id),
            ));
        }
        let summary = Summary {
            version: sys::gguf_get_version(ctx),
            alignment: sys::gguf_get_alignment(ctx),
            data_offset: sys::gguf_get_data_offset(ctx),
            kvs,
            tensors,
        };
        sys::gguf_free(ctx);
        Some(summary)
    }
}

unsafe extern "C" fn ignore(
    _: sys::ggml_log_level,
    _: *const std::ffi::c_char,
    _: *mut std::ffi::c_void,
) {
}

/// ggml logs every refusal to stderr; the tests refuse thousands of files.
fn silence_ggml() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: a callback that does nothing, valid for the whole run.
    ONCE.call_once(|| unsafe { sys::ggml_log_set(Some(ignore), std::ptr::null_mut()) });
}

/// Reads everything a user could from a file our reader accepted.
fn walk(g: &Gguf) {
    for (_, v) in g.metadata() {
        let _ = full(&v);
    }
    for t in g.tensors() {
        let _ = t.to_array::<f32>();
        let _ = t.bytes().iter().map(|&b| b as u64).sum::<u64>();
    }
}

/// Problems ggml does not check for (or checks more loosely): a file ggml
/// accepts may be refused by ours for these.
pub fn stricter_than_ggml(p: &Problem) -> bool {
    matches!(
        p,
        Problem::OutOfFile { .. }
            | Problem::Nul { .. }
            | Problem::InvalidUtf8 { .. }
            | Problem::Shape { .. }
    )
}

/// How a file was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Read by both readers, identically.
    BothRead,
    /// Read by ours; ggml cannot (a layout or nesting it lacks).
    OursOnly,
    /// Refused by ours for what ggml does not check.
    Stricter,
    /// Refused by both.
    BothRefuse,
}

/// Reads `bytes` with ours (everything in it, if accepted) and with ggml's
/// reader, and checks they agree: a file we accept as ggml-compatible, ggml
/// reads identically (strings as its C accessors show them); a file ggml
/// reads, we read, or refuse for a reason ggml does not check.
pub fn check(bytes: &[u8]) -> Result<Verdict, String> {
    let theirs = ggml(bytes);
    match Gguf::from_bytes(bytes) {
        Ok(g) => {
            walk(&g);
            if g.ggml_incompatibility().is_some() {
                return Ok(Verdict::OursOnly);
            }
            let ours = ours_as_c(&g);
            match theirs {
                Some(t) if t == ours => Ok(Verdict::BothRead),
                t => Err(format!(
                    "ggml reads it differently:\n ours {ours:?}\n ggml {t:?}"
                )),
            }
        }
        Err(Error::Gguf(e)) => match theirs {
            None => Ok(Verdict::BothRefuse),
            Some(_) if stricter_than_ggml(&e.problem) => Ok(Verdict::Stricter),
            Some(_) => Err(format!("ggml accepts, we refuse: {e}")),
        },
        Err(e) => Err(format!("not a GGUF error: {e}")),
    }
}
