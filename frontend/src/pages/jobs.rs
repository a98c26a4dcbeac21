//! The Jobs page (`/jobs`): dataset-wide annotation jobs.

use leptos::prelude::*;

use crate::components::{NotAvailable, PageHeader};
use crate::sections::JOBS;

/// What the Jobs section will do once it lands.
const PLANNED: &[&str] = &[
    "Start an annotation job over a whole dataset and follow its progress.",
    "Pause, resume or restart jobs; finished samples are never lost.",
    "Export the annotated dataset as JSONL or Parquet.",
];

/// The Jobs section; an empty state until its capability ships.
#[component]
pub fn Jobs() -> impl IntoView {
    view! {
        <PageHeader title=JOBS.title description=JOBS.summary />
        <NotAvailable planned=PLANNED />
    }
}
