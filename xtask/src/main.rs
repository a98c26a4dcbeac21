//! `cargo xtask <task>`: every set-up, build, test and benchmark step of the
//! project as code, so a fresh machine needs nothing but cargo.
//!
//! - `serve`: install the web toolchain, build frontend and backend (release), serve.
//! - `test`: install what tests need, then fmt, clippy, every test, the wasm32 build.
//! - `models`: fetch and verify the default model.
//! - `bench`: speed and memory of the engine against llama.cpp and transformers,
//!   and serving throughput with and without concurrent requests.

mod bench;
mod bench_serve;
mod models;
mod serve;
mod test;
mod tools;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  serve [-- ARGS]   set up and run the server (ARGS go to `teacherlm serve`)
  test              set up and run every check and test (what CI runs)
  models            fetch the default model into $TEACHERLM_HOME/models
  bench [--quick|--serve] [--against BIN] [--threads N,N..]
                    benchmark the engine against llama.cpp and transformers,
                    and 8 concurrent annotate requests against 8 sequential ones
                    (side by side with another build's teacherlm binary BIN, and
                    on each of the engine thread counts N)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let result = match task {
        "serve" => serve::run(rest),
        "test" | "ci" => test::run(),
        "models" => models::run().map(|_| ()),
        "bench" => bench::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
