//! TeacherLM Studio's browser app: the [`App`] shell (header, navigation, routed content)
//! and the client-side router. Pages live in [`pages`], reusable pieces in [`components`],
//! the typed HTTP client in [`api`].
//!
//! The app is rendered on the client only (Leptos CSR) and built by trunk from
//! `index.html` at the workspace root. It knows the server only through the `shared` DTOs.

#![warn(missing_docs)]

pub mod api;
pub mod components;
pub mod health;
pub mod pages;
pub mod sections;
pub mod stream;

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use crate::components::{AppHeader, SideNav};
use crate::pages::{Annotate, Evaluate, Jobs, NotFound, Overview, Solve, Students};

/// The product name, as the header and the browser tab show it.
pub const PRODUCT_NAME: &str = "TeacherLM Studio";

/// The whole application: layout shell plus one route per section.
///
/// Unknown paths render [`NotFound`]. The server must answer every client route with
/// `index.html` (SPA fallback) so that a reload or a shared link lands here.
#[component]
pub fn App() -> impl IntoView {
    health::provide_server_health();
    // Whether the navigation is unfolded on narrow screens; ignored on wide ones.
    let menu_open = RwSignal::new(false);

    view! {
        <Router>
            // rel="external" leaves the click to the browser, whose fragment navigation
            // moves focus into <main>; the router's would only change the URL.
            <a class="skip-link" href="#main" rel="external">
                "Skip to content"
            </a>
            <div class="shell">
                <AppHeader menu_open=menu_open />
                <SideNav menu_open=menu_open />
                <main id="main" class="content" tabindex="-1">
                    <Routes fallback=|| view! { <NotFound /> }>
                        <Route path=path!("/") view=Overview />
                        <Route path=path!("/annotate") view=Annotate />
                        <Route path=path!("/jobs") view=Jobs />
                        <Route path=path!("/solve") view=Solve />
                        <Route path=path!("/students") view=Students />
                        <Route path=path!("/evaluate") view=Evaluate />
                    </Routes>
                </main>
            </div>
        </Router>
    }
}
