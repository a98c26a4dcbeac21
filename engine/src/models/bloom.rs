//! BLOOM (BigScience), the architecture of TeacherLM-7.1B: ALiBi position bias
//! instead of position embeddings, a layer norm on the word embeddings, fused
//! query/key/value per head, GELU (tanh form), and an LM head tied to the
//! embeddings.
//!
//! Follows `transformers/models/bloom/modeling_bloom.py`; config fields as its
//! `BloomConfig` (`n_layer`, `n_head`, `hidden_size` alias `n_embed`,
//! `layer_norm_epsilon`, `apply_residual_connection_post_layernorm`). Checkpoints
//! name tensors with or without the `transformer.` prefix (bloom-560m has none).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Deserialize;

use super::attention::{self, padding_rows};
use crate::error::{EngineError, Result};
use crate::kv_cache::Cache;
use crate::models::CausalLm;
use crate::weights::{Checkpoint, Embedding, LayerNorm, Linear};

/// Hyper-parameters of a BLOOM model.
#[derive(Debug, Clone, PartialEq)]
pub struct BloomConfig {
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Decoder blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Layer norm epsilon.
    pub layer_norm_epsilon: f64,
    /// Whether residuals branch after the layer norm instead of before it.
    pub apply_residual_connection_post_layernorm: bool,
    /// Context the engine allows: ALiBi has no hard limit; `seq_length` when the
    /// config gives it (BLOOM was trained on 2048).
    pub max_context: usize,
}

#[derive(Debug, Deserialize)]
struct HfBloomConfig {
    vocab_size: usize,
    #[serde(alias = "n_embed")]
    hidden_size: usize,
    #[serde(alias = "num_hidden_layers")]
    n_layer: usize,
    #[serde(alias = "num_attention_heads")]
    n_head: usize,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    #[serde(default)]
    apply_residual_connection_post_layernorm: bool,
    #[serde(default)]
    seq_length: Option<usize>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
}

fn default_eps() -> f64 {
    1e-5
}

impl BloomConfig {
    /// Parses a Hugging Face `config.json` (its text and path, for errors).
    pub fn from_hf_json(path: &Path, text: &str) -> Result<Self> {
        let c: HfBloomConfig = serde_json::from_str(text)
            .map_err(|e| EngineError::bad_file(path, format!("invalid BLOOM config: {e}")))?;
        if c.n_head == 0 || !c.hidden_size.is_multiple_of(c.n_head) {
            return Err(EngineError::bad_file(
                path,
                format!(
                    "hidden_size {} is not a multiple of n_head {}",
                    c.hidden_size, c.n_head
                ),
            ));
        }
        if c.tie_word_embeddings == Some(false) {
            return Err(EngineError::bad_file(
                path,
                "BLOOM ties its LM head to the embeddings; tie_word_embeddings = false is not supported",
            ));
        }
        Ok(Self {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            n_layer: c.n_layer,
            n_head: c.n_head,
            layer_norm_epsilon: c.layer_norm_epsilon,
            apply_residual_connection_post_layernorm: c.apply_residual_connection_post_layernorm,
            max_context: c.seq_length.unwrap_or(2048),
        })
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.n_head
    }
}

/// ALiBi slopes, one per head, as `_get_alibi_slopes` in transformers: a geometric
/// sequence for the largest power of two not above `n_head`, then every other
/// slope of the sequence for twice that many heads for the rest.
pub fn alibi_slopes(n_head: usize) -> Vec<f32> {
    let closest = 1usize << n_head.max(1).ilog2();
    let base = |n: usize| 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0)))) as f32;
    let mut slopes: Vec<f32> = (1..=closest as i32)
        .map(|p| base(closest).powi(p))
        .collect();
    if closest != n_head {
        let extra = base(2 * closest);
        let remaining = closest.min(n_head - closest);
        slopes.extend((0..remaining).map(|i| extra.powi(2 * i as i32 + 1)));
    }
    slopes
}

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: LayerNorm,
    query_key_value: Linear,
    dense: Linear,
    post_attention_layernorm: LayerNorm,
    dense_h_to_4h: Linear,
    dense_4h_to_h: Linear,
}

/// A BLOOM causal language model.
#[derive(Debug, Clone)]
pub struct Bloom {
    cfg: BloomConfig,
    word_embeddings: Embedding,
    word_embeddings_layernorm: LayerNorm,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
    /// `[1, n_head, 1, 1]`.
    slopes: Tensor,
}

impl Bloom {
    /// Builds the model from a Hugging Face checkpoint.
    pub fn load(cfg: &BloomConfig, ckpt: &Checkpoint) -> Result<Self> {
        let p = if ckpt.contains("transformer.word_embeddings.weight") {
            "transformer."
        } else {
            ""
        };
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_epsilon);
        let ln = |name: &str| LayerNorm::load(ckpt, &format!("{p}{name}"), h, eps);
        let linear = |name: &str, out: usize, inp: usize| {
            ckpt.linear(
                &format!("{p}{name}.weight"),
                Some(&format!("{p}{name}.bias")),
                out,
                inp,
            )
        };
        let word_embeddings =
            ckpt.embedding(&format!("{p}word_embeddings.weight"), cfg.vocab_size, h)?;
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                Ok(Block {
                    input_layernorm: ln(&format!("h.{i}.input_layernorm"))?,
                    query_key_value: linear(
                        &format!("h.{i}.self_attention.query_key_value"),
                        3 * h,
                        h,
                    )?,
                    dense: linear(&format!("h.{i}.self_attention.dense"), h, h)?,
                    post_attention_layernorm: ln(&format!("h.{i}.post_attention_layernorm"))?,
                    dense_h_to_4h: linear(&format!("h.{i}.mlp.dense_h_to_4h"), 4 * h, h)?,
                    dense_4h_to_h: linear(&format!("h.{i}.mlp.dense_4h_to_h"), h, 4 * h)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let slopes = alibi_slopes(cfg.n_head);
        Ok(Self {
            cfg: cfg.clone(),
            word_embeddings_layernorm: ln("word_embeddings_layernorm")?,
            blocks,
            ln_f: ln("ln_f")?,
            lm_head: Linear::tied(&word_embeddings),
            word_embeddings,
            slopes: Tensor::from_vec(slopes, (1, cfg.n_head, 1, 1), &Device::Cpu)?,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &BloomConfig {
        &self.cfg
    }

    fn hidden_states_on_pool(
        &self,
        ids: &Tensor,
        padding: Option<&Tensor>,
        cache: &mut Cache,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let offset = cache.len();
        let rows = padding.map(|p| padding_rows(p, ids)).transpose()?;
        let mask = attention::mask(t, offset, rows.as_deref())?;
        // ALiBi over every key: cached ones then new ones. Only a key's position
        // matters, since adding a constant per query row leaves softmax unchanged.
        let keys = attention::positions(offset + t, 0, rows.as_deref());
        let keys: Vec<f32> = keys.iter().flatten().map(|&p| p as f32).collect();
        let rows_b = if rows.is_some() { b } else { 1 };
        let keys = Tensor::from_vec(keys, (rows_b, 1, 1, offset + t), &Device::Cpu)?;
        let alibi = self.slopes.broadcast_mul(&keys)?;

        let (nh, d) = (self.cfg.n_head, self.cfg.head_dim());
        let post = self.cfg.apply_residual_connection_post_layernorm;
        let mut x = self
            .word_embeddings_layernorm
            .forward(&self.word_embeddings.forward(ids)?)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let normed = block.input_layernorm.forward(&x)?;
            let residual = if post { &normed } else { &x };
            // Fused projection laid out [heads, (q, k, v), head_dim].
            let qkv = block
                .query_key_value
                .forward(&normed)?
                .reshape((b, t, nh, 3, d))?;
            let part = |i: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(3, i, 1)?
                    .squeeze(3)?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let (k, v) = cache.append(layer, &k, &v)?;
            let scale = 1.0 / (d as f64).sqrt();
            let ctx = attention::attend(&q, &k, &v, scale, Some(&alibi), mask.as_ref())?
                .transpose(1, 2)?
                .reshape((b, t, nh * d))?;
            let attn = (block.dense.forward(&ctx)? + residual)?;
            let normed = block.post_attention_layernorm.forward(&attn)?;
            let residual = if post { &normed } else { &attn };
            let up = block.dense_h_to_4h.forward(&normed)?.gelu()?;
            x = (block.dense_4h_to_h.forward(&up)? + residual)?;
        }
        self.ln_f.forward(&x)
    }
}

impl CausalLm for Bloom {
    fn hidden_states_masked(
        &self,
        ids: &Tensor,
        padding: Option<&Tensor>,
        cache: &mut Cache,
    ) -> Result<Tensor> {
        crate::threads::install(|| self.hidden_states_on_pool(ids, padding, cache))
    }

    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        crate::threads::install(|| self.lm_head.forward(hidden))
    }

    fn new_cache(&self) -> Cache {
        Cache::new(self.cfg.n_layer, self.cfg.max_context)
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn max_context(&self) -> usize {
        self.cfg.max_context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibi_slopes_match_transformers() {
        // torch: _get_alibi_slopes(8) and (6), printed with float32 precision.
        let s8 = alibi_slopes(8);
        let want8 = [
            0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
        ];
        assert_eq!(s8, want8);
        let s6 = alibi_slopes(6);
        // Four from base 2^-2, then 2^-1 and 2^-3 from base 2^-1 (powers 1, 3).
        let want6 = [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125];
        assert_eq!(s6, want6);
    }
}
