//! Types shared by the server (`backend`), the browser app (`frontend`) and the
//! tooling (`xtask`): the JSON shapes of the HTTP API, the catalogue of models
//! the project knows how to fetch, evaluation reports, and TeacherLM's prompt
//! builder. Pure data: no I/O, compiles to wasm32.

pub mod annotate;
pub mod api;
pub mod catalogue;
pub mod eval;
pub mod openai;
pub mod samples;
pub mod teacherlm;
