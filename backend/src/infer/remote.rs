//! A model on any OpenAI-compatible server (vLLM, llama.cpp server, Ray Serve,
//! OpenAI itself), reached over HTTP with streaming.
//!
//! Each request runs on its own thread with a blocking `ureq` call that reads the
//! server's SSE stream line by line and forwards the text; a closed receiver
//! (the client went away) ends the thread, which drops the connection, which
//! makes the remote server stop generating. The number of requests in flight is
//! bounded like a local engine's queue, so overload is a 429 here too.

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use engine::FinishReason;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    Engine, EngineInfo, EngineKind, Finished, GenEvent, GenRequest, GenStream, InferError, Prompt,
};
use crate::metrics::Metrics;

/// Where a remote model lives; one `[[remote]]` table of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The name this server lists it under (`model` in requests).
    pub name: String,
    /// The server's OpenAI base URL, e.g. `http://gpu-box:8000/v1`.
    pub base_url: String,
    /// The model name on that server (default: `name`).
    #[serde(default)]
    pub model: Option<String>,
    /// Environment variable holding the API key, sent as a bearer token.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Whether prompts go through `/chat/completions` (default true).
    #[serde(default = "yes")]
    pub chat: bool,
    /// Requests in flight at most (default 32).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Seconds to wait for the server to connect and answer (default 600).
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn yes() -> bool {
    true
}

fn default_concurrency() -> usize {
    32
}

fn default_timeout() -> u64 {
    600
}

/// An OpenAI-compatible server's model behind the [`Engine`] trait.
pub struct RemoteEngine {
    info: EngineInfo,
    config: RemoteConfig,
    api_key: Option<String>,
    agent: ureq::Agent,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl RemoteEngine {
    /// An engine for `config`; reads the API key from its environment variable.
    pub fn new(config: RemoteConfig, metrics: Arc<Metrics>) -> Result<Self, InferError> {
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| InferError::Unavailable {
                model: config.name.clone(),
                message: format!("its API key variable `{var}` is not set"),
            })?),
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(config.timeout_s)))
            .build()
            .new_agent();
        Ok(Self {
            info: EngineInfo {
                id: config.name.clone(),
                kind: EngineKind::Remote,
                chat: config.chat,
                queue_size: config.max_concurrency,
            },
            config,
            api_key,
            agent,
            in_flight: Arc::new(AtomicUsize::new(0)),
            metrics,
        })
    }

    /// The request body for `request` (streaming, usage included).
    fn body(&self, request: &GenRequest) -> Value {
        let p = &request.params;
        let mut body = json!({
            "model": self.config.model.as_deref().unwrap_or(&self.config.name),
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": p.sampling.temperature,
            "top_p": p.sampling.top_p,
            "seed": p.sampling.seed,
        });
        // `usize::MAX` means "as much as fits": the server's own default.
        if p.max_new_tokens != usize::MAX {
            body["max_tokens"] = json!(p.max_new_tokens);
        }
        if !p.stop.is_empty() {
            body["stop"] = json!(p.stop);
        }
        match &request.prompt {
            Prompt::Text(text) if !self.config.chat => body["prompt"] = json!(text),
            // A chat-only server gets raw text as one user message.
            Prompt::Text(text) => body["messages"] = json!([{"role": "user", "content": text}]),
            Prompt::Chat(messages) => body["messages"] = json!(messages),
        }
        body
    }
}

impl Engine for RemoteEngine {
    fn info(&self) -> &EngineInfo {
        &self.info
    }

    fn submit(&self, request: GenRequest) -> Result<GenStream, InferError> {
        match &request.prompt {
            Prompt::Text(t) if t.is_empty() => {
                return Err(InferError::invalid("prompt", "is empty"));
            }
            Prompt::Chat(m) if m.is_empty() => {
                return Err(InferError::invalid("messages", "is empty"));
            }
            _ => {}
        }
        request
            .params
            .sampling
            .validate()
            .map_err(|e| InferError::from_engine(&self.info.id, e))?;
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.config.max_concurrency {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.metrics.rejected(&self.info.id);
            return Err(InferError::QueueFull {
                model: self.info.id.clone(),
                size: self.config.max_concurrency,
                retry_after_s: 1,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let call = Call {
            url: format!(
                "{}/{}",
                self.config.base_url.trim_end_matches('/'),
                if self.config.chat {
                    "chat/completions"
                } else {
                    "completions"
                }
            ),
            body: self.body(&request),
            api_key: self.api_key.clone(),
            agent: self.agent.clone(),
            model: self.info.id.clone(),
            metrics: Arc::clone(&self.metrics),
        };
        let in_flight = Arc::clone(&self.in_flight);
        std::thread::Builder::new()
            .name(format!("remote-{}", self.info.id))
            .spawn(move || {
                let outcome = call.run(&tx);
                in_flight.fetch_sub(1, Ordering::SeqCst);
                if let Err(message) = outcome {
                    let _ = tx.send(GenEvent::Failed(message));
                }
            })
            .map_err(|e| InferError::Unavailable {
                model: self.info.id.clone(),
                message: format!("cannot start a thread: {e}"),
            })?;
        Ok(rx)
    }

    fn queue_depth(&self) -> usize {
        0
    }

    fn running(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// One streaming HTTP call.
struct Call {
    url: String,
    body: Value,
    api_key: Option<String>,
    agent: ureq::Agent,
    model: String,
    metrics: Arc<Metrics>,
}

impl Call {
    /// Streams the answer into `tx`; an error message when the call fails.
    fn run(self, tx: &mpsc::UnboundedSender<GenEvent>) -> Result<(), String> {
        let start = Instant::now();
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "text/event-stream");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let response = req
            .send(self.body.to_string())
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if status != 200 {
            let text = body.read_to_string().unwrap_or_default();
            return Err(format!(
                "{} answered {status}: {}",
                self.url,
                error_message(&text)
            ));
        }
        let reader = BufReader::new(body.as_reader());
        let mut finish = FinishReason::Length;
        let (mut prompt_tokens, mut completion_tokens, mut pieces) = (0, None, 0);
        let mut last: Option<Instant> = None;
        for line in reader.lines() {
            let line = line.map_err(|e| format!("{}: reading the stream: {e}", self.url))?;
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|e| format!("{}: bad stream chunk `{data}`: {e}", self.url))?;
            if let Some(error) = chunk.get("error") {
                return Err(format!(
                    "{}: {}",
                    self.url,
                    error_message(&error.to_string())
                ));
            }
            if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
                prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0) as usize;
                completion_tokens = usage["completion_tokens"].as_u64().map(|n| n as usize);
            }
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            let text = choice["delta"]["content"]
                .as_str()
                .or_else(|| choice["text"].as_str())
                .unwrap_or("");
            if !text.is_empty() {
                let now = Instant::now();
                match last {
                    None => self
                        .metrics
                        .first_token(&self.model, (now - start).as_secs_f64()),
                    Some(t) => self
                        .metrics
                        .token_latency(&self.model, (now - t).as_secs_f64()),
                }
                last = Some(now);
                pieces += 1;
                if tx.send(GenEvent::Text(text.to_string())).is_err() {
                    // The client left: dropping the connection stops the server.
                    self.metrics.cancelled(&self.model);
                    return Ok(());
                }
            }
            match choice["finish_reason"].as_str() {
                Some("stop") => finish = FinishReason::Stop,
                Some("length") => finish = FinishReason::Length,
                _ => {}
            }
        }
        let completion_tokens = completion_tokens.unwrap_or(pieces);
        self.metrics.tokens(&self.model, completion_tokens as u64);
        let _ = tx.send(GenEvent::Done(Finished {
            finish,
            prompt_tokens,
            completion_tokens,
        }));
        Ok(())
    }
}

/// The message of an OpenAI-shaped error body, or the body itself.
fn error_message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["error"]["message"]
        .as_str()
        .or_else(|| v["message"].as_str())
        .or_else(|| v["error"].as_str())
        .map_or_else(|| body.chars().take(500).collect(), str::to_string)
}
