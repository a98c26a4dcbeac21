//! `cargo xtask test`: what CI runs (`.ci/run`). Installs what the tests need, then
//! checks formatting, lints with warnings as errors, runs every test of every
//! crate, and builds the web app for wasm32.

use std::time::Instant;

use crate::util::{cargo, sh};
use crate::{models, tools};

/// Runs the whole suite; the first failure stops it. Each step prints its time,
/// so a slow CI run shows where the minutes went.
pub fn run() -> anyhow::Result<()> {
    let start = Instant::now();
    tools::ensure_wasm_target()?;
    models::run()?;
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
        sh(cargo().args(args))?;
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
