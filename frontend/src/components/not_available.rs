//! The empty state of a section whose capability has not shipped in this build.

use leptos::prelude::*;

use crate::components::Icon;

/// "Not available in this build yet", with the list of what the section will do.
#[component]
pub fn NotAvailable(
    /// What the section will offer once it lands, one item per line.
    planned: &'static [&'static str],
) -> impl IntoView {
    let items = planned
        .iter()
        .map(|item| view! { <li>{*item}</li> })
        .collect_view();
    view! {
        <section class="empty-state" aria-labelledby="empty-title">
            <div class="empty-icon">
                <Icon d="M12 8v4l2.5 2.5M21 12a9 9 0 1 1-18 0 9 9 0 0 1 18 0z" />
            </div>
            <h2 id="empty-title">"Not available in this build yet"</h2>
            <p class="muted">
                "This section is part of TeacherLM Studio's plan but has not shipped in this version. "
                "When it lands, it will let you:"
            </p>
            <ul class="planned-list">{items}</ul>
        </section>
    }
}
