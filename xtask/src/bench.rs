//! `cargo xtask bench`: prefill/decode tokens/s and peak memory of the engine on
//! the default model, quantized and f32, side by side in one run with llama.cpp
//! (llama-cpp-python) on the same GGUF and with transformers (the GGUF dequantized
//! to f32), all on the same prompt tokens and thread count; then the serving
//! benchmark (`bench_serve`). `--quick` skips the baselines, `--serve` runs only
//! the serving benchmark, `--against BIN` runs it side by side with another
//! build's binary, `--threads 2,1` on each of those engine thread counts (how
//! batching pays off with the cores a server has). Numbers are medians of
//! several runs; this is not a test.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

use crate::util::{self, cargo, output, root, sh};

const LLAMA_CPP_PYTHON: &str = "llama-cpp-python==0.3.36";
const THREADS: &str = "2";
const RUNS: &str = "5";
const GEN: &str = "128";

/// Entry point of the `bench` task.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let against = match args.iter().position(|a| a == "--against") {
        Some(i) => {
            let bin = args
                .get(i + 1)
                .map(PathBuf::from)
                .context("--against takes the path of another build's teacherlm binary")?;
            anyhow::ensure!(bin.is_file(), "--against: {} is not a file", bin.display());
            Some(bin)
        }
        None => None,
    };
    let threads = match args.iter().position(|a| a == "--threads") {
        Some(i) => parse_threads(args.get(i + 1).map(String::as_str))?,
        None => vec![None],
    };
    if args.iter().any(|a| a == "--serve") {
        return run_serve(against.as_deref(), &threads);
    }
    let model = crate::models::run()?;
    sh(cargo().args(["build", "--release", "-p", "backend"]))?;
    let bin = root().join("target/release/teacherlm");
    let mut rows: Vec<(String, Value)> = Vec::new();
    let mut prompt = String::new();
    for dtype in ["quantized", "f32"] {
        let out = output(Command::new(&bin).args([
            "bench",
            "--dtype",
            dtype,
            "--runs",
            RUNS,
            "--gen-tokens",
            GEN,
            "--json",
        ]))?;
        let v: Value = serde_json::from_str(out.trim()).context("teacherlm bench output")?;
        prompt = v["prompt_ids"].to_string();
        rows.push((format!("teacherlm {dtype}"), v));
    }
    // The paper's families at real shapes with random weights (no download):
    // fewer tokens, since the 560M model decodes slowly.
    for (shape, dtype) in [
        ("opt-125m", "f32"),
        ("opt-125m", "q8_0"),
        ("bloom-560m", "f32"),
        ("bloom-560m", "q8_0"),
    ] {
        let out = output(Command::new(&bin).args([
            "bench",
            "--shape",
            shape,
            "--dtype",
            dtype,
            "--runs",
            "3",
            "--gen-tokens",
            "32",
            "--json",
        ]))?;
        let v: Value = serde_json::from_str(out.trim()).context("teacherlm bench output")?;
        rows.push((format!("{shape} shape {dtype}"), v));
    }
    let bandwidth: Value = serde_json::from_str(
        output(Command::new(&bin).args(["bench", "--memory-bandwidth", "--json"]))?.trim(),
    )
    .context("teacherlm bench --memory-bandwidth output")?;
    if !quick {
        let py = bench_python()?;
        // A baseline that fails may name a switch for a second, plainer try:
        // llama-cpp-python 0.3.36 crashes in its AMX path on some AMX CPUs,
        // and its plain CPU kernels still make a baseline.
        for (name, script, plainer) in [
            (
                "llama.cpp Q4_1",
                "llama_cpp_bench.py",
                Some((
                    "LLAMA_CPP_NO_EXTRA_BUFFERS",
                    "its extra buffer types (AMX, repacked weights)",
                )),
            ),
            ("transformers f32", "transformers_bench.py", None),
        ] {
            let script = root().join("xtask/bench").join(script);
            let run = |switch: Option<&str>| {
                let mut cmd = Command::new(&py);
                cmd.arg(&script)
                    .arg(&model)
                    .args([prompt.as_str(), GEN, RUNS, THREADS])
                    .env("OMP_NUM_THREADS", THREADS);
                if let Some(var) = switch {
                    cmd.env(var, "1");
                }
                output(&mut cmd)
            };
            let mut result = run(None);
            if let (Err(e), Some((var, what))) = (&result, plainer) {
                eprintln!("{name} baseline failed: {e:#}");
                eprintln!("{name}: measuring again without {what}");
                result = run(Some(var));
            }
            match result {
                Ok(out) => {
                    let last = out.lines().last().unwrap_or_default();
                    rows.push((name.to_string(), serde_json::from_str(last)?));
                }
                Err(e) => eprintln!("{name} baseline failed: {e:#}"),
            }
        }
    }
    print_table(&rows, bandwidth["memory_read_gb_per_s"].as_f64());
    crate::bench_serve::run(&contenders(&bin, against.as_deref(), &threads))
}

/// `cargo xtask bench --serve`: only the serving benchmark (against another
/// build's binary too, with `--against`; on each of several engine thread
/// counts, with `--threads`).
pub fn run_serve(against: Option<&Path>, threads: &[Option<usize>]) -> anyhow::Result<()> {
    crate::models::run()?;
    sh(cargo().args(["build", "--release", "-p", "backend"]))?;
    let bin = root().join("target/release/teacherlm");
    crate::bench_serve::run(&contenders(&bin, against, threads))
}

/// `--threads`' value: engine thread counts separated by commas (`1,2`).
fn parse_threads(value: Option<&str>) -> anyhow::Result<Vec<Option<usize>>> {
    let value = value.context("--threads takes thread counts, e.g. --threads 2,1")?;
    value
        .split(',')
        .map(|t| match t.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => anyhow::bail!("--threads: {t:?} in {value:?} is not a thread count >= 1"),
        })
        .collect()
}

/// The servers the serving bench runs: this build and the `against` build,
/// each on every thread count (`None`: the engine's default, one per core).
/// The first is the one the others are compared with.
fn contenders(
    bin: &Path,
    against: Option<&Path>,
    threads: &[Option<usize>],
) -> Vec<crate::bench_serve::Contender> {
    let builds = std::iter::once((bin, "this build".to_string()))
        .chain(against.map(|b| (b, format!("baseline ({})", b.display()))));
    builds
        .flat_map(|(bin, name)| {
            threads.iter().map(move |&t| crate::bench_serve::Contender {
                label: match t {
                    None => name.clone(),
                    Some(1) => format!("{name}, 1 engine thread"),
                    Some(n) => format!("{name}, {n} engine threads"),
                },
                bin: bin.to_path_buf(),
                threads: t,
            })
        })
        .collect()
}

/// A virtualenv (reusing the system's torch/transformers when present) with
/// llama-cpp-python, which pip builds from source (about 5 minutes, once).
fn bench_python() -> anyhow::Result<PathBuf> {
    let venv = util::teacherlm_home().join("bench-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        sh(Command::new("python3")
            .args(["-m", "venv", "--system-site-packages"])
            .arg(&venv))?;
    }
    if !imports(&py, "llama_cpp") {
        sh(Command::new(&py)
            .args(["-m", "pip", "install", LLAMA_CPP_PYTHON])
            .env("CMAKE_ARGS", "-DGGML_NATIVE=ON"))?;
    }
    if !imports(&py, "transformers, torch, gguf") {
        sh(Command::new(&py).args([
            "-m",
            "pip",
            "install",
            "torch",
            "transformers",
            "gguf",
            "accelerate",
        ]))?;
    }
    Ok(py)
}

fn imports(py: &Path, modules: &str) -> bool {
    Command::new(py)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn print_table(rows: &[(String, Value)], bandwidth_gb_s: Option<f64>) {
    let base = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    println!(
        "\n{:<20} {:>16} {:>16} {:>14}",
        "engine", "prefill tok/s", "decode tok/s", "peak RSS MiB"
    );
    for (name, v) in rows {
        println!(
            "{:<20} {:>16.1} {:>16.1} {:>14.0}",
            name,
            v["prefill_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            v["decode_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let ratio = |a: &str, b: &str, key: &str| -> Option<f64> {
        Some(base(a)?[key].as_f64()? / base(b)?[key].as_f64()?)
    };
    if let Some(r) = ratio(
        "teacherlm quantized",
        "llama.cpp Q4_1",
        "decode_tokens_per_s",
    ) {
        println!("quantized decode vs llama.cpp: {r:.2}x (target >= 1.0)");
    }
    if let Some(r) = ratio(
        "teacherlm quantized",
        "llama.cpp Q4_1",
        "prefill_tokens_per_s",
    ) {
        println!("quantized prefill vs llama.cpp: {r:.2}x");
    }
    if let Some(r) = ratio("teacherlm f32", "transformers f32", "decode_tokens_per_s") {
        println!("f32 decode vs transformers: {r:.2}x (target >= 2.0)");
    }
    if let (Some(q), Some(bw)) = (base("teacherlm quantized"), bandwidth_gb_s) {
        // Every decode step reads the whole file once: its ceiling is the memory
        // bandwidth over the file size.
        let file_gb = shared::catalogue::DEFAULT_MODEL.size as f64 / 1e9;
        let tps = q["decode_tokens_per_s"].as_f64().unwrap_or(0.0);
        let reached = 100.0 * tps * file_gb / bw;
        println!(
            "quantized decode reads {:.1} GB/s of weights; this machine reads {bw:.1} GB/s \
             from memory (ceiling ~{:.0} tokens/s, reached {reached:.0}%{})",
            tps * file_gb,
            bw / file_gb,
            // A CPU with a last-level cache near the model's size keeps part
            // of the weights there between steps.
            if reached > 100.0 {
                ": part of the weights stay in the CPU's cache between steps"
            } else {
                ""
            }
        );
    }
}
