//! The landing page (`/`): what the tool does, the server's status, and a way into each
//! section.

use leptos::prelude::*;

use crate::PRODUCT_NAME;
use crate::components::{PageHeader, SectionCard, ServerStatusCard};
use crate::sections::{OVERVIEW, SECTIONS};

/// What TeacherLM Studio is, whether its server is up, and links to every section.
#[component]
pub fn Overview() -> impl IntoView {
    let cards = SECTIONS
        .iter()
        .filter(|s| s.path != OVERVIEW.path)
        .map(|s| view! { <SectionCard section=*s /> })
        .collect_view();

    view! {
        <PageHeader
            title=PRODUCT_NAME
            description="Annotate data with the why, not just the answer, and teach small models from it."
        />
        <div class="overview-grid">
            <section class="intro" aria-label="About">
                <p>
                    "A large teacher model annotates each sample of your dataset with the "
                    <strong>"fundamentals"</strong> " it rests on, a "
                    <strong>"chain of thought"</strong> " that reaches the answer, and the "
                    <strong>"common mistakes"</strong>
                    " people make on it. Math answers are not taken on trust: the teacher writes code, "
                    "the server executes it, and answers are verified, amended and voted on."
                </p>
                <p>
                    "The annotated data then teaches small student models. Students are fine-tuned "
                    "on it, quantized, and run right in the browser on WebGPU (or the CPU when no GPU "
                    "is available), so a classroom laptop needs no server to use them."
                </p>
            </section>
            <ServerStatusCard />
        </div>
        <h2 class="section-heading">"Sections"</h2>
        <ul class="section-grid">{cards}</ul>
    }
}
