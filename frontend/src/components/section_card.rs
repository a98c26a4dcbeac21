//! A card linking to one section, used on the Overview.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::Icon;
use crate::sections::Section;

/// Icon, title and summary of a section, the whole card a link to it.
#[component]
pub fn SectionCard(
    /// The section to link to.
    section: Section,
) -> impl IntoView {
    view! {
        <li class="section-card">
            <A href=section.path>
                <span class="section-card-head">
                    <span class="section-icon"><Icon d=section.icon /></span>
                    <span class="section-title">{section.title}</span>
                    {(!section.available).then(|| view! { <span class="tag">"Planned"</span> })}
                </span>
                <span class="section-summary">{section.summary}</span>
            </A>
        </li>
    }
}
