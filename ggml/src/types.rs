//! [`Type`]: every tensor type this ggml has, and [`Element`]: the Rust types
//! that tensors of plain types hold.

use std::ffi::CStr;
use std::fmt;
use std::sync::OnceLock;

/// Entries of the type table (`GGML_TYPE_COUNT`; some values are unused).
const TYPE_COUNT: usize = ggml_sys::GGML_TYPE_COUNT as usize;

/// One type's traits, as the safe crate uses them.
struct TypeInfo {
    name: &'static str,
    block_size: usize,
    type_size: usize,
    is_quantized: bool,
    to_float: ggml_sys::ggml_to_float_t,
}

impl TypeInfo {
    /// Entries for values that are not types (removed ones).
    const UNKNOWN: TypeInfo = TypeInfo {
        name: "?",
        block_size: 1,
        type_size: 0,
        is_quantized: false,
        to_float: None,
    };
}

macro_rules! types {
    ($($(#[$doc:meta])* $variant:ident = $constant:ident,)*) => {
        /// A ggml tensor type (`enum ggml_type`).
        ///
        /// Block size, bytes per block and name come from the linked library's
        /// own type traits, so they always describe the library in use.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum Type {
            $($(#[$doc])* $variant = ggml_sys::$constant,)*
        }

        impl Type {
            /// Every type, in `ggml_type` order.
            pub const ALL: &'static [Type] = &[$(Type::$variant,)*];
        }

        impl Type {
            /// The type of a raw `ggml_type` value, if this crate knows it
            /// (the fallible conversion, `Type::try_from`, is in the error
            /// module, which sits above this one).
            pub(crate) fn from_raw(value: ggml_sys::ggml_type) -> Option<Type> {
                match value {
                    $(ggml_sys::$constant => Some(Type::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

types! {
    /// 32-bit float.
    F32 = GGML_TYPE_F32,
    /// IEEE 754 half float.
    F16 = GGML_TYPE_F16,
    /// 4-bit, blocks of 32 with one f16 scale.
    Q4_0 = GGML_TYPE_Q4_0,
    /// 4-bit, blocks of 32 with scale and minimum.
    Q4_1 = GGML_TYPE_Q4_1,
    /// 5-bit, blocks of 32 with one scale.
    Q5_0 = GGML_TYPE_Q5_0,
    /// 5-bit, blocks of 32 with scale and minimum.
    Q5_1 = GGML_TYPE_Q5_1,
    /// 8-bit, blocks of 32 with one scale.
    Q8_0 = GGML_TYPE_Q8_0,
    /// 8-bit with scale and sum (an intermediate type of matrix products).
    Q8_1 = GGML_TYPE_Q8_1,
    /// 2-bit k-quant, super-blocks of 256.
    Q2_K = GGML_TYPE_Q2_K,
    /// 3-bit k-quant.
    Q3_K = GGML_TYPE_Q3_K,
    /// 4-bit k-quant.
    Q4_K = GGML_TYPE_Q4_K,
    /// 5-bit k-quant.
    Q5_K = GGML_TYPE_Q5_K,
    /// 6-bit k-quant.
    Q6_K = GGML_TYPE_Q6_K,
    /// 8-bit k-quant (an intermediate type of matrix products).
    Q8_K = GGML_TYPE_Q8_K,
    /// 2.06 bits per weight i-quant (needs an importance matrix).
    IQ2_XXS = GGML_TYPE_IQ2_XXS,
    /// 2.31 bits per weight i-quant (needs an importance matrix).
    IQ2_XS = GGML_TYPE_IQ2_XS,
    /// 3.06 bits per weight i-quant.
    IQ3_XXS = GGML_TYPE_IQ3_XXS,
    /// 1.56 bits per weight i-quant (needs an importance matrix).
    IQ1_S = GGML_TYPE_IQ1_S,
    /// 4.5 bits per weight non-linear quant, blocks of 32.
    IQ4_NL = GGML_TYPE_IQ4_NL,
    /// 3.44 bits per weight i-quant.
    IQ3_S = GGML_TYPE_IQ3_S,
    /// 2.5 bits per weight i-quant.
    IQ2_S = GGML_TYPE_IQ2_S,
    /// 4.25 bits per weight non-linear quant.
    IQ4_XS = GGML_TYPE_IQ4_XS,
    /// 8-bit integer.
    I8 = GGML_TYPE_I8,
    /// 16-bit integer.
    I16 = GGML_TYPE_I16,
    /// 32-bit integer.
    I32 = GGML_TYPE_I32,
    /// 64-bit integer.
    I64 = GGML_TYPE_I64,
    /// 64-bit float.
    F64 = GGML_TYPE_F64,
    /// 1.75 bits per weight i-quant.
    IQ1_M = GGML_TYPE_IQ1_M,
    /// bfloat16.
    BF16 = GGML_TYPE_BF16,
    /// Ternary quant, 1.69 bits per weight.
    TQ1_0 = GGML_TYPE_TQ1_0,
    /// Ternary quant, 2.06 bits per weight.
    TQ2_0 = GGML_TYPE_TQ2_0,
    /// Microscaling FP4 (E2M1 values, E8M0 scale per 32).
    MXFP4 = GGML_TYPE_MXFP4,
    /// NVIDIA FP4 (E2M1 values, E4M3 scales).
    NVFP4 = GGML_TYPE_NVFP4,
    /// 1-bit quant.
    Q1_0 = GGML_TYPE_Q1_0,
    /// 2-bit quant.
    Q2_0 = GGML_TYPE_Q2_0,
}

impl Type {
    /// The raw `ggml_type`.
    pub fn as_raw(self) -> ggml_sys::ggml_type {
        self as ggml_sys::ggml_type
    }

    /// What this crate reads of the type's traits, from a table filled once
    /// from the linked library (type queries sit on every op's checks).
    fn info(self) -> &'static TypeInfo {
        static TABLE: OnceLock<[TypeInfo; TYPE_COUNT]> = OnceLock::new();
        let table = TABLE.get_or_init(|| {
            // The ABI guard first (no context can exist if it failed).
            if let Err(err) = ggml_sys::abi::check() {
                panic!("{err}");
            }
            let mut table = [TypeInfo::UNKNOWN; TYPE_COUNT];
            for &ty in Type::ALL {
                // SAFETY: `ty` is a type of this library (the ABI guard checked
                // that it has every type of the bindings); the table is static.
                let traits = unsafe { crate::raw::type_traits(ty.as_raw()) };
                // SAFETY: type names are static NUL-terminated strings.
                let name = unsafe { CStr::from_ptr(traits.type_name) };
                table[ty.as_raw() as usize] = TypeInfo {
                    name: name.to_str().unwrap_or("?"),
                    block_size: traits.blck_size as usize,
                    type_size: traits.type_size,
                    is_quantized: traits.is_quantized,
                    to_float: traits.to_float,
                };
            }
            table
        });
        &table[self.as_raw() as usize]
    }

    /// ggml's name for the type (`"q4_K"`, `"f32"`, ...).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Values per block (1 for plain types, 32 or 256 for most quantized ones).
    pub fn block_size(self) -> usize {
        self.info().block_size
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.info().type_size
    }

    /// Bits each value takes on average: `8 * type_size / block_size`.
    pub fn bits_per_weight(self) -> f64 {
        8.0 * self.type_size() as f64 / self.block_size() as f64
    }

    /// Whether the type is block-quantized.
    pub fn is_quantized(self) -> bool {
        self.info().is_quantized
    }

    /// Bytes of a row of `n` values (`n` a multiple of the block size), as
    /// ggml computes it (`type_size * n / block_size`), or `None` when that
    /// overflows `usize`.
    pub fn row_size(self, n: usize) -> Option<usize> {
        let info = self.info();
        info.type_size.checked_mul(n).map(|b| b / info.block_size)
    }

    /// [`Type::row_size`] for rows of tensors whose shapes passed the size
    /// checks, which bound it.
    pub(crate) fn row_bytes(self, n: usize) -> usize {
        let info = self.info();
        n * info.type_size / info.block_size
    }

    /// Whether quantizing to this type needs an importance matrix.
    pub fn requires_imatrix(self) -> bool {
        crate::raw::quantize_requires_imatrix(self.as_raw())
    }

    /// Whether `ggml_quantize_chunk` can produce this type (from f32).
    pub fn can_quantize(self) -> bool {
        // The types ggml_quantize_chunk has a case for.
        !matches!(
            self,
            Type::Q8_1 | Type::Q8_K | Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::F64
        )
    }

    /// Whether ggml can convert this type to f32 (`to_float` in its traits).
    pub fn can_dequantize(self) -> bool {
        self.info().to_float.is_some()
    }

    /// ggml's row routine to f32 (`to_float` in its traits), if any.
    pub(crate) fn to_float(self) -> ggml_sys::ggml_to_float_t {
        self.info().to_float
    }

    /// Whether the type is a float type with an element-wise representation
    /// (f32, f16, bf16).
    pub fn is_float(self) -> bool {
        matches!(self, Type::F32 | Type::F16 | Type::BF16)
    }

    /// Every type ggml can quantize to without an importance matrix, the plain
    /// float types excluded.
    pub fn quantizable() -> impl Iterator<Item = Type> {
        Type::ALL
            .iter()
            .copied()
            .filter(|t| t.is_quantized() && t.can_quantize() && !t.requires_imatrix())
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that a tensor of a plain (non-quantized) type stores element by
/// element: `f32`, [`half::f16`], [`half::bf16`], `f64`, `i8`, `i16`, `i32`, `i64`.
///
/// Sealed: the layouts are guaranteed to match ggml's.
pub trait Element: Copy + Default + Send + Sync + 'static + sealed::Sealed {
    /// The matching ggml type.
    const TYPE: Type;
}

macro_rules! elements {
    ($($rust:ty => $ty:ident),*) => {$(
        impl sealed::Sealed for $rust {}
        impl Element for $rust {
            const TYPE: Type = Type::$ty;
        }
    )*};
}

elements!(f32 => F32, half::f16 => F16, half::bf16 => BF16, f64 => F64, i8 => I8, i16 => I16, i32 => I32, i64 => I64);
