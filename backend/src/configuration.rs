//! Settings of the server and CLI, layered: built-in defaults, then a TOML file
//! (`--config`, `$TEACHERLM_CONFIG`, or `./teacherlm.toml` when present), then
//! environment variables, then command-line flags (clap reads `TEACHERLM_*`
//! variables into the same fields as the flags, flags winning).

use std::path::{Path, PathBuf};

use serde::Deserialize;

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
