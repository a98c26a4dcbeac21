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
    // Fold the menu back whenever the path changes (link, back button, redirect). The memo
    // must be read, not just tracked: an unread memo never computes, so never notifies.
    Effect::new(move |previous: Option<String>| {
        let path = location.pathname.get();
        if previous.is_some_and(|p| p != path) {
            menu_open.set(false);
        }
        path
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
