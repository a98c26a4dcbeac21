//! Text generation behind one trait, whoever runs the model.
//!
//! - [`local::LocalEngine`]: a model loaded by `engine`, decoded with continuous
//!   batching on a worker thread behind a bounded queue.
//! - [`remote::RemoteEngine`]: any OpenAI-compatible server (vLLM, llama.cpp
//!   server, Ray Serve, OpenAI) by base URL, model name and an API key from the
//!   environment: how a user outgrows one machine.
//! - [`registry::Engines`]: the engines a server holds, by model name, and which
//!   one teaches each annotation kind.
//!
//! [`Engine::submit`] validates a request and queues it at once (a full queue is
//! an error, not a wait); the returned [`GenStream`] yields text as it is
//! generated. Dropping the stream cancels the generation.

pub mod local;
pub mod registry;
pub mod remote;

use engine::{ChatMessage, FinishReason, GenerateParams};
use tokio::sync::mpsc;

/// What to continue: raw text, or a conversation for the model's chat template.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Text fed as-is (a completion).
    Text(String),
    /// Messages rendered by the model's chat template, ready for the reply.
    Chat(Vec<ChatMessage>),
}

/// One generation to run.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Budget, sampling and stop strings.
    pub params: GenerateParams,
}

/// How a generation ended, with its token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Why it ended.
    pub finish: FinishReason,
    /// Tokens in the prompt (as the engine's tokenizer counts them).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// What a [`GenStream`] yields: text pieces, then exactly one `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New final text.
    Text(String),
    /// The generation ended normally.
    Done(Finished),
    /// The generation broke off (the message says why).
    Failed(String),
}

/// The receiving end of one generation; dropping it cancels the generation.
pub type GenStream = mpsc::UnboundedReceiver<GenEvent>;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// In this process.
    Local,
    /// On an OpenAI-compatible server.
    Remote,
}

/// What the server tells clients about a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// The name clients use (`model` in requests).
    pub id: String,
    /// Local or remote.
    pub kind: EngineKind,
    /// Whether prompts go through a chat template (instruct models).
    pub chat: bool,
    /// Requests allowed to wait before new ones are refused.
    pub queue_size: usize,
}

/// A request the engine refused or could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// The request is invalid; `field` names the part at fault.
    #[error("{field}: {message}")]
    Invalid {
        /// The request field (`prompt`, `temperature`, `messages`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The queue is full; try again after `retry_after_s` seconds.
    #[error("the queue of model `{model}` is full ({size} waiting); retry in {retry_after_s} s")]
    QueueFull {
        /// The model.
        model: String,
        /// Queue capacity.
        size: usize,
        /// Suggested wait.
        retry_after_s: u64,
    },
    /// The engine cannot take work (stopped, or its server is unreachable).
    #[error("model `{model}` is unavailable: {message}")]
    Unavailable {
        /// The model.
        model: String,
        /// Why.
        message: String,
    },
}

impl InferError {
    /// An [`InferError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Maps an engine error: argument errors name their field; anything else is
    /// a broken engine.
    pub fn from_engine(model: &str, e: engine::EngineError) -> Self {
        match e {
            engine::EngineError::InvalidArgument { field, message } => {
                Self::invalid(field, message)
            }
            other => Self::Unavailable {
                model: model.to_string(),
                message: other.to_string(),
            },
        }
    }
}

/// A model that generates text for many clients at once.
pub trait Engine: Send + Sync {
    /// Its name and capabilities.
    fn info(&self) -> &EngineInfo;

    /// Checks `request` and queues it; the stream yields its text. Fails at once
    /// with [`InferError::Invalid`] or [`InferError::QueueFull`], so a caller
    /// can answer 422 or 429 before any streaming starts.
    fn submit(&self, request: GenRequest) -> Result<GenStream, InferError>;

    /// [`Engine::submit`] for requests that belong together (an annotation's
    /// kinds, a completion's `n` choices), their streams in the same order:
    /// every request is checked before any is queued, and they are queued
    /// all or none. A local engine admits a group into one step, prefilling
    /// it in shared passes; here each is submitted in turn, and on an error
    /// the streams already made drop, which cancels them.
    fn submit_group(&self, requests: Vec<GenRequest>) -> Result<Vec<GenStream>, InferError> {
        requests.into_iter().map(|r| self.submit(r)).collect()
    }

    /// Requests waiting to start.
    fn queue_depth(&self) -> usize;

    /// Sequences being generated now.
    fn running(&self) -> usize;
}

/// A seed for a request that gives none, and a unique-enough id.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Collects a whole generation: its text and how it ended.
pub async fn collect(mut stream: GenStream) -> Result<(String, Finished), String> {
    let mut text = String::new();
    while let Some(event) = stream.recv().await {
        match event {
            GenEvent::Text(piece) => text.push_str(&piece),
            GenEvent::Done(finished) => return Ok((text, finished)),
            GenEvent::Failed(message) => return Err(message),
        }
    }
    Err("the engine stopped before the generation ended".into())
}
