//! TeacherLM annotation of one sample: build the paper's prompts, send each kind
//! to its teacher, and assemble the annotations and the released record layout.
//!
//! The kinds run at the same time: on one local model they join the same batch,
//! so three annotations cost little more than one. Instruct models get the prompt
//! as a user message through their chat template; base models continue the raw
//! prompt and are stopped at the next `Q:` they would start.

use std::sync::Arc;

use engine::{ChatMessage, FinishReason, GenerateParams, SamplingParams};
use futures_util::stream::{self, BoxStream, StreamExt};
use shared::annotate::{AnnotateEvent, AnnotateRequest, AnnotateResponse, Annotation};
use shared::teacherlm::{AnnotationRecord, Kind, Prompts};

use crate::error::HttpError;
use crate::infer::registry::Engines;
use crate::infer::{Engine, GenEvent, GenRequest, GenStream, Prompt};

/// Default sampling temperature: the authors sampled (`do_sample=True`); a
/// little below 1 keeps small teachers on topic.
pub const DEFAULT_TEMPERATURE: f32 = 0.7;
/// Default nucleus mass.
pub const DEFAULT_TOP_P: f32 = 0.95;
/// Where a base model starts the next question of its own.
const BASE_MODEL_STOP: &str = "\nQ:";

/// A kind, its teacher and its generation.
pub type Submitted = (Kind, Arc<dyn Engine>, GenStream);

/// The kinds of one request, submitted to their teachers.
pub struct Started {
    /// The prompts of the sample.
    pub prompts: Prompts,
    /// Per kind, in the order asked.
    pub kinds: Vec<Submitted>,
}

/// The kinds of a request that one teacher serves, submitted together.
struct Group {
    teacher: Arc<dyn Engine>,
    /// Their places in the request's `kinds`.
    kinds: Vec<usize>,
    requests: Vec<GenRequest>,
}

/// Checks `request` and submits every kind it asks for. Fails before anything
/// runs (422 naming the field, 429, 503); once it returns, generation is under
/// way and dropping the streams cancels it.
pub fn start(
    engines: &Engines,
    request: &AnnotateRequest,
    default_max_tokens: usize,
) -> Result<Started, HttpError> {
    let prompts = request
        .sample()
        .prompts()
        .map_err(|e| HttpError::invalid(e.field, e.message))?;
    if request.kinds.is_empty() {
        return Err(HttpError::invalid(
            "kinds",
            "is empty; ask for at least one kind",
        ));
    }
    for (i, kind) in request.kinds.iter().enumerate() {
        if request.kinds[..i].contains(kind) {
            return Err(HttpError::invalid(
                format!("kinds[{i}]"),
                format!("`{kind}` is asked twice"),
            ));
        }
    }
    let max_tokens = request.max_tokens.unwrap_or(default_max_tokens);
    if max_tokens == 0 {
        return Err(HttpError::invalid("max_tokens", "must be at least 1"));
    }
    let sampling = SamplingParams {
        temperature: request.temperature.unwrap_or(DEFAULT_TEMPERATURE),
        top_p: request.top_p.unwrap_or(DEFAULT_TOP_P),
        seed: request.seed.unwrap_or_else(crate::infer::random_u64),
        ..SamplingParams::greedy()
    };
    // The kinds a teacher serves go to it as one group, so they start in the
    // same step (their prompts share the sample's text, prefilled in one pass).
    let mut groups: Vec<Group> = Vec::new();
    for (i, &kind) in request.kinds.iter().enumerate() {
        let teacher = engines.teacher(kind)?;
        let text = prompts.for_kind(kind).to_string();
        let (prompt, stop) = if teacher.info().chat {
            (
                Prompt::Chat(vec![ChatMessage::new("user", text)]),
                Vec::new(),
            )
        } else {
            (Prompt::Text(text), vec![BASE_MODEL_STOP.to_string()])
        };
        let params = GenerateParams {
            max_new_tokens: max_tokens,
            sampling: sampling.clone(),
            stop,
        };
        let group = match groups
            .iter()
            .position(|g| Arc::ptr_eq(&g.teacher, &teacher))
        {
            Some(g) => &mut groups[g],
            None => groups.push_mut(Group {
                teacher,
                kinds: Vec::new(),
                requests: Vec::new(),
            }),
        };
        group.kinds.push(i);
        group.requests.push(GenRequest { prompt, params });
    }
    let mut kinds: Vec<Option<Submitted>> = request.kinds.iter().map(|_| None).collect();
    for group in groups {
        let streams = group.teacher.submit_group(group.requests)?;
        // An error above drops the streams already submitted, cancelling them.
        for (i, stream) in group.kinds.into_iter().zip(streams) {
            kinds[i] = Some((request.kinds[i], Arc::clone(&group.teacher), stream));
        }
    }
    let kinds = kinds
        .into_iter()
        .map(|k| k.expect("every kind was submitted"))
        .collect();
    Ok(Started { prompts, kinds })
}

/// The API's name of a finish reason.
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Cancelled => "cancelled",
    }
}

/// Every event of a started annotation, kinds interleaved as their tokens come,
/// ending with [`AnnotateEvent::Record`].
pub fn events(started: Started) -> BoxStream<'static, AnnotateEvent> {
    let Started { prompts, kinds } = started;
    let order: Vec<Kind> = kinds.iter().map(|(k, _, _)| *k).collect();
    let per_kind = kinds.into_iter().map(|(kind, teacher, rx)| {
        let model = teacher.info().id.clone();
        stream::unfold(
            (rx, String::new(), false),
            move |(mut rx, mut text, ended)| {
                let model = model.clone();
                async move {
                    if ended {
                        return None;
                    }
                    let event = match rx.recv().await {
                        Some(GenEvent::Text(piece)) => {
                            text.push_str(&piece);
                            let event = AnnotateEvent::Token { kind, text: piece };
                            return Some(((event, String::new()), (rx, text, false)));
                        }
                        Some(GenEvent::Done(f)) => AnnotateEvent::Done {
                            annotation: Annotation {
                                kind,
                                text: text.trim().to_string(),
                                model,
                                finish_reason: finish_reason(f.finish).to_string(),
                                prompt_tokens: f.prompt_tokens,
                                completion_tokens: f.completion_tokens,
                            },
                        },
                        Some(GenEvent::Failed(message)) => failed(kind, message),
                        None => failed(kind, "the engine stopped".into()),
                    };
                    // The raw text goes with the last event: the record's `all`
                    // needs its spacing.
                    Some(((event, text), (rx, String::new(), true)))
                }
            },
        )
        .boxed()
    });
    let merged = stream::select_all(per_kind);
    let mut record = Some(AnnotationRecord::new(prompts));
    let mut done: Vec<Annotation> = Vec::new();
    merged
        .map(Some)
        .chain(stream::once(async { None }))
        .filter_map(move |event| {
            let out = match event {
                Some((event, raw)) => {
                    if let (AnnotateEvent::Done { annotation }, Some(r)) = (&event, record.as_mut())
                    {
                        r.set(annotation.kind, &raw);
                        done.push(annotation.clone());
                    }
                    Some(event)
                }
                None => record.take().map(|record| {
                    let mut annotations = std::mem::take(&mut done);
                    annotations.sort_by_key(|a| order.iter().position(|k| *k == a.kind));
                    AnnotateEvent::Record {
                        response: AnnotateResponse {
                            annotations,
                            record,
                        },
                    }
                }),
            };
            async move { out }
        })
        .boxed()
}

fn failed(kind: Kind, message: String) -> AnnotateEvent {
    AnnotateEvent::Error {
        kind: Some(kind),
        error: HttpError::BadGateway(message).api_body(),
    }
}

/// Runs a started annotation to the end: the response, or the first failure.
pub async fn collect(started: Started) -> Result<AnnotateResponse, HttpError> {
    let mut events = events(started);
    let mut failure = None;
    while let Some(event) = events.next().await {
        match event {
            AnnotateEvent::Error { error, kind } => {
                failure.get_or_insert_with(|| {
                    HttpError::BadGateway(format!(
                        "{}: {}",
                        kind.map_or("annotation", Kind::name),
                        error.error
                    ))
                });
            }
            AnnotateEvent::Record { response } => {
                return match failure {
                    Some(e) => Err(e),
                    None => Ok(response),
                };
            }
            _ => {}
        }
    }
    Err(HttpError::Internal(
        "the annotation ended without a record".into(),
    ))
}
