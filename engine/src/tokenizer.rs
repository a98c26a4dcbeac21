//! Tokenizers: Hugging Face `tokenizer.json` folders, and GGUF files whose metadata
//! carries the vocabulary, merges, special tokens and chat template.
//!
//! A GGUF BPE tokenizer is rebuilt as the equivalent `tokenizers` pipeline, the way
//! transformers converts it (`transformers/integrations/ggml.py`,
//! `GGUFGPTConverter` / `GGUFQwen2Converter`) and llama.cpp runs it
//! (`llama-vocab.cpp`): byte-level BPE with the GPT-2 pre-tokenizer regex, control
//! tokens as special added tokens, BOS prepended only when `add_bos_token` says so.

use std::path::Path;

use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
mod token_type {
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
}

/// A tokenizer plus the special tokens generation needs.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// Loads `tokenizer.json` from a model folder, with `tokenizer_config.json`
    /// (chat template, `add_bos_token`, bos/eos) and `generation_config.json` (eos
    /// ids) when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner =
            tokenizers::Tokenizer::from_file(&path).map_err(|e| EngineError::bad_file(&path, e))?;
        let cfg = read_json_opt(&dir.join("tokenizer_config.json"))?;
        let gen_cfg = read_json_opt(&dir.join("generation_config.json"))?;
        let token_of = |key: &str| -> Option<u32> {
            let v = cfg.as_ref()?.get(key)?;
            let s = v.as_str().or_else(|| v.get("content")?.as_str())?;
            inner.token_to_id(s)
        };
        let bos = token_of("bos_token");
        let mut eos: Vec<u32> = token_of("eos_token").into_iter().collect();
        if let Some(g) = gen_cfg.as_ref().and_then(|g| g.get("eos_token_id")) {
            for id in g.as_array().cloned().unwrap_or_else(|| vec![g.clone()]) {
                if let Some(id) = id.as_u64().and_then(|i| u32::try_from(i).ok())
                    && !eos.contains(&id)
                {
                    eos.push(id);
                }
            }
        }
        let add_bos = cfg
            .as_ref()
            .and_then(|c| c.get("add_bos_token"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let chat_template = cfg
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Self {
            inner,
            bos,
            eos,
            add_bos,
            chat_template,
        })
    }

    /// Builds the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(EngineError::bad_file(
                file.path(),
                format!(
                    "tokenizer model `{model}` is not supported yet (supported: gpt2 byte-level BPE)"
                ),
            ));
        }
        let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
        let merges = file.get_str_array("tokenizer.ggml.merges")?;
        let types = file
            .get_i64_array("tokenizer.ggml.token_type")
            .unwrap_or_else(|_| vec![1; tokens.len()]);
        let id = |key: &str| file.get_usize(key).ok().map(|i| i as u32);
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let vocab: serde_json::Map<String, Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();
        let added: Vec<Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let ty = types.get(*i).copied().unwrap_or(1);
                ty == token_type::CONTROL || ty == token_type::USER_DEFINED
            })
            .map(|(i, t)| {
                let special = types[i] == token_type::CONTROL;
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": !special, "special": special})
            })
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                              "trim_offsets": true, "use_regex": true},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true,
                               "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true,
                        "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let inner: tokenizers::Tokenizer = serde_json::from_value(spec)
            .map_err(|e| EngineError::bad_file(file.path(), format!("tokenizer: {e}")))?;
        let chat_template = file
            .get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_string);
        Ok(Self {
            inner,
            bos,
            eos: eos.into_iter().collect(),
            add_bos: file
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(false),
            chat_template,
        })
    }

    /// Token ids of `text`. With `add_special`, BOS is prepended when the model
    /// asks for it. Special tokens written in the text (`<|im_start|>`) are
    /// recognised as such.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`; special tokens are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The BOS id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Adds an id that ends generation (e.g. a chat model's end-of-turn token).
    pub fn add_eos_id(&mut self, id: u32) {
        if !self.eos.contains(&id) {
            self.eos.push(id);
        }
    }

    /// The model's Jinja chat template, if it ships one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Text of a token id, for the chat template's `bos_token`/`eos_token`.
    pub fn special_text(&self, id: Option<u32>) -> String {
        id.and_then(|i| self.id_to_token(i)).unwrap_or_default()
    }
}

fn read_json_opt(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EngineError::bad_file(path, format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EngineError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
