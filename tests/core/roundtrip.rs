//! Property tests of the ndarray ↔ tensor copies and views:
//!
//! - (a) plain element types round-trip **exactly** through tensors of random
//!   shapes (rank 1–4) and random strided layouts: a padded window into a
//!   larger tensor (`Context::view`), a permuted tensor (`Context::permute`),
//!   and source arrays in column-major order;
//! - (b) every quantized type ggml can produce round-trips f32 data within a
//!   per-type error bound (table and justification at [`quant`]);
//! - (c) views of permuted and transposed tensors equal the permuted ndarray,
//!   and so does ggml's own `cont` of them.
//!
//! Cases per property: `PROPTEST_CASES` if set (scripts/memcheck lowers it),
//! else the modest defaults below, so the suite stays quick in debug builds.

use ggml::half::{bf16, f16};
use ggml::ndarray::{ArrayD, ArrayView4, Ix2, Ix4, IxDyn};
use ggml::{Compute, Context, Element, Tensor, Type};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::common;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        // Failures print their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Test failures as proptest errors, so the failing input is reported.
fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Plain element types, with an exact way to make distinct values from an i16.
trait Sample: Element + PartialEq + std::fmt::Debug {
    fn make(v: i16) -> Self;
}

impl Sample for f32 {
    fn make(v: i16) -> Self {
        f32::from(v) / 8.0
    }
}
impl Sample for f64 {
    fn make(v: i16) -> Self {
        f64::from(v) / 8.0 + 1e-12
    }
}
impl Sample for f16 {
    fn make(v: i16) -> Self {
        f16::from_f32(f32::from(v) / 64.0)
    }
}
impl Sample for bf16 {
    fn make(v: i16) -> Self {
        bf16::from_f32(f32::from(v) / 64.0)
    }
}
impl Sample for i8 {
    fn make(v: i16) -> Self {
        v as i8
    }
}
impl Sample for i16 {
    fn make(v: i16) -> Self {
        v
    }
}
impl Sample for i32 {
    fn make(v: i16) -> Self {
        i32::from(v).wrapping_mul(65_537)
    }
}
impl Sample for i64 {
    fn make(v: i16) -> Self {
        (i64::from(v) << 40) | 7
    }
}

/// How the tensor written and read is laid out in memory.
#[derive(Debug, Clone)]
enum Layout {
    /// A fresh contiguous tensor.
    Contiguous,
    /// A window of the array's shape into a tensor `pad` larger per axis,
    /// starting `offset` (≤ `pad`) into it: rows are strided, not dense.
    Padded { pad: Vec<usize>, offset: Vec<usize> },
    /// A contiguous tensor seen through `Context::permute`, such that the
    /// permuted view has the array's shape. `q` is the ndarray permutation
    /// (of the 4-D padded shape) that takes the contiguous base to the view.
    Permuted { q: Vec<usize> },
}

/// Shape, layout, values, and whether the source array is column-major.
fn plain_case() -> impl Strategy<Value = (Vec<usize>, Layout, Vec<i16>, bool)> {
    prop::collection::vec(1usize..=5, 1..=4).prop_flat_map(|dims| {
        let rank = dims.len();
        let n: usize = dims.iter().product();
        let layout = prop_oneof![
            Just(Layout::Contiguous),
            (
                prop::collection::vec(0usize..=2, rank),
                prop::collection::vec(0usize..=2, rank)
            )
                .prop_map(|(pad, offset)| {
                    let offset = offset.iter().zip(&pad).map(|(&o, &p)| o.min(p)).collect();
                    Layout::Padded { pad, offset }
                }),
            Just(vec![0usize, 1, 2, 3])
                .prop_shuffle()
                .prop_map(|q| Layout::Permuted { q }),
        ];
        (
            Just(dims),
            layout,
            prop::collection::vec(any::<i16>(), n),
            any::<bool>(),
        )
    })
}

/// The 4-D shape ggml sees: leading axes of length 1, then `dims`.
fn shape4(dims: &[usize]) -> [usize; 4] {
    let mut s = [1; 4];
    s[4 - dims.len()..].copy_from_slice(dims);
    s
}

fn to4(p: &[usize]) -> [usize; 4] {
    p.try_into().expect("4 axes")
}

fn inverse(q: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; q.len()];
    for (i, &qi) in q.iter().enumerate() {
        inv[qi] = i;
    }
    inv
}

/// ggml `permute` axes equivalent to the ndarray permutation `p` of a 4-D
/// array, by the rule in `Context::permute`'s docs: `p[3 - axes[i]] = 3 - i`.
fn ggml_axes(p: &[usize]) -> [usize; 4] {
    let inv = inverse(p);
    std::array::from_fn(|i| 3 - inv[3 - i])
}

fn as4<T>(a: &ArrayD<T>) -> ArrayView4<'_, T> {
    a.view()
        .into_shape_with_order(shape4(a.shape()))
        .expect("standard layout")
}

/// Element strides of a contiguous ndarray shape.
fn dense_strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        st[k] = st[k + 1] * shape[k + 1];
    }
    st
}

fn plain_roundtrip<T: Sample>(
    dims: &[usize],
    layout: &Layout,
    raw: &[i16],
    column_major_source: bool,
) -> Result<(), TestCaseError> {
    let values = ArrayD::from_shape_vec(IxDyn(dims), raw.iter().map(|&v| T::make(v)).collect())
        .expect("length matches");
    // The same logical array, stored column-major when asked.
    let fortran = values.t().as_standard_layout().into_owned();
    let source = if column_major_source {
        fortran.t()
    } else {
        values.view()
    };
    let expected4 = as4(&values);

    let ctx = Context::new(1 << 20).map_err(fail)?;
    let sentinel = T::make(i16::MIN);
    let elem = std::mem::size_of::<T>();
    // The tensor under test, and the tensor that owns its memory.
    let (t, owner): (Tensor<'_>, Option<Tensor<'_>>) = match layout {
        Layout::Contiguous => (ctx.new_tensor(T::TYPE, dims).map_err(fail)?, None),
        Layout::Padded { pad, offset } => {
            let outer: Vec<usize> = dims.iter().zip(pad).map(|(d, p)| d + p).collect();
            let parent = ctx.new_tensor(T::TYPE, &outer).map_err(fail)?;
            ctx.data()
                .map_err(fail)?
                .copy_from_array(parent, &ArrayD::from_elem(IxDyn(&outer), sentinel))
                .map_err(fail)?;
            let st = dense_strides(&outer);
            let strides: Vec<usize> = st[..st.len() - 1].iter().map(|s| s * elem).collect();
            let start: usize = offset.iter().zip(&st).map(|(o, s)| o * s).sum();
            let view = ctx
                .view(parent, dims, &strides, start * elem)
                .map_err(fail)?;
            (view, Some(parent))
        }
        Layout::Permuted { q } => {
            // base.permuted_axes(q) must have the array's shape.
            let s4 = shape4(dims);
            let qinv = inverse(q);
            let base_shape: Vec<usize> = qinv.iter().map(|&k| s4[k]).collect();
            let base = ctx.new_tensor(T::TYPE, &base_shape).map_err(fail)?;
            (ctx.permute(base, ggml_axes(q)).map_err(fail)?, Some(base))
        }
    };

    let mut data = ctx.data().map_err(fail)?;
    data.copy_from_array(t, &source).map_err(fail)?;

    // Zero-copy view, strided as the tensor is.
    prop_assert_eq!(data.view_as::<T, Ix4>(t).map_err(fail)?, expected4);
    // Owned copy with the tensor's own rank (leading 1s dropped).
    let copy = data.to_array::<T>(t).map_err(fail)?;
    prop_assert_eq!(copy.shape(), &t.shape()[..]);
    prop_assert!(copy.iter().eq(values.iter()));
    // Copy into a caller's array.
    let mut out = ArrayD::from_elem(IxDyn(dims), sentinel);
    data.copy_to_array(t, &mut out).map_err(fail)?;
    prop_assert_eq!(&out, &values);

    // The bytes landed where the layout says, and nowhere else.
    match (layout, owner) {
        (Layout::Padded { pad, offset }, Some(parent)) => {
            let outer: Vec<usize> = dims.iter().zip(pad).map(|(d, p)| d + p).collect();
            let whole = data
                .to_array::<T>(parent)
                .map_err(fail)?
                .into_shape_with_order(IxDyn(&outer))
                .map_err(fail)?;
            for (idx, v) in whole.indexed_iter() {
                let inside: Option<Vec<usize>> = (0..dims.len())
                    .map(|k| {
                        let i = idx[k].checked_sub(offset[k])?;
                        (i < dims[k]).then_some(i)
                    })
                    .collect();
                match inside {
                    Some(i) => prop_assert_eq!(v, &values[IxDyn(&i)]),
                    None => prop_assert_eq!(v, &sentinel, "padding at {:?} was written", idx),
                }
            }
        }
        (Layout::Permuted { q }, Some(base)) => {
            let base_view = data.view_as::<T, Ix4>(base).map_err(fail)?;
            prop_assert!(base_view.is_standard_layout());
            prop_assert_eq!(base_view, expected4.permuted_axes(to4(&inverse(q))));
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn f32_roundtrips_exactly((dims, layout, raw, fortran) in plain_case()) {
        plain_roundtrip::<f32>(&dims, &layout, &raw, fortran)?;
    }

    #[test]
    fn f16_roundtrips_exactly((dims, layout, raw, fortran) in plain_case()) {
        plain_roundtrip::<f16>(&dims, &layout, &raw, fortran)?;
    }

    #[test]
    fn i32_roundtrips_exactly((dims, layout, raw, fortran) in plain_case()) {
        plain_roundtrip::<i32>(&dims, &layout, &raw, fortran)?;
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn bf16_roundtrips_exactly((dims, layout, raw, fortran) in plain_case()) {
        plain_roundtrip::<bf16>(&dims, &layout, &raw, fortran)?;
    }

    #[test]
    fn f64_roundtrips_exactly((dims, layout, raw, fortran) in plain_case()) {
        plain_roundtrip::<f64>(&dims, &layout, &raw, fortran)?;
    }

    #[test]
    fn i8_roundtrips_exactly((dims, layout, raw, fortran) in plain_case()) {
        plain_roundtrip::<i8>(&dims, &layout, &raw, fortran)?;
    }

    #[test]
    fn i16_roundtrips_exactly((dims, layout, raw, fortran) in plain_case()) {
        plain_roundtrip::<i16>(&dims, &layout, &raw, fortran)?;
    }

    #[test]
    fn i64_roundtrips_exactly((dims, layout, raw, fortran) in plain_case()) {
        plain_roundtrip::<i64>(&dims, &layout, &raw, fortran)?;
    }
}

/// A 4-D f32 array of shape `dims` with distinct values.
fn array4(dims: &[usize], raw: &[i16]) -> ArrayD<f32> {
    let n = dims.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(dims),
        raw[..n].iter().map(|&v| f32::make(v)).collect(),
    )
    .expect("length matches")
}

/// Checks a permuted or transposed tensor `v` of an f32 base against the
/// expected array: the zero-copy view, a copy, and ggml's own `cont` of it.
fn check_permuted(
    ctx: &Context,
    v: Tensor<'_>,
    expected: ArrayView4<'_, f32>,
) -> Result<(), TestCaseError> {
    let contiguous = ctx.cont(v).map_err(fail)?;
    let graph = ctx.build_graph(&[contiguous]).map_err(fail)?;
    let mut data = ctx.data().map_err(fail)?;
    common::compute_with(&graph, &mut data, Compute::new().threads(1)).map_err(fail)?;
    let view = data.view_as::<f32, Ix4>(v).map_err(fail)?;
    prop_assert_eq!(&view, &expected);
    prop_assert_eq!(data.to_array_as::<f32, Ix4>(v).map_err(fail)?, expected);
    prop_assert_eq!(
        data.view_as::<f32, Ix4>(contiguous).map_err(fail)?,
        expected
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(48))]

    /// `ctx.permute(t, axes)` is `x.permuted_axes(p)` with
    /// `p[3 - axes[i]] = 3 - i` (ops/layout.rs), for f32 views, f16 → f32
    /// copies of permuted tensors, and ggml's `cont`.
    #[test]
    fn permuted_views_equal_permuted_arrays(
        dims in prop::collection::vec(1usize..=4, 4),
        axes in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
        raw in prop::collection::vec(any::<i16>(), 256),
    ) {
        let x = array4(&dims, &raw);
        let axes: [usize; 4] = axes.try_into().unwrap();
        let mut p = [0usize; 4];
        for i in 0..4 {
            p[3 - axes[i]] = 3 - i;
        }
        let expected = as4(&x).permuted_axes(p);

        let ctx = Context::new(1 << 20).map_err(fail)?;
        let t = ctx.tensor_from_array(&x).map_err(fail)?;
        let v = ctx.permute(t, axes).map_err(fail)?;
        check_permuted(&ctx, v, expected.view())?;

        // A permuted f16 tensor, read as f32 (a strided conversion).
        let h16 = x.mapv(f16::from_f32);
        let h = ctx.tensor_from_array(&h16).map_err(fail)?;
        let hv = ctx.permute(h, axes).map_err(fail)?;
        let data = ctx.data().map_err(fail)?;
        let h32 = h16.mapv(f32::from);
        prop_assert_eq!(
            data.to_array_as::<f32, Ix4>(hv).map_err(fail)?,
            as4(&h32).permuted_axes(p)
        );
    }

    /// `ctx.transpose(t)` swaps the last two ndarray axes (`.t()` in 2-D).
    #[test]
    fn transposed_views_equal_transposed_arrays(
        dims in prop::collection::vec(1usize..=5, 2..=4),
        raw in prop::collection::vec(any::<i16>(), 625),
    ) {
        let x = array4(&dims, &raw);
        let expected = as4(&x).permuted_axes([0, 1, 3, 2]);

        let ctx = Context::new(1 << 20).map_err(fail)?;
        let t = ctx.tensor_from_array(&x).map_err(fail)?;
        let v = ctx.transpose(t).map_err(fail)?;
        check_permuted(&ctx, v, expected.view())?;

        let mut data = ctx.data().map_err(fail)?;
        if dims.len() == 2 {
            let x2 = x.view().into_dimensionality::<Ix2>().unwrap();
            prop_assert_eq!(data.view_as::<f32, Ix2>(v).map_err(fail)?, x2.t());
        }
        // Writing through a transposed view lands transposed in the base.
        let y = x.mapv(|v| v + 0.5);
        let ty = as4(&y).permuted_axes([0, 1, 3, 2]).to_owned();
        data.copy_from_array(v, &ty).map_err(fail)?;
        prop_assert_eq!(data.view_as::<f32, Ix4>(t).map_err(fail)?, as4(&y));
    }
}

/// Quantized round trips of f32 data, one test per type (so a failure names
/// the type, and `--skip quant::iq` leaves out the types whose one-time grid
/// initialisation in ggml takes seconds).
///
/// # Error measures
///
/// - **relative RMSE**: `sqrt(Σ(y − x)²) / sqrt(Σx²)` over the whole tensor.
/// - **block-relative max error**: per quantization block, `max|y − x|`
///   divided by the block's `max|x|`; the worst block counts.
///
/// # Why these bounds
///
/// A uniform quantizer with `b` bits spanning `[−amax, amax]` has a step of
/// about `2·amax / 2^b`: its error is at most half a step, `amax·2^−b`, and
/// its RMSE is `step/√12`, which for uniform data is `2^−b` of the data's RMS.
/// So `2^−⌊bpw⌋` (the `2^-b` column) is the yardstick; scales and minimums
/// take a share of the bits, so measured errors sit somewhat above it.
///
/// - Legacy types (`q4_0` … `q8_0`) and the ternary/fp4/1-bit types have
///   **analytic** block bounds, from ggml's reference quantizers:
///   `q4_0`: `d = amax/8`, levels −8..7, so the clamped side errs up to `d` =
///   amax/8; `q5_0`: amax/16 likewise; `q4_1`/`q5_1`: half a step of
///   `(max−min)/15` (`/31`) ≤ amax/15 (amax/31); `q8_0`: half of amax/127,
///   plus the f16 rounding of `d` carried by up to 127 levels (127·2⁻¹¹·d);
///   `tq1_0`, `tq2_0`, `q2_0`: `round(x/amax)` to {−1, 0, 1}, so amax/2;
///   `mxfp4`: E2M1 values with a power-of-two scale putting amax in [4, 8):
///   the widest gap (4→6, and 6→clamp) is two scale units, so a quarter of
///   amax; `q1_0`: `sign(x)·mean|x|`, so at most amax, and its RMSE at most the
///   data's RMS (`E(|x|−d)² = E x² − d²` for `d = E|x|`). Each gets a
///   small margin for f16 scale rounding.
/// - Everything else (k-quants' nested scales, the lattice/codebook i-quants,
///   whose per-value error is not bounded by a step, nvfp4's E4M3 scales) and
///   every RMSE bound is **empirical**: the worst of 200 random tensors per
///   type (1–3 rows of 1–3 blocks; uniform or cubed-uniform values scaled by
///   10^[−1, 2]), with a 1.5× margin. The i-quants that need an importance
///   matrix are quantized with an all-ones one.
///
/// | type | bpw | 2^-b | worst rel. RMSE | bound | worst block max | bound | block bound |
/// |---|---|---|---|---|---|---|---|
/// | q4_0 | 4.50 | 0.0625 | 0.1007 | 0.16 | 0.1245 | 0.13 | analytic |
/// | q4_1 | 5.00 | 0.0313 | 0.1093 | 0.17 | 0.0668 | 0.07 | analytic |
/// | q5_0 | 5.50 | 0.0313 | 0.0553 | 0.085 | 0.0623 | 0.065 | analytic |
/// | q5_1 | 6.00 | 0.0156 | 0.0509 | 0.08 | 0.0328 | 0.035 | analytic |
/// | q8_0 | 8.50 | 0.0039 | 0.0063 | 0.0095 | 0.0042 | 0.0045 | analytic |
/// | q2_K | 2.63 | 0.25 | 0.4047 | 0.61 | 0.3918 | 0.59 | empirical |
/// | q3_K | 3.44 | 0.125 | 0.1600 | 0.24 | 0.2589 | 0.39 | empirical |
/// | q4_K | 4.50 | 0.0625 | 0.0796 | 0.12 | 0.1014 | 0.16 | empirical |
/// | q5_K | 5.50 | 0.0313 | 0.0417 | 0.063 | 0.0589 | 0.089 | empirical |
/// | q6_K | 6.56 | 0.0156 | 0.0193 | 0.029 | 0.0193 | 0.029 | empirical |
/// | iq2_xxs | 2.06 | 0.25 | 0.4119 | 0.62 | 0.8867 | 1.33 | empirical (imatrix of ones) |
/// | iq2_xs | 2.31 | 0.25 | 0.3597 | 0.54 | 0.8096 | 1.22 | empirical (imatrix of ones) |
/// | iq3_xxs | 3.06 | 0.125 | 0.2888 | 0.44 | 0.7356 | 1.11 | empirical |
/// | iq1_s | 1.56 | 0.5 | 0.4898 | 0.74 | 1.0267 | 1.54 | empirical (imatrix of ones) |
/// | iq4_nl | 4.50 | 0.0625 | 0.0873 | 0.14 | 0.1137 | 0.18 | empirical |
/// | iq3_s | 3.44 | 0.125 | 0.2366 | 0.36 | 0.4372 | 0.66 | empirical |
/// | iq2_s | 2.56 | 0.25 | 0.3634 | 0.55 | 0.6343 | 0.96 | empirical |
/// | iq4_xs | 4.25 | 0.0625 | 0.0770 | 0.12 | 0.1295 | 0.20 | empirical |
/// | iq1_m | 1.75 | 0.5 | 0.6040 | 0.91 | 1.2938 | 1.95 | empirical |
/// | tq1_0 | 1.69 | 0.5 | 0.6308 | 0.95 | 0.5003 | 0.51 | analytic |
/// | tq2_0 | 2.06 | 0.25 | 0.6563 | 0.99 | 0.5003 | 0.51 | analytic |
/// | mxfp4 | 4.25 | 0.0625 | 0.1535 | 0.24 | 0.2483 | 0.26 | analytic |
/// | nvfp4 | 4.50 | 0.0625 | 0.1215 | 0.19 | 0.1708 | 0.26 | empirical |
/// | q1_0 | 1.13 | 0.5 | 0.7964 | 1.01 | 0.8132 | 1.01 | analytic (both) |
/// | q2_0 | 2.25 | 0.25 | 0.6448 | 0.97 | 0.5001 | 0.51 | analytic |
mod quant {
    use super::*;
    use ggml::ndarray::Array2;

    /// f32 data for `ty`: rows × blocks, a scale exponent, uniform or
    /// cubed-uniform (many small values, a few large), values in [−1, 1).
    fn case(block: usize) -> impl Strategy<Value = (usize, usize, f32, bool, Vec<f32>)> {
        (1usize..=3, 1usize..=3, -1.0f32..2.0, any::<bool>()).prop_flat_map(
            move |(rows, blocks, exp, cubed)| {
                (
                    Just(rows),
                    Just(blocks),
                    Just(exp),
                    Just(cubed),
                    prop::collection::vec(-1.0f32..1.0, rows * blocks * block),
                )
            },
        )
    }

    fn check(ty: Type, rmse_bound: f64, block_bound: f64) {
        let block = ty.block_size();
        let mut runner = TestRunner::new(config(24));
        let result = runner.run(&case(block), |(rows, blocks, exp, cubed, raw)| {
            let cols = blocks * block;
            let scale = 10f32.powf(exp);
            let x = Array2::from_shape_vec(
                (rows, cols),
                raw.iter()
                    .map(|&u| scale * if cubed { u * u * u } else { u })
                    .collect(),
            )
            .expect("length matches");

            let ctx = Context::new(Context::tensor_size(ty, &[rows, cols]).unwrap() + (1 << 16))
                .map_err(fail)?;
            let t = ctx.new_tensor(ty, &[rows, cols]).map_err(fail)?;
            let mut data = ctx.data().map_err(fail)?;
            if ty.requires_imatrix() {
                data.quantize_from_array_with_imatrix(t, &x, &vec![1.0; cols])
                    .map_err(fail)?;
            } else {
                data.copy_from_array(t, &x).map_err(fail)?;
            }
            let y = data.to_array_as::<f32, Ix2>(t).map_err(fail)?;

            let (mut err2, mut x2) = (0f64, 0f64);
            for (&a, &b) in x.iter().zip(&y) {
                err2 += f64::from(b - a).powi(2);
                x2 += f64::from(a).powi(2);
            }
            if x2 == 0.0 {
                prop_assert_eq!(err2, 0.0);
            } else {
                let rel = (err2 / x2).sqrt();
                prop_assert!(rel <= rmse_bound, "{ty}: relative RMSE {rel} > {rmse_bound}");
            }
            for r in 0..rows {
                for b in 0..blocks {
                    let (mut err, mut amax) = (0f32, 0f32);
                    for c in b * block..(b + 1) * block {
                        err = err.max((y[[r, c]] - x[[r, c]]).abs());
                        amax = amax.max(x[[r, c]].abs());
                    }
                    let rel = if amax == 0.0 { f64::from(err) } else { f64::from(err / amax) };
                    prop_assert!(
                        rel <= block_bound,
                        "{ty}: block ({r}, {b}) max error {err} = {rel} × its max {amax} > {block_bound}"
                    );
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{ty}: {e}");
        }
    }

    macro_rules! bounds {
        ($($name:ident: $ty:ident, rmse $rmse:expr, block $block:expr;)*) => {
            /// Every type with its (relative RMSE, block-relative max error) bounds.
            pub(super) const BOUNDS: &[(Type, f64, f64)] = &[$((Type::$ty, $rmse, $block),)*];
            $(
                #[test]
                fn $name() {
                    check(Type::$ty, $rmse, $block);
                }
            )*
        };
    }

    bounds! {
        q4_0: Q4_0, rmse 0.16, block 0.13;
        q4_1: Q4_1, rmse 0.17, block 0.07;
        q5_0: Q5_0, rmse 0.085, block 0.065;
        q5_1: Q5_1, rmse 0.08, block 0.035;
        q8_0: Q8_0, rmse 0.0095, block 0.0045;
        q2_k: Q2_K, rmse 0.61, block 0.59;
        q3_k: Q3_K, rmse 0.24, block 0.39;
        q4_k: Q4_K, rmse 0.12, block 0.16;
        q5_k: Q5_K, rmse 0.063, block 0.089;
        q6_k: Q6_K, rmse 0.029, block 0.029;
        iq2_xxs: IQ2_XXS, rmse 0.62, block 1.33;
        iq2_xs: IQ2_XS, rmse 0.54, block 1.22;
        iq3_xxs: IQ3_XXS, rmse 0.44, block 1.11;
        iq1_s: IQ1_S, rmse 0.74, block 1.54;
        iq4_nl: IQ4_NL, rmse 0.14, block 0.18;
        iq3_s: IQ3_S, rmse 0.36, block 0.66;
        iq2_s: IQ2_S, rmse 0.55, block 0.96;
        iq4_xs: IQ4_XS, rmse 0.12, block 0.20;
        iq1_m: IQ1_M, rmse 0.91, block 1.95;
        tq1_0: TQ1_0, rmse 0.95, block 0.51;
        tq2_0: TQ2_0, rmse 0.99, block 0.51;
        mxfp4: MXFP4, rmse 0.24, block 0.26;
        nvfp4: NVFP4, rmse 0.19, block 0.26;
        q1_0: Q1_0, rmse 1.01, block 1.01;
        q2_0: Q2_0, rmse 0.97, block 0.51;
    }

    /// A type ggml gains must get a bound here (and a test above).
    #[test]
    fn every_quantizable_type_has_a_bound() {
        let with_imatrix = Type::ALL
            .iter()
            .copied()
            .filter(|t| t.is_quantized() && t.can_quantize() && t.requires_imatrix());
        for ty in Type::quantizable().chain(with_imatrix) {
            assert!(
                BOUNDS.iter().any(|&(t, ..)| t == ty),
                "{ty} has no round-trip bound in tests/proptest_roundtrip.rs"
            );
        }
    }
}
