//! Types shared by the server (`backend`), the browser app (`frontend`) and the
//! tooling (`xtask`): the JSON shapes of the HTTP API and the catalogue of models
//! the project knows how to fetch, and evaluation reports. Pure data: no I/O, compiles to wasm32.

pub mod api;
pub mod catalogue;
pub mod eval;
