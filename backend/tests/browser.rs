//! The Annotate page in a real headless Chromium (`tests/browser/annotate.cjs`,
//! driven by npm `playwright-core`) against a spawned server with the real
//! default model and the built web app: a CREAK sample picked through the server,
//! three non-empty streamed panels, no horizontal overflow on a phone, and
//! screenshots at 1366x768 and 390x844 in `target/screenshots/`.
//!
//! Needs what `cargo xtask test` sets up and points to: the app built by trunk
//! (`TEACHERLM_TEST_DIST`), Chromium (`TEACHERLM_CHROMIUM`) and playwright-core
//! (`NODE_PATH`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Server, need_default_model};

fn env_path(name: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("this test needs {what} in ${name}; `cargo xtask test` sets it up")
        });
    assert!(
        path.exists(),
        "{what} not found at {} (${name})",
        path.display()
    );
    path
}

#[test]
fn annotate_page_streams_three_panels_in_chromium() {
    need_default_model();
    let dist = env_path("TEACHERLM_TEST_DIST", "the web app built by trunk");
    let chromium = env_path("TEACHERLM_CHROMIUM", "Chromium");
    let node_path = env_path("NODE_PATH", "npm playwright-core");
    assert!(
        dist.join("index.html").exists(),
        "no index.html in {}",
        dist.display()
    );
    let data = common::data_dir();
    assert!(
        data.join("creak/dev.json").exists(),
        "this test needs the team's data folder at {} (or TEACHERLM_DATA)",
        data.display()
    );
    let server = Server::spawn(&[
        "--static-dir",
        dist.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join("target/screenshots");
    let out = Command::new("node")
        .arg(root.join("tests/browser/annotate.cjs"))
        .arg(server.url(""))
        .arg(&shots)
        .env("TEACHERLM_CHROMIUM", &chromium)
        .env("NODE_PATH", &node_path)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}\n(screenshots in {})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        shots.display()
    );
    for name in ["annotate-1366x768.png", "annotate-390x844.png"] {
        assert!(shots.join(name).exists(), "{name} not saved");
    }
}
