//! The compact server indicator in the header: checking, online (with version), answering
//! with an error, or unreachable. Clicking it asks the server again.

use leptos::prelude::*;

use crate::api::ClientError;
use crate::health::use_server_health;

/// A dot and a few words on the server's state, from the shared health resource.
#[component]
pub fn ServerStatusBadge() -> impl IntoView {
    let health = use_server_health();
    let (pending, set_pending) = signal(false);

    let checking = || {
        view! {
            <span class="status-dot status-dot--pending"></span>
            <span class="status-text wide-only">"Checking server…"</span>
            <span class="status-text narrow-only">"Checking…"</span>
        }
    };

    view! {
        <button
            type="button"
            class="status-badge"
            class:busy=move || pending.get()
            aria-live="polite"
            on:click=move |_| health.retry()
        >
            <Transition fallback=checking set_pending=set_pending>
                {move || Suspend::new(async move {
                    match health.resource.await {
                        Ok(h) if h.status == "ok" => {
                            let title = format!(
                                "Server v{}, {} model(s). Click to check again.",
                                h.version,
                                h.models.len(),
                            );
                            view! {
                                <span class="status-dot status-dot--ok" title=title></span>
                                <span class="status-text wide-only">"Server online"</span>
                                <span class="status-text narrow-only">"Online"</span>
                                <span class="status-version">"v" {h.version}</span>
                            }
                                .into_any()
                        }
                        Ok(h) => {
                            let title = format!(
                                "The server reports status \"{}\". Click to check again.",
                                h.status,
                            );
                            view! {
                                <span class="status-dot status-dot--warn" title=title></span>
                                <span class="status-text wide-only">"Server degraded"</span>
                                <span class="status-text narrow-only">"Degraded"</span>
                            }
                                .into_any()
                        }
                        Err(e @ ClientError::Status { .. }) => {
                            let title = format!("{e} Click to check again.");
                            view! {
                                <span class="status-dot status-dot--down" title=title></span>
                                <span class="status-text wide-only">"Server error"</span>
                                <span class="status-text narrow-only">"Error"</span>
                            }
                                .into_any()
                        }
                        Err(e) => {
                            let title = format!("{e} Click to check again.");
                            view! {
                                <span class="status-dot status-dot--down" title=title></span>
                                <span class="status-text wide-only">"Server unreachable"</span>
                                <span class="status-text narrow-only">"Offline"</span>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </button>
    }
}
