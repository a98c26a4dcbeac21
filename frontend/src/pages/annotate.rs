//! The Annotate page (`/annotate`): a sample in, the teacher's fundamentals,
//! chain of thought and common mistakes out, streamed side by side as they are
//! written.
//!
//! The form holds a question, its options (added and removed freely, or none for
//! a free answer), the gold answer and the kinds wanted; the sample picker loads
//! real examples through the server. The prompt the teacher will see is built
//! here with the same `shared` builder the server uses, and shown under the form.

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::annotate::{AnnotateEvent, AnnotateRequest};
use shared::samples::DATASETS;
use shared::teacherlm::{Kind, Sample, letter};
use web_sys::AbortController;

use crate::api::{self, ClientError};
use crate::components::{AnnotationPanel, PageHeader, PanelState};
use crate::sections::ANNOTATE;
use crate::stream;

/// The three panels' states, one signal per kind.
#[derive(Clone, Copy)]
struct Panels([RwSignal<PanelState>; 3]);

impl Panels {
    fn new() -> Self {
        Self(Kind::ALL.map(|_| RwSignal::new(PanelState::Idle)))
    }

    fn of(&self, kind: Kind) -> RwSignal<PanelState> {
        self.0[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
    }
}

/// The sample the form describes.
fn sample_of(question: &str, options: &[String], answer: &str) -> Sample {
    Sample {
        question: question.trim().to_owned(),
        options: options.to_vec(),
        answer: answer.to_owned(),
        subject: None,
    }
}

/// The Annotate section.
#[component]
pub fn Annotate() -> impl IntoView {
    let question = RwSignal::new(String::new());
    let options = RwSignal::new(vec![String::new(), String::new()]);
    let answer = RwSignal::new("A".to_owned());
    let kinds = RwSignal::new(Kind::ALL.to_vec());
    let panels = Panels::new();
    let running = RwSignal::new(false);
    let error = RwSignal::new(None::<ClientError>);
    let controller = StoredValue::new_local(None::<AbortController>);

    // The sample picker.
    let dataset = RwSignal::new(DATASETS[0].0.to_owned());
    let offset = RwSignal::new(0usize);
    let picking = RwSignal::new(false);
    let pick_error = RwSignal::new(None::<ClientError>);
    let load_sample = move |_| {
        let (name, at) = (dataset.get_untracked(), offset.get_untracked());
        picking.set(true);
        pick_error.set(None);
        spawn_local(async move {
            match api::samples(&name, at).await {
                Ok(list) => match list.samples.into_iter().next() {
                    Some(item) => {
                        let s = item.sample;
                        let gold = s
                            .gold_letter()
                            .ok()
                            .flatten()
                            .map_or_else(|| s.answer.clone(), |c| c.to_string());
                        question.set(s.question);
                        options.set(s.options);
                        answer.set(gold);
                        offset.set((at + 1) % list.total.max(1));
                    }
                    None => offset.set(0),
                },
                Err(e) => pick_error.set(Some(e)),
            }
            picking.set(false);
        });
    };

    let sample = Memo::new(move |_| sample_of(&question.get(), &options.get(), &answer.get()));
    let prompt_preview = move || match sample.get().prompts() {
        Ok(p) => p.text,
        Err(e) => format!("Not ready: {e}"),
    };
    let invalid = move || sample.get().validate().err().map(|e| e.to_string());

    let run = move || {
        let request = AnnotateRequest {
            kinds: kinds.get_untracked(),
            ..AnnotateRequest::new(sample.get_untracked())
        };
        for kind in Kind::ALL {
            panels.of(kind).set(if request.kinds.contains(&kind) {
                PanelState::Waiting
            } else {
                PanelState::Skipped
            });
        }
        error.set(None);
        running.set(true);
        let Ok(abort) = AbortController::new() else {
            running.set(false);
            return;
        };
        let signal = abort.signal();
        controller.set_value(Some(abort));
        spawn_local(async move {
            let result =
                stream::post_events("/api/annotate", &request, &signal, |event| match event {
                    AnnotateEvent::Token { kind, text } => {
                        panels.of(kind).update(|p| p.push(&text))
                    }
                    AnnotateEvent::Done { annotation } => {
                        panels.of(annotation.kind).update(|p| p.finish(&annotation));
                    }
                    AnnotateEvent::Error {
                        kind: Some(kind),
                        error,
                    } => {
                        panels.of(kind).set(PanelState::Failed(error.error));
                    }
                    AnnotateEvent::Error {
                        kind: None,
                        error: e,
                    } => {
                        error.set(Some(ClientError::Status {
                            path: "/api/annotate".into(),
                            status: 502,
                            message: e.error,
                        }));
                    }
                    AnnotateEvent::Record { .. } => {}
                })
                .await;
            if let Err(e) = result {
                for kind in Kind::ALL {
                    panels.of(kind).update(PanelState::interrupt);
                }
                // A stop the user asked for is not an error.
                if !signal.aborted() {
                    error.set(Some(e));
                }
            }
            controller.set_value(None);
            running.set(false);
        });
    };
    let stop = move |_| {
        controller.with_value(|c| {
            if let Some(c) = c {
                c.abort();
            }
        });
    };

    let option_rows = move || {
        options
            .get()
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let label = format!("Option {}", letter(i));
                view! {
                    <li class="option-row">
                        <span class="option-letter" aria-hidden="true">{format!("({})", letter(i))}</span>
                        <input
                            type="text"
                            aria-label=label.clone()
                            prop:value=value
                            on:input=move |ev| {
                                let v = event_target_value(&ev);
                                options.update(|o| if let Some(x) = o.get_mut(i) { *x = v });
                            }
                        />
                        <button
                            type="button"
                            class="button button--quiet"
                            aria-label=format!("Remove {label}")
                            on:click=move |_| options.update(|o| { if i < o.len() { o.remove(i); } })
                        >
                            "Remove"
                        </button>
                    </li>
                }
            })
            .collect_view()
    };
    let answer_input = move || {
        let n = options.with(Vec::len);
        if n == 0 {
            view! {
                <input
                    id="gold"
                    type="text"
                    placeholder="e.g. 18"
                    prop:value=move || answer.get()
                    on:input=move |ev| answer.set(event_target_value(&ev))
                />
            }
            .into_any()
        } else {
            let letters = (0..n)
                .map(|i| {
                    let l = letter(i).to_string();
                    view! { <option value=l.clone() selected=move || answer.get() == l>{l.clone()}</option> }
                })
                .collect_view();
            view! {
                <select id="gold" on:change=move |ev| answer.set(event_target_value(&ev))>
                    {letters}
                </select>
            }
            .into_any()
        }
    };
    let kind_boxes = Kind::ALL
        .into_iter()
        .map(|kind| {
            view! {
                <label class="check">
                    <input
                        type="checkbox"
                        name="kinds"
                        value=kind.name()
                        prop:checked=move || kinds.with(|k| k.contains(&kind))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            kinds.update(|k| {
                                k.retain(|x| *x != kind);
                                if on { k.push(kind); k.sort(); }
                            });
                        }
                    />
                    {kind.title()}
                </label>
            }
        })
        .collect_view();
    let dataset_options = DATASETS
        .iter()
        .map(|(name, title)| view! { <option value=*name>{*title}</option> })
        .collect_view();
    let panel_views = Kind::ALL
        .into_iter()
        .map(|kind| view! { <AnnotationPanel kind=kind state=panels.of(kind) /> })
        .collect_view();

    view! {
        <PageHeader title=ANNOTATE.title description=ANNOTATE.summary />
        <div class="annotate-layout">
            <form
                class="card annotate-form"
                aria-label="Sample"
                on:submit=move |ev| {
                    ev.prevent_default();
                    if !running.get_untracked() && invalid().is_none() && !kinds.get_untracked().is_empty() {
                        run();
                    }
                }
            >
                <div class="picker">
                    <label for="dataset">"Example from"</label>
                    <select id="dataset" on:change=move |ev| { dataset.set(event_target_value(&ev)); offset.set(0); }>
                        {dataset_options}
                    </select>
                    <button type="button" class="button button--quiet" id="load-sample"
                        on:click=load_sample disabled=move || picking.get()>
                        {move || if picking.get() { "Loading…" } else { "Load example" }}
                    </button>
                </div>
                {move || pick_error.get().map(|e| view! {
                    <p class="callout callout--error" role="alert">{e.to_string()}</p>
                })}
                <label for="question">"Question"</label>
                <textarea id="question" rows="4" placeholder="Determine the correctness of the following sentence. …"
                    prop:value=move || question.get()
                    on:input=move |ev| question.set(event_target_value(&ev))
                ></textarea>
                <fieldset>
                    <legend>"Options " <span class="muted small">"(none for a free answer)"</span></legend>
                    <ul class="option-list">{option_rows}</ul>
                    <button type="button" class="button button--quiet" id="add-option"
                        disabled=move || options.with(|o| o.len() >= shared::teacherlm::MAX_OPTIONS)
                        on:click=move |_| options.update(|o| o.push(String::new()))>
                        "Add option"
                    </button>
                </fieldset>
                <label for="gold">"Gold answer"</label>
                {answer_input}
                <fieldset class="kinds">
                    <legend>"Annotations"</legend>
                    {kind_boxes}
                </fieldset>
                <div class="form-actions">
                    <button type="submit" class="button" id="annotate"
                        disabled=move || running.get() || invalid().is_some() || kinds.with(Vec::is_empty)>
                        {move || if running.get() { "Writing…" } else { "Annotate" }}
                    </button>
                    <Show when=move || running.get()>
                        <button type="button" class="button button--quiet" on:click=stop>"Stop"</button>
                    </Show>
                    <span class="muted small" aria-live="polite">{move || invalid()}</span>
                </div>
                <details class="prompt-preview">
                    <summary>"Prompt the teacher sees"</summary>
                    <pre>{prompt_preview}</pre>
                </details>
            </form>
            {move || error.get().map(|e| {
                let busy = matches!(e, ClientError::Busy { .. });
                view! {
                    <div class=if busy { "callout callout--warn" } else { "callout callout--error" } role="alert">
                        <p class="callout-title">{if busy { "Busy" } else { "The annotation failed" }}</p>
                        <p>{e.to_string()}</p>
                        <button type="button" class="button button--quiet" on:click=move |_| run()>"Try again"</button>
                    </div>
                }
            })}
            <section class="panels" aria-label="Annotations">{panel_views}</section>
        </div>
    }
}
