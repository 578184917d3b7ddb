//! The ABI guard: is the library loaded at run time the one the bindings were
//! generated from?
//!
//! llama.cpp has no stable ABI. Generated bindings used with another build of
//! ggml (an older `libggml.so` earlier on the loader path, say) read and write
//! structs at the wrong offsets and corrupt memory silently. [`check`] compares
//! what the bindings were generated from ([`ExpectedAbi::of_bindings`]) with what
//! the loaded library reports ([`LinkedAbi::measure`]) and names both sides of
//! any difference.

use std::ffi::CStr;
use std::fmt;
use std::sync::OnceLock;

/// What the bindings were generated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedAbi {
    /// ggml version of the headers, when the build could tell.
    pub ggml_version: Option<String>,
    /// `GGML_TYPE_COUNT` in the headers.
    pub type_count: u32,
    /// `sizeof(struct ggml_tensor)` in the headers.
    pub tensor_size: usize,
    /// `GGML_MAX_DIMS` in the headers.
    pub max_dims: u32,
}

impl ExpectedAbi {
    /// The values baked into these bindings.
    pub fn of_bindings() -> Self {
        ExpectedAbi {
            ggml_version: crate::build_info::GGML_VERSION.map(str::to_owned),
            type_count: crate::GGML_TYPE_COUNT,
            tensor_size: std::mem::size_of::<crate::ggml_tensor>(),
            max_dims: crate::GGML_MAX_DIMS,
        }
    }
}

/// What the loaded library reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedAbi {
    /// `ggml_version()`.
    pub ggml_version: String,
    /// `ggml_commit()`.
    pub ggml_commit: String,
    /// Whether the library knows the last type of the bindings
    /// (`GGML_TYPE_COUNT - 1`), i.e. has at least as many types.
    pub knows_last_type: bool,
    /// `sizeof(struct ggml_tensor)` in the library: `ggml_tensor_overhead()`
    /// less the object header, measured in a scratch context.
    pub tensor_size: usize,
    /// Dimensions the library reports for a tensor made with `GGML_MAX_DIMS`
    /// dimensions of size 2 (`None` when the tensor sizes already disagree and
    /// the probe is not safe to run).
    pub max_dims: Option<u32>,
}

impl LinkedAbi {
    /// Asks the loaded library.
    ///
    /// Only calls whose signatures have been stable across ggml versions are
    /// made, in an order where each one is safe once the previous ones agree.
    pub fn measure(expected: &ExpectedAbi) -> Self {
        // SAFETY: both return pointers to static NUL-terminated strings.
        let (ggml_version, ggml_commit) = unsafe {
            (
                CStr::from_ptr(crate::ggml_version())
                    .to_string_lossy()
                    .into_owned(),
                CStr::from_ptr(crate::ggml_commit())
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        let last_type = expected.type_count.saturating_sub(1);
        // SAFETY: `ggml_validate_row_data` range-checks the type before using it;
        // with zero bytes it reads no data.
        let knows_last_type =
            unsafe { crate::ggml_validate_row_data(last_type, std::ptr::null(), 0) };

        // SAFETY: a no_alloc context owning its (ggml-allocated) metadata buffer;
        // only a 1-element tensor header is created, the pointers are only compared,
        // and the context is freed before returning.
        let (tensor_size, max_dims) = unsafe {
            let overhead = crate::ggml_tensor_overhead();
            let params = crate::ggml_init_params {
                mem_size: 4 * overhead + 256,
                mem_buffer: std::ptr::null_mut(),
                no_alloc: true,
            };
            let ctx = crate::ggml_init(params);
            if ctx.is_null() {
                (0, None)
            } else {
                let base = crate::ggml_get_mem_buffer(ctx) as usize;
                let tensor = crate::ggml_new_tensor_1d(ctx, crate::GGML_TYPE_F32, 1);
                let object_size = tensor as usize - base;
                let tensor_size = overhead - object_size;
                let max_dims = (tensor_size == expected.tensor_size).then(|| {
                    let ne = [2i64; crate::GGML_MAX_DIMS as usize];
                    let t = crate::ggml_new_tensor(
                        ctx,
                        crate::GGML_TYPE_F32,
                        crate::GGML_MAX_DIMS as i32,
                        ne.as_ptr(),
                    );
                    crate::ggml_n_dims(t) as u32
                });
                crate::ggml_free(ctx);
                (tensor_size, max_dims)
            }
        };
        LinkedAbi {
            ggml_version,
            ggml_commit,
            knows_last_type,
            tensor_size,
            max_dims,
        }
    }
}

/// One difference between the bindings and the loaded library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What differs (`"ggml version"`, `"sizeof(struct ggml_tensor)"`, ...).
    pub what: &'static str,
    /// The bindings' side.
    pub bindings: String,
    /// The library's side.
    pub library: String,
}

/// The loaded library is not the one the bindings were generated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiMismatch {
    /// Every difference found.
    pub differences: Vec<Difference>,
    /// `ggml_commit()` of the loaded library, to help find where it came from.
    pub library_commit: String,
}

impl fmt::Display for AbiMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the loaded ggml library (commit {}) is not the one ggml-sys was built against:",
            self.library_commit
        )?;
        for d in &self.differences {
            write!(
                f,
                " {}: bindings {}, library {};",
                d.what, d.bindings, d.library
            )?;
        }
        write!(
            f,
            " rebuild ggml-sys against this library, or load the library it was built with"
        )
    }
}

impl std::error::Error for AbiMismatch {}

/// Compares the two sides; pure, so that it can be tested with made-up values.
pub fn compare(expected: &ExpectedAbi, linked: &LinkedAbi) -> Result<(), AbiMismatch> {
    let mut differences = Vec::new();
    if let Some(version) = &expected.ggml_version {
        if *version != linked.ggml_version {
            differences.push(Difference {
                what: "ggml version",
                bindings: version.clone(),
                library: linked.ggml_version.clone(),
            });
        }
    }
    if !linked.knows_last_type {
        differences.push(Difference {
            what: "GGML_TYPE_COUNT",
            bindings: expected.type_count.to_string(),
            library: format!(
                "fewer (type {} unknown)",
                expected.type_count.saturating_sub(1)
            ),
        });
    }
    if expected.tensor_size != linked.tensor_size {
        differences.push(Difference {
            what: "sizeof(struct ggml_tensor)",
            bindings: expected.tensor_size.to_string(),
            library: linked.tensor_size.to_string(),
        });
    }
    if let Some(dims) = linked.max_dims {
        if dims != expected.max_dims {
            differences.push(Difference {
                what: "GGML_MAX_DIMS",
                bindings: expected.max_dims.to_string(),
                library: dims.to_string(),
            });
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(AbiMismatch {
            differences,
            library_commit: linked.ggml_commit.clone(),
        })
    }
}

/// Checks, once per process, that the loaded library matches the bindings.
///
/// The first call measures; later calls return the same result at once.
///
/// # Errors
/// [`AbiMismatch`] naming each value on both sides when they differ.
pub fn check() -> Result<(), AbiMismatch> {
    static RESULT: OnceLock<Result<(), AbiMismatch>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let expected = ExpectedAbi::of_bindings();
            compare(&expected, &LinkedAbi::measure(&expected))
        })
        .clone()
}
