//! The OpenAI-compatible API: `GET /v1/models`, `POST /v1/completions`,
//! `POST /v1/chat/completions`, streaming or not, so every existing OpenAI
//! client and tool can use the server's models. Errors come in OpenAI's shape.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{HttpResponse, get, post, web};
use engine::{ChatMessage, GenerateParams, SamplingParams};
use futures_util::stream::{self, StreamExt};
use shared::openai::{
    ChatChoice, ChatDelta, ChatRequest, ChatResponse, CompletionChoice, CompletionRequest,
    CompletionResponse, ModelList, ModelObject, PromptInput, SamplingFields, Usage,
};

use super::{body, sse};
use crate::annotate::finish_reason;
use crate::error::{HttpError, OpenAiError};
use crate::infer::{Engine, EngineKind, Finished, GenEvent, GenRequest, GenStream, Prompt};
use crate::state::AppState;

/// Most choices per request.
const MAX_N: usize = 8;
/// Most stop strings, as OpenAI allows.
const MAX_STOP: usize = 4;
/// `max_tokens` default of `/v1/completions` (OpenAI's).
const COMPLETION_MAX_TOKENS: usize = 16;

/// Lists the models this server serves.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList)))]
#[get("/v1/models")]
pub async fn models(state: web::Data<AppState>) -> HttpResponse {
    let data = state
        .engines
        .all()
        .iter()
        .map(|e| ModelObject {
            id: e.info().id.clone(),
            object: "model".into(),
            created: state.started,
            owned_by: match e.info().kind {
                EngineKind::Local => "teacherlm".into(),
                EngineKind::Remote => "remote".into(),
            },
        })
        .collect();
    HttpResponse::Ok().json(ModelList {
        object: "list".into(),
        data,
    })
}

/// Continues a prompt.
#[utoipa::path(post, path = "/v1/completions", tag = "openai", request_body = CompletionRequest,
    responses(
        (status = 200, description = "A completion, or with `stream: true` SSE chunks ending with `data: [DONE]`", body = CompletionResponse),
        (status = 413, body = shared::openai::ErrorBody),
        (status = 422, description = "`param` names the field", body = shared::openai::ErrorBody),
        (status = 429, description = "Queue full; see `Retry-After`", body = shared::openai::ErrorBody),
    ))]
#[post("/v1/completions")]
pub async fn completions(
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OpenAiError> {
    let request: CompletionRequest = body::json(payload).await?;
    let prompt = match request.prompt {
        PromptInput::One(p) => p,
        PromptInput::Many(mut v) if v.len() == 1 => v.remove(0),
        PromptInput::Many(_) => {
            return Err(HttpError::invalid("prompt", "give one prompt per request").into());
        }
    };
    if prompt.is_empty() {
        return Err(HttpError::invalid("prompt", "is empty").into());
    }
    let engine = state.engines.get(&request.model, "model")?;
    let choices = submit(
        &*engine,
        Prompt::Text(prompt),
        &request.sampling,
        COMPLETION_MAX_TOKENS,
    )?;
    let meta = Meta::new("cmpl", &request.model);
    if request.sampling.stream {
        let usage = include_usage(&request.sampling);
        return Ok(stream_choices(choices, usage, move |chunk| match chunk {
            Chunk::Start(_) => None,
            Chunk::Text(index, text) => Some(meta.completion(vec![CompletionChoice {
                text,
                index,
                logprobs: None,
                finish_reason: None,
            }])),
            Chunk::End(index, f) => Some(meta.completion(vec![CompletionChoice {
                text: String::new(),
                index,
                logprobs: None,
                finish_reason: Some(finish_reason(f.finish).into()),
            }])),
            Chunk::Usage(u) => Some(CompletionResponse {
                usage: Some(u),
                ..meta.completion(Vec::new())
            }),
        }));
    }
    let (results, usage) = collect_all(choices).await?;
    let choices = results
        .into_iter()
        .enumerate()
        .map(|(index, (text, f))| CompletionChoice {
            text,
            index,
            logprobs: None,
            finish_reason: Some(finish_reason(f.finish).into()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(CompletionResponse {
        usage: Some(usage),
        ..meta.completion(choices)
    }))
}

/// Answers a conversation with the model's chat template.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatRequest,
    responses(
        (status = 200, description = "A chat completion, or with `stream: true` SSE chunks ending with `data: [DONE]`", body = ChatResponse),
        (status = 413, body = shared::openai::ErrorBody),
        (status = 422, description = "`param` names the field", body = shared::openai::ErrorBody),
        (status = 429, description = "Queue full; see `Retry-After`", body = shared::openai::ErrorBody),
    ))]
#[post("/v1/chat/completions")]
pub async fn chat_completions(
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OpenAiError> {
    let request: ChatRequest = body::json(payload).await?;
    if request.messages.is_empty() {
        return Err(HttpError::invalid("messages", "is empty").into());
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, m) in request.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(HttpError::invalid(
                    format!("messages[{i}].role"),
                    format!("`{other}` is not one of system, developer, user, assistant"),
                )
                .into());
            }
        };
        let content = m.content.clone().unwrap_or_default();
        messages.push(ChatMessage::new(role, content));
    }
    let engine = state.engines.get(&request.model, "model")?;
    let choices = submit(
        &*engine,
        Prompt::Chat(messages),
        &request.sampling,
        usize::MAX,
    )?;
    let meta = Meta::new("chatcmpl", &request.model);
    if request.sampling.stream {
        let usage = include_usage(&request.sampling);
        let chunk = |index, delta, finish: Option<&str>| ChatChoice {
            index,
            message: None,
            delta: Some(delta),
            logprobs: None,
            finish_reason: finish.map(str::to_string),
        };
        return Ok(stream_choices(choices, usage, move |c| match c {
            Chunk::Start(index) => Some(meta.chat_chunk(vec![chunk(
                index,
                ChatDelta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                },
                None,
            )])),
            Chunk::Text(index, text) => Some(meta.chat_chunk(vec![chunk(
                index,
                ChatDelta {
                    role: None,
                    content: Some(text),
                },
                None,
            )])),
            Chunk::End(index, f) => Some(meta.chat_chunk(vec![chunk(
                index,
                ChatDelta::default(),
                Some(finish_reason(f.finish)),
            )])),
            Chunk::Usage(u) => Some(ChatResponse {
                usage: Some(u),
                ..meta.chat_chunk(Vec::new())
            }),
        }));
    }
    let (results, usage) = collect_all(choices).await?;
    let choices = results
        .into_iter()
        .enumerate()
        .map(|(index, (text, f))| ChatChoice {
            index,
            message: Some(ChatDelta {
                role: Some("assistant".into()),
                content: Some(text),
            }),
            delta: None,
            logprobs: None,
            finish_reason: Some(finish_reason(f.finish).into()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ChatResponse {
        id: meta.id.clone(),
        object: "chat.completion".into(),
        created: meta.created,
        model: meta.model.clone(),
        choices,
        usage: Some(usage),
    }))
}

/// Checks the sampling fields and submits `n` generations (seeds `seed + i`).
fn submit(
    engine: &dyn Engine,
    prompt: Prompt,
    s: &SamplingFields,
    default_max_tokens: usize,
) -> Result<Vec<GenStream>, HttpError> {
    let n = s.n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(HttpError::invalid("n", format!("must be 1 to {MAX_N}")));
    }
    let max_tokens = s
        .max_completion_tokens
        .or(s.max_tokens)
        .unwrap_or(default_max_tokens);
    if max_tokens == 0 {
        let field = if s.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(HttpError::invalid(field, "must be at least 1"));
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(HttpError::invalid("temperature", "must be between 0 and 2"));
    }
    let stop = s.stop.as_ref().map(|s| s.to_vec()).unwrap_or_default();
    if stop.len() > MAX_STOP {
        return Err(HttpError::invalid(
            "stop",
            format!("at most {MAX_STOP} strings"),
        ));
    }
    if let Some(i) = stop.iter().position(String::is_empty) {
        return Err(HttpError::invalid(format!("stop[{i}]"), "is empty"));
    }
    let seed = s.seed.unwrap_or_else(crate::infer::random_u64);
    let requests = (0..n)
        .map(|i| GenRequest {
            prompt: prompt.clone(),
            params: GenerateParams {
                max_new_tokens: max_tokens,
                sampling: SamplingParams {
                    temperature,
                    top_p: s.top_p.unwrap_or(1.0),
                    seed: seed.wrapping_add(i as u64),
                    ..SamplingParams::greedy()
                },
                stop: stop.clone(),
            },
        })
        .collect();
    // The choices start together, or none does (429).
    Ok(engine.submit_group(requests)?)
}

fn include_usage(s: &SamplingFields) -> bool {
    s.stream_options.as_ref().is_some_and(|o| o.include_usage)
}

/// Waits for every choice; the texts and the summed usage.
async fn collect_all(
    choices: Vec<GenStream>,
) -> Result<(Vec<(String, Finished)>, Usage), HttpError> {
    let results =
        futures_util::future::join_all(choices.into_iter().map(crate::infer::collect)).await;
    let mut out = Vec::with_capacity(results.len());
    let mut usage = Usage::default();
    for r in results {
        let (text, f) = r.map_err(HttpError::BadGateway)?;
        usage.prompt_tokens = f.prompt_tokens;
        usage.completion_tokens += f.completion_tokens;
        out.push((text, f));
    }
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    Ok((out, usage))
}

/// What a stream of choices says, before it becomes a route's chunk type.
enum Chunk {
    /// Choice `i` begins.
    Start(usize),
    /// New text of choice `i`.
    Text(usize, String),
    /// Choice `i` ended.
    End(usize, Finished),
    /// Every choice ended; the totals.
    Usage(Usage),
}

/// Streams `choices` as SSE: `to_json` turns each [`Chunk`] into a frame's
/// body; a failed choice becomes an OpenAI error frame; `data: [DONE]` ends it.
fn stream_choices<T: serde::Serialize + 'static>(
    choices: Vec<GenStream>,
    include_usage: bool,
    to_json: impl Fn(Chunk) -> Option<T> + 'static,
) -> HttpResponse {
    let n = choices.len();
    let per_choice = choices.into_iter().enumerate().map(|(i, rx)| {
        let start = stream::once(async move { Ok(Chunk::Start(i)) });
        let body = stream::unfold((rx, false), move |(mut rx, ended)| async move {
            if ended {
                return None;
            }
            match rx.recv().await {
                Some(GenEvent::Text(t)) => Some((Ok(Chunk::Text(i, t)), (rx, false))),
                Some(GenEvent::Done(f)) => Some((Ok(Chunk::End(i, f)), (rx, true))),
                Some(GenEvent::Failed(m)) => Some((Err(m), (rx, true))),
                None => Some((Err("the engine stopped".to_string()), (rx, true))),
            }
        });
        start.chain(body).boxed_local()
    });
    let mut usage = Usage::default();
    let mut ended = 0;
    let frames = stream::select_all(per_choice)
        .map(Some)
        .chain(stream::once(async { None }))
        .filter_map(move |item| {
            let frame = match item {
                Some(Ok(chunk)) => {
                    if let Chunk::End(_, f) = &chunk {
                        usage.prompt_tokens = f.prompt_tokens;
                        usage.completion_tokens += f.completion_tokens;
                        ended += 1;
                    }
                    to_json(chunk).map(|j| sse::frame(None, &j))
                }
                Some(Err(message)) => Some(sse::frame(
                    None,
                    &OpenAiError(HttpError::BadGateway(message)).body(),
                )),
                None if include_usage && ended == n => {
                    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
                    to_json(Chunk::Usage(usage)).map(|j| sse::frame(None, &j))
                }
                None => None,
            };
            async move { frame }
        })
        .chain(stream::once(async { sse::done() }));
    sse::response(frames)
}

/// Id, timestamp and model shared by a response's chunks.
#[derive(Clone)]
struct Meta {
    id: String,
    created: u64,
    model: String,
}

impl Meta {
    fn new(prefix: &str, model: &str) -> Self {
        Self {
            id: format!("{prefix}-{:016x}", crate::infer::random_u64()),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_string(),
        }
    }

    fn completion(&self, choices: Vec<CompletionChoice>) -> CompletionResponse {
        CompletionResponse {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: None,
        }
    }

    fn chat_chunk(&self, choices: Vec<ChatChoice>) -> ChatResponse {
        ChatResponse {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: None,
        }
    }
}
