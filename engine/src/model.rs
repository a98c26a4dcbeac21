//! A loaded model: the network, its tokenizer and its chat template, from a
//! Hugging Face folder or a GGUF file. This is what the server and CLI hold behind
//! an `Arc` and share between requests.

use std::path::{Path, PathBuf};

use candle_nn::VarMap;

use crate::chat::{ChatMessage, ChatTemplate};
use crate::config::{self, LlamaConfig};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::models::CausalLm;
use crate::models::bloom::{Bloom, BloomConfig};
use crate::models::llama::{Llama, Naming};
use crate::models::opt::{Opt, OptConfig};
use crate::quant::QFormat;
use crate::tokenizer::Tokenizer;
use crate::weights::{Checkpoint, WeightMode};

/// Tokens that end a turn in common chat formats; llama.cpp's `llama-vocab.cpp`
/// treats the same texts as end-of-generation when the vocabulary has them.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

/// Hugging Face `model_type`s the engine runs, for error messages.
fn supported_architectures() -> String {
    let mut all: Vec<&str> = config::LLAMA_FAMILY.to_vec();
    all.extend(["bloom", "opt"]);
    all.join(", ")
}

/// How to load a model.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// For GGUF files: keep quantized blocks or dequantize to f32.
    pub mode: WeightMode,
    /// Load every weight as a trainable f32 `Var` ([`Model::vars`]); the forward
    /// pass then records gradients. Implies f32 for GGUF files.
    pub trainable: bool,
    /// Quantize float weights to this format as they load (Hugging Face folders,
    /// or a GGUF loaded as f32), for the engine's quantized kernels.
    pub quantize: Option<QFormat>,
}

/// The on-disk format a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Hugging Face folder with safetensors.
    HuggingFace,
    /// A GGUF file.
    Gguf,
}

/// A model ready to run.
pub struct Model {
    path: PathBuf,
    format: Format,
    lm: Box<dyn CausalLm>,
    tokenizer: Tokenizer,
    chat: Option<ChatTemplate>,
    architecture: String,
    vars: Option<VarMap>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("architecture", &self.architecture)
            .finish()
    }
}

impl Model {
    /// Loads a model from a GGUF file or a Hugging Face folder.
    pub fn load(path: impl AsRef<Path>, opts: LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            Self::load_hf(path, opts)
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Self::load_gguf(path, opts)
        } else if path.exists() {
            Err(EngineError::bad_file(
                path,
                "not a model: expected a .gguf file or a folder with config.json",
            ))
        } else {
            Err(EngineError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            })
        }
    }

    fn load_gguf(path: &Path, opts: LoadOptions) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let cfg = LlamaConfig::from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let architecture = cfg.architecture.clone();
        let ckpt = Checkpoint::gguf(file, opts.mode)
            .trainable(opts.trainable)
            .quantize_to(opts.quantize);
        let lm = Llama::load(&cfg, &ckpt, Naming::Gguf)?;
        Self::assemble(path, Format::Gguf, Box::new(lm), tokenizer, architecture)
            .map(|m| m.with_vars(&ckpt))
    }

    fn load_hf(dir: &Path, opts: LoadOptions) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| EngineError::Io {
            path: cfg_path.clone(),
            source,
        })?;
        let model_type = config::hf_model_type(&cfg_path, &text)?;
        let files = safetensors_files(dir)?;
        let ckpt = Checkpoint::safetensors(dir, &files)?
            .trainable(opts.trainable)
            .quantize_to(opts.quantize);
        let lm: Box<dyn CausalLm> = match model_type.as_str() {
            t if config::LLAMA_FAMILY.contains(&t) => {
                let cfg = LlamaConfig::from_hf_json(&cfg_path, &text)?;
                Box::new(Llama::load(&cfg, &ckpt, Naming::HuggingFace)?)
            }
            "bloom" => Box::new(Bloom::load(
                &BloomConfig::from_hf_json(&cfg_path, &text)?,
                &ckpt,
            )?),
            "opt" => Box::new(Opt::load(
                &OptConfig::from_hf_json(&cfg_path, &text)?,
                &ckpt,
            )?),
            _ => {
                return Err(EngineError::UnsupportedArchitecture {
                    path: cfg_path,
                    architecture: model_type,
                    supported: supported_architectures(),
                });
            }
        };
        let tokenizer = Tokenizer::from_hf_dir(dir)?;
        Self::assemble(dir, Format::HuggingFace, lm, tokenizer, model_type)
            .map(|m| m.with_vars(&ckpt))
    }

    fn with_vars(mut self, ckpt: &Checkpoint) -> Self {
        self.vars = ckpt.vars().cloned();
        self
    }

    /// The network alone, for callers that need no tokenizer.
    pub fn into_lm(self) -> Box<dyn CausalLm> {
        self.lm
    }

    /// The trainable weights by checkpoint name, when loaded with
    /// [`LoadOptions::trainable`].
    pub fn vars(&self) -> Option<&VarMap> {
        self.vars.as_ref()
    }

    fn assemble(
        path: &Path,
        format: Format,
        lm: Box<dyn CausalLm>,
        mut tokenizer: Tokenizer,
        architecture: String,
    ) -> Result<Self> {
        let chat = match tokenizer.chat_template().map(str::to_string) {
            Some(src) => {
                for t in END_OF_TURN {
                    if src.contains(t)
                        && let Some(id) = tokenizer.token_to_id(t)
                    {
                        tokenizer.add_eos_id(id);
                    }
                }
                let bos = tokenizer.special_text(tokenizer.bos_id());
                let eos = tokenizer.special_text(tokenizer.eos_ids().first().copied());
                Some(ChatTemplate::new(&src, &bos, &eos)?)
            }
            None => None,
        };
        Ok(Self {
            path: path.to_path_buf(),
            format,
            lm,
            tokenizer,
            chat,
            architecture,
            vars: None,
        })
    }

    /// Where the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format it was loaded from.
    pub fn format(&self) -> Format {
        self.format
    }

    /// `llama`, `qwen2`...
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The network.
    pub fn lm(&self) -> &dyn CausalLm {
        self.lm.as_ref()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Whether the model ships a chat template (an instruct/chat model).
    pub fn is_chat(&self) -> bool {
        self.chat.is_some()
    }

    /// Renders a conversation with the model's own template.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let chat = self.chat.as_ref().ok_or_else(|| {
            EngineError::invalid("messages", "this model has no chat template (a base model)")
        })?;
        chat.render(messages, add_generation_prompt)
    }

    /// Token ids for a raw prompt (BOS added when the model wants it).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(prompt, true)
    }

    /// Token ids for a conversation, ready for the assistant's reply. The rendered
    /// template already holds any BOS text, so none is added again.
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.render_chat(messages, true)?;
        self.tokenizer.encode(&text, false)
    }
}

/// The safetensors files of a folder: the shards listed by
/// `model.safetensors.index.json`, or `model.safetensors`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| EngineError::Io {
            path: index.clone(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::bad_file(&index, format!("invalid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| EngineError::bad_file(&index, "no `weight_map` object"))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        let files: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(EngineError::bad_file(
                &index,
                format!("lists shard {} which does not exist", missing.display()),
            ));
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(EngineError::bad_file(
        dir,
        "no model.safetensors or model.safetensors.index.json",
    ))
}
