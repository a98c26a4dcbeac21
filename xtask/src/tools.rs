//! Installing what the build and the tests need, only when it is missing: the
//! wasm32 target, trunk, wasm-bindgen-cli, a working wasm-opt, Python packages
//! for the benchmark. Versions are pinned here and nowhere else.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use crate::util::{self, cargo, output, sh};

/// trunk 0.22 needs a newer rustc than these machines have.
pub const TRUNK_VERSION: &str = "0.21.14";
/// Must equal the `wasm-bindgen` pin in the workspace Cargo.toml.
pub const WASM_BINDGEN_VERSION: &str = "0.2.130";
/// npm's binaryen; Debian's (108) emits wasm that fails to load.
pub const BINARYEN_VERSION: &str = "132.0.0";

/// `rustup target add wasm32-unknown-unknown` when it is not installed.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed to add the wasm32 target")?;
    if !installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        sh(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    Ok(())
}

fn installed_version(program: &str) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// trunk and wasm-bindgen-cli at the pinned versions (`cargo install`, minutes
/// the first time, cached in ~/.cargo/bin afterwards).
pub fn ensure_trunk_and_bindgen() -> anyhow::Result<()> {
    if !installed_version("trunk").is_some_and(|v| v.contains(TRUNK_VERSION)) {
        sh(cargo().args(["install", "--locked", &format!("trunk@{TRUNK_VERSION}")]))?;
    }
    if !installed_version("wasm-bindgen").is_some_and(|v| v.contains(WASM_BINDGEN_VERSION)) {
        // Without --locked: the CLI's own lockfile pins crates that no longer build.
        sh(cargo().args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            WASM_BINDGEN_VERSION,
        ]))?;
    }
    Ok(())
}

/// Where npm tools are installed: `$TEACHERLM_HOME/tools`.
pub fn tools_dir() -> PathBuf {
    util::teacherlm_home().join("tools")
}

/// Installs npm's binaryen (for wasm-opt); returns the folder to put on PATH.
pub fn ensure_wasm_opt() -> anyhow::Result<PathBuf> {
    let dir = tools_dir();
    let bin = dir.join("node_modules").join(".bin");
    let wasm_opt = bin.join("wasm-opt");
    let ok = |p: &PathBuf| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("132"))
    };
    if ok(&wasm_opt) {
        return Ok(bin);
    }
    if !util::exists("npm") {
        anyhow::bail!(
            "npm (Node.js) is needed to install binaryen's wasm-opt; install nodejs and npm"
        );
    }
    std::fs::create_dir_all(&dir)?;
    sh(Command::new("npm")
        .current_dir(&dir)
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("binaryen@{BINARYEN_VERSION}")))?;
    anyhow::ensure!(
        ok(&wasm_opt),
        "{} did not install a working wasm-opt",
        wasm_opt.display()
    );
    Ok(bin)
}

/// PATH with `extra` in front.
pub fn path_with(extra: &[PathBuf]) -> std::ffi::OsString {
    let mut parts: Vec<PathBuf> = extra.to_vec();
    parts.push(util::home().join(".cargo").join("bin"));
    if let Some(p) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(parts).unwrap_or_default()
}
