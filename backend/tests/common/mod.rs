//! Helpers of the end-to-end tests: the `teacherlm` binary spawned on a free
//! port (killed on drop), and a small HTTP client over `ureq`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary, with a clean environment for configuration.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_teacherlm"));
    c.env_remove("TEACHERLM_CONFIG")
        .env_remove("TEACHERLM_MODELS")
        .env_remove("TEACHERLM_API_KEYS")
        .env("RUST_LOG", "warn");
    c
}

/// `$TEACHERLM_HOME/models`.
pub fn models_dir() -> PathBuf {
    let home = std::env::var_os("TEACHERLM_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/teacherlm")
        });
    home.join("models")
}

/// Fails with a clear message when the default model is not fetched.
pub fn need_default_model() {
    let path = models_dir().join(shared::catalogue::DEFAULT_MODEL.file);
    assert!(
        path.exists(),
        "this test needs the default model at {}; run `cargo xtask models`",
        path.display()
    );
}

/// A test fixture model folder of the engine.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/fixtures")
        .join(name)
}

/// The team's data folder (`../shared/data` beside the repository).
pub fn data_dir() -> PathBuf {
    std::env::var_os("TEACHERLM_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        PathBuf::from,
    )
}

/// A spawned server, killed on drop.
pub struct Server {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `teacherlm serve --port 0 ARGS`, once it listens.
    pub fn spawn(args: &[&str]) -> Server {
        Server::spawn_with_env(args, &[])
    }

    /// [`Server::spawn`] with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = bin()
            .args(["serve", "--port", "0", "--host", "127.0.0.1"])
            .args(args)
            .envs(env.iter().copied())
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
            .unwrap_or_else(|| panic!("no port in {line:?} (did the server fail to start?)"));
        Server { child, port }
    }

    /// A server of the tiny Llama fixture (a chat model with a 256-token
    /// context), plus `args`.
    pub fn tiny(args: &[&str]) -> Server {
        let model = fixture("llama-tiny");
        let mut all = vec!["--model", model.to_str().unwrap()];
        all.extend_from_slice(args);
        Server::spawn(&all)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// An agent that returns error statuses instead of failing.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .new_agent()
}

/// A response: status, headers we look at, body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, when sent.
    pub retry_after: Option<String>,
    /// `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn reply(r: ureq::http::Response<ureq::Body>) -> Reply {
    let status = r.status().as_u16();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry_after = header("retry-after");
    let content_type = header("content-type").unwrap_or_default();
    let body = r
        .into_body()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    Reply {
        status,
        retry_after,
        content_type,
        body,
    }
}

/// GET `url`.
pub fn get(url: &str) -> Reply {
    let r = agent().get(url).call().unwrap();
    reply(r)
}

/// GET `url` with a bearer key.
pub fn get_with_key(url: &str, key: &str) -> Reply {
    let r = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap();
    reply(r)
}

/// POST `body` (raw) as JSON to `url`.
pub fn post_raw(url: &str, body: impl Into<Vec<u8>>) -> Reply {
    let r = agent()
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.into())
        .unwrap();
    reply(r)
}

/// POST `body` as JSON to `url`.
pub fn post(url: &str, body: &serde_json::Value) -> Reply {
    post_raw(url, body.to_string())
}

/// POST `body` asking for an event stream; the `data:` payloads as they come
/// (`[DONE]` included), read to the end.
pub fn post_sse(url: &str, body: &serde_json::Value) -> (u16, Vec<String>) {
    let r = agent()
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "text/event-stream")
        .send(body.to_string())
        .unwrap();
    let status = r.status().as_u16();
    let reader = BufReader::new(r.into_body().into_reader());
    let data = reader
        .lines()
        .map(|l| l.unwrap())
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect();
    (status, data)
}
