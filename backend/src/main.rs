//! The `teacherlm` binary: parses the command line and hands off to the server or
//! to a CLI command. Everything else lives in the library half of this crate.

fn main() -> std::process::ExitCode {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: no other thread exists yet. candle asks for its thread count on
        // every matmul and, without this variable, re-reads /proc/cpuinfo each time
        // (a measurable share of a decode step).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    backend::cli::run()
}
