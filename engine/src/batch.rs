//! Continuous batching: many generations decoded together, one pass over the
//! weights per step for all of them.
//!
//! A [`Batch`] holds running sequences, each with its own KV cache, sampler,
//! stop strings and budget. [`Batch::add`] prefills a new sequence at any time
//! (between steps), [`Batch::step`] samples one token for every sequence and
//! runs a single [`crate::models::CausalLm::decode_step`] for those still
//! going, and [`Batch::cancel`] drops one. This is the scheduling of Orca
//! (Yu et al., OSDI 2022, "iteration-level scheduling") on a CPU: a request
//! joins or leaves the batch between steps instead of waiting for the batch to
//! drain. [`crate::generate`] is a batch of one.
//!
//! A batch also remembers the caches of its recent prompts: a new prompt that
//! starts with a long stretch of one of them (TeacherLM's three kinds differ
//! only in their last few tokens; sampled paths of one question share all of
//! it) starts from that cache, shared rather than copied ([`Cache::on_prefix`]),
//! and prefills only the rest, as vLLM's automatic prefix caching does. A kept
//! cache that itself starts on another keeps only its own positions, so the
//! three kinds of a question, asked again, all read one copy of the question
//! (a step then reads it once from memory for the three, their rows side by
//! side). Prompts that arrive together ([`Batch::add_many`]) prefill in
//! shared passes over the weights, a prompt waiting for the pass of another it
//! starts like.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};
use crate::generate::{FinishReason, GenerateParams, Generation};
use crate::kv_cache::Cache;
use crate::model::Model;
use crate::sampling::Sampler;
use crate::text_stream::{Detokenizer, TextStream};

/// Identifies a sequence within its [`Batch`].
pub type SeqId = u64;

/// What a step produced for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New final text of a sequence.
    Text {
        /// The sequence.
        id: SeqId,
        /// The piece, never empty.
        text: String,
    },
    /// A sequence ended and left the batch.
    Done {
        /// The sequence.
        id: SeqId,
        /// Its whole result.
        generation: Generation,
    },
}

/// One running generation.
struct Sequence {
    id: SeqId,
    cache: Cache,
    sampler: Sampler,
    /// Prompt and generated ids (for the repetition penalty).
    context: Vec<u32>,
    generated: Vec<u32>,
    detok: Detokenizer,
    stream: TextStream,
    budget: usize,
    prompt_tokens: usize,
    /// Logits of the next token, from the prefill or the last step.
    logits: Logits,
    prefill: Duration,
    started: Instant,
}

/// Where a sequence's next-token logits are.
enum Logits {
    /// Its own, from its prefill.
    Own(Vec<f32>),
    /// Row `r` of the batch's last decode step: a step of many sequences over
    /// a large vocabulary is megabytes of logits, not worth a copy per
    /// sequence.
    Row(usize),
}

/// Shortest shared prefix worth reusing, in tokens.
const MIN_SHARED_PREFIX: usize = 16;
/// Memory a batch may spend on caches kept for reuse (64 MiB: a few dozen
/// prompts of a small model, a few of a 7B one).
const PREFIX_STORE_BYTES: usize = 64 << 20;

/// Running sequences of one model.
pub struct Batch<'m> {
    model: &'m Model,
    seqs: Vec<Sequence>,
    next_id: SeqId,
    /// Recent prompts and their caches right after prefill, oldest first.
    prefixes: Vec<(Vec<u32>, Arc<Cache>)>,
    /// Prompt tokens whose prefill was skipped by reusing a prefix.
    reused_tokens: usize,
    /// The last decode step's logits, a row per sequence that went on.
    step_logits: Vec<f32>,
}

impl<'m> Batch<'m> {
    /// An empty batch over `model`.
    pub fn new(model: &'m Model) -> Self {
        Self {
            model,
            seqs: Vec::new(),
            next_id: 0,
            prefixes: Vec::new(),
            reused_tokens: 0,
            step_logits: Vec::new(),
        }
    }

    /// Prompt tokens so far whose prefill was skipped by reusing the cache of
    /// an earlier prompt with the same beginning.
    pub fn reused_prefix_tokens(&self) -> usize {
        self.reused_tokens
    }

    /// The longest stored prefix of `prompt` worth reusing: its length (at
    /// least [`MIN_SHARED_PREFIX`] tokens, and never the whole prompt: its last
    /// token must run to give logits) and which stored prompt holds it.
    fn stored_prefix(&self, prompt: &[u32]) -> Option<(usize, usize)> {
        self.prefixes
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (shared_len(p, prompt).min(prompt.len() - 1), i))
            .max_by_key(|&(shared, _)| shared)
            .filter(|&(shared, _)| shared >= MIN_SHARED_PREFIX)
    }

    /// A cache starting with the longest stored prefix of `prompt` (shared,
    /// not copied), or an empty cache.
    fn cache_for(&self, prompt: &[u32]) -> Cache {
        self.stored_prefix(prompt)
            .and_then(|(shared, i)| Cache::on_prefix(Arc::clone(&self.prefixes[i].1), shared).ok())
            .unwrap_or_else(|| self.model.lm().new_cache())
    }

    /// Remembers `prompt`'s cache (a compact copy, on the same shared prefix),
    /// evicting the oldest beyond the memory budget; a prompt already stored
    /// only becomes the newest. A cache that starts on no other is stored
    /// itself and `cache` becomes a view of it, so the prompts that reuse it
    /// and this sequence read one copy.
    fn remember(&mut self, prompt: &[u32], cache: &mut Cache) {
        if prompt.len() < MIN_SHARED_PREFIX {
            return;
        }
        if let Some(i) = self.prefixes.iter().position(|(p, _)| p == prompt) {
            let entry = self.prefixes.remove(i);
            self.prefixes.push(entry);
            return;
        }
        let stored = Arc::new(cache.compacted());
        if stored.bytes() > PREFIX_STORE_BYTES / 2 {
            return;
        }
        if stored.base().is_none() {
            match Cache::on_prefix(Arc::clone(&stored), prompt.len()) {
                Ok(view) => *cache = view,
                Err(_) => return,
            }
        }
        self.prefixes.push((prompt.to_vec(), stored));
        while self.prefixes.len() > 1 && self.prefix_store_bytes() > PREFIX_STORE_BYTES {
            self.prefixes.remove(0);
        }
    }

    /// Memory the caches kept for reuse hold: each one's own buffers, and
    /// once each cache they start on (at any depth) that is no longer kept
    /// itself.
    pub fn prefix_store_bytes(&self) -> usize {
        let stored = |c: &Arc<Cache>| self.prefixes.iter().any(|(_, s)| Arc::ptr_eq(s, c));
        let mut bases: Vec<&Arc<Cache>> = Vec::new();
        for base in self.prefixes.iter().flat_map(|(_, c)| c.bases()) {
            if !stored(base) && !bases.iter().any(|b| Arc::ptr_eq(b, base)) {
                bases.push(base);
            }
        }
        self.prefixes.iter().map(|(_, c)| c.bytes()).sum::<usize>()
            + bases.iter().map(|b| b.bytes()).sum::<usize>()
    }

    /// Running sequences.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether no sequence runs.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Checks a prompt against the model's context, naming the field at fault,
    /// without running anything.
    pub fn check(model: &Model, prompt_ids: &[u32], params: &GenerateParams) -> Result<()> {
        if prompt_ids.is_empty() {
            return Err(EngineError::invalid("prompt", "is empty"));
        }
        let ctx = model.lm().max_context();
        if prompt_ids.len() >= ctx {
            return Err(EngineError::invalid(
                "prompt",
                format!(
                    "{} tokens leave no room in the context of {ctx}",
                    prompt_ids.len()
                ),
            ));
        }
        let vocab = model.lm().vocab_size();
        if let Some(&bad) = prompt_ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::invalid(
                "prompt",
                format!("token id {bad} is outside the vocabulary of {vocab}"),
            ));
        }
        params.sampling.validate()
    }

    /// Prefills `prompt_ids` and adds the sequence; its tokens come from the
    /// following steps.
    pub fn add(&mut self, prompt_ids: &[u32], params: &GenerateParams) -> Result<SeqId> {
        self.add_many(&[(prompt_ids, params)])
            .pop()
            .expect("one result per prompt")
    }

    /// [`Batch::add`] for several prompts (requests that arrived together):
    /// their prefills share passes over the weights. A prompt that starts like
    /// another of the same call waits for it, so it can reuse its cache: the
    /// three kinds of an annotation prefill their shared question once, then
    /// their triggers together. Results are in the order of `jobs`.
    pub fn add_many(&mut self, jobs: &[(&[u32], &GenerateParams)]) -> Vec<Result<SeqId>> {
        let mut results: Vec<Option<Result<SeqId>>> = jobs
            .iter()
            .map(|(prompt, params)| Self::check(self.model, prompt, params).err().map(Err))
            .collect();
        let mut pending: Vec<usize> = (0..jobs.len()).filter(|&j| results[j].is_none()).collect();
        while !pending.is_empty() {
            let (mut wave, mut later) = (Vec::new(), Vec::new());
            for j in pending {
                let prompt = jobs[j].0;
                let stored = self.stored_prefix(prompt).map_or(0, |(n, _)| n);
                let waits = wave.iter().any(|&w: &usize| {
                    let shared = shared_len(jobs[w].0, prompt).min(prompt.len() - 1);
                    shared >= MIN_SHARED_PREFIX && shared > stored
                });
                if waits { later.push(j) } else { wave.push(j) }
            }
            match self.prefill_wave(jobs, &wave) {
                Ok(ids) => {
                    for (&j, id) in wave.iter().zip(ids) {
                        results[j] = Some(Ok(id));
                    }
                }
                // One at a time, so each prompt gets its own error and the
                // others still run.
                Err(_) if wave.len() > 1 => {
                    for &j in &wave {
                        results[j] = Some(self.prefill_wave(jobs, &[j]).map(|ids| ids[0]));
                    }
                }
                Err(e) => results[wave[0]] = Some(Err(e)),
            }
            pending = later;
        }
        results
            .into_iter()
            .map(|r| r.expect("every prompt was checked or prefilled"))
            .collect()
    }

    /// Prefills the prompts `wave` of `jobs` in one pass and adds them.
    fn prefill_wave(
        &mut self,
        jobs: &[(&[u32], &GenerateParams)],
        wave: &[usize],
    ) -> Result<Vec<SeqId>> {
        let lm = self.model.lm();
        let samplers = wave
            .iter()
            .map(|&j| Sampler::new(jobs[j].1.sampling.clone()))
            .collect::<Result<Vec<_>>>()?;
        let t0 = Instant::now();
        let mut caches: Vec<Cache> = wave.iter().map(|&j| self.cache_for(jobs[j].0)).collect();
        let runs: Vec<&[u32]> = wave
            .iter()
            .zip(&caches)
            .map(|(&j, c)| &jobs[j].0[c.len()..])
            .collect();
        let logits = {
            let mut refs: Vec<&mut Cache> = caches.iter_mut().collect();
            lm.prefill(&runs, &mut refs)?
        };
        let prefill = t0.elapsed();
        self.reused_tokens += caches
            .iter()
            .zip(&runs)
            .map(|(c, r)| c.len() - r.len())
            .sum::<usize>();
        let mut ids = Vec::with_capacity(wave.len());
        for (((&j, mut cache), logits), sampler) in wave
            .iter()
            .zip(caches)
            .zip(logits.chunks_exact(lm.vocab_size()))
            .zip(samplers)
        {
            let (prompt, params) = jobs[j];
            self.remember(prompt, &mut cache);
            let id = self.next_id;
            self.next_id += 1;
            self.seqs.push(Sequence {
                id,
                cache,
                sampler,
                context: prompt.to_vec(),
                generated: Vec::new(),
                detok: Detokenizer::new(),
                stream: TextStream::new(&params.stop),
                budget: params.max_new_tokens.min(lm.max_context() - prompt.len()),
                prompt_tokens: prompt.len(),
                logits: Logits::Own(logits.to_vec()),
                prefill,
                started: Instant::now(),
            });
            ids.push(id);
        }
        Ok(ids)
    }

    /// Removes a sequence; its result so far, finished as
    /// [`FinishReason::Cancelled`].
    pub fn cancel(&mut self, id: SeqId) -> Option<Generation> {
        let i = self.seqs.iter().position(|s| s.id == id)?;
        let seq = self.seqs.swap_remove(i);
        Some(seq.finish(FinishReason::Cancelled))
    }

    /// Samples one token for every sequence, then runs one decode step for
    /// those that go on. Finished sequences leave the batch with a
    /// [`Event::Done`], after a last [`Event::Text`] for any text held back.
    pub fn step(&mut self) -> Result<Vec<Event>> {
        let tok = self.model.tokenizer();
        let eos = tok.eos_ids();
        let mut events = Vec::new();
        let mut going = Vec::with_capacity(self.seqs.len());
        // Sampling is independent per sequence and, over a large vocabulary,
        // costs as much as a small model's step: it runs on the engine's pool.
        let vocab = self.model.lm().vocab_size();
        let mut rows: Vec<Option<&mut [f32]>> =
            self.step_logits.chunks_exact_mut(vocab).map(Some).collect();
        let mut work: Vec<_> = self
            .seqs
            .iter_mut()
            .map(|seq| {
                let logits = match &mut seq.logits {
                    Logits::Own(own) => own.as_mut_slice(),
                    Logits::Row(r) => rows[*r].take().expect("one sequence per row"),
                };
                let more = seq.generated.len() < seq.budget;
                (&mut seq.sampler, seq.context.as_slice(), more, logits)
            })
            .collect();
        let nexts: Vec<Option<u32>> = crate::threads::install(|| {
            use rayon::prelude::*;
            work.par_iter_mut()
                .map(|(sampler, context, more, logits)| {
                    more.then(|| sampler.sample(logits, context))
                })
                .collect()
        });
        drop(work);
        for (mut seq, next) in std::mem::take(&mut self.seqs).into_iter().zip(nexts) {
            let finish = if let Some(next) = next {
                if eos.contains(&next) {
                    Some(FinishReason::Eos)
                } else {
                    seq.generated.push(next);
                    seq.context.push(next);
                    let text = seq
                        .detok
                        .text(&seq.generated, |ids| tok.decode(ids, true))?;
                    let (piece, stopped) = seq.stream.push(&text);
                    if !piece.is_empty() {
                        events.push(Event::Text {
                            id: seq.id,
                            text: piece.to_string(),
                        });
                    }
                    if stopped {
                        Some(FinishReason::Stop)
                    } else if seq.generated.len() == seq.budget {
                        Some(FinishReason::Length)
                    } else {
                        None
                    }
                }
            } else {
                Some(FinishReason::Length)
            };
            match finish {
                Some(reason) => {
                    if reason != FinishReason::Stop {
                        let rest = seq.stream.finish();
                        if !rest.is_empty() {
                            events.push(Event::Text {
                                id: seq.id,
                                text: rest.to_string(),
                            });
                        }
                    }
                    events.push(Event::Done {
                        id: seq.id,
                        generation: seq.finish(reason),
                    });
                }
                None => going.push(seq),
            }
        }
        // Sequences on one shared prompt side by side: the step attends row
        // after row, so the rows after the first read that prompt's keys and
        // values from cache rather than memory.
        going.sort_by_key(|s| s.cache.root().map_or(0, |b| Arc::as_ptr(b) as usize));
        if !going.is_empty() {
            let tokens: Vec<u32> = going.iter().map(|s| *s.context.last().unwrap()).collect();
            let mut caches: Vec<&mut Cache> = going.iter_mut().map(|s| &mut s.cache).collect();
            self.step_logits = self.model.lm().decode_step(&tokens, &mut caches)?;
            for (r, seq) in going.iter_mut().enumerate() {
                seq.logits = Logits::Row(r);
            }
        }
        self.seqs = going;
        Ok(events)
    }
}

/// Tokens `a` and `b` share at their start.
fn shared_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Sequence {
    fn finish(self, finish: FinishReason) -> Generation {
        Generation {
            text: self.stream.text,
            ids: self.generated,
            prompt_tokens: self.prompt_tokens,
            finish,
            prefill: self.prefill,
            decode: self.started.elapsed(),
        }
    }
}
