//! `teacherlm generate`: run a model on a prompt and stream the answer to stdout.
//! Chat models get the prompt through their chat template unless `--raw`.

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::Context;
use clap::{Args, ValueEnum};
use engine::quant::QFormat;
use engine::{ChatMessage, GenerateParams, LoadOptions, Model, SamplingParams, WeightMode};

use super::Cli;
use crate::configuration::Overrides;
use crate::models;

/// How to hold a model's weights.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Dtype {
    /// GGUF: keep the file's quantized blocks (fast, small). Hugging Face
    /// folders: f32.
    Quantized,
    /// f32 (reference numerics; GGUF blocks dequantized, as transformers does).
    F32,
    /// Quantize float weights to Q8_0 as they load (any checkpoint).
    #[value(name = "q8_0")]
    Q8_0,
    /// Quantize float weights to Q4_1 as they load (any checkpoint).
    #[value(name = "q4_1")]
    Q4_1,
}

/// Resolves `name` in the configured model directory and loads it.
pub fn load_model(cli: &Cli, name: &str, dtype: Dtype) -> anyhow::Result<Model> {
    let settings = cli.settings(Overrides::default())?;
    let path = models::resolve(&settings.models_dir, name)?;
    let (mode, quantize) = match dtype {
        Dtype::Quantized => (WeightMode::Quantized, None),
        Dtype::F32 => (WeightMode::F32, None),
        Dtype::Q8_0 => (WeightMode::F32, Some(QFormat::Q8_0)),
        Dtype::Q4_1 => (WeightMode::F32, Some(QFormat::Q4_1)),
    };
    Model::load(
        &path,
        LoadOptions {
            mode,
            quantize,
            ..LoadOptions::default()
        },
    )
    .with_context(|| format!("cannot load model `{name}`"))
}

/// Flags of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Catalogue name, file in the model directory, or path.
    #[arg(long, default_value = shared::catalogue::DEFAULT_MODEL.name)]
    model: String,
    /// The prompt (a user message for chat models).
    #[arg(long)]
    prompt: String,
    /// A system message (chat models only).
    #[arg(long)]
    system: Option<String>,
    /// Feed the prompt as-is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Weight precision for GGUF models.
    #[arg(long, value_enum, default_value = "quantized")]
    dtype: Dtype,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

pub fn run(cli: &Cli, args: &GenerateArgs) -> anyhow::Result<()> {
    let model = load_model(cli, &args.model, args.dtype)?;
    let prompt = if args.raw || !model.is_chat() {
        model.encode_prompt(&args.prompt)?
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::new("system", s));
        }
        messages.push(ChatMessage::new("user", &args.prompt));
        model.encode_chat(&messages)?
    };
    let params = GenerateParams {
        max_new_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
        },
        stop: args.stop.clone(),
    };
    let mut stdout = std::io::stdout().lock();
    let out = engine::generate(&model, &prompt, &params, |piece| {
        // A closed pipe (`| head`) ends generation instead of erroring.
        if stdout
            .write_all(piece.as_bytes())
            .and_then(|_| stdout.flush())
            .is_err()
        {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let _ = writeln!(stdout);
    let n = out.ids.len().max(1) as f64;
    eprintln!(
        "[{} prompt tokens in {:.2}s, {} generated at {:.1} tokens/s, finish: {:?}]",
        out.prompt_tokens,
        out.prefill.as_secs_f64(),
        out.ids.len(),
        (n - 1.0).max(1.0) / out.decode.as_secs_f64().max(1e-9),
        out.finish
    );
    Ok(())
}
