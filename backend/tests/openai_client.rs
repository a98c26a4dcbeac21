//! The official `openai` Python package against a spawned server with the real
//! default model: model listing, chat and completions, streaming or not, and
//! errors raised as the right exception (`tests/openai/check_client.py`).
//!
//! Needs Python with `openai` installed: `cargo xtask test` puts it in
//! `$TEACHERLM_HOME/venv` and sets `TEACHERLM_PYTHON`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Server, need_default_model};

/// The interpreter that has `openai`: `$TEACHERLM_PYTHON`, else the venv xtask
/// makes.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TEACHERLM_PYTHON") {
        return PathBuf::from(p);
    }
    common::models_dir()
        .parent()
        .expect("models dir has a parent")
        .join("venv/bin/python")
}

#[test]
fn the_official_openai_client_works_against_the_server() {
    need_default_model();
    let python = python();
    let has_openai = Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_openai,
        "this test needs Python with the `openai` package at {} (set TEACHERLM_PYTHON, \
         or run `cargo xtask test`, which installs it)",
        python.display()
    );
    let server = Server::spawn(&[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/openai/check_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(server.url("/v1"))
        .arg(shared::catalogue::DEFAULT_MODEL.name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
