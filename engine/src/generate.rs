//! Autoregressive generation: prefill the prompt, then decode one token at a time
//! with the KV cache, sampling, end-of-sequence ids, stop strings, a token budget,
//! and a streaming callback that sees text as soon as it is final.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::sampling::{Sampler, SamplingParams};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: SamplingParams,
    /// Generation ends before the first occurrence of any of these strings.
    pub stop: Vec<String>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            sampling: SamplingParams::greedy(),
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The token budget (or the context) ran out.
    Length,
    /// The model produced an end-of-sequence token.
    Eos,
    /// A stop string appeared.
    Stop,
    /// The callback asked to stop (a client went away).
    Cancelled,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text (stop string and EOS excluded).
    pub text: String,
    /// Generated ids (EOS excluded).
    pub ids: Vec<u32>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Why it ended.
    pub finish: FinishReason,
    /// Time spent on the prompt.
    pub prefill: Duration,
    /// Time spent decoding after the first token.
    pub decode: Duration,
}

/// Generates a continuation of `prompt_ids`, calling `on_text` with each new piece
/// of final text; returning `ControlFlow::Break` from it cancels generation.
pub fn generate(
    model: &Model,
    prompt_ids: &[u32],
    params: &GenerateParams,
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation> {
    if prompt_ids.is_empty() {
        return Err(EngineError::invalid("prompt", "is empty"));
    }
    let lm = model.lm();
    let ctx = lm.max_context();
    if prompt_ids.len() >= ctx {
        return Err(EngineError::invalid(
            "prompt",
            format!(
                "{} tokens leave no room in the context of {ctx}",
                prompt_ids.len()
            ),
        ));
    }
    let budget = params.max_new_tokens.min(ctx - prompt_ids.len());
    let mut sampler = Sampler::new(params.sampling.clone())?;
    let tok = model.tokenizer();
    let eos = tok.eos_ids();

    let mut cache = lm.new_cache();
    let mut context: Vec<u32> = prompt_ids.to_vec();
    let mut stream = TextStream::new(&params.stop);
    let mut generated: Vec<u32> = Vec::new();
    let t0 = Instant::now();
    let input = Tensor::new(prompt_ids, &Device::Cpu)?.unsqueeze(0)?;
    let mut logits = lm
        .forward_last(&input, &mut cache)?
        .squeeze(0)?
        .to_vec1::<f32>()?;
    let prefill = t0.elapsed();
    let t1 = Instant::now();
    let mut finish = FinishReason::Length;
    for step in 0..budget {
        let next = sampler.sample(&mut logits, &context);
        if eos.contains(&next) {
            finish = FinishReason::Eos;
            break;
        }
        generated.push(next);
        context.push(next);
        let text = tok.decode(&generated, true)?;
        let (piece, stopped) = stream.push(&text);
        if !piece.is_empty() && on_text(piece).is_break() {
            finish = FinishReason::Cancelled;
            break;
        }
        if stopped {
            finish = FinishReason::Stop;
            break;
        }
        if step + 1 == budget {
            break;
        }
        logits = lm.decode_step(&[next], &mut [&mut cache])?;
    }
    if finish != FinishReason::Stop && finish != FinishReason::Cancelled {
        let rest = stream.finish();
        if !rest.is_empty() {
            let _ = on_text(rest);
        }
    }
    Ok(Generation {
        text: stream.text,
        ids: generated,
        prompt_tokens: prompt_ids.len(),
        finish,
        prefill,
        decode: t1.elapsed(),
    })
}

/// Turns the growing decoded text into final pieces: holds back text that may
/// still become a stop string, and an incomplete UTF-8 sequence (decoded as U+FFFD).
struct TextStream<'a> {
    stop: &'a [String],
    /// Text handed out so far (and, at the end, the whole answer).
    text: String,
    /// Latest full decode.
    pending: String,
}

impl<'a> TextStream<'a> {
    fn new(stop: &'a [String]) -> Self {
        Self {
            stop,
            text: String::new(),
            pending: String::new(),
        }
    }

    /// Takes the full decoded text so far; returns the new final piece and
    /// whether a stop string was found (the piece then ends before it).
    fn push(&mut self, full: &str) -> (&str, bool) {
        let start = self.text.len();
        if let Some(cut) = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| full.find(s.as_str()))
            .min()
        {
            let cut = cut.max(start);
            self.text.push_str(&full[start..cut]);
            return (&self.text[start..], true);
        }
        self.pending = full.to_string();
        let mut end = full.len();
        if full.ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        // Hold back the longest suffix that is a prefix of a stop string.
        let hold = self
            .stop
            .iter()
            .map(|s| partial_stop(&full[..end], s))
            .max()
            .unwrap_or(0);
        end -= hold;
        let end = end.max(start);
        if full.is_char_boundary(end) && full.get(..start) == Some(&self.text[..]) {
            self.text.push_str(&full[start..end]);
            (&self.text[start..], false)
        } else {
            ("", false)
        }
    }

    /// Releases what was held back once generation ended without a stop string.
    fn finish(&mut self) -> &str {
        let start = self.text.len();
        if !self.pending.starts_with(&self.text) {
            // The decode rewrote text already streamed (not seen with byte-level
            // BPE): the answer is the final decode; nothing more can be streamed.
            self.text = std::mem::take(&mut self.pending);
            return "";
        }
        if self.pending.len() > start {
            let rest = self.pending[start..].to_string();
            self.text.push_str(&rest);
        }
        &self.text[start..]
    }
}

/// Length of the longest proper prefix of `stop` that `text` ends with.
fn partial_stop(text: &str, stop: &str) -> usize {
    stop.char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .filter(|&i| text.ends_with(&stop[..i]))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], steps: &[&str]) -> (Vec<String>, bool, String) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut s = TextStream::new(&stop);
        let mut pieces = Vec::new();
        for full in steps {
            let (p, stopped) = s.push(full);
            pieces.push(p.to_string());
            if stopped {
                return (pieces, true, s.text);
            }
        }
        let rest = s.finish().to_string();
        pieces.push(rest);
        (pieces, false, s.text)
    }

    #[test]
    fn stop_string_split_across_tokens_is_held_back_and_cut() {
        let (pieces, stopped, text) = run(
            &["\nQ:"],
            &[
                "The",
                "The answer",
                "The answer\n",
                "The answer\nQ",
                "The answer\nQ:",
            ],
        );
        assert!(stopped);
        assert_eq!(text, "The answer");
        assert_eq!(pieces.concat(), "The answer");
        assert!(!pieces.iter().any(|p| p.contains('\n')));
    }

    #[test]
    fn held_back_prefix_is_released_when_it_is_not_a_stop() {
        let (pieces, stopped, text) = run(&["\nQ:"], &["a\n", "a\nb"]);
        assert!(!stopped);
        assert_eq!(text, "a\nb");
        assert_eq!(pieces.concat(), "a\nb");
    }

    #[test]
    fn incomplete_utf8_waits_for_its_next_byte() {
        let (pieces, _, text) = run(&[], &["caf", "caf\u{FFFD}", "café"]);
        assert_eq!(pieces, vec!["caf", "", "é", ""]);
        assert_eq!(text, "café");
    }
}
