//! The key/value cache of a decoding session, kept outside the model so one loaded
//! model (behind an `Arc`) serves many sessions at once.

use candle_core::Tensor;

use crate::error::{EngineError, Result};

/// Per-layer keys and values of the tokens seen so far, laid out `[b, heads, t, d]`.
#[derive(Debug, Clone)]
pub struct Cache {
    layers: Vec<candle_nn::kv_cache::KvCache>,
    max_len: usize,
}

impl Cache {
    /// An empty cache for `layers` layers holding at most `max_len` positions.
    pub fn new(layers: usize, max_len: usize) -> Self {
        Self {
            // candle's cache preallocates 512 positions, writes each step in place and
            // grows by another 512 when full, instead of concatenating every step.
            layers: (0..layers)
                .map(|_| candle_nn::kv_cache::KvCache::new(2, 512))
                .collect(),
            max_len,
        }
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.current_seq_len())
    }

    /// Positions already cached for one layer (layers fill one after another
    /// during a forward pass).
    pub fn len_of(&self, layer: usize) -> usize {
        self.layers[layer].current_seq_len()
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most positions this cache may hold (the model's context length).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Appends this step's keys/values for `layer` and returns all of them.
    ///
    /// Fails, rather than silently attending past the trained range, when the
    /// context length would be exceeded.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let cache = &mut self.layers[layer];
        let needed = cache.current_seq_len() + k.dim(2)?;
        if needed > self.max_len {
            return Err(EngineError::invalid(
                "prompt",
                format!("{needed} tokens exceed the context length {}", self.max_len),
            ));
        }
        Ok(cache.append(k, v)?)
    }

    /// Forgets every cached position.
    pub fn reset(&mut self) {
        for l in &mut self.layers {
            l.reset();
        }
    }
}
