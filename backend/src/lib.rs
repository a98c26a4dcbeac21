//! TeacherLM Studio's server and command line.
//!
//! - [`cli`]: the `teacherlm` commands (`serve`, `annotate`, `generate`, `eval`, ...).
//! - [`configuration`]: layered settings (defaults, TOML file, environment, flags).
//! - [`startup`]: loads the engines and builds the actix-web application.
//! - [`routes`]: one module per route group; [`error`] maps errors to HTTP once.
//! - [`infer`]: the engine trait, local continuous batching, remote servers.
//! - [`annotate`]: TeacherLM annotation of a sample over the engines.
//! - [`samples`]: examples from the benchmark data for the sample picker.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`models`]: the model directory: resolving names to files, listing.
//! - [`store`]: the SQLite database.
//! - [`telemetry`]: structured `tracing` logs.

pub mod annotate;
pub mod cli;
pub mod configuration;
pub mod error;
pub mod infer;
pub mod metrics;
pub mod models;
pub mod routes;
pub mod samples;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
