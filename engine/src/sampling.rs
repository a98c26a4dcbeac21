//! Choosing the next token from logits: greedy, temperature, top-k, top-p
//! (nucleus) and the repetition penalty, with a seeded generator so a request with a
//! seed is reproducible.
//!
//! The order of the transforms follows transformers' `LogitsProcessorList` built by
//! `GenerationMixin._get_logits_processor`: repetition penalty, temperature, top-k,
//! top-p, then sampling from the softmax.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// How to pick tokens. `temperature == 0` means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the arg-max.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (0: no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `p` (1: no limit).
    pub top_p: f32,
    /// CTRL's repetition penalty (Keskar et al. 2019): > 1 discourages tokens
    /// already in the context (1: off).
    pub repetition_penalty: f32,
    /// Seed of the random generator (sampling only).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingParams {
    /// Deterministic arg-max decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }

    /// Checks every value, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(EngineError::invalid(
                "temperature",
                "must be a finite number >= 0",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(EngineError::invalid("top_p", "must be in (0, 1]"));
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return Err(EngineError::invalid("repetition_penalty", "must be > 0"));
        }
        Ok(())
    }
}

/// A stateful sampler (it owns the random generator).
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler for validated `params`.
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = StdRng::seed_from_u64(params.seed);
        Ok(Self { params, rng })
    }

    /// Picks the next token from `logits` given the ids seen so far (`context`,
    /// prompt and generated, for the repetition penalty).
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            apply_repetition_penalty(logits, context, p.repetition_penalty);
        }
        if p.temperature == 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        let r: f32 = self.rng.random();
        if p.top_k > 0 && p.top_k < logits.len() {
            let (idx, probs) = top_k(logits, p.top_k, inv_t);
            return draw(&idx, &nucleus(&probs, p.top_p, 1.0), r);
        }
        // No top-k: softmax over the whole vocabulary. Its normaliser needs every
        // token, but the nucleus is a short run of the best ones, so only the
        // tokens near the maximum are sorted (a sort of the vocabulary per token
        // was a fifth of a decode step of many sequences).
        let max = crate::vmath::max(logits);
        let weight = |l: f32| ((l - max) * inv_t).exp();
        let z = crate::vmath::sum_exp_scaled(logits, max, inv_t);
        if p.top_p >= 1.0 {
            // Inverse CDF in vocabulary order: the same distribution, no sort.
            let target = r * z;
            let mut acc = 0.0;
            for (i, &l) in logits.iter().enumerate() {
                acc += weight(l);
                if target < acc {
                    return i as u32;
                }
            }
            return argmax(logits);
        }
        // Candidates: every token within `gap` (in scaled logits) of the best.
        // They are the most likely tokens, so once their mass reaches top_p the
        // nucleus lies among them; otherwise the gap widens.
        let mut gap = 8.0f32;
        loop {
            let floor = max - gap / inv_t;
            let mut idx = crate::vmath::indices_at_least(logits, floor);
            let mass: f32 = idx.iter().map(|&i| weight(logits[i as usize])).sum();
            if mass >= p.top_p * z || idx.len() == logits.len() || gap > 1e4 {
                idx.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
                let probs: Vec<f32> = idx
                    .iter()
                    .map(|&i| weight(logits[i as usize]) / z)
                    .collect();
                return draw(&idx, &nucleus(&probs, p.top_p, mass / z), r);
            }
            gap *= 2.0;
        }
    }
}

/// The `k` best tokens, best first, and their softmax at temperature
/// `1 / inv_t` (normalised over those `k`, as `TopKLogitsWarper` masks the rest).
fn top_k(logits: &[f32], k: usize, inv_t: f32) -> (Vec<u32>, Vec<f32>) {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.select_nth_unstable_by(k - 1, |&a, &b| {
        logits[b as usize].total_cmp(&logits[a as usize])
    });
    idx.truncate(k);
    idx.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let max = logits[idx[0] as usize];
    let mut probs: Vec<f32> = idx
        .iter()
        .map(|&i| ((logits[i as usize] - max) * inv_t).exp())
        .collect();
    let sum: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|x| *x /= sum);
    (idx, probs)
}

/// `TopPLogitsWarper` on probabilities sorted best first (summing to `total`):
/// the shortest prefix whose mass reaches `top_p` (at least one token),
/// renormalised.
fn nucleus(probs: &[f32], top_p: f32, total: f32) -> Vec<f32> {
    let mut keep = probs.len();
    if top_p < 1.0 {
        let mut acc = 0.0;
        for (n, &q) in probs.iter().enumerate() {
            acc += q;
            if acc >= top_p {
                keep = n + 1;
                break;
            }
        }
    }
    let kept = &probs[..keep];
    let s: f32 = if keep == probs.len() {
        total
    } else {
        kept.iter().sum()
    };
    kept.iter().map(|&q| q / s).collect()
}

/// The token whose cumulative probability first exceeds `r` in `[0, 1)`.
fn draw(idx: &[u32], probs: &[f32], r: f32) -> u32 {
    let mut acc = 0.0;
    for (n, &q) in probs.iter().enumerate() {
        acc += q;
        if r < acc {
            return idx[n];
        }
    }
    idx[probs.len() - 1]
}

/// Index of the largest value (the first one on ties, as `torch.argmax`; 0
/// where none compares, as with NaNs only).
///
/// Two vectorised passes, the maximum then its first position: the scalar
/// loop's compare against the best so far was one value a cycle at most, a
/// twentieth of a greedy decode step of many sequences over SmolLM2's 49,152
/// tokens.
pub fn argmax(xs: &[f32]) -> u32 {
    let max = crate::vmath::max(xs);
    // Whole chunks compare without an early exit (vectorised), then the
    // chunk that holds the maximum is searched.
    const CHUNK: usize = 64;
    let at = xs
        .chunks(CHUNK)
        .enumerate()
        .find(|(_, c)| c.iter().fold(false, |hit, &x| hit | (x == max)))
        .and_then(|(k, c)| Some(k * CHUNK + c.iter().position(|&x| x == max)?));
    at.unwrap_or(0) as u32
}

/// `RepetitionPenaltyLogitsProcessor`: divide positive logits of seen tokens by the
/// penalty, multiply negative ones.
fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    let mut seen = vec![false; logits.len()];
    for &t in context {
        if let Some(s) = seen.get_mut(t as usize)
            && !*s
        {
            *s = true;
            let l = &mut logits[t as usize];
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.0], &[]), 1);
    }

    #[test]
    fn argmax_takes_the_first_of_ties_anywhere_in_a_long_row() {
        for n in [1, 63, 64, 65, 49_152] {
            let mut xs: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 1e3 - 2.0)
                .collect();
            let want = |xs: &[f32]| {
                let mut best = 0;
                for (i, &x) in xs.iter().enumerate() {
                    if x > xs[best] {
                        best = i;
                    }
                }
                best as u32
            };
            assert_eq!(argmax(&xs), want(&xs), "{n} values");
            for at in [n - 1, n / 2, n / 3] {
                xs[at] = 5.0;
                assert_eq!(argmax(&xs), want(&xs), "{n} values, a maximum at {at}");
            }
        }
    }

    #[test]
    fn repetition_penalty_changes_the_greedy_choice() {
        let params = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(params).unwrap();
        // Token 1 (3.0) is penalised to 1.5, below token 2.
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.0], &[1]), 2);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_is_reproducible() {
        let logits = [0.5f32, 1.0, 0.9, 0.2];
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(p).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 1);
        }
        let draw = |seed| {
            let p = SamplingParams {
                temperature: 1.0,
                seed,
                ..SamplingParams::greedy()
            };
            let mut s = Sampler::new(p).unwrap();
            (0..32)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // probabilities ~ [0.84, 0.11, 0.04, 0.01]: top_p 0.8 keeps token 0 only.
        let logits = [4.0f32, 2.0, 1.0, -0.5];
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.8,
            seed: 3,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(p).unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 0);
        }
    }

    /// The transformers order done the plain way: sort the whole vocabulary,
    /// softmax, cut at top-k and top-p, then the inverse CDF at `r`.
    fn reference(logits: &[f32], p: &SamplingParams, r: f32) -> u32 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        if p.top_k > 0 {
            idx.truncate(p.top_k);
        }
        let max = logits[idx[0] as usize];
        let w: Vec<f64> = idx
            .iter()
            .map(|&i| (((logits[i as usize] - max) / p.temperature) as f64).exp())
            .collect();
        let z: f64 = w.iter().sum();
        let mut keep = w.len();
        let mut acc = 0.0;
        for (n, q) in w.iter().enumerate() {
            acc += q / z;
            if acc >= p.top_p as f64 {
                keep = n + 1;
                break;
            }
        }
        let kept: f64 = w[..keep].iter().sum();
        let mut acc = 0.0;
        for (n, q) in w[..keep].iter().enumerate() {
            acc += q / kept;
            if (r as f64) < acc {
                return idx[n];
            }
        }
        idx[keep - 1]
    }

    #[test]
    fn matches_the_full_sort_on_a_large_vocabulary() {
        let vocab = 5000;
        let mut mismatches = 0;
        let mut draws = 0;
        for (case, (temperature, top_p, top_k)) in [
            (0.7, 0.95, 0),
            (1.0, 0.5, 0),
            (1.5, 0.9, 0),
            (0.3, 0.99, 0),
            (1.0, 0.9, 40),
        ]
        .into_iter()
        .enumerate()
        {
            let p = SamplingParams {
                temperature,
                top_p,
                top_k,
                seed: case as u64,
                ..SamplingParams::greedy()
            };
            let mut sampler = Sampler::new(p.clone()).unwrap();
            let mut rng = StdRng::seed_from_u64(p.seed);
            let mut logit_rng = StdRng::seed_from_u64(100 + case as u64);
            for _ in 0..200 {
                // Peaked like a language model's logits: a few high, a long tail.
                let logits: Vec<f32> = (0..vocab)
                    .map(|_| {
                        let u: f32 = logit_rng.random();
                        12.0 * u.powi(8) + 2.0 * logit_rng.random::<f32>()
                    })
                    .collect();
                let r: f32 = rng.random();
                let want = reference(&logits, &p, r);
                let got = sampler.sample(&mut logits.clone(), &[]);
                draws += 1;
                // f32 against f64 sums may move a draw right at a boundary.
                if got != want {
                    mismatches += 1;
                }
            }
        }
        assert!(
            mismatches * 200 <= draws,
            "{mismatches} of {draws} draws differ"
        );
    }

    #[test]
    fn without_top_p_draws_follow_the_softmax() {
        // Plain sampling walks the vocabulary in its own order, so draws are
        // compared with the softmax as frequencies rather than one by one.
        let logits = [2.0f32, 0.5, 1.0, -1.0, 1.5, 0.0];
        let p = SamplingParams {
            temperature: 0.8,
            seed: 11,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(p).unwrap();
        let n = 40_000;
        let mut counts = [0usize; 6];
        for _ in 0..n {
            counts[s.sample(&mut logits.clone(), &[]) as usize] += 1;
        }
        let w: Vec<f64> = logits.iter().map(|&l| (l as f64 / 0.8).exp()).collect();
        let z: f64 = w.iter().sum();
        for (c, w) in counts.iter().zip(&w) {
            let (got, want) = (*c as f64 / n as f64, w / z);
            assert!((got - want).abs() < 0.01, "{got} vs {want}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let p = SamplingParams {
            top_p: 0.0,
            ..SamplingParams::greedy()
        };
        let e = Sampler::new(p).unwrap_err().to_string();
        assert!(e.contains("top_p"), "{e}");
    }
}
