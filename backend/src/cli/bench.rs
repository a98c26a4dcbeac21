//! `teacherlm bench`: prefill and decode speed of one model on this machine, and
//! the process's peak memory. `cargo xtask bench` runs it once per configuration,
//! each in its own process so peak memory is per configuration.

use std::time::Instant;

use clap::{Args, ValueEnum};
use engine::models::CausalLm;
use engine::models::bloom::{Bloom, BloomConfig};
use engine::models::opt::{Activation, Opt, OptConfig};
use engine::quant::QFormat;
use engine::weights::Checkpoint;
use serde::Serialize;

use super::Cli;
use super::generate::{Dtype, load_model};

/// A fixed English text; its tokens, repeated, make the benchmark prompt.
const TEXT: &str = "A teacher model annotates each sample of a dataset with its fundamentals, \
a chain of thought and the common mistakes that students make, so that small student \
models learn why an answer is right and not only what it is. ";

/// Flags of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Catalogue name, file in the model directory, or path.
    #[arg(long, default_value = shared::catalogue::DEFAULT_MODEL.name)]
    model: String,
    /// Weight precision for GGUF models.
    #[arg(long, value_enum, default_value = "quantized")]
    dtype: Dtype,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens decoded after the prompt.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Sequences decoded together (each with its own copy of the prompt's
    /// cache); decode tokens/s counts all of them.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed runs (the median is reported), after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Measure instead how fast the engine's threads read memory (no model): the
    /// ceiling of a decode step, which reads every weight once.
    #[arg(long)]
    memory_bandwidth: bool,
    /// Instead of `--model`, a model of this real architecture's shape with
    /// random weights (speed depends on shape only; nothing is downloaded).
    #[arg(long, value_enum)]
    shape: Option<Shape>,
}

/// Real model shapes `--shape` builds with random weights.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shape {
    /// bigscience/bloom-560m: 24 layers, width 1024, 16 heads, 250,880 tokens.
    #[value(name = "bloom-560m")]
    Bloom560m,
    /// facebook/opt-125m: 12 layers, width 768, 12 heads, 50,272 tokens.
    #[value(name = "opt-125m")]
    Opt125m,
}

impl Shape {
    /// The network, with random weights held as `dtype` says.
    fn build(self, dtype: Dtype) -> anyhow::Result<Box<dyn CausalLm>> {
        let quantize = match dtype {
            Dtype::Q8_0 => Some(QFormat::Q8_0),
            Dtype::Q4_1 => Some(QFormat::Q4_1),
            Dtype::Quantized | Dtype::F32 => None,
        };
        Ok(match self {
            Self::Bloom560m => {
                let cfg = BloomConfig {
                    vocab_size: 250_880,
                    hidden_size: 1024,
                    n_layer: 24,
                    n_head: 16,
                    layer_norm_epsilon: 1e-5,
                    apply_residual_connection_post_layernorm: false,
                    max_context: 2048,
                };
                let ckpt = Checkpoint::random("bloom-560m (random)").quantize_to(quantize);
                Box::new(Bloom::load(&cfg, &ckpt)?)
            }
            Self::Opt125m => {
                let cfg = OptConfig {
                    vocab_size: 50_272,
                    hidden_size: 768,
                    num_hidden_layers: 12,
                    ffn_dim: 3072,
                    num_attention_heads: 12,
                    max_position_embeddings: 2048,
                    do_layer_norm_before: true,
                    word_embed_proj_dim: 768,
                    final_layer_norm: true,
                    activation: Activation::Relu,
                };
                let ckpt = Checkpoint::random("opt-125m (random)").quantize_to(quantize);
                Box::new(Opt::load(&cfg, &ckpt)?)
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Bloom560m => "bloom-560m shape",
            Self::Opt125m => "opt-125m shape",
        }
    }
}

/// Bytes read by the memory-bandwidth measurement: far beyond any cache.
const BANDWIDTH_BYTES: usize = 512 << 20;

/// Best of five reads of a large buffer on the engine pool, in GB/s.
fn memory_read_gb_per_s() -> f64 {
    use rayon::prelude::*;
    // Written first, so every page is really mapped.
    let buf: Vec<u64> = (0..BANDWIDTH_BYTES as u64 / 8).collect();
    let chunk = buf.len() / 64;
    (0..5)
        .map(|_| {
            let t = Instant::now();
            let sum: u64 = engine::threads::install(|| {
                buf.par_chunks(chunk)
                    .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
                    .reduce(|| 0, u64::wrapping_add)
            });
            std::hint::black_box(sum);
            BANDWIDTH_BYTES as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// What one benchmark configuration measured.
#[derive(Debug, Serialize)]
struct Report {
    model: String,
    dtype: String,
    prompt_tokens: usize,
    gen_tokens: usize,
    batch: usize,
    runs: usize,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    peak_rss_mib: f64,
    load_s: f64,
    /// The prompt, so baselines can be fed exactly the same tokens.
    prompt_ids: Vec<u32>,
}

pub fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<()> {
    if args.memory_bandwidth {
        let gb_s = memory_read_gb_per_s();
        if args.json {
            println!("{}", serde_json::json!({ "memory_read_gb_per_s": gb_s }));
        } else {
            println!("memory read: {gb_s:.1} GB/s on the engine's threads");
        }
        return Ok(());
    }
    let t = Instant::now();
    let (lm, name, mut prompt): (Box<dyn CausalLm>, String, Vec<u32>) = match args.shape {
        Some(shape) => {
            let lm = shape.build(args.dtype)?;
            // Any ids do: the weights are random.
            let vocab = lm.vocab_size() as u64;
            let ids = (0..args.prompt_tokens as u64)
                .map(|i| ((i * 7919 + 13) % vocab) as u32)
                .collect();
            (lm, shape.name().to_string(), ids)
        }
        None => {
            let model = load_model(cli, &args.model, args.dtype)?;
            let text_ids = model.encode_prompt(TEXT)?;
            (model.into_lm(), args.model.clone(), text_ids)
        }
    };
    let load_s = t.elapsed().as_secs_f64();
    let text_ids = prompt.clone();
    while prompt.len() < args.prompt_tokens {
        prompt.extend_from_slice(&text_ids);
    }
    prompt.truncate(args.prompt_tokens);

    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    for run in 0..=args.runs {
        let (p, d) = one_run(lm.as_ref(), &prompt, args.gen_tokens, args.batch.max(1))?;
        if run > 0 {
            prefill.push(args.prompt_tokens as f64 / p);
            decode.push((args.gen_tokens * args.batch.max(1)) as f64 / d);
        }
    }
    let report = Report {
        model: name,
        dtype: match (args.shape, args.dtype) {
            // Random weights are floats: "quantized" keeps them as they are.
            (Some(_), Dtype::Quantized) => "f32".to_string(),
            (_, dtype) => format!("{dtype:?}").to_lowercase(),
        },
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        batch: args.batch.max(1),
        runs: args.runs,
        prefill_tokens_per_s: median(&mut prefill),
        decode_tokens_per_s: median(&mut decode),
        peak_rss_mib: peak_rss_mib(),
        load_s,
        prompt_ids: prompt,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} ({}, batch {}): prefill {:.1} tokens/s, decode {:.1} tokens/s, peak RSS {:.0} MiB",
            report.model,
            report.dtype,
            report.batch,
            report.prefill_tokens_per_s,
            report.decode_tokens_per_s,
            report.peak_rss_mib
        );
    }
    Ok(())
}

/// Seconds for the prefill and for `steps` greedy decode steps of `batch`
/// sequences (EOS ignored, so every run decodes the same number of tokens).
fn one_run(
    lm: &dyn CausalLm,
    prompt: &[u32],
    steps: usize,
    batch: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut cache = lm.new_cache();
    let t = Instant::now();
    let mut logits = lm.prefill(&[prompt], &mut [&mut cache])?;
    let prefill = t.elapsed().as_secs_f64();
    let mut caches = vec![cache; batch];
    let t = Instant::now();
    for _ in 0..steps {
        let next: Vec<u32> = logits
            .chunks_exact(lm.vocab_size())
            .map(engine::sampling::argmax)
            .collect();
        let next = if next.len() == batch {
            next
        } else {
            vec![next[0]; batch]
        };
        let mut refs: Vec<&mut engine::Cache> = caches.iter_mut().collect();
        logits = lm.decode_step(&next, &mut refs)?;
    }
    Ok((prefill, t.elapsed().as_secs_f64()))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Peak resident memory of this process (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
