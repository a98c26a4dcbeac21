//! `cargo xtask serve`: on a fresh machine, install the web toolchain and the
//! default model, build the web app (trunk) and the server (release), then run
//! `teacherlm serve` with the built app, printing its URL.

use std::process::Command;

use crate::util::{cargo, root, sh};
use crate::{models, tools};

/// Sets up, builds and serves; `args` go to `teacherlm serve`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    // `cargo xtask serve -- --port 9000`: the separator is ours, not the server's.
    let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
    tools::ensure_wasm_target()?;
    let trunk_bin = tools::ensure_trunk_and_bindgen()?;
    let wasm_opt = tools::ensure_wasm_opt()?;
    models::run()?;
    // trunk runs cargo offline (Trunk.toml), so the frontend's crates must be here.
    sh(cargo().args(["fetch", "--target", "wasm32-unknown-unknown"]))?;
    // Offline: trunk must use the tools installed above, never download its own.
    sh(Command::new(trunk_bin.join("trunk"))
        .env("PATH", tools::path_with(&[trunk_bin, wasm_opt]))
        .args(["build", "--release", "--offline"]))?;
    sh(cargo().args(["build", "--release", "-p", "backend"]))?;
    let bin = root().join("target/release/teacherlm");
    let dist = root().join("dist");
    // `exec`-like: the server inherits the terminal and prints its URL itself.
    sh(Command::new(bin)
        .arg("serve")
        .arg("--static-dir")
        .arg(dist)
        .args(args))
}
