//! The decode step of the Llama family on plain buffers: one new token for each of
//! several sequences, each with its own cache and position.
//!
//! Same arithmetic as the tensor forward pass in `mod.rs` (RMSNorm, rotary
//! embedding, grouped-query attention, SwiGLU), without candle's per-operation
//! costs: a 135M-parameter model runs about twenty small operations per layer per
//! token, and at a few microseconds of allocation, dispatch and strided copying
//! each, that overhead rivals the matrix products themselves. Matrix products go
//! through the same kernels ([`crate::weights::Linear::forward_rows`]), so the two
//! paths agree to rounding (`engine/tests/parity.rs` checks it).

use rayon::prelude::*;

use super::{Attention, Llama, Mlp, Rotary};
use crate::config::RopeStyle;
use crate::error::{EngineError, Result};
use crate::kv_cache::Cache;

/// Below this many multiply-adds, attention runs on the calling thread: handing
/// a short context to the pool costs more than it saves.
const PARALLEL_ATTENTION_WORK: usize = 1 << 16;

impl Llama {
    /// [`crate::models::CausalLm::decode_step`] on the engine pool.
    pub(super) fn decode_rows(
        &self,
        tokens: &[u32],
        caches: &mut [&mut Cache],
    ) -> Result<Vec<f32>> {
        let n = tokens.len();
        if n != caches.len() {
            return Err(EngineError::invalid(
                "tokens",
                format!("{n} tokens for {} caches", caches.len()),
            ));
        }
        if let Some(c) = caches.iter().find(|c| c.batch() > 1) {
            return Err(EngineError::invalid(
                "cache",
                format!(
                    "a decode step takes one sequence per cache, not {}",
                    c.batch()
                ),
            ));
        }
        let positions: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        let hidden = self.cfg.hidden_size;
        let mut x = self.embed.rows(tokens)?;
        let mut normed = vec![0f32; n * hidden];
        for (layer, block) in self.blocks.iter().enumerate() {
            block.attn_norm.forward_rows(&x, &mut normed)?;
            let h = block
                .attn
                .decode(&normed, &positions, caches, layer, &self.rotary)?;
            add(&mut x, &h);
            block.mlp_norm.forward_rows(&x, &mut normed)?;
            add(&mut x, &block.mlp.forward_rows(&normed, n)?);
        }
        self.norm.forward_rows(&x, &mut normed)?;
        self.lm_head.forward_rows(&normed, n)
    }
}

fn add(x: &mut [f32], h: &[f32]) {
    for (x, h) in x.iter_mut().zip(h) {
        *x += h;
    }
}

impl Rotary {
    /// Rotates each `head_dim` chunk of `x` for position `pos`, as candle's
    /// `rope` (halves) or `rope_i` (interleaved pairs).
    fn apply_rows(&self, x: &mut [f32], pos: usize, head_dim: usize) {
        let half = head_dim / 2;
        let cos = &self.cos_values[pos * half..(pos + 1) * half];
        let sin = &self.sin_values[pos * half..(pos + 1) * half];
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match self.style {
                    RopeStyle::Half => (i, i + half),
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

impl Attention {
    /// Attention of one new position per sequence: projects `x` (`n` rows),
    /// rotates, appends keys and values to each sequence's cache, attends over
    /// everything cached, and applies the output projection.
    fn decode(
        &self,
        x: &[f32],
        positions: &[usize],
        caches: &mut [&mut Cache],
        layer: usize,
        rotary: &Rotary,
    ) -> Result<Vec<f32>> {
        let n = positions.len();
        let d = self.head_dim;
        let [mut q, mut k, v]: [Vec<f32>; 3] = self
            .qkv
            .forward_rows(x, n)?
            .try_into()
            .expect("three projections");
        let (q_width, kv_width) = (self.heads * d, self.kv_heads * d);
        for (i, &pos) in positions.iter().enumerate() {
            rotary.apply_rows(&mut q[i * q_width..(i + 1) * q_width], pos, d);
            rotary.apply_rows(&mut k[i * kv_width..(i + 1) * kv_width], pos, d);
        }
        let views = caches
            .iter_mut()
            .enumerate()
            .map(|(i, cache)| {
                let kv = i * kv_width..(i + 1) * kv_width;
                cache.push(layer, self.kv_heads, &k[kv.clone()], &v[kv])
            })
            .collect::<Result<Vec<_>>>()?;
        let group = self.heads / self.kv_heads;
        let scale = 1.0 / (d as f32).sqrt();
        // One task per (sequence, head): a batch spreads over every thread
        // however short each sequence's context is.
        let head = |t: usize, out: &mut [f32], scores: &mut Vec<f32>| {
            let (i, h) = (t / self.heads, t % self.heads);
            let view = &views[i];
            let kv = h / group;
            let keys = &view.k[kv * view.capacity * d..][..view.len * d];
            let values = &view.v[kv * view.capacity * d..][..view.len * d];
            let q = &q[i * q_width + h * d..][..d];
            crate::attend::attend(q, keys, values, scale, out, scores);
        };
        let mut out = vec![0f32; n * q_width];
        let work: usize = views.iter().map(|v| v.len).sum::<usize>() * q_width;
        if work < PARALLEL_ATTENTION_WORK {
            let mut scores = Vec::new();
            out.chunks_exact_mut(d)
                .enumerate()
                .for_each(|(t, o)| head(t, o, &mut scores));
        } else {
            out.par_chunks_mut(d)
                .enumerate()
                .for_each_init(Vec::new, |scores, (t, o)| head(t, o, scores));
        }
        drop(views);
        self.o.forward_rows(&out, n)
    }
}

impl Mlp {
    /// `down(silu(gate(x)) * up(x))` for `n` rows of plain values.
    fn forward_rows(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let [mut g, u]: [Vec<f32>; 2] = self
            .gate_up
            .forward_rows(x, n)?
            .try_into()
            .expect("two projections");
        crate::vmath::silu_mul(&mut g, &u);
        self.down.forward_rows(&g, n)
    }
}
