//! `teacherlm models list`: what models this machine has.

use clap::Subcommand;

use super::Cli;
use crate::configuration::Overrides;
use crate::models;

/// Subcommands of `models`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List catalogued models and the model files in the model directory.
    List,
}

pub fn run(cli: &Cli, command: &ModelsCommand) -> anyhow::Result<()> {
    let settings = cli.settings(Overrides::default())?;
    match command {
        ModelsCommand::List => {
            println!("model directory: {}", settings.models_dir.display());
            for m in models::list(&settings.models_dir) {
                let state = if m.present { "ready  " } else { "missing" };
                println!("  {state}  {:<28} {}", m.name, m.summary);
            }
            Ok(())
        }
    }
}
