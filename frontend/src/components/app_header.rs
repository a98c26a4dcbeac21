//! The top bar: product name, server status badge, and on narrow screens the button that
//! folds the navigation out.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::PRODUCT_NAME;
use crate::components::{BrandMark, ServerStatusBadge};

/// The application header, spanning the full width above navigation and content.
#[component]
pub fn AppHeader(
    /// Whether the navigation is unfolded on narrow screens; the menu button toggles it.
    menu_open: RwSignal<bool>,
) -> impl IntoView {
    view! {
        <header class="app-header">
            <button
                type="button"
                class="menu-button"
                aria-controls="site-nav"
                aria-expanded=move || menu_open.get().to_string()
                aria-label=move || {
                    if menu_open.get() { "Close navigation" } else { "Open navigation" }
                }
                on:click=move |_| menu_open.update(|open| *open = !*open)
            >
                <svg
                    viewBox="0 0 24 24"
                    width="22"
                    height="22"
                    fill="none"
                    stroke="currentColor"
                    stroke-width="2"
                    stroke-linecap="round"
                    aria-hidden="true"
                >
                    {move || {
                        if menu_open.get() {
                            view! { <path d="M6 6l12 12M18 6 6 18" /> }.into_any()
                        } else {
                            view! { <path d="M4 7h16M4 12h16M4 17h16" /> }.into_any()
                        }
                    }}
                </svg>
            </button>
            <A href="/" exact=true>
                <span class="brand">
                    <BrandMark />
                    <span class="brand-name">{PRODUCT_NAME}</span>
                </span>
            </A>
            <div class="header-spacer"></div>
            <ServerStatusBadge />
        </header>
    }
}
