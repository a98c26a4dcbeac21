//! Builds the actix-web application from [`Settings`] and runs it: loads the
//! configured models into engines, then serves the routes.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::dev::Server;
use actix_web::middleware::{Compress, Logger, from_fn};
use actix_web::{App, HttpServer, web};

use crate::configuration::Settings;
use crate::infer::registry::{EngineSettings, Engines, RegistryError};
use crate::metrics::Metrics;
use crate::routes;
use crate::state::AppState;

/// A bound, not yet awaited server.
pub struct Application {
    port: u16,
    server: Server,
    engines: Arc<Engines>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `host:port`.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configured model could not be loaded.
    #[error(transparent)]
    Engines(#[from] RegistryError),
}

/// The engine settings of `settings`: the configured local models or, when none
/// is configured, the default model if it has been fetched.
pub fn engine_settings(settings: &Settings) -> EngineSettings {
    let mut local = settings.models.clone();
    if local.is_empty() && settings.remote.is_empty() {
        let default = shared::catalogue::DEFAULT_MODEL;
        if settings.models_dir.join(default.file).exists() {
            local.push(default.name.to_string());
        } else {
            tracing::warn!(
                model = default.name,
                "the default model is not fetched (`cargo xtask models`); serving without models"
            );
        }
    }
    EngineSettings {
        local,
        remote: settings.remote.clone(),
        teachers: settings.teachers.clone(),
        limits: settings.limits,
    }
}

impl Application {
    /// Loads the configured models, binds `host:port` (port 0 picks a free one)
    /// and builds the server.
    pub fn build(settings: Settings) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::default());
        let engines = Engines::load(&engine_settings(&settings), &settings.models_dir, &metrics)?;
        Self::build_with(settings, engines, metrics)
    }

    /// Builds the server around engines made elsewhere.
    pub fn build_with(
        settings: Settings,
        engines: Engines,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let address = format!("{}:{}", settings.host, settings.port);
        let bind = |source| StartError::Bind {
            address: address.clone(),
            source,
        };
        let listener = TcpListener::bind((settings.host.as_str(), settings.port)).map_err(bind)?;
        let port = listener.local_addr().map_err(bind)?.port();
        let engines = Arc::new(engines);
        let static_dir = settings.static_dir.clone();
        let state = web::Data::new(AppState {
            settings,
            engines: Arc::clone(&engines),
            metrics,
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(routes::guard::guard))
                .wrap(Logger::new("%r %s %Dms").log_target("http"))
                // Event streams opt out (`Content-Encoding: identity`, see
                // `routes::sse`) so their frames leave as they are written.
                .wrap(Compress::default())
                .app_data(state.clone())
                .service(routes::health::health)
                .service(routes::annotate::annotate)
                .service(routes::samples::samples)
                .service(routes::openai::models)
                .service(routes::openai::completions)
                .service(routes::openai::chat_completions)
                .service(routes::metrics::metrics)
                .service(routes::openapi::openapi_json)
                .service(routes::openapi::docs)
                .configure(routes::spa::configure(static_dir.clone()))
        })
        .listen(listener)
        .map_err(bind)?
        .run();
        Ok(Self {
            port,
            server,
            engines,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is stopped, then lets the model workers finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.engines.shutdown();
        result
    }
}
