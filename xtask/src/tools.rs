//! Installing what the build and the tests need, only when it is missing: the
//! wasm32 target, trunk, wasm-bindgen-cli, a working wasm-opt, Chromium and
//! playwright-core for the browser test, Python's `openai` for the API test.
//! Versions are pinned here and nowhere else. Everything goes under
//! `$TEACHERLM_HOME` (`~/.cache/teacherlm`), which CI caches.

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
/// npm's playwright-core, which drives the system Chromium.
pub const PLAYWRIGHT_VERSION: &str = "1.65.1";
/// The official OpenAI Python client the API test runs.
pub const OPENAI_PYTHON: &str = "openai==3.57.0";

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

/// Where `cargo install` puts trunk and wasm-bindgen: `$TEACHERLM_HOME/tools/cargo`
/// (under the CI cache, unlike ~/.cargo/bin).
pub fn cargo_tools_dir() -> PathBuf {
    tools_dir().join("cargo")
}

/// trunk and wasm-bindgen-cli at the pinned versions (`cargo install`, minutes
/// the first time, cached afterwards); returns their bin folder for PATH.
pub fn ensure_trunk_and_bindgen() -> anyhow::Result<PathBuf> {
    let root = cargo_tools_dir();
    let bin = root.join("bin");
    let version = |name: &str| installed_version(bin.join(name).to_str().unwrap_or(name));
    if !version("trunk").is_some_and(|v| v.contains(TRUNK_VERSION)) {
        sh(cargo()
            .args(["install", "--locked", "--root"])
            .arg(&root)
            .arg(format!("trunk@{TRUNK_VERSION}")))?;
    }
    if !version("wasm-bindgen").is_some_and(|v| v.contains(WASM_BINDGEN_VERSION)) {
        // Without --locked: the CLI's own lockfile pins crates that no longer build.
        sh(cargo()
            .args([
                "install",
                "wasm-bindgen-cli",
                "--version",
                WASM_BINDGEN_VERSION,
                "--root",
            ])
            .arg(&root))?;
    }
    Ok(bin)
}

/// npm's playwright-core in the tools folder; returns its `node_modules` (for
/// `NODE_PATH`).
pub fn ensure_playwright() -> anyhow::Result<PathBuf> {
    let dir = tools_dir();
    let modules = dir.join("node_modules");
    let package = modules.join("playwright-core/package.json");
    let installed = std::fs::read_to_string(&package)
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{PLAYWRIGHT_VERSION}\"")));
    if !installed {
        if !util::exists("npm") {
            anyhow::bail!("npm (Node.js) is needed for the browser test; install nodejs and npm");
        }
        std::fs::create_dir_all(&dir)?;
        sh(Command::new("npm")
            .current_dir(&dir)
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(format!("playwright-core@{PLAYWRIGHT_VERSION}")))?;
    }
    Ok(modules)
}

/// The system Chromium; installs Debian's `chromium` when missing and running as
/// root.
pub fn ensure_chromium() -> anyhow::Result<PathBuf> {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(path).exists() {
            return Ok(PathBuf::from(path));
        }
    }
    let root = output(Command::new("id").arg("-u")).is_ok_and(|u| u.trim() == "0");
    if !root {
        anyhow::bail!(
            "Chromium is needed for the browser test: install Debian's `chromium` \
             (xtask installs it itself when run as root)"
        );
    }
    sh(Command::new("apt-get").arg("update"))?;
    sh(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends", "chromium"]))?;
    Ok(PathBuf::from("/usr/bin/chromium"))
}

/// A venv at `$TEACHERLM_HOME/venv` with the `openai` package; returns its
/// Python.
pub fn ensure_openai_python() -> anyhow::Result<PathBuf> {
    let venv = util::teacherlm_home().join("venv");
    let python = venv.join("bin/python");
    let version = OPENAI_PYTHON.trim_start_matches("openai==");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import openai, sys; sys.exit(openai.__version__ != sys.argv[1])",
            version,
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if !python.exists() {
            sh(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        sh(Command::new(&python).args(["-m", "pip", "install", "--quiet", OPENAI_PYTHON]))?;
    }
    Ok(python)
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
