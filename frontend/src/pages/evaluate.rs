//! The Evaluate page (`/evaluate`): measuring teachers and students.

use leptos::prelude::*;

use crate::components::{NotAvailable, PageHeader};
use crate::sections::EVALUATE;

/// What the Evaluate section will do once it lands.
const PLANNED: &[&str] = &[
    "Run teacher and student models on held-out questions.",
    "Score answers by exact match and log-likelihood.",
    "Compare models side by side.",
];

/// The Evaluate section; an empty state until its capability ships.
#[component]
pub fn Evaluate() -> impl IntoView {
    view! {
        <PageHeader title=EVALUATE.title description=EVALUATE.summary />
        <NotAvailable planned=PLANNED />
    }
}
