//! The Solve page (`/solve`): math problems solved with executed code.

use leptos::prelude::*;

use crate::components::{NotAvailable, PageHeader};
use crate::sections::SOLVE;

/// What the Solve section will do once it lands.
const PLANNED: &[&str] = &[
    "Have the teacher write code for a math problem and run it in a sandbox on the server.",
    "Check the answer against the code result, amend it when they disagree, and vote across attempts.",
    "Keep the verified solution as an annotation.",
];

/// The Solve section; an empty state until its capability ships.
#[component]
pub fn Solve() -> impl IntoView {
    view! {
        <PageHeader title=SOLVE.title description=SOLVE.summary />
        <NotAvailable planned=PLANNED />
    }
}
