//! TeacherLM Studio's server and command line.
//!
//! - [`cli`]: the `teacherlm` commands (`serve`, `generate`, `models`).
//! - [`configuration`]: layered settings (defaults, TOML file, environment, flags).
//! - [`startup`]: builds and runs the actix-web application.
//! - [`routes`]: one module per route group.
//! - [`models`]: the model directory: resolving names to files, listing.
//! - [`telemetry`]: structured `tracing` logs.

pub mod cli;
pub mod configuration;
pub mod error;
pub mod models;
pub mod routes;
pub mod startup;
pub mod store;
pub mod telemetry;
