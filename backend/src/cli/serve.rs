//! `teacherlm serve`: start the HTTP server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::Cli;
use crate::configuration::Overrides;
use crate::startup::Application;

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "TEACHERLM_HOST")]
    host: Option<String>,
    /// Port to bind (0: any free port).
    #[arg(long, env = "TEACHERLM_PORT")]
    port: Option<u16>,
    /// The built web app (trunk's dist/).
    #[arg(long, env = "TEACHERLM_STATIC_DIR")]
    static_dir: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    let settings = cli.settings(Overrides {
        host: args.host.clone(),
        port: args.port,
        static_dir: args.static_dir.clone(),
        ..Overrides::default()
    })?;
    actix_web::rt::System::new().block_on(async move {
        let host = settings.host.clone();
        let app =
            Application::build(settings).with_context(|| format!("cannot listen on {host}"))?;
        // Scripts (xtask, tests) read this line to learn the port.
        println!("TeacherLM Studio listening on http://{host}:{}", app.port());
        tracing::info!(port = app.port(), "server started");
        app.run_until_stopped().await.context("server failed")
    })
}
