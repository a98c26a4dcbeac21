//! The page shown for any path no route matches.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::components::PageHeader;

/// "Page not found", naming the path that was asked for, with a way back.
#[component]
pub fn NotFound() -> impl IntoView {
    let location = use_location();
    view! {
        <PageHeader
            title="Page not found"
            description="There is no page at this address in TeacherLM Studio."
        />
        <section class="empty-state">
            <p class="muted">
                "Nothing lives at " <code>{move || location.pathname.get()}</code>
                ". The link may be mistyped, or the page may have moved."
            </p>
            <A href="/" attr:class="button">
                "Go to the Overview"
            </A>
        </section>
    }
}
