//! The server's health, loaded once for the whole app and shared through context: the
//! header badge and the Overview status card read the same [`ServerHealth`], so a retry
//! from either updates both.

use std::time::Duration;

use leptos::prelude::*;
use shared::api::Health;

use crate::api::{self, ClientError};

/// How often the health check repeats while the app is open.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// Handle to the shared `GET /health` resource.
#[derive(Clone, Copy)]
pub struct ServerHealth {
    /// The latest answer; pending until the first one arrives.
    pub resource: LocalResource<Result<Health, ClientError>>,
}

impl ServerHealth {
    /// Asks the server again now.
    pub fn retry(&self) {
        self.resource.refetch();
    }
}

/// Creates the health resource, refreshes it every [`REFRESH_EVERY`], and provides it
/// as context. Call once, in [`crate::App`].
pub fn provide_server_health() {
    let health = ServerHealth {
        resource: LocalResource::new(api::health),
    };
    if let Ok(handle) = set_interval_with_handle(move || health.retry(), REFRESH_EVERY) {
        on_cleanup(move || handle.clear());
    }
    provide_context(health);
}

/// The shared health handle.
///
/// # Panics
/// When called outside [`crate::App`], which provides it.
pub fn use_server_health() -> ServerHealth {
    expect_context::<ServerHealth>()
}
