//! The Llama family: Llama 2/3 layout, SmolLM2, Qwen2 (q/k/v bias), Mistral without
//! sliding windows. Pre-norm decoder blocks with RMSNorm, rotary position embeddings,
//! grouped-query attention and a SwiGLU MLP.
//!
//! Follows `transformers/models/llama/modeling_llama.py` (and `qwen2/modeling_qwen2.py`
//! for the biases); the GGUF tensor names follow llama.cpp's `llama-arch.cpp`.

mod decode;

use candle_core::{DType, Device, Tensor};

use super::attention::{self, padding_rows};
use crate::config::{LlamaConfig, RopeStyle};
use crate::error::Result;
use crate::kv_cache::{Cache, KvPrecision};
use crate::models::CausalLm;
use crate::weights::{Checkpoint, Embedding, Linear, RmsNorm};

/// Tensor names of one checkpoint format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `model.layers.{i}.self_attn.q_proj.weight`...
    HuggingFace,
    /// `blk.{i}.attn_q.weight`...
    Gguf,
}

impl Naming {
    fn embed(self) -> &'static str {
        match self {
            Self::HuggingFace => "model.embed_tokens.weight",
            Self::Gguf => "token_embd.weight",
        }
    }
    fn final_norm(self) -> &'static str {
        match self {
            Self::HuggingFace => "model.norm.weight",
            Self::Gguf => "output_norm.weight",
        }
    }
    fn lm_head(self) -> &'static str {
        match self {
            Self::HuggingFace => "lm_head.weight",
            Self::Gguf => "output.weight",
        }
    }
    /// Name of `part` (a Hugging Face suffix) in layer `i`, without `.weight`/`.bias`.
    fn layer(self, i: usize, part: &str) -> String {
        match self {
            Self::HuggingFace => format!("model.layers.{i}.{part}"),
            Self::Gguf => {
                let g = match part {
                    "input_layernorm" => "attn_norm",
                    "self_attn.q_proj" => "attn_q",
                    "self_attn.k_proj" => "attn_k",
                    "self_attn.v_proj" => "attn_v",
                    "self_attn.o_proj" => "attn_output",
                    "post_attention_layernorm" => "ffn_norm",
                    "mlp.gate_proj" => "ffn_gate",
                    "mlp.up_proj" => "ffn_up",
                    "mlp.down_proj" => "ffn_down",
                    other => other,
                };
                format!("blk.{i}.{g}")
            }
        }
    }
}

/// Precomputed rotary tables `cos`, `sin` of shape `[max_pos, head_dim / 2]`,
/// as tensors for the forward pass and as plain values for decode steps.
#[derive(Debug, Clone)]
struct Rotary {
    cos: Tensor,
    sin: Tensor,
    cos_values: Vec<f32>,
    sin_values: Vec<f32>,
    style: RopeStyle,
}

impl Rotary {
    fn new(cfg: &LlamaConfig) -> Result<Self> {
        let half = cfg.head_dim / 2;
        // inv_freq[i] = theta^(-2i/d), as `_compute_default_rope_parameters`.
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64)) as f32)
            .collect();
        let n = cfg.max_position_embeddings;
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), &Device::Cpu)?;
        let pos = Tensor::arange(0u32, n as u32, &Device::Cpu)?
            .to_dtype(DType::F32)?
            .reshape((n, 1))?;
        let freqs = pos.matmul(&inv_freq)?;
        let (cos, sin) = (freqs.cos()?, freqs.sin()?);
        Ok(Self {
            cos_values: cos.flatten_all()?.to_vec1()?,
            sin_values: sin.flatten_all()?.to_vec1()?,
            cos,
            sin,
            style: cfg.rope_style,
        })
    }

    /// Rotates `x` `[b, heads, t, d]` for positions `offset..offset + t`.
    fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        crate::ops::rope(x, &cos, &sin, self.style)
    }
}

/// Several projections of the same input: one fused matmul when the weights
/// stack, else one matmul each.
#[derive(Debug, Clone)]
enum Projections {
    Fused { linear: Linear, widths: Vec<usize> },
    Separate(Vec<Linear>),
}

impl Projections {
    fn new(parts: Vec<Linear>) -> Result<Self> {
        let refs: Vec<&Linear> = parts.iter().collect();
        Ok(match Linear::fuse(&refs)? {
            Some(linear) => Self::Fused {
                widths: parts.iter().map(Linear::out_features).collect(),
                linear,
            },
            None => Self::Separate(parts),
        })
    }

    /// Each projection of `m` rows of plain values `x`, in order (`m * width`
    /// values each).
    fn forward_rows(&self, x: &[f32], m: usize) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Separate(parts) => parts.iter().map(|p| p.forward_rows(x, m)).collect(),
            Self::Fused { linear, widths } => linear.forward_rows_parts(x, m, widths),
        }
    }

    /// Each projection of `x` `[b, t, in]`, in order.
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
            Self::Fused { linear, widths } => {
                let y = linear.forward(x)?;
                let mut start = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(2, start, w)?;
                        start += w;
                        Ok(part)
                    })
                    .collect()
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Attention {
    qkv: Projections,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &LlamaConfig, ckpt: &Checkpoint, naming: Naming, i: usize) -> Result<Self> {
        let (h, kv, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let proj = |part: &str, out: usize, inp: usize, bias: bool| {
            let base = naming.layer(i, part);
            let b = bias.then(|| format!("{base}.bias"));
            ckpt.linear(&format!("{base}.weight"), b.as_deref(), out, inp)
        };
        let bias = cfg.attention_bias;
        let qkv = Projections::new(vec![
            proj("self_attn.q_proj", h * d, cfg.hidden_size, bias)?,
            proj("self_attn.k_proj", kv * d, cfg.hidden_size, bias)?,
            proj("self_attn.v_proj", kv * d, cfg.hidden_size, bias)?,
        ])?;
        Ok(Self {
            qkv,
            o: proj("self_attn.o_proj", cfg.hidden_size, h * d, false)?,
            heads: h,
            kv_heads: kv,
            head_dim: d,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &mut Cache,
        layer: usize,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        // RoPE scores depend on relative positions only, so a left-padded batch
        // may keep positions `offset..` for every row: masking the padded keys is
        // enough for padding to change nothing.
        let offset = cache.len_of(layer);
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, self.head_dim))?.transpose(1, 2)?)
        };
        let [q, k, v]: [Tensor; 3] = self.qkv.forward(x)?.try_into().expect("three projections");
        let q = rotary.apply(&split(q, self.heads)?, offset)?;
        let k = rotary.apply(&split(k, self.kv_heads)?, offset)?;
        let v = split(v, self.kv_heads)?.contiguous()?;
        let (k, v) = cache.append(layer, &k, &v)?;
        let v = v.contiguous()?;
        let total = k.dim(2)?;

        // Grouped-query attention without materialising repeated keys: fold the
        // query heads that share a key head into the row dimension.
        let group = self.heads / self.kv_heads;
        let q = q.reshape((b, self.kv_heads, group * t, self.head_dim))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?;
        let scores = match mask {
            Some(m) => {
                // m: [b or 1, 1, t, total] additive; rows repeat per query head of
                // the group.
                let s = scores.reshape((b, self.kv_heads, group, t, total))?;
                s.broadcast_add(&m.unsqueeze(2)?)?
                    .reshape((b, self.kv_heads, group * t, total))?
            }
            None => scores,
        };
        let probs = crate::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?; // [b, kv, group * t, d]
        let out = out
            .reshape((b, self.heads, t, self.head_dim))?
            .transpose(1, 2)?
            .reshape((b, t, self.heads * self.head_dim))?;
        self.o.forward(&out)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_up: Projections,
    down: Linear,
}

impl Mlp {
    fn new(cfg: &LlamaConfig, ckpt: &Checkpoint, naming: Naming, i: usize) -> Result<Self> {
        let w = |part: &str| format!("{}.weight", naming.layer(i, part));
        let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_up: Projections::new(vec![
                ckpt.linear(&w("mlp.gate_proj"), None, m, h)?,
                ckpt.linear(&w("mlp.up_proj"), None, m, h)?,
            ])?,
            down: ckpt.linear(&w("mlp.down_proj"), None, h, m)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [g, u]: [Tensor; 2] = self
            .gate_up
            .forward(x)?
            .try_into()
            .expect("two projections");
        self.down.forward(&(candle_nn::ops::silu(&g)? * u)?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &LlamaConfig, ckpt: &Checkpoint, naming: Naming, i: usize) -> Result<Self> {
        let norm = |part: &str| {
            let name = format!("{}.weight", naming.layer(i, part));
            RmsNorm::load(ckpt, &name, cfg.hidden_size, cfg.rms_norm_eps)
        };
        Ok(Self {
            attn_norm: norm("input_layernorm")?,
            attn: Attention::new(cfg, ckpt, naming, i)?,
            mlp_norm: norm("post_attention_layernorm")?,
            mlp: Mlp::new(cfg, ckpt, naming, i)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &mut Cache,
        layer: usize,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let h = self
            .attn
            .forward(&self.attn_norm.forward(x)?, rotary, cache, layer, mask)?;
        let x = (x + h)?;
        let h = self.mlp.forward(&self.mlp_norm.forward(&x)?)?;
        Ok((x + h)?)
    }
}

/// A Llama-family causal language model.
#[derive(Debug, Clone)]
pub struct Llama {
    cfg: LlamaConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: Rotary,
}

impl Llama {
    /// Builds the model from a checkpoint whose tensors follow `naming`.
    pub fn load(cfg: &LlamaConfig, ckpt: &Checkpoint, naming: Naming) -> Result<Self> {
        let embed = ckpt.embedding(naming.embed(), cfg.vocab_size, cfg.hidden_size)?;
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(cfg, ckpt, naming, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(ckpt, naming.final_norm(), cfg.hidden_size, cfg.rms_norm_eps)?;
        // Some tied checkpoints still carry an `lm_head`; an untied one must.
        let lm_head = if ckpt.contains(naming.lm_head()) || !cfg.tie_word_embeddings {
            ckpt.linear(naming.lm_head(), None, cfg.vocab_size, cfg.hidden_size)?
        } else {
            Linear::tied(&embed)
        };
        // Every row of a decode step goes through the head at once (see
        // `Llama::decode_rows`).
        lm_head.keep_tiles();
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            rotary: Rotary::new(cfg)?,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }
}

impl Llama {
    fn hidden_states_on_pool(
        &self,
        ids: &Tensor,
        padding: Option<&Tensor>,
        cache: &mut Cache,
    ) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let rows = padding.map(|p| padding_rows(p, ids)).transpose()?;
        let mask = attention::mask(t, cache.len(), rows.as_deref())?;
        let mut x = self.embed.forward(ids)?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &self.rotary, cache, i, mask.as_ref())?;
        }
        self.norm.forward(&x)
    }
}

impl CausalLm for Llama {
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

    fn decode_step(&self, tokens: &[u32], caches: &mut [&mut Cache]) -> Result<Vec<f32>> {
        let runs: Vec<&[u32]> = tokens.chunks(1).collect();
        crate::threads::install_hot(|| self.decode_rows(&runs, caches))
    }

    fn prefill(&self, runs: &[&[u32]], caches: &mut [&mut Cache]) -> Result<Vec<f32>> {
        // A wave of single tokens (prompts whose every earlier token was
        // cached) is a decode step: split by sequences over the threads, as
        // `decode_step` runs it. A server admitting 23 such prompts at once
        // took 16-18 ms rather than 26-30.
        if runs.iter().all(|r| r.len() == 1) {
            return crate::threads::install_hot(|| self.decode_rows(runs, caches));
        }
        crate::threads::install(|| self.extend_rows(runs, caches))
    }

    fn new_cache(&self) -> Cache {
        // Quantized weights keep keys and values in f16, as llama.cpp does;
        // f32 weights (reference numerics, training) keep them in f32.
        let layer = self.blocks.first().map_or(&self.lm_head, |b| &b.attn.o);
        let precision = if layer.is_quantized() {
            KvPrecision::F16
        } else {
            KvPrecision::F32
        };
        Cache::with_precision(
            self.cfg.num_hidden_layers,
            self.cfg.max_position_embeddings,
            precision,
        )
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn max_context(&self) -> usize {
        self.cfg.max_position_embeddings
    }
}
