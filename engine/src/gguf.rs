//! A GGUF file opened for reading: its metadata, its tensor directory, and reads of
//! single tensors, with every error naming the file.
//!
//! Parsing itself is candle's (`candle_core::quantized::gguf_file`); this module adds
//! an up-front integrity check (every tensor must lie inside the file, so a truncated
//! download fails at open, not halfway through a load) and typed metadata getters.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{EngineError, Result};

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: Mutex<BufReader<File>>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens `path`, parses the header and checks that every tensor lies in the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
        let file_len = file
            .metadata()
            .map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader)
            .map_err(|e| EngineError::bad_file(&path, format!("not a valid GGUF file: {e}")))?;
        for (name, info) in &content.tensor_infos {
            let elems = info.shape.elem_count();
            let block = info.ggml_dtype.block_size();
            let bytes = (elems / block * info.ggml_dtype.type_size()) as u64;
            let end = content.tensor_data_offset + info.offset + bytes;
            if end > file_len {
                return Err(EngineError::bad_file(
                    &path,
                    format!(
                        "truncated: tensor `{name}` ends at byte {end} but the file has {file_len} bytes"
                    ),
                ));
            }
        }
        Ok(Self {
            path,
            content,
            reader: Mutex::new(reader),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<String> {
        Ok(self.get_str("general.architecture")?.to_string())
    }

    /// A raw metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| EngineError::bad_file(&self.path, format!("missing metadata `{key}`")))
    }

    fn typed<T>(&self, key: &str, v: candle_core::Result<T>) -> Result<T> {
        v.map_err(|e| EngineError::bad_file(&self.path, format!("metadata `{key}`: {e}")))
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        self.typed(key, v.to_string()).map(|s| s.as_str())
    }

    /// An integer metadata value of any width, as `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        let n = match v {
            Value::U8(x) => *x as i128,
            Value::I8(x) => *x as i128,
            Value::U16(x) => *x as i128,
            Value::I16(x) => *x as i128,
            Value::U32(x) => *x as i128,
            Value::I32(x) => *x as i128,
            Value::U64(x) => *x as i128,
            Value::I64(x) => *x as i128,
            other => {
                return Err(EngineError::bad_file(
                    &self.path,
                    format!(
                        "metadata `{key}` is {:?}, not an integer",
                        other.value_type()
                    ),
                ));
            }
        };
        usize::try_from(n).map_err(|_| {
            EngineError::bad_file(
                &self.path,
                format!("metadata `{key}` = {n} is out of range"),
            )
        })
    }

    /// A float metadata value (f32 or f64), as `f64`.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        match self.require(key)? {
            Value::F32(x) => Ok(*x as f64),
            Value::F64(x) => Ok(*x),
            other => Err(EngineError::bad_file(
                &self.path,
                format!("metadata `{key}` is {:?}, not a float", other.value_type()),
            )),
        }
    }

    /// A boolean metadata value, if present.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|v| v.to_bool().ok())
    }

    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        let items = self.typed(key, v.to_vec())?;
        items
            .iter()
            .map(|i| self.typed(key, i.to_string()).map(|s| s.as_str()))
            .collect()
    }

    /// An array of integers (`tokenizer.ggml.token_type`).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let v = self.require(key)?;
        let items = self.typed(key, v.to_vec())?;
        items
            .iter()
            .map(|i| match i {
                Value::I32(x) => Ok(*x as i64),
                Value::U32(x) => Ok(*x as i64),
                Value::I64(x) => Ok(*x),
                Value::U8(x) => Ok(*x as i64),
                Value::I8(x) => Ok(*x as i64),
                _ => Err(EngineError::bad_file(
                    &self.path,
                    format!("metadata `{key}` holds a non-integer"),
                )),
            })
            .collect()
    }

    /// Number of tokens in `tokenizer.ggml.tokens`.
    pub fn tokens_len(&self) -> Result<usize> {
        let v = self.require("tokenizer.ggml.tokens")?;
        Ok(self.typed("tokenizer.ggml.tokens", v.to_vec())?.len())
    }

    /// Whether the file holds a tensor of this name.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Names of all tensors, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .content
            .tensor_infos
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    /// Reads one tensor in its stored (possibly quantized) form.
    pub fn tensor(&self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(EngineError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            });
        }
        let mut reader = self
            .reader
            .lock()
            .map_err(|_| EngineError::bad_file(&self.path, "reader lock poisoned"))?;
        self.content
            .tensor(&mut *reader, name, &Device::Cpu)
            .map_err(|e| EngineError::bad_file(&self.path, format!("tensor `{name}`: {e}")))
    }
}
