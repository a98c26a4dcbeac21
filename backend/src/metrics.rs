//! Counters and histograms for `GET /metrics`, rendered in Prometheus' text
//! exposition format (version 0.0.4).
//!
//! A handful of series with small label sets, so a mutex-guarded map per family
//! is plenty: the hottest writer is the decode loop, once per token.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Upper bounds (seconds) of the per-token latency buckets.
const TOKEN_BUCKETS: &[f64] = &[0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// One histogram's state.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bound (not cumulative; summed on render).
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|&b| value <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests by (route pattern, method, status).
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Tokens generated, by model.
    tokens: Mutex<BTreeMap<String, u64>>,
    /// Prompt tokens admitted, by model.
    prompt_tokens: Mutex<BTreeMap<String, u64>>,
    /// Prompt tokens whose prefill was skipped by reusing a cached prefix.
    reused_tokens: Mutex<BTreeMap<String, u64>>,
    /// Requests refused because a queue was full, by model.
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Generations stopped because their client went away, by model.
    cancelled: Mutex<BTreeMap<String, u64>>,
    /// Time to first token, by model.
    ttft: Mutex<BTreeMap<String, Histogram>>,
    /// Time between consecutive tokens of a sequence, by model.
    token_latency: Mutex<BTreeMap<String, Histogram>>,
}

/// A gauge value read at render time (queue depth, running sequences).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelGauges {
    /// The model.
    pub model: String,
    /// Requests waiting.
    pub queued: usize,
    /// Sequences decoding.
    pub running: usize,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K, by: u64) {
    *map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_insert(0) += by;
}

fn observe(map: &Mutex<BTreeMap<String, Histogram>>, model: &str, bounds: &[f64], v: f64) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    match map.get_mut(model) {
        Some(h) => h.observe(bounds, v),
        None => {
            let mut h = Histogram::default();
            h.observe(bounds, v);
            map.insert(model.to_string(), h);
        }
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one answered HTTP request.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        bump(
            &self.requests,
            (route.to_string(), method.to_string(), status),
            1,
        );
    }

    /// Counts generated tokens.
    pub fn tokens(&self, model: &str, n: u64) {
        bump(&self.tokens, model.to_string(), n);
    }

    /// Counts an admitted prompt of `tokens` tokens, `reused` of which came
    /// from a cached prefix instead of a prefill.
    pub fn prompt(&self, model: &str, tokens: u64, reused: u64) {
        bump(&self.prompt_tokens, model.to_string(), tokens);
        bump(&self.reused_tokens, model.to_string(), reused);
    }

    /// Counts a request refused by a full queue.
    pub fn rejected(&self, model: &str) {
        bump(&self.rejected, model.to_string(), 1);
    }

    /// Counts a generation stopped because its client went away.
    pub fn cancelled(&self, model: &str) {
        bump(&self.cancelled, model.to_string(), 1);
    }

    /// Records a time to first token, in seconds.
    pub fn first_token(&self, model: &str, seconds: f64) {
        observe(&self.ttft, model, TTFT_BUCKETS, seconds);
    }

    /// Records the time between two tokens of one sequence, in seconds.
    pub fn token_latency(&self, model: &str, seconds: f64) {
        observe(&self.token_latency, model, TOKEN_BUCKETS, seconds);
    }

    /// The text exposition of every series, with the gauges given.
    pub fn render(&self, gauges: &[ModelGauges]) -> String {
        let mut out = String::new();
        out.push_str("# HELP teacherlm_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE teacherlm_http_requests_total counter\n");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "teacherlm_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                label(route),
                label(method)
            );
        }
        counter(
            &mut out,
            "teacherlm_generated_tokens_total",
            "Tokens generated.",
            &self.tokens,
        );
        counter(
            &mut out,
            "teacherlm_prompt_tokens_total",
            "Prompt tokens admitted.",
            &self.prompt_tokens,
        );
        counter(
            &mut out,
            "teacherlm_prompt_tokens_reused_total",
            "Prompt tokens taken from a cached prefix instead of prefilled.",
            &self.reused_tokens,
        );
        counter(
            &mut out,
            "teacherlm_queue_rejections_total",
            "Requests refused with 429 because the queue was full.",
            &self.rejected,
        );
        counter(
            &mut out,
            "teacherlm_cancelled_total",
            "Generations stopped because their client went away.",
            &self.cancelled,
        );
        gauge(
            &mut out,
            "teacherlm_queue_depth",
            "Requests waiting for a place in the batch.",
            gauges.iter().map(|g| (&g.model, g.queued)),
        );
        gauge(
            &mut out,
            "teacherlm_running_sequences",
            "Sequences being decoded.",
            gauges.iter().map(|g| (&g.model, g.running)),
        );
        histogram(
            &mut out,
            "teacherlm_time_to_first_token_seconds",
            "From a request's arrival to its first generated token.",
            TTFT_BUCKETS,
            &self.ttft,
        );
        histogram(
            &mut out,
            "teacherlm_token_latency_seconds",
            "Between consecutive tokens of one sequence.",
            TOKEN_BUCKETS,
            &self.token_latency,
        );
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, map: &Mutex<BTreeMap<String, u64>>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (model, n) in map.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(out, "{name}{{model=\"{}\"}} {n}", label(model));
    }
}

fn gauge<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (&'a String, usize)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (model, v) in values {
        let _ = writeln!(out, "{name}{{model=\"{}\"}} {v}", label(model));
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    map: &Mutex<BTreeMap<String, Histogram>>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (model, h) in map.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let model = label(model);
        let mut cumulative = 0;
        for (bound, n) in bounds.iter().zip(&h.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{model=\"{model}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", h.sum);
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", h.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_histograms_counters_and_gauges() {
        let m = Metrics::default();
        m.request("/v1/completions", "POST", 200);
        m.request("/v1/completions", "POST", 200);
        m.tokens("tiny", 5);
        m.first_token("tiny", 0.03);
        m.first_token("tiny", 100.0);
        m.token_latency("tiny", 0.004);
        m.prompt("tiny", 100, 60);
        m.prompt("tiny", 40, 0);
        let text = m.render(&[ModelGauges {
            model: "tiny".into(),
            queued: 3,
            running: 2,
        }]);
        for line in [
            "teacherlm_http_requests_total{route=\"/v1/completions\",method=\"POST\",status=\"200\"} 2",
            "teacherlm_generated_tokens_total{model=\"tiny\"} 5",
            "teacherlm_prompt_tokens_total{model=\"tiny\"} 140",
            "teacherlm_prompt_tokens_reused_total{model=\"tiny\"} 60",
            "teacherlm_queue_depth{model=\"tiny\"} 3",
            "teacherlm_running_sequences{model=\"tiny\"} 2",
            "teacherlm_time_to_first_token_seconds_bucket{model=\"tiny\",le=\"0.025\"} 0",
            "teacherlm_time_to_first_token_seconds_bucket{model=\"tiny\",le=\"0.05\"} 1",
            "teacherlm_time_to_first_token_seconds_bucket{model=\"tiny\",le=\"60\"} 1",
            "teacherlm_time_to_first_token_seconds_bucket{model=\"tiny\",le=\"+Inf\"} 2",
            "teacherlm_time_to_first_token_seconds_count{model=\"tiny\"} 2",
            "teacherlm_token_latency_seconds_bucket{model=\"tiny\",le=\"0.005\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
    }
}
