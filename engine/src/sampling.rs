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
        // Candidates sorted by logit, best first; top-k cuts the list.
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = if p.top_k == 0 {
            idx.len()
        } else {
            p.top_k.min(idx.len())
        };
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, |&a, &b| {
                logits[b as usize].total_cmp(&logits[a as usize])
            });
            idx.truncate(k);
        }
        idx.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let max = logits[idx[0] as usize] * inv_t;
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| (logits[i as usize] * inv_t - max).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        if p.top_p < 1.0 {
            // Keep the shortest prefix whose mass reaches top_p (at least one token),
            // as `TopPLogitsWarper`.
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (n, &q) in probs.iter().enumerate() {
                acc += q;
                if acc >= p.top_p {
                    keep = n + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
            let s: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|x| *x /= s);
        }
        let r: f32 = self.rng.random();
        let mut acc = 0.0;
        for (n, &q) in probs.iter().enumerate() {
            acc += q;
            if r < acc {
                return idx[n];
            }
        }
        idx[probs.len() - 1]
    }
}

/// Index of the largest value (the first one on ties, as `torch.argmax`).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
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
