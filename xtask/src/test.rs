//! `cargo xtask test`: what CI runs (`.ci/run`). Installs what the tests need (the
//! default model, trunk, Chromium, playwright-core, Python's `openai`), then
//! checks formatting, lints with warnings as errors, builds the web app for
//! wasm32 with trunk, and runs every test of every crate, the browser test
//! included.

use std::process::Command;
use std::time::Instant;

use crate::util::{cargo, root, sh};
use crate::{models, tools};

/// Runs the whole suite; the first failure stops it. Each step prints its time,
/// so a slow CI run shows where the minutes went.
pub fn run() -> anyhow::Result<()> {
    let start = Instant::now();
    tools::ensure_wasm_target()?;
    models::run()?;
    let trunk_bin = tools::ensure_trunk_and_bindgen()?;
    let node_modules = tools::ensure_playwright()?;
    let chromium = tools::ensure_chromium()?;
    let python = tools::ensure_openai_python()?;
    eprintln!(
        "xtask test: tools ready in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    let dist = root().join("target/test-dist");
    let steps: [&[&str]; 4] = [
        &["fmt", "--all", "--check"],
        // Lints every crate natively, the frontend included (its code has no
        // wasm-only parts), so a second clippy pass for wasm32 adds nothing.
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[
            "build",
            "-p",
            "frontend",
            "--target",
            "wasm32-unknown-unknown",
        ],
        &["test", "--workspace", "--all-targets"],
    ];
    for args in steps {
        let t = Instant::now();
        if args[0] == "test" {
            // The browser test serves the app that trunk bundles from the
            // wasm32 build above (debug: no wasm-opt pass, seconds).
            sh(Command::new(trunk_bin.join("trunk"))
                .env("PATH", tools::path_with(std::slice::from_ref(&trunk_bin)))
                .env("TRUNK_BUILD_RELEASE", "false")
                .args(["build", "--offline", "--dist"])
                .arg(&dist))?;
        }
        sh(cargo()
            .args(args)
            .env("TEACHERLM_TEST_DIST", &dist)
            .env("TEACHERLM_CHROMIUM", &chromium)
            .env("NODE_PATH", &node_modules)
            .env("TEACHERLM_PYTHON", &python))?;
        eprintln!(
            "xtask test: `cargo {}` took {:.0} s",
            args[0],
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "xtask test: every check passed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
