//! OPT (Meta), the family of TeacherLM's students: learned position embeddings
//! offset by 2, multi-head attention with biases, a ReLU MLP, layer norms before
//! (most sizes) or after (opt-350m) each sub-block, optional `project_in` /
//! `project_out` when the embeddings are narrower than the model
//! (`word_embed_proj_dim`), and an LM head tied to the embeddings.
//!
//! Follows `transformers/models/opt/modeling_opt.py`; config fields as its
//! `OPTConfig`.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Deserialize;

use super::attention::{self, padding_rows};
use crate::error::{EngineError, Result};
use crate::kv_cache::Cache;
use crate::models::CausalLm;
use crate::weights::{Checkpoint, Embedding, LayerNorm, Linear};

/// `OPTLearnedPositionalEmbedding.offset`: rows 0 and 1 of the table are never
/// used for real tokens (a fairseq legacy).
const POSITION_OFFSET: u32 = 2;

/// Hyper-parameters of an OPT model.
#[derive(Debug, Clone, PartialEq)]
pub struct OptConfig {
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Width of the MLP.
    pub ffn_dim: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Longest sequence (rows of the position table, less the offset).
    pub max_position_embeddings: usize,
    /// Pre-LN (true) or post-LN (false, opt-350m).
    pub do_layer_norm_before: bool,
    /// Width of the embeddings; `project_in`/`project_out` map it to and from
    /// `hidden_size` when they differ.
    pub word_embed_proj_dim: usize,
    /// Whether a final layer norm follows the blocks (pre-LN models only).
    pub final_layer_norm: bool,
    /// MLP activation.
    pub activation: Activation,
}

/// The MLP activations OPT checkpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `relu` (every released OPT size).
    Relu,
    /// `gelu` (exact, erf form, as `ACT2FN["gelu"]`).
    Gelu,
}

#[derive(Debug, Deserialize)]
struct HfOptConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    ffn_dim: usize,
    num_attention_heads: usize,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default = "yes")]
    do_layer_norm_before: bool,
    #[serde(default)]
    word_embed_proj_dim: Option<usize>,
    #[serde(default = "default_activation")]
    activation_function: String,
    #[serde(default = "yes")]
    enable_bias: bool,
    #[serde(default = "yes")]
    layer_norm_elementwise_affine: bool,
    #[serde(default, rename = "_remove_final_layer_norm")]
    remove_final_layer_norm: bool,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
}

fn default_max_positions() -> usize {
    2048
}
fn yes() -> bool {
    true
}
fn default_activation() -> String {
    "relu".into()
}

impl OptConfig {
    /// Parses a Hugging Face `config.json` (its text and path, for errors).
    pub fn from_hf_json(path: &Path, text: &str) -> Result<Self> {
        let c: HfOptConfig = serde_json::from_str(text)
            .map_err(|e| EngineError::bad_file(path, format!("invalid OPT config: {e}")))?;
        let bad = |m: String| Err(EngineError::bad_file(path, m));
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            ));
        }
        if !c.enable_bias || !c.layer_norm_elementwise_affine {
            return bad("OPT without biases or layer-norm affine weights is not supported".into());
        }
        if c.tie_word_embeddings == Some(false) {
            return bad(
                "OPT ties its LM head; tie_word_embeddings = false is not supported".into(),
            );
        }
        let activation = match c.activation_function.as_str() {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            other => return bad(format!("activation_function `{other}` is not supported")),
        };
        Ok(Self {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_hidden_layers: c.num_hidden_layers,
            ffn_dim: c.ffn_dim,
            num_attention_heads: c.num_attention_heads,
            max_position_embeddings: c.max_position_embeddings,
            do_layer_norm_before: c.do_layer_norm_before,
            word_embed_proj_dim: c.word_embed_proj_dim.unwrap_or(c.hidden_size),
            final_layer_norm: c.do_layer_norm_before && !c.remove_final_layer_norm,
            activation,
        })
    }
}

#[derive(Debug, Clone)]
struct Block {
    self_attn_layer_norm: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    final_layer_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// An OPT causal language model.
#[derive(Debug, Clone)]
pub struct Opt {
    cfg: OptConfig,
    embed_tokens: Embedding,
    embed_positions: Embedding,
    project_in: Option<Linear>,
    project_out: Option<Linear>,
    blocks: Vec<Block>,
    final_layer_norm: Option<LayerNorm>,
    lm_head: Linear,
}

impl Opt {
    /// Builds the model from a Hugging Face checkpoint.
    pub fn load(cfg: &OptConfig, ckpt: &Checkpoint) -> Result<Self> {
        let (h, proj) = (cfg.hidden_size, cfg.word_embed_proj_dim);
        let p = "model.decoder";
        let ln = |name: &str| LayerNorm::load(ckpt, &format!("{p}.{name}"), h, 1e-5);
        let linear = |name: &str, out: usize, inp: usize| {
            ckpt.linear(
                &format!("{p}.{name}.weight"),
                Some(&format!("{p}.{name}.bias")),
                out,
                inp,
            )
        };
        let embed_tokens =
            ckpt.embedding(&format!("{p}.embed_tokens.weight"), cfg.vocab_size, proj)?;
        let embed_positions = ckpt.dense_embedding(
            &format!("{p}.embed_positions.weight"),
            cfg.max_position_embeddings + POSITION_OFFSET as usize,
            h,
        )?;
        let (project_in, project_out) = if proj == h {
            (None, None)
        } else {
            (
                Some(ckpt.linear(&format!("{p}.project_in.weight"), None, h, proj)?),
                Some(ckpt.linear(&format!("{p}.project_out.weight"), None, proj, h)?),
            )
        };
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = format!("layers.{i}");
                Ok(Block {
                    self_attn_layer_norm: ln(&format!("{l}.self_attn_layer_norm"))?,
                    q_proj: linear(&format!("{l}.self_attn.q_proj"), h, h)?,
                    k_proj: linear(&format!("{l}.self_attn.k_proj"), h, h)?,
                    v_proj: linear(&format!("{l}.self_attn.v_proj"), h, h)?,
                    out_proj: linear(&format!("{l}.self_attn.out_proj"), h, h)?,
                    final_layer_norm: ln(&format!("{l}.final_layer_norm"))?,
                    fc1: linear(&format!("{l}.fc1"), cfg.ffn_dim, h)?,
                    fc2: linear(&format!("{l}.fc2"), h, cfg.ffn_dim)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = cfg
            .final_layer_norm
            .then(|| ln("final_layer_norm"))
            .transpose()?;
        Ok(Self {
            cfg: cfg.clone(),
            lm_head: Linear::tied(&embed_tokens),
            embed_tokens,
            embed_positions,
            project_in,
            project_out,
            blocks,
            final_layer_norm,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &OptConfig {
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
        let positions = attention::positions(t, offset, rows.as_deref());
        if offset + t > self.cfg.max_position_embeddings {
            return Err(EngineError::invalid(
                "prompt",
                format!(
                    "{} tokens exceed the context length {}",
                    offset + t,
                    self.cfg.max_position_embeddings
                ),
            ));
        }
        let positions: Vec<u32> = positions
            .iter()
            .flatten()
            .map(|p| p + POSITION_OFFSET)
            .collect();
        let positions = Tensor::from_vec(positions, (positions_rows(&rows), t), &Device::Cpu)?;

        let mut x = self.embed_tokens.forward(ids)?;
        if let Some(p) = &self.project_in {
            x = p.forward(&x)?;
        }
        x = x.broadcast_add(&self.embed_positions.forward(&positions)?)?;

        let (nh, d) = (
            self.cfg.num_attention_heads,
            self.cfg.hidden_size / self.cfg.num_attention_heads,
        );
        let pre = self.cfg.do_layer_norm_before;
        for (layer, block) in self.blocks.iter().enumerate() {
            let residual = x.clone();
            let h = if pre {
                block.self_attn_layer_norm.forward(&x)?
            } else {
                x
            };
            let split = |y: Tensor| -> Result<Tensor> {
                Ok(y.reshape((b, t, nh, d))?.transpose(1, 2)?.contiguous()?)
            };
            // transformers scales the query before the product, not the scores.
            let q = split((block.q_proj.forward(&h)? * (d as f64).powf(-0.5))?)?;
            let k = split(block.k_proj.forward(&h)?)?;
            let v = split(block.v_proj.forward(&h)?)?;
            let (k, v) = cache.append(layer, &k, &v)?;
            let ctx = attention::attend(&q, &k, &v, 1.0, None, mask.as_ref())?
                .transpose(1, 2)?
                .reshape((b, t, nh * d))?;
            let mut h = (block.out_proj.forward(&ctx)? + residual)?;
            if !pre {
                h = block.self_attn_layer_norm.forward(&h)?;
            }
            let residual = h.clone();
            let inner = if pre {
                block.final_layer_norm.forward(&h)?
            } else {
                h
            };
            let act = block.fc1.forward(&inner)?;
            let act = match self.cfg.activation {
                Activation::Relu => act.relu()?,
                Activation::Gelu => act.gelu_erf()?,
            };
            x = (block.fc2.forward(&act)? + residual)?;
            if !pre {
                x = block.final_layer_norm.forward(&x)?;
            }
        }
        if let Some(ln) = &self.final_layer_norm {
            x = ln.forward(&x)?;
        }
        if let Some(p) = &self.project_out {
            x = p.forward(&x)?;
        }
        Ok(x)
    }
}

/// Rows of the position table lookup: one per sequence with padding, else one
/// shared row.
fn positions_rows(padding: &Option<Vec<Vec<u32>>>) -> usize {
    padding.as_ref().map_or(1, Vec::len)
}

impl CausalLm for Opt {
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
        Cache::new(self.cfg.num_hidden_layers, self.cfg.max_position_embeddings)
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn max_context(&self) -> usize {
        self.cfg.max_position_embeddings
    }
}
