//! The engine's one error type. Every variant that comes from a file names it, so a
//! user who points the engine at a bad model learns which file and what is wrong.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A model file is malformed: truncated, bad magic, bad JSON, wrong shapes.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The model's architecture is not one the engine implements.
    #[error("{path}: unsupported architecture `{architecture}` (supported: {supported})")]
    UnsupportedArchitecture {
        /// The file that names the architecture (config.json or the GGUF).
        path: PathBuf,
        /// The architecture it names.
        architecture: String,
        /// The ones the engine knows, comma-separated.
        supported: String,
    },
    /// A weight the architecture needs is absent from the checkpoint.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The checkpoint (file or folder).
        path: PathBuf,
        /// The exact tensor name that was looked up.
        name: String,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template could not be parsed or rendered.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A caller passed an invalid argument (empty prompt, bad sampling value...).
    #[error("invalid argument `{field}`: {message}")]
    InvalidArgument {
        /// The argument at fault.
        field: &'static str,
        /// Why it is invalid.
        message: String,
    },
    /// A tensor operation failed.
    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// A [`EngineError::BadFile`] for `path`.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::BadFile {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// An [`EngineError::InvalidArgument`].
    pub fn invalid(field: &'static str, message: impl std::fmt::Display) -> Self {
        Self::InvalidArgument {
            field,
            message: message.to_string(),
        }
    }
}
