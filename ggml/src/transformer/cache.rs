//! The key/value cache: per layer, the keys and values of every position
//! computed so far, in backend memory, so a step computes only its new
//! tokens.

use crate::backend::BufferType;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::types::Type;

/// Keys and values of `n_ctx` positions for every layer, plus one spare
/// position that padding tokens write and no step reads. Keys are one row
/// per position (`[n_ctx + 1, n_head_kv · head_dim]`, ndarray order);
/// values too, or transposed (one row per dimension, `[n_head_kv ·
/// head_dim, n_ctx + 1]`) so that `mul_mat` weighs them without a copy.
pub struct KvCache<'ctx> {
    keys: Vec<Tensor<'ctx>>,
    values: Vec<Tensor<'ctx>>,
    n_ctx: usize,
    n_head_kv: usize,
    head_dim: usize,
    v_trans: bool,
}

/// The shape of a [`KvCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    /// Layers.
    pub n_layer: usize,
    /// Positions.
    pub n_ctx: usize,
    /// Key/value heads per layer.
    pub n_head_kv: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// The element type: f32 or f16.
    pub ty: Type,
    /// Values stored transposed.
    pub v_trans: bool,
}

impl<'ctx> KvCache<'ctx> {
    /// A cache of `shape` made in `ctx` (a `no_alloc` context) and placed
    /// in one new buffer of `buffer_type`, zeroed.
    ///
    /// # Errors
    /// [`Error::Model`] for a type other than f32 or f16; what
    /// [`Context::new_tensor`] and [`Context::allocate`] return.
    pub fn new(
        ctx: &'ctx Context,
        buffer_type: BufferType,
        shape: CacheShape,
    ) -> Result<KvCache<'ctx>> {
        let CacheShape {
            n_layer,
            n_ctx,
            n_head_kv,
            head_dim,
            ty,
            v_trans,
        } = shape;
        if !matches!(ty, Type::F32 | Type::F16) {
            return Err(Error::Model {
                item: "cache type".into(),
                reason: format!("{ty:?}: the cache holds f32 or f16"),
            });
        }
        let width = n_head_kv * head_dim;
        let mut keys = Vec::with_capacity(n_layer);
        let mut values = Vec::with_capacity(n_layer);
        for il in 0..n_layer {
            let k = ctx.new_tensor(ty, &[n_ctx + 1, width])?;
            let v_shape = if v_trans {
                [width, n_ctx + 1]
            } else {
                [n_ctx + 1, width]
            };
            let v = ctx.new_tensor(ty, &v_shape)?;
            keys.push(k.set_name(&format!("cache_k.{il}")));
            values.push(v.set_name(&format!("cache_v.{il}")));
        }
        ctx.allocate(buffer_type)?;
        Ok(KvCache {
            keys,
            values,
            n_ctx,
            n_head_kv,
            head_dim,
            v_trans,
        })
    }

    /// Whether values are stored transposed.
    pub fn v_trans(&self) -> bool {
        self.v_trans
    }

    /// The element indices a step's values go to in a transposed cache:
    /// for token `t` at row `slots[t]`, dimension `d` goes to element
    /// `d · (n_ctx + 1) + slots[t]`, in the order of the step's values
    /// (token-major).
    pub fn value_slots(&self, slots: &[i64]) -> Vec<i64> {
        let width = self.n_head_kv * self.head_dim;
        let rows = (self.n_ctx + 1) as i64;
        slots
            .iter()
            .flat_map(|&s| (0..width as i64).map(move |d| d * rows + s))
            .collect()
    }

    /// Positions it holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The spare row padding tokens write.
    pub fn spare_slot(&self) -> usize {
        self.n_ctx
    }

    /// Writes the step's keys and values (`[n_tokens, n_head_kv ·
    /// head_dim]`, f32) of layer `il`: keys at the rows `slots` (i64, one
    /// per token), values there too or, transposed, at the elements
    /// `v_slots` ([`KvCache::value_slots`]). Returns views of the first
    /// `n_kv` positions of the written cache: keys `[n_kv, n_head_kv,
    /// head_dim]` and values the same or, transposed, `[n_head_kv,
    /// head_dim, n_kv]` (ndarray order). Reading the views after the
    /// writes is what orders them in the graph.
    ///
    /// # Errors
    /// What [`Tensor::set_rows`] and [`Tensor::view`] return (shapes that
    /// do not fit the cache).
    pub fn store(
        &self,
        il: usize,
        k: Tensor<'ctx>,
        v: Tensor<'ctx>,
        slots: Tensor<'ctx>,
        v_slots: Tensor<'ctx>,
        n_kv: usize,
    ) -> Result<(Tensor<'ctx>, Tensor<'ctx>)> {
        let (heads, hd) = (self.n_head_kv, self.head_dim);
        let rows = |cache: Tensor<'ctx>, new: Tensor<'ctx>| -> Result<Tensor<'ctx>> {
            let written = cache.set_rows(new, slots)?;
            let nb = cache.nb();
            written.view(&[n_kv, heads, hd], &[nb[1], nb[0] * hd], 0)
        };
        let keys = rows(self.keys[il], k)?;
        if !self.v_trans {
            return Ok((keys, rows(self.values[il], v)?));
        }
        // One element per row: the cache as a column, the values as one.
        let cache = self.values[il];
        let nb = cache.nb();
        let column = cache.reshape(&[cache.len(), 1])?;
        let written = column.set_rows(v.cont()?.reshape(&[v.len(), 1])?, v_slots)?;
        let values = written.view(&[heads, hd, n_kv], &[nb[1] * hd, nb[1]], 0)?;
        Ok((keys, values))
    }
}
