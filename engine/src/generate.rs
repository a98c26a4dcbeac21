//! Autoregressive generation of one sequence: prefill the prompt, then decode one
//! token at a time with the KV cache, sampling, end-of-sequence ids, stop strings,
//! a token budget, and a streaming callback that sees text as soon as it is final.
//! It is a [`Batch`] of one; servers run many sequences in one batch.

use std::ops::ControlFlow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::batch::{Batch, Event};
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::sampling::SamplingParams;

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
    let mut batch = Batch::new(model);
    let id = batch.add(prompt_ids, params)?;
    loop {
        for event in batch.step()? {
            match event {
                Event::Text { text, .. } => {
                    if on_text(&text).is_break() {
                        return batch.cancel(id).ok_or_else(|| {
                            EngineError::invalid("generation", "vanished from its batch")
                        });
                    }
                }
                Event::Done { generation, .. } => return Ok(generation),
            }
        }
    }
}
