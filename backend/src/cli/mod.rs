//! The `teacherlm` command line: argument definitions and dispatch.

mod annotate;
mod bench;
mod eval;
mod generate;
mod models;
mod progress;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::configuration::{self, Overrides, Settings};

/// TeacherLM Studio: annotate data with a teacher model, verify math with code,
/// and train small students that run in the browser.
#[derive(Debug, Parser)]
#[command(name = "teacherlm", version, about)]
pub struct Cli {
    /// TOML config file (default: ./teacherlm.toml when present).
    #[arg(long, global = true, env = "TEACHERLM_CONFIG")]
    config: Option<PathBuf>,
    /// Folder holding model files.
    #[arg(long, global = true, env = "TEACHERLM_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// The SQLite database file.
    #[arg(long, global = true, env = "TEACHERLM_DATABASE")]
    database: Option<PathBuf>,
    /// Folder of benchmark data (mmlu/, teacherlm/, ...).
    #[arg(long, global = true, env = "TEACHERLM_DATA")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the web app and the API.
    Serve(serve::ServeArgs),
    /// Annotate samples with TeacherLM's fundamentals, chain of thought and
    /// common mistakes.
    Annotate(annotate::AnnotateArgs),
    /// Generate text with a model, streaming tokens to stdout.
    Generate(generate::GenerateArgs),
    /// Measure prefill/decode speed and peak memory of a model.
    Bench(bench::BenchArgs),
    /// Zero-shot accuracy on MMLU, CREAK, ECQA and StrategyQA, as TeacherLM
    /// measured it.
    Eval(eval::EvalArgs),
    /// Inspect the models on this machine.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
}

impl Cli {
    fn settings(&self, extra: Overrides) -> Result<Settings, configuration::ConfigError> {
        configuration::load(
            self.config.as_deref(),
            Overrides {
                models_dir: self.models_dir.clone(),
                database: self.database.clone(),
                data_dir: self.data_dir.clone(),
                ..extra
            },
        )
    }
}

/// Parses `std::env::args` and runs the command; errors go to stderr.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    let result = match &cli.command {
        Command::Serve(args) => serve::run(&cli, args),
        Command::Annotate(args) => annotate::run(&cli, args),
        Command::Generate(args) => generate::run(&cli, args),
        Command::Bench(args) => bench::run(&cli, args),
        Command::Eval(args) => eval::run(&cli, args),
        Command::Models { command } => models::run(&cli, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
