//! The section navigation: a sidebar on wide screens, a fold-out list under the header on
//! narrow ones. It folds back after every navigation.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_location;

use crate::components::Icon;
use crate::sections::SECTIONS;

/// Links to every section; the current one carries `aria-current="page"`.
#[component]
pub fn SideNav(
    /// Whether the navigation is unfolded on narrow screens.
    menu_open: RwSignal<bool>,
) -> impl IntoView {
    let location = use_location();
    Effect::new(move |_| {
        location.pathname.track();
        menu_open.set(false);
    });

    let links = SECTIONS
        .iter()
        .map(|section| {
            view! {
                <li>
                    <A href=section.path exact=section.path == "/">
                        <Icon d=section.icon />
                        <span>{section.title}</span>
                    </A>
                </li>
            }
        })
        .collect_view();

    view! {
        <nav id="site-nav" class="side-nav" class:open=move || menu_open.get() aria-label="Sections">
            <ul>{links}</ul>
            <p class="nav-footer">"App v" {env!("CARGO_PKG_VERSION")}</p>
        </nav>
    }
}
