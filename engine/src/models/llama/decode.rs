//! The Llama family's inference pass on plain buffers: runs of new tokens for
//! several sequences, each with its own cache and position. A decode step is
//! one token per sequence; a generation's prefill is one run of a whole prompt.
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
use crate::attend::attend;
use crate::config::RopeStyle;
use crate::error::{EngineError, Result};
use crate::kv_cache::{Cache, KvSlices, LayerView, MAX_RUNS};

/// Below this many multiply-adds, attention runs on the calling thread: handing
/// a short context to the pool costs more than it saves.
const PARALLEL_ATTENTION_WORK: usize = 1 << 16;
/// Fewest rows a pool task of a step's element-wise work (rotations, SwiGLU)
/// takes: fewer rows than twice this run on the calling thread, as handing them
/// over costs more than it saves; more are split over every thread, where one
/// thread alone kept the other waiting in every layer.
const MIN_ROWS_PER_TASK: usize = 4;
/// Fewest sequences of a decode step a thread takes on its own (see
/// [`Llama::decode_rows`]): on a 2-core VM, two or three sequences split
/// between the threads ran 8-18% slower than on both together, four even, six
/// (three a thread) 9-13% faster.
const MIN_ROWS_PER_THREAD: usize = 3;

impl Llama {
    /// A decode step of [`Llama::extend_rows`] with its sequences split into
    /// contiguous parts, one per pool thread (down to [`MIN_ROWS_PER_THREAD`]
    /// each), whose layers run side by side. Each thread then reads every
    /// layer's weights (twice the reads, from the shared cache) but quantizes,
    /// multiplies, attends and writes only its own rows, with no hand-off
    /// between threads in each of a step's hundreds of small products; the
    /// threads help each other only when one runs out of work. With every
    /// product split by output features instead, a 24-sequence step on two
    /// threads ran 1.45x as fast as on one, losing a quarter of the second
    /// thread to hand-offs, moving activations between cores and waiting;
    /// split by sequences, decode of 8-64 sequences ran 10-25% faster.
    ///
    /// The LM head, one product per step, runs on every row at once, split by
    /// output features: the largest matrix (a fifth of SmolLM2's
    /// multiply-adds) is then streamed once rather than by each thread, on
    /// AMX tiles of all the rows from ten, for one hand-off per step. Greedy
    /// decode of 12-24 sequences ran 1-13% faster than with the head in each
    /// part.
    ///
    /// A row's bits do not depend on its batch, so neither do they on the
    /// split.
    pub(super) fn decode_rows(
        &self,
        runs: &[&[u32]],
        caches: &mut [&mut Cache],
    ) -> Result<Vec<f32>> {
        let hidden = self.decode_split(runs, caches, rayon::current_num_threads())?;
        self.head(&hidden, runs.len())
    }

    /// The last hidden state of each run of [`Llama::decode_rows`] over
    /// `threads` threads: halves of the threads take proportional parts of the
    /// sequences.
    fn decode_split(
        &self,
        runs: &[&[u32]],
        caches: &mut [&mut Cache],
        threads: usize,
    ) -> Result<Vec<f32>> {
        let left = threads / 2;
        let mid = runs.len() * left / threads.max(1);
        if left == 0
            || mid < MIN_ROWS_PER_THREAD
            || runs.len() - mid < MIN_ROWS_PER_THREAD
            || runs.len() != caches.len()
        {
            return self.extend_hidden(runs, caches);
        }
        let (runs_a, runs_b) = runs.split_at(mid);
        let (caches_a, caches_b) = caches.split_at_mut(mid);
        let (a, b) = rayon::join(
            || self.decode_split(runs_a, caches_a, left),
            || self.decode_split(runs_b, caches_b, threads - left),
        );
        let mut hidden = a?;
        hidden.extend(b?);
        Ok(hidden)
    }

    /// Runs `runs[i]` after the positions in `caches[i]`, every run of every
    /// sequence through one pass over the weights, and returns the next-token
    /// logits of each run's last position (`runs.len() * vocab` values). A
    /// decode step is runs of one token; a prefill is one run of a whole prompt
    /// (rows attend causally within their run). Call on the engine pool.
    pub(super) fn extend_rows(
        &self,
        runs: &[&[u32]],
        caches: &mut [&mut Cache],
    ) -> Result<Vec<f32>> {
        let hidden = self.extend_hidden(runs, caches)?;
        self.head(&hidden, runs.len())
    }

    /// The final norm and LM head of `n` rows of last hidden states.
    fn head(&self, hidden: &[f32], n: usize) -> Result<Vec<f32>> {
        let mut normed = vec![0f32; hidden.len()];
        self.norm.forward_rows(hidden, &mut normed)?;
        self.lm_head.forward_rows(&normed, n)
    }

    /// The layers of [`Llama::extend_rows`]: the last hidden state of each
    /// run (`runs.len() * hidden` values), before the final norm.
    fn extend_hidden(&self, runs: &[&[u32]], caches: &mut [&mut Cache]) -> Result<Vec<f32>> {
        if runs.len() != caches.len() {
            return Err(EngineError::invalid(
                "tokens",
                format!("{} token runs for {} caches", runs.len(), caches.len()),
            ));
        }
        if runs.iter().any(|r| r.is_empty()) {
            return Err(EngineError::invalid("tokens", "a run of no tokens"));
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
        // Row `r` of the pass is token `rows[r].1` of sequence `rows[r].0`.
        let rows: Vec<(usize, usize)> = runs
            .iter()
            .zip(caches.iter())
            .enumerate()
            .flat_map(|(i, (run, cache))| {
                (cache.len()..cache.len() + run.len()).map(move |p| (i, p))
            })
            .collect();
        let tokens = runs.concat();
        let n = tokens.len();
        let hidden = self.cfg.hidden_size;
        let mut x = self.embed.rows(&tokens)?;
        let mut normed = vec![0f32; n * hidden];
        for (layer, block) in self.blocks.iter().enumerate() {
            block.attn_norm.forward_rows(&x, &mut normed)?;
            let h = block
                .attn
                .extend(&normed, runs, &rows, caches, layer, &self.rotary)?;
            add(&mut x, &h);
            block.mlp_norm.forward_rows(&x, &mut normed)?;
            add(&mut x, &block.mlp.forward_rows(&normed, n)?);
        }
        if n > runs.len() {
            // Only each run's last row needs the LM head.
            let mut last = Vec::with_capacity(runs.len() * hidden);
            let mut end = 0;
            for run in runs {
                end += run.len();
                last.extend_from_slice(&x[(end - 1) * hidden..end * hidden]);
            }
            x = last;
        }
        Ok(x)
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
    /// Attention of new positions (`rows`: sequence and position of each row of
    /// `x`, in `runs` order): projects, rotates, appends keys and values to each
    /// sequence's cache, attends causally over what is cached up to each row's
    /// position, and applies the output projection.
    fn extend(
        &self,
        x: &[f32],
        runs: &[&[u32]],
        rows: &[(usize, usize)],
        caches: &mut [&mut Cache],
        layer: usize,
        rotary: &Rotary,
    ) -> Result<Vec<f32>> {
        let n = rows.len();
        let d = self.head_dim;
        let [mut q, mut k, v]: [Vec<f32>; 3] = self
            .qkv
            .forward_rows(x, n)?
            .try_into()
            .expect("three projections");
        let (q_width, kv_width) = (self.heads * d, self.kv_heads * d);
        q.par_chunks_mut(q_width)
            .zip(k.par_chunks_mut(kv_width))
            .zip(rows.par_iter())
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|((q, k), &(_, pos))| {
                rotary.apply_rows(q, pos, d);
                rotary.apply_rows(k, pos, d);
            });
        let mut first = 0;
        let views = caches
            .iter_mut()
            .zip(runs)
            .map(|(cache, run)| {
                let kv = |r: usize| r * kv_width..(r + 1) * kv_width;
                let last = first + run.len() - 1;
                for r in first..last {
                    cache.push(layer, self.kv_heads, &k[kv(r)], &v[kv(r)])?;
                }
                first = last + 1;
                cache.push(layer, self.kv_heads, &k[kv(last)], &v[kv(last)])
            })
            .collect::<Result<Vec<_>>>()?;
        let group = self.heads / self.kv_heads;
        let scale = 1.0 / (d as f32).sqrt();
        // One task per (row, key/value head), attending with that head's group
        // of query heads (adjacent in `q` and in the output): a batch spreads
        // over every thread however short each sequence's context is, and
        // each cached key and value is read once per group.
        let task = |t: usize, out: &mut [f32], scratch: &mut Vec<f32>| {
            let (r, kv) = (t / self.kv_heads, t % self.kv_heads);
            let (i, pos) = rows[r];
            let view = &views[i];
            debug_assert!(
                pos < view.len(),
                "row at {pos} of a cache of {}",
                view.len()
            );
            let q = &q[r * q_width + kv * group * d..][..group * d];
            match &view.own.kv {
                KvSlices::F32 { .. } => {
                    let (runs, n) = visible(view, kv, d, pos, KvSlices::f32s);
                    attend(q, d, &runs[..n], scale, out, scratch)
                }
                KvSlices::F16 { .. } => {
                    let (runs, n) = visible(view, kv, d, pos, KvSlices::f16s);
                    attend(q, d, &runs[..n], scale, out, scratch)
                }
            }
        };
        let mut out = vec![0f32; n * q_width];
        let work: usize = rows.iter().map(|&(_, pos)| pos + 1).sum::<usize>() * q_width;
        if work < PARALLEL_ATTENTION_WORK {
            let mut scratch = Vec::new();
            out.chunks_exact_mut(group * d)
                .enumerate()
                .for_each(|(t, o)| task(t, o, &mut scratch));
        } else {
            out.par_chunks_mut(group * d)
                .enumerate()
                .for_each_init(Vec::new, |scratch, (t, o)| task(t, o, scratch));
        }
        drop(views);
        self.o.forward_rows(&out, n)
    }
}

/// One run's keys and values.
type KeysValues<'a, E> = (&'a [E], &'a [E]);

/// The keys and values of head `kv` that a row at position `pos` of `view`
/// attends to (causal: its own position and those before it), run by run: the
/// shared caches' (if any), then the cache's own; `slices` takes a run's
/// buffers in their precision. Returns the runs and how many there are.
/// Inlined: called out of line, it cost f32 decode of one sequence on two
/// threads 8-10% (measured three times, alternating builds).
#[inline(always)]
fn visible<'a, E>(
    view: &LayerView<'a>,
    kv: usize,
    d: usize,
    pos: usize,
    slices: impl Fn(&KvSlices<'a>) -> KeysValues<'a, E>,
) -> ([KeysValues<'a, E>; MAX_RUNS], usize) {
    let mut runs: [KeysValues<'a, E>; MAX_RUNS] = [(&[], &[]); MAX_RUNS];
    let mut left = pos + 1;
    let mut n = 0;
    for run in view.prefix.iter().flatten().chain([&view.own]) {
        let take = left.min(run.len);
        left -= take;
        let (k, v) = slices(&run.kv);
        let at = kv * run.capacity * d;
        runs[n] = (&k[at..][..take * d], &v[at..][..take * d]);
        n += 1;
    }
    (runs, n)
}

impl Mlp {
    /// `down(silu(gate(x)) * up(x))` for `n` rows of plain values.
    fn forward_rows(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let [mut g, u]: [Vec<f32>; 2] = self
            .gate_up
            .forward_rows(x, n)?
            .try_into()
            .expect("two projections");
        // Row by row, so that a row's bits do not depend on where it sits
        // (the vector path and its scalar tail round differently).
        let width = g.len() / n.max(1);
        if width > 0 {
            g.par_chunks_mut(width)
                .zip(u.par_chunks(width))
                .with_min_len(MIN_ROWS_PER_TASK)
                .for_each(|(g, u)| crate::vmath::silu_mul(g, u));
        }
        self.down.forward_rows(&g, n)
    }
}
