//! The `teacherlm` binary end to end: `serve` on a free port answering real HTTP,
//! `generate` streaming an answer from the real default model, `models list`, and
//! clear errors for bad input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_teacherlm"));
    c.env_remove("TEACHERLM_CONFIG").env("RUST_LOG", "warn");
    c
}

fn models_dir() -> PathBuf {
    let home = std::env::var_os("TEACHERLM_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/teacherlm")
        });
    home.join("models")
}

fn need_default_model() {
    let path = models_dir().join(shared::catalogue::DEFAULT_MODEL.file);
    assert!(
        path.exists(),
        "this test needs the default model at {}; run `cargo xtask models`",
        path.display()
    );
}

/// A spawned server, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(static_dir: &std::path::Path) -> Server {
    let mut child = bin()
        .args([
            "serve",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--static-dir",
        ])
        .arg(static_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("teacherlm starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    Server { child, port }
}

/// A minimal HTTP/1.1 GET: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
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
