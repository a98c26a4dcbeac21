//! TeacherLM Studio's model engine: loads the formats users have (Hugging Face
//! folders, GGUF), runs the model families on candle, and exposes generation,
//! sampling and log-likelihood scoring. No network and no HTTP here: the server
//! and the CLI (`backend`) own those.
//!
//! Entry points: [`Model::load`], [`generate`], [`Batch`] (continuous batching),
//! [`score::score_continuations`].

pub(crate) mod attend;
pub mod batch;
pub mod chat;
pub mod config;
pub mod error;
pub mod eval;
pub mod gemv;
pub mod generate;
pub mod gguf;
pub(crate) mod hugemem;
pub mod kv_cache;
pub mod model;
pub mod models;
pub mod ops;
pub mod quant;
pub mod sampling;
pub mod score;
pub(crate) mod text_stream;
pub mod threads;
pub mod tokenizer;
pub mod vmath;
pub mod weights;

pub use batch::{Batch, Event, SeqId};
pub use chat::ChatMessage;
pub use error::{EngineError, Result};
pub use generate::{FinishReason, GenerateParams, Generation, generate};
pub use kv_cache::{Cache, KvPrecision};
pub use model::{Format, LoadOptions, Model};
pub use sampling::SamplingParams;
pub use weights::WeightMode;
