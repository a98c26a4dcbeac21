//! HTTP routes, one module per group, plus the pieces they share (JSON bodies,
//! server-sent events, the key and metrics middleware).

pub mod annotate;
pub mod body;
pub mod guard;
pub mod health;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod samples;
pub mod spa;
pub mod sse;
