//! The bodies of `POST /api/annotate`: a sample and the kinds wanted in, the
//! annotations and the paper's record layout out, or a stream of
//! [`AnnotateEvent`]s when the client asks for `text/event-stream`.

use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::teacherlm::{AnnotationRecord, Kind, Sample};

/// Body of `POST /api/annotate`: the fields of a [`Sample`] (flat, not
/// nested: spelled out rather than `#[serde(flatten)]`, which would hide the
/// path of a bad field from the error message) and the generation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotateRequest {
    /// See [`Sample::question`].
    pub question: String,
    /// See [`Sample::options`].
    #[serde(default)]
    pub options: Vec<String>,
    /// See [`Sample::answer`].
    pub answer: String,
    /// See [`Sample::subject`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Which annotations to write (default: all three).
    #[serde(default = "all_kinds")]
    pub kinds: Vec<Kind>,
    /// Most tokens per annotation (default: the server's `annotate_max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Sampling temperature (default 0.7; 0 is greedy). The authors sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus mass (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Seed, for a reproducible annotation (default: random).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn all_kinds() -> Vec<Kind> {
    Kind::ALL.to_vec()
}

impl AnnotateRequest {
    /// A request for every kind of `sample` with the server's defaults.
    pub fn new(sample: Sample) -> Self {
        Self {
            question: sample.question,
            options: sample.options,
            answer: sample.answer,
            subject: sample.subject,
            kinds: all_kinds(),
            max_tokens: None,
            temperature: None,
            top_p: None,
            seed: None,
        }
    }

    /// The sample to annotate.
    pub fn sample(&self) -> Sample {
        Sample {
            question: self.question.clone(),
            options: self.options.clone(),
            answer: self.answer.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// One generated annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Annotation {
    /// Its kind.
    pub kind: Kind,
    /// The text after the trigger, trimmed.
    pub text: String,
    /// The teacher that wrote it.
    pub model: String,
    /// `stop` (the model ended or a stop string), `length` (budget) or
    /// `cancelled`.
    pub finish_reason: String,
    /// Tokens of the teacher's prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// Body of a non-streaming answer, and the last event of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotateResponse {
    /// The annotations, in the order asked.
    pub annotations: Vec<Annotation>,
    /// The paper's released layout (`text`, `cot_text`, ..., `all`, `cot_tail`).
    pub record: AnnotationRecord,
}

/// One server-sent event of a streamed annotation (`data:` holds its JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnnotateEvent {
    /// New text of one annotation.
    Token {
        /// Which annotation.
        kind: Kind,
        /// The new piece.
        text: String,
    },
    /// One annotation is complete.
    Done {
        /// It, whole.
        annotation: Annotation,
    },
    /// One annotation (or, without `kind`, the whole request) failed.
    Error {
        /// The failed annotation, if only one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<Kind>,
        /// What went wrong.
        error: ApiError,
    },
    /// Everything that was asked is done: the final response.
    Record {
        /// The response a non-streaming request gets.
        response: AnnotateResponse,
    },
}

impl AnnotateEvent {
    /// The SSE `event:` name (the JSON `type`).
    pub fn name(&self) -> &'static str {
        match self {
            AnnotateEvent::Token { .. } => "token",
            AnnotateEvent::Done { .. } => "done",
            AnnotateEvent::Error { .. } => "error",
            AnnotateEvent::Record { .. } => "record",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_flat_and_defaults_to_every_kind() {
        let r: AnnotateRequest = serde_json::from_str(
            r#"{"question":"2+2?","options":["3","4"],"answer":"B","seed":3}"#,
        )
        .unwrap();
        assert_eq!(r.kinds, Kind::ALL.to_vec());
        assert_eq!(r.sample().answer, "B");
        assert_eq!(r.seed, Some(3));
        let e = AnnotateEvent::Token {
            kind: Kind::Cot,
            text: "x".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"token","kind":"cot","text":"x"}"#
        );
    }
}
