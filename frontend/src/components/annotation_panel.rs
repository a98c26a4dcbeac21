//! One annotation as it is written: its kind, the streamed text, and where it
//! stands (waiting, writing, done with its token count, failed).

use leptos::prelude::*;
use shared::annotate::Annotation;
use shared::teacherlm::Kind;

/// Where one annotation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanelState {
    /// Nothing asked yet.
    Idle,
    /// Not asked this time.
    Skipped,
    /// Asked; no token yet.
    Waiting,
    /// Tokens arriving.
    Writing(String),
    /// Complete.
    Done {
        /// The whole text.
        text: String,
        /// The teacher.
        model: String,
        /// Tokens generated.
        tokens: usize,
        /// `stop`, `length` or `cancelled`.
        finish: String,
    },
    /// Broke off.
    Failed(String),
}

impl PanelState {
    /// Appends streamed text.
    pub fn push(&mut self, piece: &str) {
        match self {
            PanelState::Writing(text) => text.push_str(piece),
            _ => *self = PanelState::Writing(piece.trim_start().to_owned()),
        }
    }

    /// Marks the annotation complete.
    pub fn finish(&mut self, a: &Annotation) {
        *self = PanelState::Done {
            text: a.text.clone(),
            model: a.model.clone(),
            tokens: a.completion_tokens,
            finish: a.finish_reason.clone(),
        };
    }

    /// The request ended early (stopped, or the connection broke).
    pub fn interrupt(&mut self) {
        match self {
            PanelState::Waiting => *self = PanelState::Failed("Stopped before any text.".into()),
            PanelState::Writing(text) => {
                *self = PanelState::Failed(format!("{text} … (stopped)"));
            }
            _ => {}
        }
    }
}

/// A panel showing one kind's annotation.
#[component]
pub fn AnnotationPanel(
    /// Which annotation.
    kind: Kind,
    /// Its state.
    state: RwSignal<PanelState>,
) -> impl IntoView {
    let status = move || match state.get() {
        PanelState::Idle => ("", "Not started".to_owned()),
        PanelState::Skipped => ("", "Not asked".to_owned()),
        PanelState::Waiting => ("busy", "Waiting for the teacher…".to_owned()),
        PanelState::Writing(_) => ("busy", "Writing…".to_owned()),
        PanelState::Done {
            model,
            tokens,
            finish,
            ..
        } => {
            let why = if finish == "length" {
                ", token limit reached"
            } else {
                ""
            };
            let unit = if tokens == 1 { "token" } else { "tokens" };
            ("done", format!("{tokens} {unit} by {model}{why}"))
        }
        PanelState::Failed(_) => ("failed", "Failed".to_owned()),
    };
    let body = move || match state.get() {
        PanelState::Idle => view! {
            <p class="muted">"The teacher's " {kind.title().to_lowercase()} " will appear here."</p>
        }
        .into_any(),
        PanelState::Skipped => {
            view! { <p class="muted">"Not asked for this sample."</p> }.into_any()
        }
        PanelState::Waiting => {
            view! { <p class="muted"><span class="spinner" aria-hidden="true"></span>" Queued"</p> }
                .into_any()
        }
        PanelState::Writing(text) | PanelState::Done { text, .. } => {
            view! { <p class="annotation-text">{text}</p> }.into_any()
        }
        PanelState::Failed(message) => {
            view! { <p class="annotation-text failed">{message}</p> }.into_any()
        }
    };
    view! {
        <article
            class="card panel"
            data-kind=kind.name()
            data-state=move || status().0
            aria-busy=move || (status().0 == "busy").to_string()
        >
            <header class="panel-head">
                <h2>{kind.title()}</h2>
                <span class="muted small panel-status" aria-live="polite">{move || status().1}</span>
            </header>
            {body}
        </article>
    }
}
