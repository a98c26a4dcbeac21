//! The `teacherlm` binary end to end: `serve` on a free port answering real HTTP,
//! `generate` streaming an answer from the real default model, `models list`, and
//! clear errors for bad input.

mod common;

use common::{Server, bin, need_default_model};

/// `teacherlm serve` with its web app in `static_dir`.
fn spawn_server(static_dir: &std::path::Path) -> Server {
    Server::spawn(&["--static-dir", static_dir.to_str().unwrap()])
}

/// GET `path`: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let r = common::get(&format!("http://127.0.0.1:{port}{path}"));
    (r.status, r.body)
}

#[test]
fn serve_answers_health_the_app_and_json_404s() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(
        dist.path().join("index.html"),
        "<html>TeacherLM Studio app</html>",
    )
    .unwrap();
    std::fs::write(dist.path().join("app.css"), "body{}").unwrap();
    let server = spawn_server(dist.path());

    let (status, body) = get(server.port, "/health");
    assert_eq!(status, 200, "{body}");
    let health: shared::api::Health = serde_json::from_str(&body).unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));

    let (status, body) = get(server.port, "/");
    assert_eq!(status, 200);
    assert!(body.contains("TeacherLM Studio app"));
    let (status, body) = get(server.port, "/app.css");
    assert_eq!((status, body.as_str()), (200, "body{}"));
    // A client-side route reloads into the app.
    let (status, body) = get(server.port, "/annotate");
    assert_eq!(status, 200);
    assert!(body.contains("TeacherLM Studio app"));
    // Unknown API paths are JSON errors, not the app.
    let (status, body) = get(server.port, "/api/nope");
    assert_eq!(status, 404);
    let err: shared::api::ApiError = serde_json::from_str(&body).unwrap();
    assert_eq!(err.error_type, "not_found");
}

#[test]
fn serve_without_a_built_app_still_serves_the_api() {
    let empty = tempfile::tempdir().unwrap();
    let server = spawn_server(empty.path());
    assert_eq!(get(server.port, "/health").0, 200);
    let (status, body) = get(server.port, "/");
    assert_eq!(status, 503);
    assert!(body.contains("cargo xtask serve"), "{body}");
}

#[test]
fn generate_streams_the_answer_of_the_real_model() {
    need_default_model();
    let out = bin()
        .args([
            "generate",
            "--model",
            "smollm2-135m-instruct",
            "--dtype",
            "f32",
            "--prompt",
            "What is the capital of France?",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "The capital of France is Paris.");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokens/s"));
}

#[test]
fn models_list_shows_the_default_model() {
    need_default_model();
    let out = bin().args(["models", "list"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("ready") && stdout.contains("smollm2-135m-instruct"),
        "{stdout}"
    );
}

#[test]
fn bad_input_gets_a_clear_message_and_exit_code() {
    let out = bin()
        .args(["generate", "--model", "no-such-model", "--prompt", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown model `no-such-model`"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("teacherlm.toml");
    std::fs::write(&cfg, "port = \"eighty\"\n").unwrap();
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .args(["models", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("teacherlm.toml") && stderr.contains("port"),
        "{stderr}"
    );

    let bad = dir.path().join("broken.gguf");
    std::fs::write(&bad, b"GGUF but not really").unwrap();
    let out = bin()
        .args(["generate", "--prompt", "hi", "--model"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.gguf"), "{stderr}");
}
