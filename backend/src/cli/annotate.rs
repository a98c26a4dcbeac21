//! `teacherlm annotate sample.json`: TeacherLM annotations of one sample (a JSON
//! object) or of many (JSON Lines), printed for people or, with `--json`, as one
//! response per line in the paper's record layout. `--stream` shows each
//! annotation as it is written.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use shared::annotate::{AnnotateEvent, AnnotateRequest, AnnotateResponse};
use shared::teacherlm::Kind;

use super::Cli;
use crate::annotate;
use crate::configuration::Overrides;
use crate::infer::registry::{EngineSettings, Engines};
use crate::metrics::Metrics;

/// Flags of `annotate`.
#[derive(Debug, Args)]
pub struct AnnotateArgs {
    /// A JSON file: one sample `{"question", "options", "answer", "subject"?,
    /// "kinds"?, ...}`, or JSON Lines of them. `-` reads stdin.
    input: PathBuf,
    /// The teacher for every kind (default: the configured teachers, else the
    /// default model).
    #[arg(long)]
    model: Option<String>,
    /// Kinds to write, comma-separated (default: each sample's, else all).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    kinds: Vec<Kind>,
    /// Most tokens per annotation.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Sampling temperature (0: greedy).
    #[arg(long)]
    temperature: Option<f32>,
    /// Seed, for reproducible annotations.
    #[arg(long)]
    seed: Option<u64>,
    /// Print each annotation as it is generated, one kind after another.
    #[arg(long)]
    stream: bool,
    /// Print one JSON response per sample (annotations and record).
    #[arg(long, conflicts_with = "stream")]
    json: bool,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| format!("`{s}`: not a kind (fundamental, cot, mistakes)"))
}

/// Reads the requests of `path`: a JSON object, or one per line.
fn read_requests(path: &PathBuf) -> anyhow::Result<Vec<AnnotateRequest>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let name = path.display();
    if let Ok(one) = crate::routes::body::parse::<AnnotateRequest>(text.as_bytes()) {
        return Ok(vec![one]);
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let request = crate::routes::body::parse::<AnnotateRequest>(line.as_bytes())
            .map_err(|e| anyhow::anyhow!("{name}:{}: {e}", n + 1))?;
        out.push(request);
    }
    if out.is_empty() {
        bail!("{name}: no sample; expected a JSON object or JSON Lines");
    }
    Ok(out)
}

pub fn run(cli: &Cli, args: &AnnotateArgs) -> anyhow::Result<()> {
    let mut requests = read_requests(&args.input)?;
    for (n, r) in requests.iter_mut().enumerate() {
        if !args.kinds.is_empty() {
            r.kinds = args.kinds.clone();
        }
        r.max_tokens = args.max_tokens.or(r.max_tokens);
        r.temperature = args.temperature.or(r.temperature);
        r.seed = args.seed.or(r.seed);
        r.sample()
            .validate()
            .map_err(|e| anyhow::anyhow!("sample {}: {e}", n + 1))?;
    }
    let settings = cli.settings(Overrides::default())?;
    let mut engine_settings: EngineSettings = crate::startup::engine_settings(&settings);
    if let Some(model) = &args.model {
        engine_settings.local = vec![model.clone()];
        engine_settings.remote.clear();
        engine_settings.teachers.clear();
    }
    let metrics = Arc::new(Metrics::default());
    let engines = Engines::load(&engine_settings, &settings.models_dir, &metrics)?;
    if engines.all().is_empty() {
        bail!("no teacher model: fetch the default one with `cargo xtask models`, or pass --model");
    }
    let max_tokens = settings.annotate_max_tokens;
    let rt = actix_web::rt::System::new();
    let result = rt.block_on(async {
        let mut stdout = std::io::stdout().lock();
        for (n, request) in requests.iter().enumerate() {
            let label = if requests.len() > 1 {
                format!("sample {}: ", n + 1)
            } else {
                String::new()
            };
            let response = if args.stream {
                stream_one(&engines, request, max_tokens, &mut stdout).await
            } else {
                let started = annotate::start(&engines, request, max_tokens)?;
                annotate::collect(started).await
            }
            .map_err(|e| anyhow::anyhow!("{label}{e}"))?;
            if args.json {
                writeln!(stdout, "{}", serde_json::to_string(&response)?)?;
            } else if !args.stream {
                print_response(&mut stdout, &response)?;
            }
        }
        Ok(())
    });
    engines.shutdown();
    result
}

/// Streams each kind in turn under its heading; returns the whole response.
async fn stream_one(
    engines: &Engines,
    request: &AnnotateRequest,
    max_tokens: usize,
    out: &mut impl Write,
) -> Result<AnnotateResponse, crate::error::HttpError> {
    let mut whole: Option<AnnotateResponse> = None;
    let text = request
        .sample()
        .prompts()
        .map(|p| p.text)
        .unwrap_or_default();
    let _ = writeln!(out, "{text}");
    for &kind in &request.kinds {
        let one = AnnotateRequest {
            kinds: vec![kind],
            ..request.clone()
        };
        let _ = writeln!(out, "\n== {} ==", kind.title());
        let mut events = annotate::events(annotate::start(engines, &one, max_tokens)?);
        while let Some(event) = events.next().await {
            match event {
                AnnotateEvent::Token { text, .. } => {
                    let _ = write!(out, "{text}");
                    let _ = out.flush();
                }
                AnnotateEvent::Done { annotation } => {
                    let _ = writeln!(
                        out,
                        "\n[{}: {} tokens, {}]",
                        annotation.model, annotation.completion_tokens, annotation.finish_reason
                    );
                }
                AnnotateEvent::Error { error, .. } => {
                    return Err(crate::error::HttpError::BadGateway(error.error));
                }
                AnnotateEvent::Record { response } => match whole.as_mut() {
                    None => whole = Some(response),
                    Some(w) => {
                        w.annotations.extend(response.annotations);
                        w.record = merge(&w.record, &response.record, kind);
                    }
                },
            }
        }
    }
    whole.ok_or_else(|| crate::error::HttpError::Internal("no annotation was asked".into()))
}

/// `into` with the fields of `kind` taken from `from`.
fn merge(
    into: &shared::teacherlm::AnnotationRecord,
    from: &shared::teacherlm::AnnotationRecord,
    kind: Kind,
) -> shared::teacherlm::AnnotationRecord {
    let mut r = into.clone();
    match kind {
        Kind::Fundamental => r.fundamental = from.fundamental.clone(),
        Kind::Mistakes => r.error = from.error.clone(),
        Kind::Cot => {
            r.cot = from.cot.clone();
            r.all = from.all.clone();
            r.cot_tail = from.cot_tail.clone();
        }
    }
    r
}

fn print_response(out: &mut impl Write, response: &AnnotateResponse) -> std::io::Result<()> {
    writeln!(out, "{}", response.record.text)?;
    for a in &response.annotations {
        writeln!(
            out,
            "\n== {} == [{}: {} tokens, {}]\n{}",
            a.kind.title(),
            a.model,
            a.completion_tokens,
            a.finish_reason,
            a.text
        )?;
    }
    Ok(())
}
