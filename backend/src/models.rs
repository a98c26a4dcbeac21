//! The model directory: turning what a user types after `--model` into a file, and
//! listing what is there.
//!
//! A model is named by its catalogue name (`smollm2-135m-instruct`), by a file or
//! folder name inside the model directory, or by a path.

use std::path::{Path, PathBuf};

use shared::catalogue::{self, CatalogueEntry};

/// A model that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ModelLookupError {
    /// A catalogued model that has not been fetched yet.
    #[error("model `{name}` is not downloaded yet: expected {path}; run `cargo xtask models`")]
    NotFetched {
        /// Catalogue name.
        name: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// Nothing of that name anywhere.
    #[error("unknown model `{name}`: not in the catalogue ({known}), not in {dir}, not a path")]
    Unknown {
        /// What was asked for.
        name: String,
        /// Catalogue names.
        known: String,
        /// The model directory.
        dir: PathBuf,
    },
}

/// One model found on disk or in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelListing {
    /// The name to pass to `--model`.
    pub name: String,
    /// Its file or folder.
    pub path: PathBuf,
    /// Whether it is on disk.
    pub present: bool,
    /// Catalogue summary, or the format for uncatalogued files.
    pub summary: String,
}

/// Resolves `name` against the catalogue, the model directory and the file system.
pub fn resolve(models_dir: &Path, name: &str) -> Result<PathBuf, ModelLookupError> {
    if let Some(entry) = catalogue::find(name) {
        let path = models_dir.join(entry.file);
        return if path.exists() {
            Ok(path)
        } else {
            Err(ModelLookupError::NotFetched {
                name: entry.name.to_string(),
                path,
            })
        };
    }
    let in_dir = models_dir.join(name);
    if !name.is_empty() && in_dir.exists() {
        return Ok(in_dir);
    }
    let as_path = PathBuf::from(name);
    if !name.is_empty() && as_path.exists() {
        return Ok(as_path);
    }
    Err(ModelLookupError::Unknown {
        name: name.to_string(),
        known: catalogue::CATALOGUE
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", "),
        dir: models_dir.to_path_buf(),
    })
}

/// Catalogue entries (present or not) followed by other GGUF files and Hugging
/// Face folders found in the model directory.
pub fn list(models_dir: &Path) -> Vec<ModelListing> {
    let mut out: Vec<ModelListing> = catalogue::CATALOGUE
        .iter()
        .map(|e: &CatalogueEntry| {
            let path = models_dir.join(e.file);
            ModelListing {
                name: e.name.to_string(),
                present: path.metadata().is_ok_and(|m| m.len() == e.size),
                path,
                summary: e.summary.to_string(),
            }
        })
        .collect();
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return out;
    };
    let mut extra: Vec<ModelListing> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !catalogue::CATALOGUE
                .iter()
                .any(|e| models_dir.join(e.file) == *p)
        })
        .filter_map(|p| {
            let summary = if p
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
            {
                "GGUF file"
            } else if p.join("config.json").exists() {
                "Hugging Face folder"
            } else {
                return None;
            };
            Some(ModelListing {
                name: p.file_name()?.to_string_lossy().into_owned(),
                path: p,
                present: true,
                summary: summary.to_string(),
            })
        })
        .collect();
    extra.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_catalogue_names_files_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        let entry = catalogue::DEFAULT_MODEL;
        let err = resolve(dir.path(), entry.name).unwrap_err().to_string();
        assert!(err.contains("cargo xtask models"), "{err}");
        std::fs::write(dir.path().join(entry.file), b"x").unwrap();
        assert_eq!(
            resolve(dir.path(), entry.name).unwrap(),
            dir.path().join(entry.file)
        );
        std::fs::write(dir.path().join("other.gguf"), b"x").unwrap();
        assert_eq!(
            resolve(dir.path(), "other.gguf").unwrap(),
            dir.path().join("other.gguf")
        );
        let err = resolve(dir.path(), "nope").unwrap_err().to_string();
        assert!(err.contains("unknown model `nope`"), "{err}");
        let names: Vec<String> = list(dir.path()).into_iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            vec![entry.name.to_string(), "other.gguf".to_string()]
        );
    }
}
