//! Log-likelihood of a continuation given a context: the primitive of zero-shot
//! evaluation (lm-evaluation-harness' `loglikelihood`), batched.
//!
//! Each request is scored as `sum_i log p(cont_i | ctx, cont_<i)`. Requests in a
//! batch are right-padded: with causal attention, padding after a sequence cannot
//! change the logits of its real positions, so no padding mask is needed.

use candle_core::{D, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::models::CausalLm;

/// One (context, continuation) pair, as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRequest {
    /// Conditioning tokens (non-empty).
    pub context: Vec<u32>,
    /// Tokens whose likelihood is measured (non-empty).
    pub continuation: Vec<u32>,
}

/// The score of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Sum of the continuation tokens' log-probabilities (natural log).
    pub logprob: f64,
    /// Whether every continuation token was the arg-max (greedy) choice.
    pub is_greedy: bool,
    /// Number of continuation tokens.
    pub tokens: usize,
}

/// Scores `requests`, `batch_size` at a time, in order.
pub fn score_continuations(
    lm: &dyn CausalLm,
    requests: &[ScoreRequest],
    batch_size: usize,
) -> Result<Vec<Score>> {
    if batch_size == 0 {
        return Err(EngineError::invalid("batch_size", "must be at least 1"));
    }
    for r in requests {
        if r.context.is_empty() || r.continuation.is_empty() {
            return Err(EngineError::invalid(
                "requests",
                "context and continuation must both be non-empty",
            ));
        }
        if r.context.len() + r.continuation.len() > lm.max_context() {
            return Err(EngineError::invalid(
                "requests",
                format!(
                    "{} tokens exceed the context length {}",
                    r.context.len() + r.continuation.len(),
                    lm.max_context()
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(requests.len());
    for batch in requests.chunks(batch_size) {
        out.extend(score_batch(lm, batch)?);
    }
    Ok(out)
}

fn score_batch(lm: &dyn CausalLm, batch: &[ScoreRequest]) -> Result<Vec<Score>> {
    // The last continuation token is only a target, never an input.
    let inputs: Vec<Vec<u32>> = batch
        .iter()
        .map(|r| {
            let mut v = r.context.clone();
            v.extend_from_slice(&r.continuation[..r.continuation.len() - 1]);
            v
        })
        .collect();
    let width = inputs.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(batch.len() * width);
    for row in &inputs {
        flat.extend_from_slice(row);
        flat.resize(flat.len() + width - row.len(), 0);
    }
    let ids = Tensor::from_vec(flat, (batch.len(), width), &Device::Cpu)?;
    let mut cache = lm.new_cache();
    let hidden = lm.hidden_states(&ids, &mut cache)?;
    let mut scores = Vec::with_capacity(batch.len());
    for (b, r) in batch.iter().enumerate() {
        // Positions whose next-token prediction is a continuation token.
        let first = r.context.len() - 1;
        let n = r.continuation.len();
        let h = hidden.get(b)?.narrow(0, first, n)?;
        let logits = lm.logits(&h)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let rows = logp.to_vec2::<f32>()?;
        let mut total = 0f64;
        let mut greedy = true;
        for (row, &target) in rows.iter().zip(&r.continuation) {
            total += row[target as usize] as f64;
            greedy &= crate::sampling::argmax(row) == target;
        }
        scores.push(Score {
            logprob: total,
            is_greedy: greedy,
            tokens: n,
        });
    }
    Ok(scores)
}
