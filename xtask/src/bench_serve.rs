//! The serving half of `cargo xtask bench`: aggregate tokens/s of 8 annotate
//! requests sent at once against the same 8 sent one after another, to the
//! release server with the default model. Continuous batching is what makes
//! the first faster: one pass over the weights per step serves every sequence.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::util::root;

/// Requests per round.
const REQUESTS: usize = 8;
/// Tokens per annotation (each request asks for the three kinds).
const MAX_TOKENS: usize = 64;
/// Sequential and concurrent rounds measured, in pairs.
const PAIRS: usize = 5;

/// A spawned server, killed on drop.
struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first CREAK dev claims as annotate requests, seeded so both rounds ask
/// for the same sampling.
fn requests(data_dir: &Path) -> anyhow::Result<Vec<Value>> {
    let path = data_dir.join("creak/dev.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("the serving bench reads {}", path.display()))?;
    text.lines()
        .take(REQUESTS)
        .enumerate()
        .map(|(i, line)| {
            let row: Value = serde_json::from_str(line)?;
            Ok(json!({
                "question": format!(
                    "Determine the correctness of the following sentence. {}",
                    row["sentence"].as_str().unwrap_or_default()
                ),
                "options": ["True", "False"],
                "answer": if row["label"] == "true" { "A" } else { "B" },
                "max_tokens": MAX_TOKENS,
                "seed": i,
            }))
        })
        .collect()
}

/// Sends one request; the tokens it generated over its three annotations.
fn annotate(port: u16, body: &Value) -> anyhow::Result<u64> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .new_agent();
    let text = agent
        .post(&format!("http://127.0.0.1:{port}/api/annotate"))
        .header("Content-Type", "application/json")
        .send(body.to_string())?
        .into_body()
        .read_to_string()?;
    let v: Value = serde_json::from_str(&text)?;
    Ok(v["annotations"]
        .as_array()
        .context("no annotations in the answer")?
        .iter()
        .map(|a| a["completion_tokens"].as_u64().unwrap_or(0))
        .sum())
}

/// The sum of a counter's series in the server's `/metrics`.
fn counter(port: u16, name: &str) -> anyhow::Result<f64> {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()?
        .into_body()
        .read_to_string()?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Prompt tokens admitted and the share taken from cached prefixes, so far.
fn prompt_counters(port: u16) -> anyhow::Result<(f64, f64)> {
    Ok((
        counter(port, "teacherlm_prompt_tokens_total")?,
        counter(port, "teacherlm_prompt_tokens_reused_total")?,
    ))
}

/// Tokens and seconds of the 8 requests, one after another or all at once.
fn round(port: u16, bodies: &[Value], concurrent: bool) -> anyhow::Result<(u64, f64)> {
    let t = Instant::now();
    let tokens = if concurrent {
        std::thread::scope(|s| {
            let handles: Vec<_> = bodies
                .iter()
                .map(|b| s.spawn(move || annotate(port, b)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("request thread"))
                .sum::<anyhow::Result<u64>>()
        })?
    } else {
        bodies
            .iter()
            .map(|b| annotate(port, b))
            .sum::<anyhow::Result<u64>>()?
    };
    Ok((tokens, t.elapsed().as_secs_f64()))
}

/// A server the bench measures: a build of `teacherlm`, and the engine
/// threads it runs with (`TEACHERLM_THREADS`; `None`: one per core).
pub struct Contender {
    /// How the results name it.
    pub label: String,
    /// The `teacherlm` binary.
    pub bin: PathBuf,
    /// Engine threads, where set.
    pub threads: Option<usize>,
}

/// Starts `contender`'s `serve` on a free port and warms it up.
fn start(contender: &Contender, data: &Path, bodies: &[Value]) -> anyhow::Result<Server> {
    let mut cmd = Command::new(&contender.bin);
    cmd.args(["serve", "--port", "0", "--max-batch", "32", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    if let Some(n) = contender.threads {
        cmd.env("TEACHERLM_THREADS", n.to_string());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", contender.bin.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {line:?}"))?;
    let server = Server(child, port);
    // Warm up: page the weights in and let the allocator settle.
    annotate(server.1, &bodies[0])?;
    Ok(server)
}

/// One pair of rounds against a server: tokens/s one after another and all at
/// once.
struct Pair {
    seq_rate: f64,
    par_rate: f64,
}

/// Runs one pair of rounds against `server` and prints it.
fn pair(server: &Server, bodies: &[Value], label: &str) -> anyhow::Result<Pair> {
    let p0 = prompt_counters(server.1)?;
    let (seq_tokens, seq_s) = round(server.1, bodies, false)?;
    let p1 = prompt_counters(server.1)?;
    let (par_tokens, par_s) = round(server.1, bodies, true)?;
    let p2 = prompt_counters(server.1)?;
    let prefilled = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0) - (b.1 - a.1);
    let seq_rate = seq_tokens as f64 / seq_s;
    let par_rate = par_tokens as f64 / par_s;
    println!(
        "  {label}: one after another {seq_tokens} tokens in {seq_s:.1} s = \
         {seq_rate:.1} tokens/s ({:.0} prompt tokens prefilled); all at once \
         {par_tokens} tokens in {par_s:.1} s = {par_rate:.1} tokens/s ({:.0} \
         prefilled): {:.2}x",
        prefilled(p0, p1),
        prefilled(p1, p2),
        par_rate / seq_rate
    );
    Ok(Pair { seq_rate, par_rate })
}

/// The median of `xs` (an odd count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Runs both rounds against each contender's server and prints them with
/// their ratio. The servers run at once and take their pairs in turn, so the
/// machine's noise falls on all alike; with more than one, each after the
/// first is also compared round by round with the first (another build, or
/// the same build on fewer engine threads).
pub fn run(contenders: &[Contender]) -> anyhow::Result<()> {
    let data = root().join("../shared/data");
    let bodies = requests(&data)?;
    let servers = contenders
        .iter()
        .map(|c| start(c, &data, &bodies))
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!("\nannotate, {REQUESTS} requests x 3 kinds x <= {MAX_TOKENS} tokens (default model):");
    // Pairs of rounds side by side, so a noisy neighbour slows both of a pair;
    // the median pair's ratio is the result.
    let mut pairs: Vec<Vec<Pair>> = contenders.iter().map(|_| Vec::new()).collect();
    for n in 1..=PAIRS {
        for ((contender, server), pairs) in contenders.iter().zip(&servers).zip(&mut pairs) {
            let label = match contenders.len() {
                1 => format!("pair {n}"),
                _ => format!("pair {n}, {}", contender.label),
            };
            pairs.push(pair(server, &bodies, &label)?);
        }
    }
    let ratio = |ps: &[Pair]| median(ps.iter().map(|p| p.par_rate / p.seq_rate).collect());
    let (first, others) = pairs.split_first().expect("at least one contender");
    println!(
        "  concurrent vs sequential, median of {PAIRS} pairs: {:.2}x (target >= 2.5)",
        ratio(first)
    );
    for (contender, theirs) in contenders[1..].iter().zip(others) {
        let speed = |f: fn(&Pair) -> f64| {
            median(first.iter().zip(theirs).map(|(o, t)| f(o) / f(t)).collect())
        };
        println!(
            "  {}: {:.2}x; {} is {:.3}x as fast all at once and {:.3}x one after \
             another (medians over the pairs)",
            contender.label,
            ratio(theirs),
            contenders[0].label,
            speed(|p| p.par_rate),
            speed(|p| p.seq_rate)
        );
    }
    Ok(())
}
