//! What every route shares: the settings, the engines and the metrics.

use std::sync::Arc;

use crate::configuration::Settings;
use crate::infer::registry::Engines;
use crate::metrics::Metrics;

/// The application state behind `web::Data`.
pub struct AppState {
    /// Resolved settings.
    pub settings: Settings,
    /// The models this server serves.
    pub engines: Arc<Engines>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// When the server started (Unix seconds): `created` of `/v1/models`.
    pub started: u64,
}
