//! The key/value cache of a decoding session, kept outside the model so one loaded
//! model (behind an `Arc`) serves many sessions at once.
//!
//! The cache owns plain buffers, laid out `[b, heads, capacity, d]` per layer, so
//! a decode step reads and writes them directly (`models/llama/decode.rs`) while
//! candle's forward pass gets tensors of the cached positions ([`Cache::append`]).
//! Capacity grows by doubling up to the model's context length. Values are kept
//! in f32, or in f16 for quantized models as llama.cpp does by default: a decode
//! step of many sequences reads every cached position, and at f32 that read was
//! most of attention's time.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::error::{EngineError, Result};

/// Positions allocated by the first write to a layer.
const MIN_CAPACITY: usize = 64;

/// The element type of cached keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvPrecision {
    /// f32: the reference numerics, and what a trainable model needs.
    #[default]
    F32,
    /// f16: half the memory, and half the bytes attention reads per step.
    F16,
}

/// One buffer of keys or values.
#[derive(Debug, Clone)]
enum Buf {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Buf {
    fn new(precision: KvPrecision) -> Self {
        match precision {
            KvPrecision::F32 => Self::F32(Vec::new()),
            KvPrecision::F16 => Self::F16(Vec::new()),
        }
    }

    /// `n` zeros of the same precision.
    fn zeros(&self, n: usize) -> Self {
        match self {
            Self::F32(_) => Self::F32(vec![0.0; n]),
            Self::F16(_) => Self::F16(vec![f16::ZERO; n]),
        }
    }

    /// Copies `len` values at `from` of `src` (same precision) to `to`.
    fn copy_from(&mut self, to: usize, src: &Buf, from: usize, len: usize) {
        match (self, src) {
            (Self::F32(d), Self::F32(s)) => d[to..to + len].copy_from_slice(&s[from..from + len]),
            (Self::F16(d), Self::F16(s)) => d[to..to + len].copy_from_slice(&s[from..from + len]),
            _ => unreachable!("a layer's buffers share one precision"),
        }
    }

    /// Stores `values` at `to`, rounding to f16 if that is the precision.
    fn store(&mut self, to: usize, values: &[f32]) {
        match self {
            Self::F32(d) => d[to..to + values.len()].copy_from_slice(values),
            Self::F16(d) => d[to..to + values.len()].convert_from_f32_slice(values),
        }
    }

    /// Appends `len` values at `from` to `out` as f32.
    fn extend_f32(&self, from: usize, len: usize, out: &mut Vec<f32>) {
        match self {
            Self::F32(s) => out.extend_from_slice(&s[from..from + len]),
            Self::F16(s) => {
                let at = out.len();
                out.resize(at + len, 0.0);
                s[from..from + len].convert_to_f32_slice(&mut out[at..]);
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::F32(v) => v.capacity() * std::mem::size_of::<f32>(),
            Self::F16(v) => v.capacity() * std::mem::size_of::<f16>(),
        }
    }

    fn precision(&self) -> KvPrecision {
        match self {
            Self::F32(_) => KvPrecision::F32,
            Self::F16(_) => KvPrecision::F16,
        }
    }
}

/// One layer's keys and values.
#[derive(Debug, Clone)]
struct Layer {
    k: Buf,
    v: Buf,
    /// Positions written.
    len: usize,
    /// Positions allocated per `(b, head)` row.
    capacity: usize,
    batch: usize,
    heads: usize,
    dim: usize,
}

impl Layer {
    fn new(precision: KvPrecision) -> Self {
        Self {
            k: Buf::new(precision),
            v: Buf::new(precision),
            len: 0,
            capacity: 0,
            batch: 0,
            heads: 0,
            dim: 0,
        }
    }

    /// Makes room for `extra` more positions of `[batch, heads, _, dim]` values.
    fn reserve(&mut self, batch: usize, heads: usize, dim: usize, extra: usize) -> Result<()> {
        if self.len == 0 {
            (self.batch, self.heads, self.dim) = (batch, heads, dim);
        } else if (batch, heads, dim) != (self.batch, self.heads, self.dim) {
            return Err(EngineError::invalid(
                "cache",
                format!(
                    "holds [{}, {}, _, {}] but was given [{batch}, {heads}, _, {dim}]",
                    self.batch, self.heads, self.dim
                ),
            ));
        }
        let needed = self.len + extra;
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = needed.max(2 * self.capacity).max(MIN_CAPACITY);
        let rows = batch * heads;
        for buf in [&mut self.k, &mut self.v] {
            let mut grown = buf.zeros(rows * capacity * dim);
            for r in 0..rows {
                grown.copy_from(
                    r * capacity * dim,
                    buf,
                    r * self.capacity * dim,
                    self.len * dim,
                );
            }
            *buf = grown;
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Writes `t` new positions of `k`, `v` given as `[batch, heads, t, dim]`.
    fn write(&mut self, k: &[f32], v: &[f32], t: usize) {
        let (d, cap, len) = (self.dim, self.capacity, self.len);
        for (buf, new) in [(&mut self.k, k), (&mut self.v, v)] {
            for (r, rows) in new.chunks_exact(t * d).enumerate() {
                buf.store((r * cap + len) * d, rows);
            }
        }
        self.len += t;
    }

    /// Every cached position of `buf` as a `[batch, heads, len, dim]` tensor.
    fn tensor(&self, buf: &Buf) -> Result<Tensor> {
        let (d, cap, len) = (self.dim, self.capacity, self.len);
        let mut out = Vec::with_capacity(self.batch * self.heads * len * d);
        for r in 0..self.batch * self.heads {
            buf.extend_f32(r * cap * d, len * d, &mut out);
        }
        Ok(Tensor::from_vec(
            out,
            (self.batch, self.heads, len, d),
            &Device::Cpu,
        )?)
    }
}

/// Per-layer keys and values of the tokens seen so far.
///
/// A cache may start with the first positions of another, shared and frozen
/// ([`Cache::on_prefix`]): the prompts of TeacherLM's three kinds differ only
/// in their last tokens, so their sequences read one copy of the question's
/// keys and values instead of three (less memory, and attention over many
/// sequences is bound by reading them). Its own buffers hold the positions
/// after the shared ones.
#[derive(Debug, Clone)]
pub struct Cache {
    layers: Vec<Layer>,
    max_len: usize,
    shared: Option<Shared>,
}

/// The first `len` positions of a frozen cache that a [`Cache`] starts with.
/// That cache may itself start on another, down to [`MAX_DEPTH`] shared
/// caches, so a cache is at most `MAX_DEPTH + 1` runs: the shared ones, oldest
/// first, then its own.
#[derive(Debug, Clone)]
struct Shared {
    cache: Arc<Cache>,
    len: usize,
}

/// Most shared caches a cache starts on, one on the next. Two: a repeated
/// prompt of a question's second kind starts on that prompt's stored cache,
/// which starts on the question's; a third level is copied instead.
const MAX_DEPTH: usize = 2;

/// Most runs a [`LayerView`] holds: the shared caches', then the cache's own.
pub(crate) const MAX_RUNS: usize = MAX_DEPTH + 1;

/// Keys and values of one layer in their stored precision.
pub(crate) enum KvSlices<'a> {
    F32 { k: &'a [f32], v: &'a [f32] },
    F16 { k: &'a [f16], v: &'a [f16] },
}

impl<'a> KvSlices<'a> {
    /// The keys and values of an f32 cache.
    pub fn f32s(&self) -> (&'a [f32], &'a [f32]) {
        match *self {
            Self::F32 { k, v } => (k, v),
            Self::F16 { .. } => unreachable!("a cache and its shared prefix have one precision"),
        }
    }

    /// The keys and values of an f16 cache.
    pub fn f16s(&self) -> (&'a [f16], &'a [f16]) {
        match *self {
            Self::F16 { k, v } => (k, v),
            Self::F32 { .. } => unreachable!("a cache and its shared prefix have one precision"),
        }
    }
}

/// Keys and values `[heads, capacity, dim]` of one layer of a single sequence,
/// of which positions `..len` count.
pub(crate) struct KvRun<'a> {
    pub kv: KvSlices<'a>,
    pub len: usize,
    pub capacity: usize,
}

/// One layer of a single-sequence cache, for a decode step: the shared
/// caches' positions (if any, oldest first), then the cache's own.
pub(crate) struct LayerView<'a> {
    pub prefix: [Option<KvRun<'a>>; MAX_DEPTH],
    pub own: KvRun<'a>,
}

impl LayerView<'_> {
    /// Positions in the view.
    pub fn len(&self) -> usize {
        self.prefix.iter().flatten().map(|p| p.len).sum::<usize>() + self.own.len
    }
}

impl Layer {
    /// The layer's buffers and written positions as a run.
    fn run(&self, len: usize) -> KvRun<'_> {
        let kv = match (&self.k, &self.v) {
            (Buf::F32(k), Buf::F32(v)) => KvSlices::F32 { k, v },
            (Buf::F16(k), Buf::F16(v)) => KvSlices::F16 { k, v },
            _ => unreachable!("a layer's buffers share one precision"),
        };
        KvRun {
            kv,
            len,
            capacity: self.capacity,
        }
    }

    /// The first `n` positions (at most those written) in buffers of their
    /// size.
    fn compacted(&self, n: usize) -> Layer {
        let n = n.min(self.len);
        let mut out = Layer::new(self.k.precision());
        if n > 0 {
            (out.batch, out.heads, out.dim, out.capacity, out.len) =
                (self.batch, self.heads, self.dim, n, n);
            let d = self.dim;
            for (dst, src) in [(&mut out.k, &self.k), (&mut out.v, &self.v)] {
                *dst = src.zeros(self.batch * self.heads * n * d);
                for r in 0..self.batch * self.heads {
                    dst.copy_from(r * n * d, src, r * self.capacity * d, n * d);
                }
            }
        }
        out
    }

    /// This layer's first `n` positions followed by the first `m` of `own`.
    fn joined(&self, n: usize, own: &Layer, m: usize) -> Result<Layer> {
        let mut out = self.clone();
        out.len = n;
        let m = m.min(own.len);
        if m > 0 {
            out.reserve(own.batch, own.heads, own.dim, m)?;
            let (d, cap) = (out.dim, out.capacity);
            for (dst, src) in [(&mut out.k, &own.k), (&mut out.v, &own.v)] {
                for r in 0..own.batch * own.heads {
                    dst.copy_from((r * cap + n) * d, src, r * own.capacity * d, m * d);
                }
            }
            out.len += m;
        }
        Ok(out)
    }
}

impl Cache {
    /// An empty f32 cache for `layers` layers holding at most `max_len` positions.
    pub fn new(layers: usize, max_len: usize) -> Self {
        Self::with_precision(layers, max_len, KvPrecision::F32)
    }

    /// An empty cache storing keys and values in `precision`.
    pub fn with_precision(layers: usize, max_len: usize, precision: KvPrecision) -> Self {
        Self {
            layers: vec![Layer::new(precision); layers],
            max_len,
            shared: None,
        }
    }

    /// An empty cache of the same kind as `prefix` that starts with its first
    /// `len` positions, shared rather than copied. Within the cache `prefix`
    /// itself starts on, it starts on that one instead. Past it, it starts on
    /// `prefix` (positions read through both), unless that would make more
    /// than [`MAX_DEPTH`] shared caches: then it starts on `prefix`'s and
    /// copies `prefix`'s own positions up to `len`. The prompts of one
    /// question's three kinds, each remembered on the question's cache, so
    /// read one copy of it, and a prompt asked again runs on its stored cache
    /// with nothing copied (23 repeated prompts admitted at once copied for
    /// 4-9 ms, and each copy was copied again into larger buffers by its first
    /// decode step).
    pub fn on_prefix(prefix: Arc<Cache>, len: usize) -> Result<Self> {
        let len = len.min(prefix.len());
        if let Some(s) = &prefix.shared {
            if len <= s.len {
                return Self::on_prefix(Arc::clone(&s.cache), len);
            }
            if prefix.depth() >= MAX_DEPTH {
                let mut out = Self::on_prefix(Arc::clone(&s.cache), s.len)?;
                out.layers = prefix
                    .layers
                    .iter()
                    .map(|l| l.compacted(len - s.len))
                    .collect();
                return Ok(out);
            }
        }
        Ok(Self {
            layers: prefix
                .layers
                .iter()
                .map(|l| Layer::new(l.k.precision()))
                .collect(),
            max_len: prefix.max_len,
            shared: Some(Shared { cache: prefix, len }),
        })
    }

    /// A copy holding its own positions in buffers of just their size (a
    /// cache kept for reuse), still on the same shared prefix.
    pub fn compacted(&self) -> Self {
        Self {
            layers: self.layers.iter().map(|l| l.compacted(l.len)).collect(),
            max_len: self.max_len,
            shared: self.shared.clone(),
        }
    }

    /// The frozen cache this one starts on, if any.
    pub fn base(&self) -> Option<&Arc<Cache>> {
        self.shared.as_ref().map(|s| &s.cache)
    }

    /// The frozen caches this one starts on: its base, the base's base, and
    /// so on.
    pub fn bases(&self) -> impl Iterator<Item = &Arc<Cache>> {
        std::iter::successors(self.base(), |c| c.base())
    }

    /// The first frozen cache of the chain this one starts on (the one that
    /// starts on none), if any: caches with the same root share its positions.
    pub fn root(&self) -> Option<&Arc<Cache>> {
        self.bases().last()
    }

    /// Shared caches this one starts on, one on the next.
    fn depth(&self) -> usize {
        self.bases().count()
    }

    /// Copies any shared prefix into this cache's own buffers.
    pub fn flatten(&mut self) -> Result<()> {
        if self.shared.is_some() {
            // Every position (none lies past `max_len`); the prefix is let go
            // only once the copy is made, so a failure leaves the cache whole.
            self.layers = self.flat_layers(self.max_len)?;
            self.shared = None;
        }
        Ok(())
    }

    /// The first `upto` positions of every layer, the shared caches' included,
    /// in one buffer each.
    fn flat_layers(&self, upto: usize) -> Result<Vec<Layer>> {
        let Some(s) = &self.shared else {
            return Ok(self.layers.clone());
        };
        let take = upto.min(s.len);
        s.cache
            .flat_layers(take)?
            .iter()
            .zip(&self.layers)
            .map(|(p, own)| p.joined(take, own, upto - take))
            .collect()
    }

    /// Positions taken from a shared prefix.
    fn shared_len(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.len)
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.shared_len() + self.layers.first().map_or(0, |l| l.len)
    }

    /// Positions already cached for one layer (layers fill one after another
    /// during a forward pass).
    pub fn len_of(&self, layer: usize) -> usize {
        self.shared_len() + self.layers[layer].len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most positions this cache may hold (the model's context length).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Sequences cached side by side (0 while empty).
    pub fn batch(&self) -> usize {
        match &self.shared {
            Some(s) => s.cache.batch(),
            None => self.layers.first().map_or(0, |l| l.batch),
        }
    }

    /// Fails, rather than silently attending past the trained range, when `extra`
    /// more positions would exceed the context length.
    pub(crate) fn check_room(&self, layer: usize, extra: usize) -> Result<()> {
        let needed = self.len_of(layer) + extra;
        if needed > self.max_len {
            return Err(EngineError::invalid(
                "prompt",
                format!("{needed} tokens exceed the context length {}", self.max_len),
            ));
        }
        Ok(())
    }

    /// Appends this step's keys/values `[b, heads, t, d]` for `layer` and returns
    /// all of them. On an empty layer the inputs come back as they are, so a
    /// forward pass without history keeps its autograd graph.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, h, t, d) = k.dims4()?;
        if v.dims4()? != (b, h, t, d) {
            return Err(EngineError::invalid(
                "cache",
                format!("keys {:?} and values {:?} differ", k.dims(), v.dims()),
            ));
        }
        self.check_room(layer, t)?;
        // The tensor path works on one buffer: a shared prefix is copied in.
        self.flatten()?;
        let first = self.layers[layer].len == 0;
        let l = &mut self.layers[layer];
        l.reserve(b, h, d, t)?;
        let kv = k.flatten_all()?.to_vec1::<f32>()?;
        let vv = v.flatten_all()?.to_vec1::<f32>()?;
        l.write(&kv, &vv, t);
        if first {
            return Ok((k.clone(), v.clone()));
        }
        Ok((l.tensor(&l.k)?, l.tensor(&l.v)?))
    }

    /// Appends one position `k`, `v` (`[heads * d]` each) of a single-sequence
    /// cache and returns the layer with it.
    pub(crate) fn push(
        &mut self,
        layer: usize,
        heads: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<LayerView<'_>> {
        self.check_room(layer, 1)?;
        let l = &mut self.layers[layer];
        l.reserve(1, heads, k.len() / heads, 1)?;
        l.write(k, v, 1);
        let mut prefix = [const { None }; MAX_DEPTH];
        if let Some(s) = &self.shared {
            s.cache.runs(layer, s.len, &mut prefix);
        }
        let l = &self.layers[layer];
        Ok(LayerView {
            prefix,
            own: l.run(l.len),
        })
    }

    /// Appends the runs of `layer`'s first `upto` positions (the shared
    /// caches' first) to the empty slots of `out`.
    fn runs<'a>(&'a self, layer: usize, upto: usize, out: &mut [Option<KvRun<'a>>]) {
        let mut own = upto;
        if let Some(s) = &self.shared {
            let take = upto.min(s.len);
            s.cache.runs(layer, take, out);
            own -= take;
        }
        if own > 0 {
            let slot = out
                .iter_mut()
                .find(|r| r.is_none())
                .expect("a view holds every shared cache of the chain");
            *slot = Some(self.layers[layer].run(own));
        }
    }

    /// Bytes the cache's own buffers hold (allocated, not only written; a
    /// shared prefix is counted where it is stored).
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.k.bytes() + l.v.bytes()).sum()
    }

    /// Keeps only the first `len` positions (no-op when it holds fewer): a cache
    /// of a shared prompt prefix, reused for another prompt.
    pub fn truncate(&mut self, len: usize) {
        let own = match &mut self.shared {
            Some(s) => {
                s.len = s.len.min(len);
                len - s.len
            }
            None => len,
        };
        for l in &mut self.layers {
            l.len = l.len.min(own);
        }
    }

    /// Forgets every cached position.
    pub fn reset(&mut self) {
        self.shared = None;
        for l in &mut self.layers {
            l.len = 0;
        }
    }
}

#[cfg(test)]
mod tests;
