//! The heading block every page opens with; it also names the browser tab.

use leptos::prelude::*;

use crate::PRODUCT_NAME;

/// Page title (`<h1>`) and a short description; sets `document.title`.
#[component]
pub fn PageHeader(
    /// The page's name.
    title: &'static str,
    /// One or two sentences on what the page is for.
    description: &'static str,
) -> impl IntoView {
    Effect::new(move |_| {
        let tab = if title == PRODUCT_NAME {
            PRODUCT_NAME.to_owned()
        } else {
            format!("{title} · {PRODUCT_NAME}")
        };
        document().set_title(&tab);
    });
    view! {
        <header class="page-header">
            <h1>{title}</h1>
            <p class="lede">{description}</p>
        </header>
    }
}
