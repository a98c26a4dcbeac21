//! Entry point of the browser app: installs the panic hook and mounts [`frontend::App`]
//! on `<body>`. Everything else lives in the library crate.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(frontend::App);
}
