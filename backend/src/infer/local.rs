//! A model loaded in this process, serving many requests at once with continuous
//! batching.
//!
//! One worker thread owns an [`engine::Batch`]. Between decode steps it admits
//! queued requests (prefilling those that arrived together in shared passes)
//! up to `max_batch` running sequences, drops the sequences whose client went
//! away, then runs one step for all of them. Requests that belong together (an
//! annotation's kinds, a completion's `n` choices) travel as one group, so they
//! join the same step. At most `queue_size` requests wait: [`Engine::submit`]
//! refuses with [`InferError::QueueFull`] beyond that, so the HTTP layer
//! answers 429 instead of letting latency grow without bound.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::{Batch, Event, GenerateParams, Model, SeqId};
use tokio::sync::mpsc;

use super::{
    Engine, EngineInfo, EngineKind, Finished, GenEvent, GenRequest, GenStream, InferError, Prompt,
};
use crate::metrics::Metrics;

/// Tokens a request may generate when it sets no limit (the authors'
/// `num_tokens`); the context length caps it further.
pub const OPEN_BUDGET: usize = 2048;

/// Sizes of a local engine's queue and batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLimits {
    /// Requests that may wait for a place in the batch.
    pub queue_size: usize,
    /// Sequences decoded together at most.
    pub max_batch: usize,
}

impl Default for LocalLimits {
    fn default() -> Self {
        Self {
            queue_size: 64,
            max_batch: 16,
        }
    }
}

/// A request on its way to the worker (in a group of requests that start
/// together).
struct Job {
    prompt: Vec<u32>,
    params: GenerateParams,
    tx: mpsc::UnboundedSender<GenEvent>,
    arrived: Instant,
}

/// A running sequence's client and timing.
struct Client {
    tx: mpsc::UnboundedSender<GenEvent>,
    arrived: Instant,
    last_token: Option<Instant>,
}

/// A model in this process behind a batching worker.
pub struct LocalEngine {
    info: EngineInfo,
    model: Arc<Model>,
    queue: Mutex<Option<SyncSender<Vec<Job>>>>,
    queued: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl LocalEngine {
    /// Starts the worker thread for `model`, served under the name `id`.
    pub fn start(id: &str, model: Model, limits: LocalLimits, metrics: Arc<Metrics>) -> Self {
        let model = Arc::new(model);
        // Never full: `enqueue` counts requests and refuses them first, and
        // a group holds at least one.
        let (tx, rx) = sync_channel(limits.queue_size.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let info = EngineInfo {
            id: id.to_string(),
            kind: EngineKind::Local,
            chat: model.is_chat(),
            queue_size: limits.queue_size,
        };
        let worker = Worker {
            id: id.to_string(),
            model: Arc::clone(&model),
            rx,
            max_batch: limits.max_batch.max(1),
            queued: Arc::clone(&queued),
            running: Arc::clone(&running),
            metrics: Arc::clone(&metrics),
        };
        std::thread::Builder::new()
            .name(format!("batch-{id}"))
            .spawn(move || worker.run())
            .expect("spawning a thread");
        Self {
            info,
            model,
            queue: Mutex::new(Some(tx)),
            queued,
            running,
            metrics,
        }
    }

    /// Token ids of a prompt: raw text as-is (plus BOS when the model wants it),
    /// messages through the chat template.
    pub fn encode(&self, prompt: &Prompt) -> Result<Vec<u32>, InferError> {
        let ids = match prompt {
            Prompt::Text(text) => {
                if text.is_empty() {
                    return Err(InferError::invalid("prompt", "is empty"));
                }
                self.model.encode_prompt(text)
            }
            Prompt::Chat(messages) => {
                if messages.is_empty() {
                    return Err(InferError::invalid("messages", "is empty"));
                }
                self.model.encode_chat(messages)
            }
        };
        ids.map_err(|e| match e {
            engine::EngineError::ChatTemplate(m) => InferError::invalid("messages", m),
            other => InferError::from_engine(&self.info.id, other),
        })
    }

    /// Checks `request` against the model (prompt, sampling, context) and
    /// makes its job and the stream its events will come on.
    fn job(&self, request: GenRequest, arrived: Instant) -> Result<(Job, GenStream), InferError> {
        let prompt = self.encode(&request.prompt)?;
        let mut params = request.params;
        Batch::check(&self.model, &prompt, &params)
            .map_err(|e| InferError::from_engine(&self.info.id, e))?;
        let ctx = self.model.lm().max_context();
        let wanted = params.max_new_tokens;
        if wanted == usize::MAX {
            // "As much as fits" (a chat without `max_tokens`): bounded, so one
            // request cannot hold a slot of a shared server indefinitely.
            params.max_new_tokens = OPEN_BUDGET;
        } else if prompt.len() + wanted > ctx {
            return Err(InferError::invalid(
                "max_tokens",
                format!(
                    "the prompt has {} tokens; {wanted} more exceed the context of {ctx}",
                    prompt.len()
                ),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let job = Job {
            prompt,
            params,
            tx,
            arrived,
        };
        Ok((job, rx))
    }

    /// Queues `jobs` as one group, or none of them when the queue cannot take
    /// them all. An empty queue takes any group, so a group larger than the
    /// queue (a completion's `n` choices) is not refused forever.
    fn enqueue(&self, jobs: Vec<Job>) -> Result<(), InferError> {
        let n = jobs.len();
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = queue.as_ref() else {
            return Err(InferError::Unavailable {
                model: self.info.id.clone(),
                message: "the engine is shutting down".into(),
            });
        };
        // Count before sending: the worker takes jobs off the count as it
        // admits them, which may be at once.
        let waiting = self.queued.fetch_add(n, Ordering::SeqCst);
        let full = || {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            self.metrics.rejected(&self.info.id);
            InferError::QueueFull {
                model: self.info.id.clone(),
                size: self.info.queue_size,
                retry_after_s: 1,
            }
        };
        if waiting > 0 && waiting + n > self.info.queue_size {
            return Err(full());
        }
        queue.try_send(jobs).map_err(|e| match e {
            // The channel holds a group per waiting request at most.
            TrySendError::Full(_) => full(),
            TrySendError::Disconnected(_) => {
                self.queued.fetch_sub(n, Ordering::SeqCst);
                InferError::Unavailable {
                    model: self.info.id.clone(),
                    message: "its worker stopped".into(),
                }
            }
        })
    }

    /// Stops taking requests; the worker ends once the running ones are done.
    pub fn shutdown(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Engine for LocalEngine {
    fn info(&self) -> &EngineInfo {
        &self.info
    }

    fn submit(&self, request: GenRequest) -> Result<GenStream, InferError> {
        let mut streams = self.submit_group(vec![request])?;
        Ok(streams.pop().expect("a stream for the one request"))
    }

    fn submit_group(&self, requests: Vec<GenRequest>) -> Result<Vec<GenStream>, InferError> {
        let arrived = Instant::now();
        let mut jobs = Vec::with_capacity(requests.len());
        let mut streams = Vec::with_capacity(requests.len());
        for request in requests {
            let (job, stream) = self.job(request, arrived)?;
            jobs.push(job);
            streams.push(stream);
        }
        self.enqueue(jobs)?;
        Ok(streams)
    }

    fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

/// The batching loop's state.
struct Worker {
    id: String,
    model: Arc<Model>,
    rx: Receiver<Vec<Job>>,
    max_batch: usize,
    queued: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(self) {
        let model = Arc::clone(&self.model);
        let mut batch = Batch::new(&model);
        let mut clients: HashMap<SeqId, Client> = HashMap::new();
        // Jobs received but not admitted yet (a group larger than the room
        // left in the batch), first in, first admitted.
        let mut pending: VecDeque<Job> = VecDeque::new();
        loop {
            if !self.admit(&mut batch, &mut clients, &mut pending) {
                tracing::info!(model = %self.id, "batch worker stopped");
                return;
            }
            // Clients that went away stop costing compute now.
            let gone: Vec<SeqId> = clients
                .iter()
                .filter(|(_, c)| c.tx.is_closed())
                .map(|(&id, _)| id)
                .collect();
            for id in gone {
                clients.remove(&id);
                if let Some(g) = batch.cancel(id) {
                    self.metrics.tokens(&self.id, g.ids.len() as u64);
                    self.metrics.cancelled(&self.id);
                    tracing::debug!(model = %self.id, tokens = g.ids.len(), "client left; generation cancelled");
                }
            }
            self.running.store(batch.len(), Ordering::SeqCst);
            if batch.is_empty() {
                continue;
            }
            match batch.step() {
                Ok(events) => self.route(events, &mut clients),
                Err(e) => {
                    tracing::error!(model = %self.id, error = %e, "decode step failed");
                    for (id, client) in clients.drain() {
                        batch.cancel(id);
                        let _ = client.tx.send(GenEvent::Failed(e.to_string()));
                    }
                }
            }
            self.running.store(batch.len(), Ordering::SeqCst);
        }
    }

    /// Moves queued jobs into the batch while there is room, prefilling those
    /// that arrived together in shared passes; what does not fit waits in
    /// `pending`. Blocks while nothing runs or waits. Returns false once the
    /// queue is closed and nothing is left to do.
    fn admit(
        &self,
        batch: &mut Batch<'_>,
        clients: &mut HashMap<SeqId, Client>,
        pending: &mut VecDeque<Job>,
    ) -> bool {
        // Every group that has arrived (the queue's bound limits them).
        loop {
            let group = if batch.is_empty() && pending.is_empty() {
                match self.rx.recv() {
                    Ok(group) => group,
                    Err(_) => return false,
                }
            } else {
                match self.rx.try_recv() {
                    Ok(group) => group,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            };
            pending.extend(group);
        }
        // Requests whose client left while they waited take no place.
        let waited = pending.len();
        pending.retain(|j| !j.tx.is_closed());
        let room = self.max_batch.saturating_sub(batch.len());
        let jobs: Vec<Job> = pending.drain(..room.min(pending.len())).collect();
        self.queued
            .fetch_sub(waited - pending.len(), Ordering::SeqCst);
        let reused = batch.reused_prefix_tokens();
        let prompts: Vec<(&[u32], &GenerateParams)> = jobs
            .iter()
            .map(|j| (j.prompt.as_slice(), &j.params))
            .collect();
        let results = batch.add_many(&prompts);
        let admitted: u64 = jobs
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(j, _)| j.prompt.len() as u64)
            .sum();
        self.metrics.prompt(
            &self.id,
            admitted,
            (batch.reused_prefix_tokens() - reused) as u64,
        );
        for (job, result) in jobs.into_iter().zip(results) {
            match result {
                Ok(id) => {
                    clients.insert(
                        id,
                        Client {
                            tx: job.tx,
                            arrived: job.arrived,
                            last_token: None,
                        },
                    );
                }
                Err(e) => {
                    let _ = job.tx.send(GenEvent::Failed(e.to_string()));
                }
            }
        }
        true
    }

    /// Hands a step's events to their clients and records latencies.
    fn route(&self, events: Vec<Event>, clients: &mut HashMap<SeqId, Client>) {
        let now = Instant::now();
        for event in events {
            match event {
                Event::Text { id, text } => {
                    let Some(client) = clients.get_mut(&id) else {
                        continue;
                    };
                    match client.last_token {
                        None => self
                            .metrics
                            .first_token(&self.id, (now - client.arrived).as_secs_f64()),
                        Some(t) => self
                            .metrics
                            .token_latency(&self.id, (now - t).as_secs_f64()),
                    }
                    client.last_token = Some(now);
                    // A closed receiver is noticed before the next step.
                    let _ = client.tx.send(GenEvent::Text(text));
                }
                Event::Done { id, generation } => {
                    self.metrics.tokens(&self.id, generation.ids.len() as u64);
                    if let Some(client) = clients.remove(&id) {
                        let _ = client.tx.send(GenEvent::Done(Finished {
                            finish: generation.finish,
                            prompt_tokens: generation.prompt_tokens,
                            completion_tokens: generation.ids.len(),
                        }));
                    }
                }
            }
        }
    }
}
