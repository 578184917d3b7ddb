//! Metadata values: [`ValueType`], [`Value`] (borrowed from a file, or built
//! to be written) and [`ArrayValue`], and typed access through [`FromValue`].
//!
//! Values read from a file borrow it: strings are `&str` (validated as UTF-8
//! when the file was opened), arrays keep their encoded bytes and decode
//! element by element on demand, so a 150,000-token vocabulary costs nothing
//! until it is asked for.

use std::borrow::Cow;
use std::fmt;

use crate::error::{Error, Result};

/// The type of a metadata value (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ValueType {
    /// `u8`.
    U8 = 0,
    /// `i8`.
    I8 = 1,
    /// `u16`.
    U16 = 2,
    /// `i16`.
    I16 = 3,
    /// `u32`.
    U32 = 4,
    /// `i32`.
    I32 = 5,
    /// `f32`.
    F32 = 6,
    /// `bool` (one byte; any non-zero byte reads as `true`, as in ggml).
    Bool = 7,
    /// A UTF-8 string (u64 length, then bytes).
    String = 8,
    /// An array (element type, u64 count, elements).
    Array = 9,
    /// `u64`.
    U64 = 10,
    /// `i64`.
    I64 = 11,
    /// `f64`.
    F64 = 12,
}

impl ValueType {
    /// The type of a raw `gguf_type` value, if it is one.
    pub fn from_raw(raw: i32) -> Option<ValueType> {
        use ValueType::*;
        Some(match raw {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes of one value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// Fewest bytes one element of this type takes in a file (a string's
    /// length field, an array's type and count).
    pub(crate) fn min_size(self) -> usize {
        self.fixed_size().unwrap_or(match self {
            ValueType::String => 8,
            _ => 12,
        })
    }

    /// The name used in messages (`u32`, `string`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value: read from a file (borrowing it) or built to be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// A string.
    String(Cow<'a, str>),
    /// An array.
    Array(ArrayValue<'a>),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// A description of the type for messages: `u32`, `string`,
    /// `array of string`, `array of array`.
    pub fn type_description(&self) -> String {
        match self {
            Value::Array(a) => format!("array of {}", a.elem_type()),
            v => v.value_type().name().to_string(),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&ArrayValue<'a>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An integer value of any integer type, widened (`None` for other
    /// types and for a `u64` above `i64::MAX`).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::I8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The same value, owning its data.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::U8(v) => Value::U8(v),
            Value::I8(v) => Value::I8(v),
            Value::U16(v) => Value::U16(v),
            Value::I16(v) => Value::I16(v),
            Value::U32(v) => Value::U32(v),
            Value::I32(v) => Value::I32(v),
            Value::F32(v) => Value::F32(v),
            Value::Bool(v) => Value::Bool(v),
            Value::String(s) => Value::String(Cow::Owned(s.into_owned())),
            Value::Array(a) => Value::Array(a.into_owned()),
            Value::U64(v) => Value::U64(v),
            Value::I64(v) => Value::I64(v),
            Value::F64(v) => Value::F64(v),
        }
    }

    /// Appends the value's encoding (type tag not included).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Bool(v) => out.push(u8::from(*v)),
            Value::String(s) => {
                out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Array(a) => {
                out.extend_from_slice(&(a.elem as i32).to_le_bytes());
                out.extend_from_slice(&(a.len as u64).to_le_bytes());
                out.extend_from_slice(&a.bytes);
            }
            Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }

    /// Decodes a value of type `ty` (not an array) at the start of validated
    /// bytes, returning it and its encoded length.
    fn decode_scalar(ty: ValueType, b: &'a [u8]) -> (Value<'a>, usize) {
        let n = |k: usize| -> [u8; 8] {
            let mut a = [0u8; 8];
            a[..k].copy_from_slice(&b[..k]);
            a
        };
        let v = match ty {
            ValueType::U8 => Value::U8(b[0]),
            ValueType::I8 => Value::I8(b[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes([b[0], b[1]])),
            ValueType::I16 => Value::I16(i16::from_le_bytes([b[0], b[1]])),
            ValueType::U32 => Value::U32(u32::from_le_bytes(n(4)[..4].try_into().unwrap())),
            ValueType::I32 => Value::I32(i32::from_le_bytes(n(4)[..4].try_into().unwrap())),
            ValueType::F32 => Value::F32(f32::from_le_bytes(n(4)[..4].try_into().unwrap())),
            ValueType::Bool => Value::Bool(b[0] != 0),
            ValueType::U64 => Value::U64(u64::from_le_bytes(n(8))),
            ValueType::I64 => Value::I64(i64::from_le_bytes(n(8))),
            ValueType::F64 => Value::F64(f64::from_le_bytes(n(8))),
            ValueType::String => {
                let len = u64::from_le_bytes(n(8)) as usize;
                let s = std::str::from_utf8(&b[8..8 + len]).expect("validated when opened");
                return (Value::String(Cow::Borrowed(s)), 8 + len);
            }
            ValueType::Array => {
                let (a, used) = ArrayValue::decode(b);
                return (Value::Array(a), used);
            }
        };
        (v, ty.fixed_size().expect("scalar"))
    }

    /// Decodes the value of type `ty` whose validated encoding is exactly
    /// `b` (an array's elements are not walked to find its end).
    pub(crate) fn decode(ty: ValueType, b: &'a [u8]) -> Value<'a> {
        if ty == ValueType::Array {
            let elem = ValueType::from_raw(i32::from_le_bytes(b[0..4].try_into().unwrap()))
                .expect("validated when opened");
            let len = u64::from_le_bytes(b[4..12].try_into().unwrap()) as usize;
            return Value::Array(ArrayValue::from_encoded(elem, len, &b[12..]));
        }
        Self::decode_scalar(ty, b).0
    }
}

impl fmt::Display for Value<'_> {
    /// Scalars as themselves, strings quoted, arrays as `[a, b, …]` with at
    /// most 8 elements shown and the total count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().take(8).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                if a.len() > 8 {
                    write!(f, ", … ({} {} elements)", a.len(), a.elem_type())?;
                }
                f.write_str("]")
            }
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
        }
    }
}

/// An array value: its element type, its length and its encoded elements
/// (little-endian; strings as u64 length + bytes; nested arrays as element
/// type + count + elements), decoded on demand.
///
/// Build one to write with [`ArrayValue::new`], [`ArrayValue::strings`] or
/// [`ArrayValue::arrays`]; arrays of arrays are GGUF but ggml cannot read them
/// ([`Gguf::ggml_incompatibility`](super::Gguf::ggml_incompatibility)).
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayValue<'a> {
    elem: ValueType,
    len: usize,
    bytes: Cow<'a, [u8]>,
}

impl<'a> ArrayValue<'a> {
    /// An array of fixed-size values (`u8` … `f64`, `bool`).
    pub fn new<T: ArrayElement>(values: &[T]) -> ArrayValue<'static> {
        let mut bytes = Vec::with_capacity(values.len() * T::TYPE.fixed_size().unwrap_or(1));
        for v in values {
            v.encode(&mut bytes);
        }
        ArrayValue {
            elem: T::TYPE,
            len: values.len(),
            bytes: Cow::Owned(bytes),
        }
    }

    /// An array of strings.
    pub fn strings<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> ArrayValue<'static> {
        let mut bytes = Vec::new();
        let mut len = 0;
        for s in values {
            let s = s.as_ref();
            bytes.extend_from_slice(&(s.len() as u64).to_le_bytes());
            bytes.extend_from_slice(s.as_bytes());
            len += 1;
        }
        ArrayValue {
            elem: ValueType::String,
            len,
            bytes: Cow::Owned(bytes),
        }
    }

    /// An array of arrays (each may have its own element type).
    pub fn arrays(values: impl IntoIterator<Item = ArrayValue<'a>>) -> ArrayValue<'static> {
        let mut bytes = Vec::new();
        let mut len = 0;
        for a in values {
            Value::Array(a).encode(&mut bytes);
            len += 1;
        }
        ArrayValue {
            elem: ValueType::Array,
            len,
            bytes: Cow::Owned(bytes),
        }
    }

    /// An array over validated encoded elements.
    pub(crate) fn from_encoded(elem: ValueType, len: usize, bytes: &'a [u8]) -> Self {
        ArrayValue {
            elem,
            len,
            bytes: Cow::Borrowed(bytes),
        }
    }

    /// Decodes an array (type, count, elements) at the start of validated
    /// bytes, returning it and its encoded length.
    fn decode(b: &'a [u8]) -> (Self, usize) {
        let elem = ValueType::from_raw(i32::from_le_bytes(b[0..4].try_into().unwrap()))
            .expect("validated when opened");
        let len = u64::from_le_bytes(b[4..12].try_into().unwrap()) as usize;
        let body = &b[12..];
        let size = match elem.fixed_size() {
            Some(s) => s * len,
            None => {
                let mut at = 0;
                for _ in 0..len {
                    at += Value::decode_scalar(elem, &body[at..]).1;
                }
                at
            }
        };
        (Self::from_encoded(elem, len, &body[..size]), 12 + size)
    }

    /// Type of the elements.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded elements.
    pub fn encoded(&self) -> &[u8] {
        &self.bytes
    }

    /// The elements, decoded one by one.
    pub fn iter(&self) -> impl Iterator<Item = Value<'_>> + '_ {
        let mut at = 0;
        (0..self.len).map(move |_| {
            let (v, used) = Value::decode_scalar(self.elem, &self.bytes[at..]);
            at += used;
            v
        })
    }

    /// The elements of an array of strings, in order.
    ///
    /// # Errors
    /// [`Error::ValueType`] (with an empty key) for another element type.
    pub fn iter_str(&self) -> Result<impl Iterator<Item = &str> + '_> {
        if self.elem != ValueType::String {
            return Err(type_error(
                "",
                "array of string",
                &Value::Array(self.clone()),
            ));
        }
        Ok(self.iter().map(|v| match v {
            Value::String(Cow::Borrowed(s)) => s,
            _ => unreachable!("string elements decode borrowed"),
        }))
    }

    /// The elements as a `Vec<T>` (the element type must be `T`'s).
    ///
    /// # Errors
    /// [`Error::ValueType`] (with an empty key) for another element type.
    pub fn to_vec<T: ArrayElement>(&self) -> Result<Vec<T>> {
        if self.elem != T::TYPE {
            return Err(type_error(
                "",
                &format!("array of {}", T::TYPE),
                &Value::Array(self.clone()),
            ));
        }
        let size = T::TYPE.fixed_size().expect("fixed-size element");
        Ok(self.bytes.chunks_exact(size).map(T::decode).collect())
    }

    /// The same array, owning its bytes.
    pub fn into_owned(self) -> ArrayValue<'static> {
        ArrayValue {
            elem: self.elem,
            len: self.len,
            bytes: Cow::Owned(self.bytes.into_owned()),
        }
    }
}

/// An [`Error::ValueType`] for `key`.
pub(crate) fn type_error(key: &str, wanted: &str, actual: &Value<'_>) -> Error {
    Error::ValueType {
        key: key.to_string(),
        wanted: wanted.to_string(),
        actual: actual.type_description(),
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A fixed-size value type that arrays hold element by element: `u8` …
/// `u64`, `i8` … `i64`, `f32`, `f64`, `bool`.
pub trait ArrayElement: Copy + sealed::Sealed + 'static {
    /// The matching value type.
    const TYPE: ValueType;
    /// Decodes one element (exactly its size in bytes).
    fn decode(bytes: &[u8]) -> Self;
    /// Appends its encoding.
    fn encode(&self, out: &mut Vec<u8>);
}

macro_rules! array_elements {
    ($($t:ty => $v:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl ArrayElement for $t {
            const TYPE: ValueType = ValueType::$v;
            fn decode(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("element size"))
            }
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
        impl From<$t> for Value<'_> {
            fn from(v: $t) -> Self {
                Value::$v(v)
            }
        }
        impl<'a> FromValue<'a> for $t {
            const WANTED: &'static str = stringify!($t);
            fn from_value(v: &Value<'a>) -> Option<Self> {
                match v {
                    Value::$v(x) => Some(*x),
                    _ => None,
                }
            }
        }
    )*};
}

array_elements!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    f32 => F32, u64 => U64, i64 => I64, f64 => F64);

impl sealed::Sealed for bool {}
impl ArrayElement for bool {
    const TYPE: ValueType = ValueType::Bool;
    fn decode(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::String(Cow::Borrowed(s))
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::String(Cow::Owned(s))
    }
}

impl<'a> From<ArrayValue<'a>> for Value<'a> {
    fn from(a: ArrayValue<'a>) -> Self {
        Value::Array(a)
    }
}

impl<T: ArrayElement> From<&[T]> for Value<'_> {
    fn from(v: &[T]) -> Self {
        Value::Array(ArrayValue::new(v))
    }
}

impl<T: ArrayElement> From<Vec<T>> for Value<'_> {
    fn from(v: Vec<T>) -> Self {
        Value::Array(ArrayValue::new(&v))
    }
}

impl From<&[&str]> for Value<'_> {
    fn from(v: &[&str]) -> Self {
        Value::Array(ArrayValue::strings(v))
    }
}

impl From<Vec<String>> for Value<'_> {
    fn from(v: Vec<String>) -> Self {
        Value::Array(ArrayValue::strings(v))
    }
}

/// A Rust type a metadata value can be read as, exactly: no conversions
/// between types (a `u32` key is not an `i64`). Implemented for the scalar
/// types, `bool`, `&str`, [`ArrayValue`], `Vec<T>` of [`ArrayElement`]s,
/// `Vec<&str>` and [`Value`] itself (any type).
pub trait FromValue<'a>: Sized {
    /// The type asked for, in messages.
    const WANTED: &'static str;
    /// The value as `Self`, if it has that type.
    fn from_value(v: &Value<'a>) -> Option<Self>;
}

impl<'a> FromValue<'a> for bool {
    const WANTED: &'static str = "bool";
    fn from_value(v: &Value<'a>) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a str {
    const WANTED: &'static str = "string";
    fn from_value(v: &Value<'a>) -> Option<Self> {
        match v {
            Value::String(Cow::Borrowed(s)) => Some(s),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for ArrayValue<'a> {
    const WANTED: &'static str = "array";
    fn from_value(v: &Value<'a>) -> Option<Self> {
        match v {
            Value::Array(a) => Some(a.clone()),
            _ => None,
        }
    }
}

impl<'a, T: ArrayElement> FromValue<'a> for Vec<T> {
    const WANTED: &'static str = "array";
    fn from_value(v: &Value<'a>) -> Option<Self> {
        v.as_array()?.to_vec().ok()
    }
}

impl<'a> FromValue<'a> for Vec<&'a str> {
    const WANTED: &'static str = "array of string";
    fn from_value(v: &Value<'a>) -> Option<Self> {
        match v {
            Value::Array(ArrayValue {
                elem: ValueType::String,
                bytes: Cow::Borrowed(bytes),
                len,
            }) => {
                let mut out = Vec::with_capacity(*len);
                let mut at = 0;
                for _ in 0..*len {
                    let (s, used) = Value::decode_scalar(ValueType::String, &bytes[at..]);
                    at += used;
                    match s {
                        Value::String(Cow::Borrowed(s)) => out.push(s),
                        _ => unreachable!("string elements decode borrowed"),
                    }
                }
                Some(out)
            }
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for Value<'a> {
    const WANTED: &'static str = "any value";
    fn from_value(v: &Value<'a>) -> Option<Self> {
        Some(v.clone())
    }
}
