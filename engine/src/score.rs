//! Log-likelihood of a continuation given a context: the primitive of zero-shot
//! evaluation (lm-evaluation-harness' `loglikelihood`), batched.
//!
//! Each request is scored as `sum_i log p(cont_i | ctx, cont_<i)`. Requests in a
//! batch are right-padded: with causal attention, padding after a sequence cannot
//! change the logits of its real positions, so no padding mask is needed.

use candle_core::{D, Device, Tensor};

use crate::error::{EngineError, Result};
use crate::kv_cache::Cache;
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

/// Most padded tokens in one batch of [`score_choices`]: attention scores grow
/// with batch x length², and past a few thousand rows a bigger matmul gains
/// nothing.
const MAX_BATCH_TOKENS: usize = 2048;

/// A multiple-choice item: one context and the continuations to compare, as
/// token ids (lm-evaluation-harness encodes them separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceRequest {
    /// Conditioning tokens (non-empty).
    pub context: Vec<u32>,
    /// Candidate continuations (each non-empty).
    pub options: Vec<Vec<u32>>,
}

/// Log-likelihood of every option of every item, in order, with the context run
/// once per item: single-token options (answer letters) are all read from the
/// context's last logits, and longer ones continue from a copy of its KV cache.
/// Items are batched up to `batch_size` (and [`MAX_BATCH_TOKENS`]) at a time,
/// sorted by length so padding stays small; `on_done(n)` reports items finished. As lm-evaluation-harness does, a
/// context too long for the model keeps its last tokens.
pub fn score_choices(
    lm: &dyn CausalLm,
    items: &[ChoiceRequest],
    batch_size: usize,
    mut on_done: impl FnMut(usize),
) -> Result<Vec<Vec<f64>>> {
    if batch_size == 0 {
        return Err(EngineError::invalid("batch_size", "must be at least 1"));
    }
    if let Some(i) = items
        .iter()
        .position(|it| it.context.is_empty() || it.options.iter().any(Vec::is_empty))
    {
        return Err(EngineError::invalid(
            "items",
            format!("item {i}: the context and every option must be non-empty"),
        ));
    }
    let longest_option = items
        .iter()
        .flat_map(|it| it.options.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    if longest_option > lm.max_context() {
        return Err(EngineError::invalid(
            "items",
            format!("an option of {longest_option} tokens fills the context"),
        ));
    }
    // The harness feeds `(context + option)[-(max + 1)..][..-1]`: the context
    // keeps its last `max + 1 - option.len()` tokens.
    let keep = lm.max_context() + 1 - longest_option;
    let context = |it: &ChoiceRequest| -> Vec<u32> {
        it.context[it.context.len().saturating_sub(keep)..].to_vec()
    };
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(items[i].context.len()));
    let mut batches: Vec<&[usize]> = Vec::new();
    let mut rest = order.as_slice();
    while !rest.is_empty() {
        // Longest first, so the first item sets the padded width.
        let width = context(&items[rest[0]]).len();
        let n = batch_size
            .min(MAX_BATCH_TOKENS / width.max(1))
            .clamp(1, rest.len());
        let (batch, tail) = rest.split_at(n);
        batches.push(batch);
        rest = tail;
    }
    let mut out = vec![Vec::new(); items.len()];
    for batch in batches {
        let contexts: Vec<Vec<u32>> = batch.iter().map(|&i| context(&items[i])).collect();
        let width = contexts.iter().map(Vec::len).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(batch.len() * width);
        for c in &contexts {
            flat.extend_from_slice(c);
            flat.resize(flat.len() + width - c.len(), 0);
        }
        let ids = Tensor::from_vec(flat, (batch.len(), width), &Device::Cpu)?;
        let hidden = lm.hidden_states(&ids, &mut lm.new_cache())?;
        for (row, (&i, ctx)) in batch.iter().zip(&contexts).enumerate() {
            let last = hidden.get(row)?.narrow(0, ctx.len() - 1, 1)?;
            let logp = candle_nn::ops::log_softmax(&lm.logits(&last)?, D::Minus1)?
                .squeeze(0)?
                .to_vec1::<f32>()?;
            // Multi-token options continue from the context's cache, filled once.
            let mut prefix: Option<Cache> = None;
            let mut scores = Vec::with_capacity(items[i].options.len());
            for option in &items[i].options {
                let mut total = logp[option[0] as usize] as f64;
                if option.len() > 1 {
                    if prefix.is_none() {
                        let mut cache = lm.new_cache();
                        let ids = Tensor::new(ctx.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
                        lm.hidden_states(&ids, &mut cache)?;
                        prefix = Some(cache);
                    }
                    let cache = prefix.clone().expect("filled above");
                    total += continue_option(lm, cache, option)?;
                }
                scores.push(total);
            }
            out[i] = scores;
        }
        on_done(batch.len());
    }
    Ok(out)
}

/// Log-likelihood of `option[1..]` after the context in `cache` and `option[0]`.
fn continue_option(lm: &dyn CausalLm, mut cache: Cache, option: &[u32]) -> Result<f64> {
    let ids = Tensor::new(&option[..option.len() - 1], &Device::Cpu)?.unsqueeze(0)?;
    let h = lm.hidden_states(&ids, &mut cache)?.squeeze(0)?;
    let logp = candle_nn::ops::log_softmax(&lm.logits(&h)?, D::Minus1)?.to_vec2::<f32>()?;
    Ok(logp
        .iter()
        .zip(&option[1..])
        .map(|(row, &t)| row[t as usize] as f64)
        .sum())
}
