//! The key/value cache: per layer, the keys and values of every position
//! computed so far, in backend memory, so a step computes only its new
//! tokens.

use crate::backend::BufferType;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::types::Type;

/// Keys and values of `n_ctx` positions for every layer, one row per
/// position (`[n_ctx + 1, n_head_kv · head_dim]`, ndarray order), plus one
/// spare row that padding tokens write and no step reads.
pub struct KvCache<'ctx> {
    keys: Vec<Tensor<'ctx>>,
    values: Vec<Tensor<'ctx>>,
    n_ctx: usize,
    n_head_kv: usize,
    head_dim: usize,
}

impl<'ctx> KvCache<'ctx> {
    /// A cache of `n_ctx` positions of type `ty` (f32 or f16) for
    /// `n_layer` layers of `n_head_kv` heads of `head_dim`, made in `ctx`
    /// (a `no_alloc` context) and placed in one new buffer of
    /// `buffer_type`, zeroed.
    ///
    /// # Errors
    /// [`Error::Model`] for a type other than f32 or f16; what
    /// [`Context::new_tensor`] and [`Context::allocate`] return.
    pub fn new(
        ctx: &'ctx Context,
        buffer_type: BufferType,
        ty: Type,
        n_layer: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> Result<KvCache<'ctx>> {
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
            let v = ctx.new_tensor(ty, &[n_ctx + 1, width])?;
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
        })
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
    /// head_dim]`, f32) of layer `il` at the rows `slots` (i64, one per
    /// token), and returns views of the first `n_kv` positions of the
    /// written cache, keys and values, `[n_kv, n_head_kv, head_dim]`
    /// (ndarray order). Reading the views after the writes is what orders
    /// them in the graph.
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
        n_kv: usize,
    ) -> Result<(Tensor<'ctx>, Tensor<'ctx>)> {
        let view = |cache: Tensor<'ctx>, new: Tensor<'ctx>| -> Result<Tensor<'ctx>> {
            let written = cache.set_rows(new, slots)?;
            let nb = cache.nb();
            written.view(
                &[n_kv, self.n_head_kv, self.head_dim],
                &[nb[1], nb[0] * self.head_dim],
                0,
            )
        };
        Ok((view(self.keys[il], k)?, view(self.values[il], v)?))
    }
}
