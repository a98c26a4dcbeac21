//! Settings of the server and CLI, layered: built-in defaults, then a TOML file
//! (`--config`, `$TEACHERLM_CONFIG`, or `./teacherlm.toml` when present), then
//! environment variables, then command-line flags (clap reads `TEACHERLM_*`
//! variables into the same fields as the flags, flags winning).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shared::teacherlm::Kind;

use crate::infer::local::LocalLimits;
use crate::infer::remote::RemoteConfig;

/// Resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0: any free port).
    pub port: u16,
    /// Where model files live (`$TEACHERLM_HOME/models`).
    pub models_dir: PathBuf,
    /// The built frontend (trunk's `dist/`).
    pub static_dir: PathBuf,
    /// The SQLite database (`$TEACHERLM_HOME/teacherlm.sqlite`).
    pub database: PathBuf,
    /// Benchmark data (MMLU, CREAK, ...): `../shared/data` beside the working
    /// folder by default.
    pub data_dir: PathBuf,
    /// Local models to load at start. Empty: the default model, when it has
    /// been fetched.
    pub models: Vec<String>,
    /// Models on OpenAI-compatible servers.
    pub remote: Vec<RemoteConfig>,
    /// The model writing each annotation kind (others: the first model).
    pub teachers: BTreeMap<Kind, String>,
    /// Queue and batch sizes of each local model.
    pub limits: LocalLimits,
    /// When non-empty, every route except `/health` and the web app needs one of
    /// these as `Authorization: Bearer <key>`.
    pub api_keys: Vec<String>,
    /// Tokens an annotation may take when the request does not say.
    pub annotate_max_tokens: usize,
}

/// What a TOML config file may set; every field optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// `host = "0.0.0.0"`.
    pub host: Option<String>,
    /// `port = 8080`.
    pub port: Option<u16>,
    /// `models_dir = "/srv/models"`.
    pub models_dir: Option<PathBuf>,
    /// `static_dir = "dist"`.
    pub static_dir: Option<PathBuf>,
    /// `database = "/srv/teacherlm.sqlite"`.
    pub database: Option<PathBuf>,
    /// `data_dir = "/srv/data"`.
    pub data_dir: Option<PathBuf>,
    /// `models = ["smollm2-135m-instruct", "/srv/bloom-560m"]`.
    pub models: Option<Vec<String>>,
    /// `[[remote]]` tables: `name`, `base_url`, `model`, `api_key_env`, `chat`,
    /// `max_concurrency`, `timeout_s`.
    #[serde(default)]
    pub remote: Vec<RemoteConfig>,
    /// `[teachers]` table: `fundamental = "..."`, `cot = "..."`, `mistakes = "..."`.
    #[serde(default)]
    pub teachers: BTreeMap<Kind, String>,
    /// `queue_size = 64`.
    pub queue_size: Option<usize>,
    /// `max_batch = 16`.
    pub max_batch: Option<usize>,
    /// `api_keys = ["..."]`.
    pub api_keys: Option<Vec<String>>,
    /// `annotate_max_tokens = 256`.
    pub annotate_max_tokens: Option<usize>,
}

/// Values given on the command line or in the environment (`None`: not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--host` / `TEACHERLM_HOST`.
    pub host: Option<String>,
    /// `--port` / `TEACHERLM_PORT`.
    pub port: Option<u16>,
    /// `--models-dir` / `TEACHERLM_MODELS_DIR`.
    pub models_dir: Option<PathBuf>,
    /// `--static-dir` / `TEACHERLM_STATIC_DIR`.
    pub static_dir: Option<PathBuf>,
    /// `--database` / `TEACHERLM_DATABASE`.
    pub database: Option<PathBuf>,
    /// `--data-dir` / `TEACHERLM_DATA`.
    pub data_dir: Option<PathBuf>,
    /// `--model` (repeatable) / `TEACHERLM_MODELS` (comma-separated).
    pub models: Option<Vec<String>>,
    /// `--teacher kind=model` (repeatable); merged over the file's.
    pub teachers: BTreeMap<Kind, String>,
    /// `--queue-size` / `TEACHERLM_QUEUE_SIZE`.
    pub queue_size: Option<usize>,
    /// `--max-batch` / `TEACHERLM_MAX_BATCH`.
    pub max_batch: Option<usize>,
    /// `--api-key` (repeatable) / `TEACHERLM_API_KEYS` (comma-separated).
    pub api_keys: Option<Vec<String>>,
}

/// Failure to read the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (it names the line and key).
        message: String,
    },
}

/// `$TEACHERLM_HOME`, default `~/.cache/teacherlm`.
pub fn teacherlm_home() -> PathBuf {
    if let Some(h) = std::env::var_os("TEACHERLM_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("teacherlm")
}

/// The default model directory, `$TEACHERLM_HOME/models`.
pub fn default_models_dir() -> PathBuf {
    teacherlm_home().join("models")
}

/// Reads a TOML config file.
pub fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Layers defaults, the config file (explicit, or `./teacherlm.toml` if present) and
/// the overrides.
pub fn load(config: Option<&Path>, over: Overrides) -> Result<Settings, ConfigError> {
    let file = match config {
        Some(p) => read_file(p)?,
        None if Path::new("teacherlm.toml").exists() => read_file(Path::new("teacherlm.toml"))?,
        None => FileSettings::default(),
    };
    let defaults = LocalLimits::default();
    let mut teachers = file.teachers;
    teachers.extend(over.teachers);
    Ok(Settings {
        host: over
            .host
            .or(file.host)
            .unwrap_or_else(|| "127.0.0.1".into()),
        port: over.port.or(file.port).unwrap_or(8080),
        models_dir: over
            .models_dir
            .or(file.models_dir)
            .unwrap_or_else(default_models_dir),
        static_dir: over
            .static_dir
            .or(file.static_dir)
            .unwrap_or_else(|| PathBuf::from("dist")),
        database: over
            .database
            .or(file.database)
            .unwrap_or_else(|| teacherlm_home().join("teacherlm.sqlite")),
        data_dir: over
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("../shared/data")),
        models: over.models.or(file.models).unwrap_or_default(),
        remote: file.remote,
        teachers,
        limits: LocalLimits {
            queue_size: over
                .queue_size
                .or(file.queue_size)
                .unwrap_or(defaults.queue_size),
            max_batch: over
                .max_batch
                .or(file.max_batch)
                .unwrap_or(defaults.max_batch),
        },
        api_keys: over
            .api_keys
            .or(file.api_keys)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect(),
        annotate_max_tokens: file.annotate_max_tokens.unwrap_or(256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "port = 9000\nhost = \"0.0.0.0\"\n").unwrap();
        let s = load(
            Some(&path),
            Overrides {
                port: Some(9100),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.port, 9100);
        assert_eq!(s.host, "0.0.0.0");
        assert_eq!(s.static_dir, PathBuf::from("dist"));
    }

    #[test]
    fn teachers_remotes_and_limits_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "models = [\"a\", \"b\"]\nqueue_size = 3\n[teachers]\ncot = \"b\"\n\
             [[remote]]\nname = \"big\"\nbase_url = \"http://gpu:8000/v1\"\n",
        )
        .unwrap();
        let mut over = Overrides {
            max_batch: Some(5),
            ..Default::default()
        };
        over.teachers.insert(Kind::Mistakes, "a".into());
        let s = load(Some(&path), over).unwrap();
        assert_eq!(s.models, vec!["a", "b"]);
        assert_eq!(s.teachers[&Kind::Cot], "b");
        assert_eq!(s.teachers[&Kind::Mistakes], "a");
        assert_eq!((s.limits.queue_size, s.limits.max_batch), (3, 5));
        assert_eq!(s.remote[0].name, "big");
        assert!(s.remote[0].chat);
        std::fs::write(&path, "[teachers]\nwisdom = \"a\"\n").unwrap();
        let e = load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("wisdom"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "port = 9000\nprot = 1\n").unwrap();
        let e = load(Some(&path), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("prot") && e.contains("line 2"), "{e}");
    }
}
