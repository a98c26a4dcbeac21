//! Continuous batching (`engine::Batch`) gives every sequence exactly what it gets
//! alone: sequences of different lengths joining at different steps, greedy and
//! seeded sampling, stop strings, budgets and cancellation, on each model family.

mod common;

use std::ops::ControlFlow;

use common::fixture;
use engine::quant::QFormat;
use engine::{
    Batch, Event, FinishReason, GenerateParams, Generation, LoadOptions, Model, SamplingParams,
    SeqId, generate,
};

fn load(name: &str) -> Model {
    Model::load(fixture(name), LoadOptions::default()).expect("fixture loads")
}

fn prompts(model: &Model) -> Vec<Vec<u32>> {
    [
        "The quick brown fox",
        "Hello",
        "Once upon a time, in a land far away, there lived",
        "1 2 3 4",
        // Enough sequences that a step's row-wise work runs on the pool (the
        // batch then shrinks below that as generations end).
        "A teacher explains",
        "Why is the sky blue?",
        "def add(a, b):",
        "Paris is the capital of",
        "Water boils at",
    ]
    .iter()
    .map(|p| model.encode_prompt(p).unwrap())
    .collect()
}

fn params(i: usize) -> GenerateParams {
    GenerateParams {
        max_new_tokens: 12 + 3 * i,
        sampling: if i.is_multiple_of(2) {
            SamplingParams::greedy()
        } else {
            SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                seed: 7 + i as u64,
                ..SamplingParams::greedy()
            }
        },
        stop: Vec::new(),
    }
}

/// Runs `prompts` in one batch, the first two from the start and the others
/// joining after three steps; returns each result and the text streamed for it.
fn run_batched(model: &Model, prompts: &[Vec<u32>]) -> Vec<(Generation, String)> {
    let mut batch = Batch::new(model);
    let mut ids: Vec<SeqId> = Vec::new();
    let mut results: Vec<Option<(Generation, String)>> = vec![None; prompts.len()];
    let mut streamed = vec![String::new(); prompts.len()];
    for (i, p) in prompts.iter().enumerate().take(2) {
        ids.push(batch.add(p, &params(i)).unwrap());
    }
    let mut steps = 0;
    while results.iter().any(Option::is_none) {
        if steps == 3 {
            for (i, p) in prompts.iter().enumerate().skip(2) {
                ids.push(batch.add(p, &params(i)).unwrap());
            }
        }
        for event in batch.step().unwrap() {
            match event {
                Event::Text { id, text } => {
                    let i = ids.iter().position(|&x| x == id).unwrap();
                    streamed[i].push_str(&text);
                }
                Event::Done { id, generation } => {
                    let i = ids.iter().position(|&x| x == id).unwrap();
                    results[i] = Some((generation, std::mem::take(&mut streamed[i])));
                }
            }
        }
        steps += 1;
        assert!(steps < 200, "batch never drained");
    }
    assert!(batch.is_empty());
    results.into_iter().map(Option::unwrap).collect()
}

fn batched_equals_alone(name: &str) {
    equals_alone(name, &load(name));
}

fn equals_alone(name: &str, model: &Model) {
    let prompts = prompts(model);
    let batched = run_batched(model, &prompts);
    for (i, (p, (got, streamed))) in prompts.iter().zip(&batched).enumerate() {
        let alone = generate(model, p, &params(i), |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(got.ids, alone.ids, "{name}: sequence {i} tokens");
        assert_eq!(got.text, alone.text, "{name}: sequence {i} text");
        assert_eq!(&got.text, streamed, "{name}: sequence {i} stream");
        assert_eq!(got.finish, alone.finish);
        assert_eq!(got.prompt_tokens, p.len());
    }
    // Different prompts and seeds gave different continuations: the test would
    // notice rows of the batch being mixed up.
    assert_ne!(batched[0].0.ids, batched[2].0.ids);
}

#[test]
fn quantized_batched_generations_equal_single_ones() {
    // The quantized kernels compute each activation row the same way whatever
    // tile it lands in, so batching changes no bit there either.
    for format in [QFormat::Q4_1, QFormat::Q8_0] {
        let opts = LoadOptions {
            quantize: Some(format),
            ..LoadOptions::default()
        };
        let model = Model::load(fixture("llama-tiny"), opts).expect("fixture loads");
        equals_alone(&format!("llama-tiny {format:?}"), &model);
    }
}

#[test]
fn llama_batched_generations_equal_single_ones() {
    batched_equals_alone("llama-tiny");
}

#[test]
fn bloom_batched_generations_equal_single_ones() {
    batched_equals_alone("bloom-tiny");
}

#[test]
fn opt_batched_generations_equal_single_ones() {
    batched_equals_alone("opt-tiny");
}

#[test]
fn stop_strings_budgets_and_cancellation() {
    let model = load("llama-tiny");
    let prompt = model.encode_prompt("The quick brown fox").unwrap();
    let free = generate(&model, &prompt, &params(0), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(free.finish, FinishReason::Length);
    assert_eq!(free.ids.len(), 12);
    // Stop at a piece of what greedy decoding writes anyway.
    let chars: Vec<char> = free.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let want = &free.text[..free.text.find(&stop).unwrap()];
    let mut batch = Batch::new(&model);
    let stopped = batch
        .add(
            &prompt,
            &GenerateParams {
                stop: vec![stop.clone()],
                ..params(0)
            },
        )
        .unwrap();
    let doomed = batch.add(&prompt, &params(0)).unwrap();
    let mut text = String::new();
    let mut done = None;
    for _ in 0..3 {
        for e in batch.step().unwrap() {
            if let Event::Text { id, text: t } = e
                && id == stopped
            {
                text.push_str(&t);
            }
        }
    }
    let cancelled = batch.cancel(doomed).unwrap();
    assert_eq!(cancelled.finish, FinishReason::Cancelled);
    assert_eq!(cancelled.ids, free.ids[..3]);
    assert!(batch.cancel(doomed).is_none());
    while done.is_none() {
        for e in batch.step().unwrap() {
            match e {
                Event::Text { text: t, .. } => text.push_str(&t),
                Event::Done { generation, .. } => done = Some(generation),
            }
        }
    }
    let done = done.unwrap();
    assert_eq!(
        done.finish,
        FinishReason::Stop,
        "stop `{stop}` in {:?}",
        free.text
    );
    assert_eq!(done.text, want);
    assert_eq!(text, want);
    // A zero budget ends at once; an empty prompt and bad sampling are refused.
    let zero = GenerateParams {
        max_new_tokens: 0,
        ..params(0)
    };
    let g = generate(&model, &prompt, &zero, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!((g.finish, g.ids.len()), (FinishReason::Length, 0));
    let e = batch.add(&[], &params(0)).unwrap_err().to_string();
    assert!(e.contains("prompt"), "{e}");
    let hot = GenerateParams {
        sampling: SamplingParams {
            temperature: -1.0,
            ..SamplingParams::greedy()
        },
        ..params(0)
    };
    let e = batch.add(&prompt, &hot).unwrap_err().to_string();
    assert!(e.contains("temperature"), "{e}");
}

/// A TeacherLM question (CREAK) without its trigger.
const STEM: &str = "Q: Determine the correctness of the following sentence. Soup is a solid \
                    food. (A) True (B) False A: The answer is (B).";

/// The prompts of the question's three kinds: [`STEM`] and a trigger each.
fn kinds(model: &Model) -> Vec<Vec<u32>> {
    [
        " Let's think step by step.",
        " The common mistakes are:",
        " The fundamental of this question is:",
    ]
    .iter()
    .map(|t| model.encode_prompt(&format!("{STEM}{t}")).unwrap())
    .collect()
}

/// Steps `batch` until the sequences `ids` are done; their generations, in
/// the order of `ids`.
fn until_done(batch: &mut Batch<'_>, ids: &[SeqId]) -> Vec<Generation> {
    let mut done = vec![None; ids.len()];
    while done.iter().any(Option::is_none) {
        for e in batch.step().unwrap() {
            if let Event::Done { id, generation } = e
                && let Some(i) = ids.iter().position(|&x| x == id)
            {
                done[i] = Some(generation);
            }
        }
    }
    done.into_iter().map(Option::unwrap).collect()
}

#[test]
fn prompts_sharing_a_prefix_reuse_its_cache_and_generate_the_same() {
    for name in ["llama-tiny", "bloom-tiny", "opt-tiny"] {
        let model = load(name);
        let prompts = kinds(&model);
        let other = model.encode_prompt("Hello there").unwrap();
        // One by one, then all in one call (as requests that arrive together
        // are admitted) with an unrelated prompt and an invalid one among them.
        for together in [false, true] {
            let mut batch = Batch::new(&model);
            let ids: Vec<SeqId> = if together {
                let p = params(0);
                let mut jobs: Vec<(&[u32], &GenerateParams)> =
                    prompts.iter().map(|x| (x.as_slice(), &p)).collect();
                jobs.insert(1, (&[], &p));
                jobs.push((&other, &p));
                let mut results = batch.add_many(&jobs);
                let empty = results.remove(1).unwrap_err().to_string();
                assert!(empty.contains("prompt"), "{name}: {empty}");
                let ids: Vec<SeqId> = results.into_iter().map(Result::unwrap).collect();
                ids[..3].to_vec()
            } else {
                prompts
                    .iter()
                    .map(|p| batch.add(p, &params(0)).unwrap())
                    .collect()
            };
            // The second and third prompts skipped the shared stem.
            let stem_len = model.encode_prompt(STEM).unwrap().len();
            assert!(
                batch.reused_prefix_tokens() >= 2 * (stem_len - 2),
                "{name} (together: {together}): reused {} of a {stem_len}-token stem",
                batch.reused_prefix_tokens()
            );
            for (p, got) in prompts.iter().zip(until_done(&mut batch, &ids)) {
                let alone = generate(&model, p, &params(0), |_| ControlFlow::Continue(())).unwrap();
                assert_eq!(got.ids, alone.ids, "{name} (together: {together})");
            }
        }
    }
}

#[test]
fn the_kinds_of_a_question_keep_one_copy_of_it_and_a_repeated_prompt_runs_one_token() {
    for name in ["llama-tiny", "bloom-tiny", "opt-tiny"] {
        let model = load(name);
        let prompts = kinds(&model);
        let mut batch = Batch::new(&model);
        let mut ids = vec![batch.add(&prompts[0], &params(0)).unwrap()];
        let one = batch.prefix_store_bytes();
        assert!(one > 0, "{name}: the first prompt was not kept");
        for p in &prompts[1..] {
            ids.push(batch.add(p, &params(0)).unwrap());
        }
        // The other two keep only the positions after the shared stem (each
        // a full copy would make this three times `one`). BLOOM and OPT run
        // on the tensor path, which copies a shared prefix in.
        let three = batch.prefix_store_bytes();
        if name == "llama-tiny" {
            assert!(
                2 * three < 3 * one,
                "{name}: {three} bytes kept against {one} for one"
            );
        }
        // The same prompts again, twice over and arriving together (the same
        // questions asked by several users): each runs only its last token,
        // the six in one wave split over the threads like a decode step, and
        // generates what it generated alone.
        let reused = batch.reused_prefix_tokens();
        let params0 = params(0);
        let again: Vec<(&[u32], &GenerateParams)> = prompts
            .iter()
            .chain(&prompts)
            .map(|p| (p.as_slice(), &params0))
            .collect();
        for id in batch.add_many(&again) {
            ids.push(id.unwrap());
        }
        let lens: usize = 2 * prompts.iter().map(|p| p.len() - 1).sum::<usize>();
        assert_eq!(batch.reused_prefix_tokens() - reused, lens, "{name}");
        assert_eq!(
            batch.prefix_store_bytes(),
            three,
            "{name}: a repeated prompt was kept again"
        );
        for (i, got) in until_done(&mut batch, &ids).into_iter().enumerate() {
            let p = &prompts[i % 3];
            let alone = generate(&model, p, &params(0), |_| ControlFlow::Continue(())).unwrap();
            assert_eq!(got.ids, alone.ids, "{name}: sequence {i}");
        }
    }
}
