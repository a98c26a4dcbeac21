//! Inline SVG icons: [`Icon`] draws a stroked 24x24 path in the current text colour;
//! [`BrandMark`] is the product logo, the same drawing as `static/favicon.svg`.

use leptos::prelude::*;

/// A decorative line icon; hidden from assistive technology, so pair it with text.
#[component]
pub fn Icon(
    /// SVG path data on a 24x24 grid.
    d: &'static str,
) -> impl IntoView {
    view! {
        <svg
            class="icon"
            viewBox="0 0 24 24"
            width="20"
            height="20"
            fill="none"
            stroke="currentColor"
            stroke-width="2"
            stroke-linecap="round"
            stroke-linejoin="round"
            aria-hidden="true"
            focusable="false"
        >
            <path d=d />
        </svg>
    }
}

/// The TeacherLM Studio logo: a mortarboard on a rounded square.
#[component]
pub fn BrandMark() -> impl IntoView {
    view! {
        <svg
            class="brand-mark"
            viewBox="0 0 32 32"
            width="28"
            height="28"
            aria-hidden="true"
            focusable="false"
        >
            <rect width="32" height="32" rx="7" fill="var(--brand)" />
            <path d="M16 8 4.5 13.5 16 19l11.5-5.5z" fill="#fff" />
            <path
                d="M9.5 16.5v4.5c3.5 2.6 9.5 2.6 13 0v-4.5M25.5 14.5v6"
                fill="none"
                stroke="#fff"
                stroke-width="2"
                stroke-linecap="round"
            />
        </svg>
    }
}
