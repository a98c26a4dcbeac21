//! The `teacherlm` binary: parses the command line and hands off to the server or
//! to a CLI command. Everything else lives in the library half of this crate.

fn main() -> std::process::ExitCode {
    backend::cli::run()
}
