//! Model hyper-parameters of the Llama family (Llama, SmolLM2, Qwen2, Mistral without
//! sliding windows), read from a Hugging Face `config.json` or from GGUF metadata.
//!
//! Field names follow `transformers`' `LlamaConfig` / `Qwen2Config`
//! (`configuration_llama.py`), and the GGUF keys follow llama.cpp's `llama-arch.cpp`.

use std::path::Path;

use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

/// Architectures (HF `model_type` or GGUF `general.architecture`) the Llama code runs.
pub const LLAMA_FAMILY: &[&str] = &["llama", "qwen2", "mistral"];

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// `rotate_half`: dimension i pairs with i + d/2 (transformers, GGUF qwen2).
    Half,
    /// Adjacent pairs (2i, 2i+1): llama.cpp's GGUF llama layout, whose converter
    /// permuted the q/k rows so that this equals `Half` on the original weights.
    Interleaved,
}

/// Hyper-parameters of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `model_type`: llama, qwen2 or mistral.
    pub architecture: String,
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Longest sequence the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding table.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
    /// Rotary pairing of the checkpoint's q/k weights.
    pub rope_style: RopeStyle,
}

/// The subset of `config.json` the Llama family reads.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    /// transformers >= 5 writes `{"rope_theta": .., "rope_type": "default"}` here.
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    mlp_bias: bool,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    2048
}

/// Reads `model_type` from a `config.json` text without committing to a family.
pub fn hf_model_type(path: &Path, text: &str) -> Result<String> {
    #[derive(Deserialize)]
    struct Probe {
        model_type: Option<String>,
    }
    let probe: Probe = serde_json::from_str(text)
        .map_err(|e| EngineError::bad_file(path, format!("invalid JSON: {e}")))?;
    probe
        .model_type
        .ok_or_else(|| EngineError::bad_file(path, "no `model_type` field"))
}

impl LlamaConfig {
    /// Parses a Hugging Face `config.json` (its text and path, for errors).
    pub fn from_hf_json(path: &Path, text: &str) -> Result<Self> {
        let c: HfConfig = serde_json::from_str(text)
            .map_err(|e| EngineError::bad_file(path, format!("invalid config: {e}")))?;
        let architecture = c
            .model_type
            .clone()
            .or_else(|| c.architectures.first().map(|a| a.to_lowercase()))
            .unwrap_or_default();
        if !LLAMA_FAMILY.contains(&architecture.as_str()) {
            return Err(unsupported(path, &architecture));
        }
        let params = c.rope_parameters.as_ref().filter(|v| !v.is_null());
        let rope_theta = c
            .rope_theta
            .or_else(|| params?.get("rope_theta")?.as_f64())
            .unwrap_or(10_000.0);
        let rope_type = params
            .and_then(|p| p.get("rope_type"))
            .and_then(|t| t.as_str())
            .unwrap_or("default");
        if rope_type != "default" {
            return Err(EngineError::bad_file(
                path,
                format!("rope_type `{rope_type}` is not supported yet"),
            ));
        }
        if let Some(scaling) = c.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            // Silently ignoring a scaling rule would give subtly wrong logits on long inputs.
            return Err(EngineError::bad_file(
                path,
                format!("rope_scaling {scaling} is not supported yet"),
            ));
        }
        if let Some(act) = c.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(EngineError::bad_file(
                path,
                format!("hidden_act `{act}` is not supported (only silu)"),
            ));
        }
        if c.mlp_bias {
            return Err(EngineError::bad_file(
                path,
                "mlp_bias = true is not supported yet",
            ));
        }
        let heads = c.num_attention_heads;
        let cfg = Self {
            attention_bias: c.attention_bias.unwrap_or(architecture == "qwen2"),
            tie_word_embeddings: c.tie_word_embeddings.unwrap_or(architecture != "qwen2"),
            architecture,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: c.num_key_value_heads.unwrap_or(heads),
            head_dim: c.head_dim.unwrap_or(c.hidden_size / heads.max(1)),
            rms_norm_eps: c.rms_norm_eps,
            rope_theta,
            max_position_embeddings: c.max_position_embeddings,
            rope_style: RopeStyle::Half,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Reads the hyper-parameters from GGUF metadata (`{arch}.embedding_length`...).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.architecture()?;
        if !LLAMA_FAMILY.contains(&arch.as_str()) {
            return Err(unsupported(file.path(), &arch));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let hidden_size = file.get_usize(&key("embedding_length"))?;
        let heads = file.get_usize(&key("attention.head_count"))?;
        let vocab_size = match file.get_usize(&key("vocab_size")) {
            Ok(v) => v,
            Err(_) => file.tokens_len()?,
        };
        let head_dim = file
            .get_usize(&key("attention.key_length"))
            .or_else(|_| file.get_usize(&key("rope.dimension_count")))
            .unwrap_or(hidden_size / heads.max(1));
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: file.get_usize(&key("feed_forward_length"))?,
            num_hidden_layers: file.get_usize(&key("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: file
                .get_usize(&key("attention.head_count_kv"))
                .unwrap_or(heads),
            head_dim,
            rms_norm_eps: file.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta: file.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0),
            max_position_embeddings: file.get_usize(&key("context_length")).unwrap_or(2048),
            tie_word_embeddings: !file.has_tensor("output.weight"),
            attention_bias: file.has_tensor("blk.0.attn_q.bias"),
            // llama.cpp's converter permutes llama q/k for adjacent-pair rotation;
            // qwen2 keeps the Hugging Face layout (NEOX rotation in llama.cpp terms).
            rope_style: if arch == "qwen2" {
                RopeStyle::Half
            } else {
                RopeStyle::Interleaved
            },
            architecture: arch,
        };
        cfg.validate(file.path())?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| Err(EngineError::bad_file(path, m));
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return bad("head counts must be positive".into());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            ));
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return bad("vocab_size, hidden_size and num_hidden_layers must be positive".into());
        }
        Ok(())
    }
}

fn unsupported(path: &Path, architecture: &str) -> EngineError {
    EngineError::UnsupportedArchitecture {
        path: path.to_path_buf(),
        architecture: if architecture.is_empty() {
            "<none>".into()
        } else {
            architecture.into()
        },
        supported: LLAMA_FAMILY.join(", "),
    }
}
