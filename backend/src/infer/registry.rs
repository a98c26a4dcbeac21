//! The engines a server holds, by the model name clients use, and the teacher
//! that writes each kind of annotation.
//!
//! The paper ran three specialised teachers (TeacherLM-Fundamental, -CoT,
//! -CommonMistake); `[teachers]` in the config names one model per kind, and
//! any kind left out uses the default model (the first one configured).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use engine::{LoadOptions, Model};
use shared::teacherlm::Kind;

use super::local::{LocalEngine, LocalLimits};
use super::remote::{RemoteConfig, RemoteEngine};
use super::{Engine, InferError};
use crate::metrics::{Metrics, ModelGauges};
use crate::models;

/// Failure to set up the configured engines.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A local model could not be found or loaded.
    #[error("model `{name}`: {message}")]
    Model {
        /// The configured name.
        name: String,
        /// Why.
        message: String,
    },
    /// A teacher names a model that is not configured.
    #[error("teacher for `{kind}` is `{model}`, which is not a configured model ({known})")]
    UnknownTeacher {
        /// The annotation kind.
        kind: Kind,
        /// The model it names.
        model: String,
        /// Configured names.
        known: String,
    },
    /// Two models share a name.
    #[error("model name `{0}` is configured twice")]
    Duplicate(String),
    /// A remote engine could not be set up.
    #[error("{0}")]
    Remote(#[from] InferError),
}

/// What the registry is built from (the inference part of the settings).
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    /// Local models to load: catalogue names, files in the model directory, or
    /// paths. Served under the name as given (a path under its file name).
    pub local: Vec<String>,
    /// Remote models.
    pub remote: Vec<RemoteConfig>,
    /// The model for each annotation kind (default: the first model).
    pub teachers: BTreeMap<Kind, String>,
    /// Queue and batch sizes of local models.
    pub limits: LocalLimits,
}

/// The engines of one server.
pub struct Engines {
    engines: Vec<Arc<dyn Engine>>,
    local: Vec<Arc<LocalEngine>>,
    teachers: BTreeMap<Kind, String>,
}

impl Engines {
    /// No models at all: every generation request is refused with a clear
    /// message (the server still serves the app and the API description).
    pub fn empty() -> Self {
        Self {
            engines: Vec::new(),
            local: Vec::new(),
            teachers: BTreeMap::new(),
        }
    }

    /// Loads the local models and connects the remote ones.
    pub fn load(
        settings: &EngineSettings,
        models_dir: &Path,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, RegistryError> {
        let mut out = Self::empty();
        for name in &settings.local {
            let path = models::resolve(models_dir, name).map_err(|e| RegistryError::Model {
                name: name.clone(),
                message: e.to_string(),
            })?;
            let id = if shared::catalogue::find(name).is_some() || !name.contains('/') {
                name.clone()
            } else {
                path.file_name()
                    .map_or_else(|| name.clone(), |f| f.to_string_lossy().into_owned())
            };
            let model =
                Model::load(&path, LoadOptions::default()).map_err(|e| RegistryError::Model {
                    name: name.clone(),
                    message: e.to_string(),
                })?;
            tracing::info!(model = %id, path = %path.display(), architecture = model.architecture(), "model loaded");
            let engine = Arc::new(LocalEngine::start(
                &id,
                model,
                settings.limits,
                Arc::clone(metrics),
            ));
            out.add(Arc::clone(&engine) as Arc<dyn Engine>)?;
            out.local.push(engine);
        }
        for remote in &settings.remote {
            let engine = RemoteEngine::new(remote.clone(), Arc::clone(metrics))?;
            tracing::info!(model = %remote.name, url = %remote.base_url, "remote model configured");
            out.add(Arc::new(engine))?;
        }
        for (&kind, model) in &settings.teachers {
            if out.find(model).is_none() {
                return Err(RegistryError::UnknownTeacher {
                    kind,
                    model: model.clone(),
                    known: out.names().join(", "),
                });
            }
        }
        out.teachers = settings.teachers.clone();
        Ok(out)
    }

    /// Adds an engine (tests build registries by hand).
    pub fn add(&mut self, engine: Arc<dyn Engine>) -> Result<(), RegistryError> {
        if self.find(&engine.info().id).is_some() {
            return Err(RegistryError::Duplicate(engine.info().id.clone()));
        }
        self.engines.push(engine);
        Ok(())
    }

    fn find(&self, name: &str) -> Option<&Arc<dyn Engine>> {
        self.engines.iter().find(|e| e.info().id == name)
    }

    /// Every model's name, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.engines.iter().map(|e| e.info().id.clone()).collect()
    }

    /// Every engine, in configuration order.
    pub fn all(&self) -> &[Arc<dyn Engine>] {
        &self.engines
    }

    /// The engine serving `name` (`field` names the request field for errors).
    pub fn get(&self, name: &str, field: &str) -> Result<Arc<dyn Engine>, InferError> {
        self.find(name).cloned().ok_or_else(|| {
            InferError::invalid(
                field,
                if self.engines.is_empty() {
                    format!("unknown model `{name}`: this server has no models loaded")
                } else {
                    format!(
                        "unknown model `{name}`; this server has: {}",
                        self.names().join(", ")
                    )
                },
            )
        })
    }

    /// The engine that writes `kind` annotations: its configured teacher, or the
    /// default (first) model.
    pub fn teacher(&self, kind: Kind) -> Result<Arc<dyn Engine>, InferError> {
        match self.teachers.get(&kind) {
            Some(name) => self.get(name, "kinds"),
            None => self
                .engines
                .first()
                .cloned()
                .ok_or_else(|| InferError::Unavailable {
                    model: "teacher".into(),
                    message: "no model is loaded; fetch the default one with `cargo xtask models` \
                              or name one under `models` in the config"
                        .into(),
                }),
        }
    }

    /// Queue depth and running sequences of every model, for `/metrics`.
    pub fn gauges(&self) -> Vec<ModelGauges> {
        self.engines
            .iter()
            .map(|e| ModelGauges {
                model: e.info().id.clone(),
                queued: e.queue_depth(),
                running: e.running(),
            })
            .collect()
    }

    /// Stops every local worker once its running sequences finish.
    pub fn shutdown(&self) {
        for engine in &self.local {
            engine.shutdown();
        }
    }
}
