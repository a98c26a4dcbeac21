//! The Annotate page (`/annotate`): one sample at a time through the teacher model.

use leptos::prelude::*;

use crate::components::{NotAvailable, PageHeader};
use crate::sections::ANNOTATE;

/// What the Annotate section will do once it lands.
const PLANNED: &[&str] = &[
    "Paste or upload a question with its answer and pick a teacher model.",
    "Get back the fundamentals the question rests on, a step-by-step chain of thought, and the mistakes people commonly make.",
    "Edit the annotation and keep it with the sample.",
];

/// The Annotate section; an empty state until its capability ships.
#[component]
pub fn Annotate() -> impl IntoView {
    view! {
        <PageHeader title=ANNOTATE.title description=ANNOTATE.summary />
        <NotAvailable planned=PLANNED />
    }
}
