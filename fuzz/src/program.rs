//! A program: a random sequence of safe-API calls, generated with `arbitrary`
//! from unstructured bytes (a seeded byte stream in the driver, libFuzzer's
//! mutated inputs under `cargo fuzz`).
//!
//! Values are drawn so that the edges are common: dimensions of 0, block
//! multiples, and sizes near `2^62`, `i64::MAX` and `usize::MAX`; strides of 0,
//! misaligned or wrapping; NaN, infinities and huge values in data; thread
//! counts of 0, 1, 10^5 and `usize::MAX`.

use arbitrary::Arbitrary;
use ggml::Type;

/// One dimension of a shape.
#[derive(Debug, Clone, Copy)]
pub enum Dim {
    /// 0 to 15 (0 often: empty tensors are ordinary).
    Small(u8),
    /// 32, 64, ... 256: whole blocks of the 32-value quantized types.
    Block(u8),
    /// 256 to 1024: whole super-blocks of the k- and i-quants.
    Super(u8),
    /// Near the limits of ggml's integer types.
    Huge(HugeDim),
}

impl<'a> Arbitrary<'a> for Dim {
    /// Small dimensions most of the time, block multiples often, limits
    /// sometimes (one in eight).
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let pick = u8::arbitrary(u)?;
        let n = u8::arbitrary(u)?;
        Ok(match pick {
            0..=139 => Dim::Small(n),
            140..=189 => Dim::Block(n),
            190..=223 => Dim::Super(n),
            _ => Dim::Huge(HugeDim::arbitrary(u)?),
        })
    }
}

/// A dimension near a limit.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum HugeDim {
    /// 2^62.
    P62,
    /// 2^62 + 4 (an f32 byte size that wraps to 16).
    P62Plus4,
    /// 2^62 - 1.
    P62Minus1,
    /// 2^40.
    P40,
    /// 2^31.
    P31,
    /// `i64::MAX`.
    I64Max,
    /// `usize::MAX / 2`.
    Half,
    /// `usize::MAX`.
    Max,
}

impl Dim {
    /// The dimension's value.
    pub fn value(self) -> usize {
        match self {
            Dim::Small(n) => usize::from(n % 16),
            Dim::Block(n) => 32 * (usize::from(n % 8) + 1),
            Dim::Super(n) => 256 * (usize::from(n % 4) + 1),
            Dim::Huge(h) => match h {
                HugeDim::P62 => 1 << 62,
                HugeDim::P62Plus4 => (1 << 62) + 4,
                HugeDim::P62Minus1 => (1 << 62) - 1,
                HugeDim::P40 => 1 << 40,
                HugeDim::P31 => 1 << 31,
                HugeDim::I64Max => i64::MAX as usize,
                HugeDim::Half => usize::MAX / 2,
                HugeDim::Max => usize::MAX,
            },
        }
    }
}

/// A tensor type: mostly the common ones, any of ggml's types otherwise.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct TypeSel(pub u8);

/// The types a program picks most often.
const COMMON: [Type; 8] = [
    Type::F32,
    Type::F32,
    Type::F16,
    Type::BF16,
    Type::Q8_0,
    Type::Q4_0,
    Type::Q4_K,
    Type::I32,
];

/// Types whose first quantization sets up large grids (seconds natively,
/// many minutes under valgrind); `--no-slow-types` maps them to Q4_K.
const SLOW: [Type; 7] = [
    Type::IQ2_XXS,
    Type::IQ2_XS,
    Type::IQ2_S,
    Type::IQ3_XXS,
    Type::IQ3_S,
    Type::IQ1_S,
    Type::IQ1_M,
];

impl TypeSel {
    /// The type: a common one (5 in 8), any other but the slow i-quants
    /// (about 1 in 3), a slow i-quant (1 in 40, since each costs its process
    /// seconds of grid set-up once).
    pub fn get(self, no_slow: bool) -> Type {
        let n = usize::from(self.0);
        let ty = match self.0 {
            0..=159 => COMMON[n % COMMON.len()],
            160..=249 => {
                let others: Vec<Type> = Type::ALL
                    .iter()
                    .copied()
                    .filter(|t| !SLOW.contains(t))
                    .collect();
                others[n % others.len()]
            }
            _ => SLOW[n % SLOW.len()],
        };
        if no_slow && SLOW.contains(&ty) {
            Type::Q4_K
        } else {
            ty
        }
    }
}

/// A shape: 0 to 5 dimensions (5 is one too many).
#[derive(Arbitrary, Debug, Clone)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// The ndarray shape.
    pub fn dims(&self) -> Vec<usize> {
        self.0.iter().take(5).map(|d| d.value()).collect()
    }

    /// The shape if it is small enough to fill with data.
    pub fn fillable(&self) -> Option<Vec<usize>> {
        let dims = self.dims();
        (dims.len() <= 4 && fillable(&dims)).then_some(dims)
    }
}

/// A byte stride of a view.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Stride {
    /// A multiple of 4 bytes, up to 4 KiB.
    Aligned(u16),
    /// Any byte count up to 64 KiB.
    Bytes(u16),
    /// 0: a repeated row.
    Zero,
    /// `usize::MAX - 3`: wraps when added.
    Wrap,
    /// `usize::MAX / 2`.
    Half,
}

impl Stride {
    /// The stride in bytes.
    pub fn value(self) -> usize {
        match self {
            Stride::Aligned(n) => 4 * usize::from(n % 1024),
            Stride::Bytes(n) => usize::from(n),
            Stride::Zero => 0,
            Stride::Wrap => usize::MAX - 3,
            Stride::Half => usize::MAX / 2,
        }
    }
}

/// Values to fill an array with.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Fill {
    /// All zero.
    Zeros,
    /// 0, 1, 2, ... scaled.
    Ramp(i8),
    /// Pseudo-random values in [-scale, scale].
    Noise(u32, u8),
    /// Noise with one special value at a position.
    Special(u32, u16, Special),
}

/// A value quantizers dislike.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Special {
    /// NaN.
    Nan,
    /// +∞.
    Inf,
    /// −∞.
    NegInf,
    /// 3e20 (overflows the i-quants' error sums).
    Huge,
    /// `f32::MAX`.
    Max,
    /// 1e-40 (a denormal).
    Tiny,
}

impl Fill {
    /// `n` values.
    pub fn values(self, n: usize) -> Vec<f32> {
        let noise = |seed: u32, scale: f32| {
            let mut x = u64::from(seed) | 1;
            (0..n)
                .map(move |_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
                })
                .collect::<Vec<f32>>()
        };
        match self {
            Fill::Zeros => vec![0.0; n],
            Fill::Ramp(k) => (0..n).map(|i| i as f32 * f32::from(k) / 16.0).collect(),
            Fill::Noise(seed, scale) => noise(seed, f32::from(scale) + 1.0),
            Fill::Special(seed, pos, special) => {
                let mut v = noise(seed, 4.0);
                if n > 0 {
                    v[usize::from(pos) % n] = match special {
                        Special::Nan => f32::NAN,
                        Special::Inf => f32::INFINITY,
                        Special::NegInf => f32::NEG_INFINITY,
                        Special::Huge => 3e20,
                        Special::Max => f32::MAX,
                        Special::Tiny => 1e-40,
                    };
                }
                v
            }
        }
    }
}

/// A context size.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum CtxSize {
    /// Up to 64 KiB.
    Small(u16),
    /// 1 to 16 MiB.
    Medium(u8),
    /// 0 bytes.
    Zero,
    /// 2^46 (64 TiB).
    P46,
    /// `usize::MAX`.
    Max,
}

impl CtxSize {
    /// Bytes.
    pub fn value(self) -> usize {
        match self {
            CtxSize::Small(n) => usize::from(n),
            CtxSize::Medium(n) => (usize::from(n % 16) + 1) << 20,
            CtxSize::Zero => 0,
            CtxSize::P46 => 1 << 46,
            CtxSize::Max => usize::MAX,
        }
    }
}

/// How a context gets its memory.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum CtxKind {
    /// Allocated (zeroed) by the crate.
    Alloc,
    /// Metadata only.
    NoAlloc,
    /// A caller's `Vec`, starting `skip` bytes into an allocation.
    Buffer {
        /// Bytes dropped from the front (misaligns the start).
        skip: u8,
        /// Metadata only.
        no_alloc: bool,
    },
}

/// A thread count.
#[derive(Debug, Clone, Copy)]
pub enum Threads {
    /// The default.
    Default,
    /// 0 to 7.
    Few(u8),
    /// 100,000.
    Many,
    /// `usize::MAX`.
    Max,
}

impl<'a> Arbitrary<'a> for Threads {
    /// Huge counts one time in 32: ggml clamped to 512 threads spins them on
    /// every node, seconds per graph on two cores.
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u8::arbitrary(u)?;
        Ok(match n {
            0..=63 => Threads::Default,
            64..=247 => Threads::Few(n),
            248..=251 => Threads::Many,
            _ => Threads::Max,
        })
    }
}

impl Threads {
    /// The count, if one is given.
    pub fn value(self) -> Option<usize> {
        match self {
            Threads::Default => None,
            Threads::Few(n) => Some(usize::from(n % 8)),
            Threads::Many => Some(100_000),
            Threads::Max => Some(usize::MAX),
        }
    }
}

/// An element-wise binary op.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum BinOp {
    /// `add`.
    Add,
    /// `sub`.
    Sub,
    /// `mul`.
    Mul,
    /// `div`.
    Div,
}

/// How an ndarray given to a copy is laid out.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ArrayLayout {
    /// Row-major.
    Standard,
    /// Axes reversed (column-major).
    Reversed,
    /// Every other element of a twice longer last axis.
    Strided,
}

/// An element type for views and copies out.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Elem {
    /// f32.
    F32,
    /// f16.
    F16,
    /// bf16.
    Bf16,
    /// f64.
    F64,
    /// i32.
    I32,
    /// i8.
    I8,
}

/// One call of the safe API. Tensors and contexts are picked by index from
/// those made so far (modulo their number).
#[derive(Arbitrary, Debug, Clone)]
pub enum Call {
    /// `Context::new`, `new_no_alloc` or `with_buffer`.
    NewContext(CtxSize, CtxKind),
    /// `Context::new_tensor`.
    NewTensor(u8, TypeSel, Shape),
    /// `Context::tensor_from_array_as` of f32 values.
    FromArray(u8, TypeSel, Shape, Fill),
    /// `Context::view`.
    View(u8, Shape, Vec<Stride>, u16),
    /// `Context::reshape`.
    Reshape(u8, Shape),
    /// `Context::permute`: one of the 24 permutations, or (when the flag is
    /// set) raw axes taken modulo 5, mostly invalid.
    Permute(u8, u8, Option<[u8; 4]>),
    /// `Context::transpose`.
    Transpose(u8),
    /// `Context::cont`.
    Cont(u8),
    /// `Context::cpy`.
    Cpy(u8, u8),
    /// `add`, `sub`, `mul`, `div`.
    Binary(BinOp, u8, u8),
    /// `Context::scale`.
    Scale(u8, i8),
    /// `Context::mul_mat`.
    MulMat(u8, u8),
    /// `build_graph` of one to three outputs and `compute_with` threads.
    Compute(u8, Vec<u8>, Threads),
    /// `build_graph` and `compute_with` an abort callback that stops after
    /// some nodes.
    ComputeAbort(u8, u8),
    /// `ggml::set_max_threads`.
    SetMaxThreads(Threads),
    /// `Context::tensor_size` and `Context::graph_size` (pure size queries).
    Sizes(TypeSel, Shape, u32),
    /// `Tensor::set_name` then `Context::tensor_by_name`.
    Name(u8, String),
    /// `TensorData::copy_from_array` (or with an importance matrix).
    CopyFromArray(u8, Fill, ArrayLayout, Option<Fill>),
    /// `TensorData::to_array` / `copy_to_array` as an element type.
    ToArray(u8, Elem, bool),
    /// `TensorData::view` / `view_mut` (writing one element) as an element type.
    View2(u8, Elem, bool),
    /// `TensorData::bytes` / `bytes_mut`.
    Bytes(u8, bool),
    /// `TensorData::copy_tensor`.
    CopyTensor(u8, u8, bool),
    /// `convert::from_f32` then `to_f32` over slices of any lengths.
    Convert(TypeSel, u16, u16, Fill, Option<Fill>),
    /// `Context::allocate` in the CPU's buffer type.
    Allocate(u8),
    /// `GraphAllocator::allocate` (allocator number, made on first use) of
    /// a graph of one to three outputs.
    GraphAllocate(u8, u8, Vec<u8>),
    /// Drops graph allocator number `n` (its lent memory ends).
    DropAllocator(u8),
    /// `Backend::compute_with` (a CPU backend) of a graph of one to three
    /// outputs, or `compute_async` then `wait`.
    BackendCompute(u8, Vec<u8>, Threads, bool),
    /// A scheduler over two CPU backends: `allocate_with` the placements
    /// (node, backend) of a graph of one to three outputs, then `compute`.
    Schedule(u8, Vec<u8>, Vec<(u8, u8)>, u16),
    /// Drops the scheduler.
    DropScheduler,
    /// `TensorData::read_bytes` / `write_bytes` (any memory).
    ByteCopy(u8, bool),
    /// `Backend::compute_async` of a graph of one to three outputs, and the
    /// pending handle leaked (`mem::forget` is safe): the context must stay
    /// busy until [`Call::Synchronize`], its memory pinned.
    ForgetPending(u8, Vec<u8>),
    /// `Backend::synchronize` of the CPU backend.
    Synchronize,
    /// `Backend::compute_with` a graph of one to three outputs and an abort
    /// callback that drops graph allocator number `n` (moved into it) after
    /// some nodes: the memory the graph computes in must outlive it.
    ComputeDroppingAllocator(u8, Vec<u8>, u8, u8),
    /// Leaks the data token of a context: later accesses are refused.
    ForgetData(u8),
    /// Op number `n` of `ggml::ops::catalog()` (modulo their number) on
    /// tensors picked by index (room for the widest op, `rwkv_wkv7`'s
    /// seven), with parameters: every declared op is generated from its
    /// declaration.
    Op(u16, [u8; 8], OpParams),
}

/// The parameters of a [`Call::Op`], mapped onto `ggml::ops::Params`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct OpParams {
    /// Flags (bit 0: in place; others: op options).
    pub flags: u8,
    /// Float parameters.
    pub f: [FloatSel; 4],
    /// Integer parameters.
    pub i: [IntSel; 4],
}

impl OpParams {
    /// The parameters the op's generic builder takes.
    pub fn get(self) -> ggml::ops::Params {
        ggml::ops::Params {
            flags: u32::from(self.flags),
            f: self.f.map(FloatSel::value),
            i: self.i.map(IntSel::value),
        }
    }
}

/// A float parameter: ordinary values mostly, edges sometimes.
#[derive(Debug, Clone, Copy)]
pub struct FloatSel(u8, i8);

impl<'a> Arbitrary<'a> for FloatSel {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(FloatSel(u8::arbitrary(u)?, i8::arbitrary(u)?))
    }
}

impl FloatSel {
    /// The value.
    pub fn value(self) -> f32 {
        match self.0 {
            0..=199 => f32::from(self.1) / 16.0,
            200..=209 => 0.0,
            210..=214 => f32::NAN,
            215..=219 => f32::INFINITY,
            220..=224 => f32::NEG_INFINITY,
            225..=229 => 1e-6,
            230..=234 => 1e30,
            235..=239 => -1e30,
            _ => f32::from(self.1) * 1000.0,
        }
    }
}

/// An integer parameter: small values mostly (dimensions, axes, counts,
/// modes), edges sometimes.
#[derive(Debug, Clone, Copy)]
pub struct IntSel(u8, i8);

impl<'a> Arbitrary<'a> for IntSel {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(IntSel(u8::arbitrary(u)?, i8::arbitrary(u)?))
    }
}

impl IntSel {
    /// The value.
    pub fn value(self) -> i64 {
        match self.0 {
            0..=179 => i64::from(self.1 % 8),
            180..=209 => i64::from(self.1),
            210..=219 => -1,
            220..=229 => i64::from(i32::MAX),
            230..=234 => i64::from(i32::MAX) + 1,
            235..=239 => 1 << 40,
            240..=244 => i64::MAX,
            245..=249 => i64::MIN,
            _ => i64::from(self.1) * 1024,
        }
    }
}

/// A program: calls run in order.
#[derive(Debug, Clone)]
pub struct Program {
    /// The calls.
    pub calls: Vec<Call>,
}

/// The axes of permutation number `n` (of the 24 of 0..4), or raw ones.
pub fn axes(n: u8, raw: Option<[u8; 4]>) -> [usize; 4] {
    if let Some(raw) = raw {
        return raw.map(|a| usize::from(a % 5));
    }
    let mut rest = vec![0usize, 1, 2, 3];
    let mut k = usize::from(n) % 24;
    let mut out = [0usize; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let f = [6, 2, 1, 1][i];
        *slot = rest.remove(k / f);
        k %= f;
    }
    out
}

/// Whether an ndarray of `shape` is small enough to generate (at most 2^16
/// values, counting empty axes as 1, as ndarray's own size check does).
pub fn fillable(shape: &[usize]) -> bool {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d.max(1)))
        .is_some_and(|n| n <= 1 << 16)
}
