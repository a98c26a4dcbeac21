//! One component per route.

mod annotate;
mod evaluate;
mod jobs;
mod not_found;
mod overview;
mod solve;
mod students;

pub use annotate::Annotate;
pub use evaluate::Evaluate;
pub use jobs::Jobs;
pub use not_found::NotFound;
pub use overview::Overview;
pub use solve::Solve;
pub use students::Students;
