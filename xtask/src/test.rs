//! `cargo xtask test`: what CI runs (`.ci/run`). Installs what the tests need, then
//! checks formatting, lints with warnings as errors, runs every test of every
//! crate, and builds the web app for wasm32.

use crate::util::{cargo, sh};
use crate::{models, tools};

/// Runs the whole suite; the first failure stops it.
pub fn run() -> anyhow::Result<()> {
    tools::ensure_wasm_target()?;
    models::run()?;
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    sh(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    sh(cargo().args([
        "clippy",
        "-p",
        "frontend",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;
    sh(cargo().args([
        "build",
        "-p",
        "frontend",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    sh(cargo().args(["test", "--workspace", "--all-targets"]))?;
    eprintln!("xtask test: every check passed");
    Ok(())
}
