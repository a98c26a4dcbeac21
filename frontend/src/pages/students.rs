//! The Students page (`/students`): small student models, trained and run in the browser.

use leptos::prelude::*;

use crate::components::{NotAvailable, PageHeader};
use crate::sections::STUDENTS;

/// What the Students section will do once it lands.
const PLANNED: &[&str] = &[
    "Fine-tune a small student model on annotated data.",
    "Quantize it for the browser and download it once into the browser cache.",
    "Chat with it on WebGPU, or on the CPU when no GPU adapter is available.",
];

/// The Students section; an empty state until its capability ships.
#[component]
pub fn Students() -> impl IntoView {
    view! {
        <PageHeader title=STUDENTS.title description=STUDENTS.summary />
        <NotAvailable planned=PLANNED />
    }
}
