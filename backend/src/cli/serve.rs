//! `teacherlm serve`: load the models and start the HTTP server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use shared::teacherlm::Kind;

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
    /// A local model to serve (repeatable; default: the default model).
    #[arg(long = "model", env = "TEACHERLM_MODELS", value_delimiter = ',')]
    models: Vec<String>,
    /// The teacher of one annotation kind, `kind=model` (repeatable), e.g.
    /// `--teacher cot=bloom-560m`. Kinds: fundamental, cot, mistakes.
    #[arg(long = "teacher", value_parser = parse_teacher)]
    teachers: Vec<(Kind, String)>,
    /// Requests that may wait per local model before 429.
    #[arg(long, env = "TEACHERLM_QUEUE_SIZE")]
    queue_size: Option<usize>,
    /// Sequences decoded together per local model.
    #[arg(long, env = "TEACHERLM_MAX_BATCH")]
    max_batch: Option<usize>,
    /// An accepted API key (repeatable); when any is set, every non-public
    /// route needs `Authorization: Bearer <key>`.
    #[arg(
        long = "api-key",
        env = "TEACHERLM_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_keys: Vec<String>,
}

/// Parses `kind=model`.
fn parse_teacher(s: &str) -> Result<(Kind, String), String> {
    let (kind, model) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected kind=model, e.g. cot=smollm2-135m-instruct"))?;
    let kind = Kind::parse(kind)
        .ok_or_else(|| format!("`{kind}`: not a kind (fundamental, cot, mistakes)"))?;
    if model.trim().is_empty() {
        return Err(format!("`{s}`: the model is empty"));
    }
    Ok((kind, model.trim().to_string()))
}

pub fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let settings = cli.settings(Overrides {
        host: args.host.clone(),
        port: args.port,
        static_dir: args.static_dir.clone(),
        models: nonempty(&args.models),
        teachers: args.teachers.iter().cloned().collect(),
        queue_size: args.queue_size,
        max_batch: args.max_batch,
        api_keys: nonempty(&args.api_keys),
        ..Overrides::default()
    })?;
    actix_web::rt::System::new().block_on(async move {
        let host = settings.host.clone();
        let app = Application::build(settings).context("cannot start the server")?;
        // Scripts (xtask, tests) read this line to learn the port.
        println!("TeacherLM Studio listening on http://{host}:{}", app.port());
        tracing::info!(port = app.port(), "server started");
        app.run_until_stopped().await.context("server failed")
    })
}
