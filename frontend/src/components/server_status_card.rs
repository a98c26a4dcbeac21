//! The Overview's server card: version and models when the server answers, a loading state
//! while it is asked, and the error in words with a retry button when it does not.

use leptos::prelude::*;
use shared::api::Health;

use crate::api::server_origin;
use crate::health::use_server_health;

/// Server status in full, from the shared health resource.
#[component]
pub fn ServerStatusCard() -> impl IntoView {
    let health = use_server_health();
    let (pending, set_pending) = signal(false);

    let loading = || {
        view! {
            <p class="card-loading" role="status">
                <span class="spinner" aria-hidden="true"></span>
                "Asking the server at "
                <code>{server_origin()}</code>
                "…"
            </p>
        }
    };

    let failed = move |errors: ArcRwSignal<Errors>| {
        let messages = move || {
            errors
                .read()
                .iter()
                .map(|(_, e)| view! { <p class="callout-title">{e.to_string()}</p> })
                .collect_view()
        };
        view! {
            <div class="callout callout--error" role="alert">
                {messages}
                <p>
                    "The server hands out this app and its API from the same address. "
                    "Check that it is running and reachable, then try again."
                </p>
                <button
                    type="button"
                    class="button"
                    disabled=move || pending.get()
                    on:click=move |_| health.retry()
                >
                    {move || if pending.get() { "Retrying…" } else { "Retry" }}
                </button>
            </div>
        }
    };

    view! {
        <section class="card status-card" aria-labelledby="server-status-title">
            <div class="card-head">
                <h2 id="server-status-title">"Server"</h2>
                <Show when=move || pending.get()>
                    <span class="muted small" role="status">
                        "Checking…"
                    </span>
                </Show>
            </div>
            <Transition fallback=loading set_pending=set_pending>
                <ErrorBoundary fallback=failed>
                    {move || Suspend::new(async move {
                        health
                            .resource
                            .await
                            .map(|h| view! { <HealthDetails health=h on_refresh=move || health.retry() /> })
                    })}
                </ErrorBoundary>
            </Transition>
        </section>
    }
}

/// The body of the card once the server has answered.
#[component]
fn HealthDetails(
    /// The server's answer.
    health: Health,
    /// Asks the server again.
    on_refresh: impl Fn() + Send + Sync + 'static,
) -> impl IntoView {
    let app_version = env!("CARGO_PKG_VERSION");
    let version_note = (health.version != app_version).then(|| {
        view! {
            <p class="callout callout--warn">
                "This page was built as v" {app_version} " but the server is v"
                {health.version.clone()} ". Reload the page to get the matching app."
            </p>
        }
    });
    let healthy = health.status == "ok";
    let models = if health.models.is_empty() {
        view! {
            <p class="muted">
                "No models found in the server's model directory yet."
            </p>
        }
        .into_any()
    } else {
        let items = health
            .models
            .into_iter()
            .map(|m| view! { <li><code>{m}</code></li> })
            .collect_view();
        view! { <ul class="model-list">{items}</ul> }.into_any()
    };

    view! {
        <dl class="facts">
            <div>
                <dt>"Status"</dt>
                <dd>
                    <span class="status-dot" class:status-dot--ok=healthy class:status-dot--warn=!healthy></span>
                    {if healthy { "Online".to_owned() } else { format!("Degraded ({})", health.status) }}
                </dd>
            </div>
            <div>
                <dt>"Address"</dt>
                <dd><code>{server_origin()}</code></dd>
            </div>
            <div>
                <dt>"Version"</dt>
                <dd>"v" {health.version.clone()}</dd>
            </div>
        </dl>
        {version_note}
        <h3 class="subhead">"Models available"</h3>
        {models}
        <button type="button" class="button button--quiet" on:click=move |_| on_refresh()>
            "Check again"
        </button>
    }
}
