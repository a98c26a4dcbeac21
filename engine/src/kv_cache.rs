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
#[derive(Debug, Clone)]
pub struct Cache {
    layers: Vec<Layer>,
    max_len: usize,
}

/// Keys and values of one layer in their stored precision.
pub(crate) enum KvSlices<'a> {
    F32 { k: &'a [f32], v: &'a [f32] },
    F16 { k: &'a [f16], v: &'a [f16] },
}

/// One layer of a single-sequence cache, for a decode step: keys and values
/// `[heads, capacity, dim]`, of which positions `..len` are written.
pub(crate) struct LayerView<'a> {
    pub kv: KvSlices<'a>,
    pub len: usize,
    pub capacity: usize,
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
        }
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.len)
    }

    /// Positions already cached for one layer (layers fill one after another
    /// during a forward pass).
    pub fn len_of(&self, layer: usize) -> usize {
        self.layers[layer].len
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
        self.layers.first().map_or(0, |l| l.batch)
    }

    /// Fails, rather than silently attending past the trained range, when `extra`
    /// more positions would exceed the context length.
    pub(crate) fn check_room(&self, layer: usize, extra: usize) -> Result<()> {
        let needed = self.layers[layer].len + extra;
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
        let kv = match (&l.k, &l.v) {
            (Buf::F32(k), Buf::F32(v)) => KvSlices::F32 { k, v },
            (Buf::F16(k), Buf::F16(v)) => KvSlices::F16 { k, v },
            _ => unreachable!("a layer's buffers share one precision"),
        };
        Ok(LayerView {
            kv,
            len: l.len,
            capacity: l.capacity,
        })
    }

    /// Bytes the cache's buffers hold (allocated, not only written).
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| l.k.bytes() + l.v.bytes()).sum()
    }

    /// Keeps only the first `len` positions (no-op when it holds fewer): a cache
    /// of a shared prompt prefix, reused for another prompt.
    pub fn truncate(&mut self, len: usize) {
        for l in &mut self.layers {
            l.len = l.len.min(len);
        }
    }

    /// Forgets every cached position.
    pub fn reset(&mut self) {
        for l in &mut self.layers {
            l.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(cache: &mut Cache, t: usize, seed: f32) -> (Tensor, Tensor) {
        let n = 2 * 3 * t * 4;
        let k: Vec<f32> = (0..n).map(|i| seed + i as f32).collect();
        let v: Vec<f32> = (0..n).map(|i| -seed - i as f32).collect();
        let k = Tensor::from_vec(k, (2, 3, t, 4), &Device::Cpu).unwrap();
        let v = Tensor::from_vec(v, (2, 3, t, 4), &Device::Cpu).unwrap();
        cache.append(0, &k, &v).unwrap();
        (k, v)
    }

    #[test]
    fn an_f16_cache_rounds_what_it_stores_and_halves_its_bytes() {
        let mut wide = Cache::new(1, 1000);
        let mut half = Cache::with_precision(1, 1000, KvPrecision::F16);
        steps(&mut wide, 70, 0.1);
        let (k, _) = steps(&mut half, 70, 0.1);
        assert_eq!(2 * half.bytes(), wide.bytes());
        let l = &half.layers[0];
        let got = l
            .tensor(&l.k)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want: Vec<f32> = k
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&x| f16::from_f32(x).to_f32())
            .collect();
        assert_eq!(got, want);
        // A decode step (one sequence) sees stored values through its view.
        let mut one = Cache::with_precision(1, 1000, KvPrecision::F16);
        let view = one.push(0, 3, &[0.5; 12], &[0.25; 12]).unwrap();
        assert_eq!(view.len, 1);
        // The last head's first position: `[heads, capacity, d]`.
        let last = 2 * view.capacity * 4 + 3;
        match view.kv {
            KvSlices::F16 { k, v } => assert_eq!((k[last].to_f32(), v[last].to_f32()), (0.5, 0.25)),
            KvSlices::F32 { .. } => panic!("an f16 cache gave f32 values"),
        }
    }

    #[test]
    fn appends_grow_and_return_every_position_in_order() {
        let mut cache = Cache::new(1, 1000);
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        // 100 positions force two growths past the first allocation.
        for (i, t) in [5, 1, 60, 34].into_iter().enumerate() {
            let (k, v) = steps(&mut cache, t, 1000.0 * i as f32);
            ks.push(k);
            vs.push(v);
        }
        let l = &cache.layers[0];
        let (k, v) = (l.tensor(&l.k).unwrap(), l.tensor(&l.v).unwrap());
        let want_k = Tensor::cat(&ks, 2).unwrap();
        let want_v = Tensor::cat(&vs, 2).unwrap();
        assert_eq!(cache.len(), 100);
        assert_eq!(
            k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want_k.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(
            v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want_v.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn context_length_and_shape_are_enforced() {
        let mut cache = Cache::new(1, 6);
        steps(&mut cache, 5, 0.0);
        let err = cache
            .append(
                0,
                &Tensor::zeros((2, 3, 2, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
                &Tensor::zeros((2, 3, 2, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("context length 6"), "{err}");
        let err = cache.push(0, 3, &[0.0; 12], &[0.0; 12]).err().unwrap();
        assert!(err.to_string().contains("[2, 3, _, 4]"), "{err}");
    }
}
