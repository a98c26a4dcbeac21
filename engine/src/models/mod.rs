//! Model families. Each implements [`CausalLm`]: token ids in, hidden states and
//! logits out, with the KV cache passed in by the caller.

pub(crate) mod attention;
pub mod bloom;
pub mod llama;
pub mod opt;

use candle_core::{Device, Tensor};

use crate::error::{EngineError, Result};
use crate::kv_cache::Cache;

/// A decoder-only language model.
pub trait CausalLm: Send + Sync {
    /// Final hidden states `[b, t, hidden]` for `ids` `[b, t]` following the
    /// positions already in `cache` (which this call extends). `padding`
    /// (`[b, t]`, 1 on tokens, 0 on padding; only with an empty cache) marks a
    /// left-padded batch: padded keys are masked and positions skip padding, so
    /// padding changes no token's output.
    fn hidden_states_masked(
        &self,
        ids: &Tensor,
        padding: Option<&Tensor>,
        cache: &mut Cache,
    ) -> Result<Tensor>;

    /// [`CausalLm::hidden_states_masked`] without padding.
    fn hidden_states(&self, ids: &Tensor, cache: &mut Cache) -> Result<Tensor> {
        self.hidden_states_masked(ids, None, cache)
    }

    /// Logits `[b, t, vocab]` of a left-padded batch (see
    /// [`CausalLm::hidden_states_masked`]), without history.
    fn forward_padded(&self, ids: &Tensor, padding: &Tensor) -> Result<Tensor> {
        let h = self.hidden_states_masked(ids, Some(padding), &mut self.new_cache())?;
        self.logits(&h)
    }

    /// Logits `[.., vocab]` of hidden states `[.., hidden]` (the LM head).
    fn logits(&self, hidden: &Tensor) -> Result<Tensor>;

    /// One decode step for independent sequences: `tokens[i]` follows the
    /// positions in `caches[i]` (one sequence each, which this call extends).
    /// Returns the next-token logits, `tokens.len() * vocab` values row-major.
    /// Sequences of different lengths step together, so a server can decode
    /// every running request in one pass over the weights (continuous batching).
    /// Records no gradient.
    fn decode_step(&self, tokens: &[u32], caches: &mut [&mut Cache]) -> Result<Vec<f32>> {
        if tokens.len() != caches.len() {
            return Err(EngineError::invalid(
                "tokens",
                format!("{} tokens for {} caches", tokens.len(), caches.len()),
            ));
        }
        let mut out = Vec::with_capacity(tokens.len() * self.vocab_size());
        for (&t, cache) in tokens.iter().zip(caches.iter_mut()) {
            let x = Tensor::new(&[t], &Device::Cpu)?.unsqueeze(0)?;
            out.extend(
                self.forward_last(&x, cache)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        Ok(out)
    }

    /// Runs `runs[i]` after the positions in `caches[i]` (one sequence each,
    /// which this call extends) and returns the logits of each sequence's next
    /// token (`runs.len() * vocab` values, row-major): the prefill of
    /// generations. Records no gradient. The Llama family runs every run in one
    /// pass over the weights on plain buffers, like
    /// [`CausalLm::decode_step`]; others run them one by one through
    /// [`CausalLm::forward_last`].
    fn prefill(&self, runs: &[&[u32]], caches: &mut [&mut Cache]) -> Result<Vec<f32>> {
        if runs.len() != caches.len() {
            return Err(EngineError::invalid(
                "tokens",
                format!("{} token runs for {} caches", runs.len(), caches.len()),
            ));
        }
        let mut out = Vec::with_capacity(runs.len() * self.vocab_size());
        for (run, cache) in runs.iter().zip(caches.iter_mut()) {
            let x = Tensor::new(*run, &Device::Cpu)?.unsqueeze(0)?;
            out.extend(
                self.forward_last(&x, cache)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        Ok(out)
    }

    /// A fresh, empty cache sized for this model.
    fn new_cache(&self) -> Cache;

    /// Vocabulary size (width of the logits).
    fn vocab_size(&self) -> usize;

    /// Longest context the model supports.
    fn max_context(&self) -> usize;

    /// Logits `[b, t, vocab]` of every position.
    fn forward(&self, ids: &Tensor, cache: &mut Cache) -> Result<Tensor> {
        let h = self.hidden_states(ids, cache)?;
        self.logits(&h)
    }

    /// Logits `[b, vocab]` of the last position only: a prefill that does not pay
    /// for the LM head on every prompt position.
    fn forward_last(&self, ids: &Tensor, cache: &mut Cache) -> Result<Tensor> {
        let h = self.hidden_states(ids, cache)?;
        let last = h.narrow(1, h.dim(1)? - 1, 1)?.squeeze(1)?;
        self.logits(&last)
    }
}
