//! `POST /api/annotate` and `GET /api/samples` end to end against a spawned
//! server: the paper's prompts and record layout, streaming per kind,
//! reproducibility with a seed, validation naming the field, 413, per-kind
//! teachers, the sample picker over the real data, and `teacherlm annotate`.

mod common;

use common::{Server, bin, data_dir, fixture, post, post_raw, post_sse};
use serde_json::{Value, json};
use shared::annotate::{AnnotateEvent, AnnotateResponse};
use shared::teacherlm::{Kind, Sample};

fn creak_request(seed: u64) -> Value {
    json!({
        "question": "Determine the correctness of the following sentence. Eating soup means eating only solids.",
        "options": ["True", "False"],
        "answer": "B",
        "max_tokens": 24,
        "seed": seed,
    })
}

#[test]
fn annotations_come_with_the_papers_record_and_repeat_with_a_seed() {
    let server = Server::tiny(&[]);
    let r = post(&server.url("/api/annotate"), &creak_request(5));
    assert_eq!(r.status, 200, "{}", r.body);
    let resp: AnnotateResponse = serde_json::from_str(&r.body).unwrap();
    let kinds: Vec<Kind> = resp.annotations.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, Kind::ALL.to_vec());
    let want = Sample::creak("Eating soup means eating only solids.", false)
        .prompts()
        .unwrap();
    assert_eq!(resp.record.text, want.text);
    assert_eq!(resp.record.cot_text, want.cot_text);
    assert_eq!(resp.record.error_text, want.error_text);
    assert_eq!(resp.record.fundamental_text, want.fundamental_text);
    for a in &resp.annotations {
        assert!(
            a.completion_tokens > 0 && a.completion_tokens <= 24,
            "{a:?}"
        );
        assert!(a.prompt_tokens > 20, "{a:?}");
        assert_eq!(resp.record.get(a.kind), Some(a.text.as_str()));
        assert_eq!(a.model, "llama-tiny");
    }
    let all = resp.record.all.as_deref().unwrap();
    assert!(all.starts_with(&want.cot_text), "{all}");
    assert!(resp.record.cot_tail.is_some());
    // The same seed gives the same annotations; another seed, others.
    let again: AnnotateResponse =
        serde_json::from_str(&post(&server.url("/api/annotate"), &creak_request(5)).body).unwrap();
    assert_eq!(again, resp);
    let other: AnnotateResponse =
        serde_json::from_str(&post(&server.url("/api/annotate"), &creak_request(6)).body).unwrap();
    assert_ne!(other.annotations, resp.annotations);
    // The three kinds share the question: all but the first prefill reuse its
    // cache, and the metrics count every prompt token either way.
    let prompts: u64 = [&resp, &again, &other]
        .iter()
        .flat_map(|r| &r.annotations)
        .map(|a| a.prompt_tokens as u64)
        .sum();
    let metrics = common::get(&server.url("/metrics")).body;
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{model=\"llama-tiny\"}} ")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert_eq!(counter("teacherlm_prompt_tokens_total"), prompts);
    let reused = counter("teacherlm_prompt_tokens_reused_total");
    assert!(
        reused * 2 > prompts,
        "{reused} of {prompts} prompt tokens reused"
    );
}

#[test]
fn streamed_annotations_interleave_kinds_and_end_with_the_record() {
    let server = Server::tiny(&[]);
    let (status, data) = post_sse(&server.url("/api/annotate"), &creak_request(5));
    assert_eq!(status, 200);
    let events: Vec<AnnotateEvent> = data
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect();
    let Some(AnnotateEvent::Record { response }) = events.last() else {
        panic!("no record at the end: {events:?}");
    };
    for kind in Kind::ALL {
        let streamed: String = events
            .iter()
            .filter_map(|e| match e {
                AnnotateEvent::Token { kind: k, text } if *k == kind => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(!streamed.is_empty(), "no tokens for {kind}");
        assert_eq!(streamed.trim(), response.record.get(kind).unwrap());
        assert!(
            events.iter().any(
                |e| matches!(e, AnnotateEvent::Done { annotation } if annotation.kind == kind)
            )
        );
    }
    // The same request as JSON gives the same result as the stream.
    let whole = post(&server.url("/api/annotate"), &creak_request(5));
    assert_eq!(
        &serde_json::from_str::<AnnotateResponse>(&whole.body).unwrap(),
        response
    );
}

/// An annotation's kinds (and a completion's choices) queue as one group:
/// taken whole even by a queue of one, admitted as the batch has room, and
/// with the texts they get when they all run in one step.
#[test]
fn a_requests_kinds_queue_together_whatever_the_queue_and_batch_sizes() {
    let roomy = Server::tiny(&[]);
    let tight = Server::tiny(&["--queue-size", "1", "--max-batch", "2"]);
    let annotate = |server: &Server| {
        let r = post(&server.url("/api/annotate"), &creak_request(11));
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str::<AnnotateResponse>(&r.body).unwrap()
    };
    // Three kinds: more than the queue holds, and one more than the batch.
    let (want, got) = (annotate(&roomy), annotate(&tight));
    assert_eq!(got.annotations.len(), 3);
    assert_eq!(got, want);
    let completion = json!({"model": "llama-tiny", "prompt": "Once upon a time",
                            "max_tokens": 8, "n": 3, "seed": 4});
    let r = post(&tight.url("/v1/completions"), &completion);
    assert_eq!(r.status, 200, "{}", r.body);
    let texts = |r: &common::Reply| -> Vec<String> {
        r.json()["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect()
    };
    let roomy_r = post(&roomy.url("/v1/completions"), &completion);
    assert_eq!(texts(&r).len(), 3);
    assert_eq!(texts(&r), texts(&roomy_r));
    assert_eq!(r.json()["usage"], roomy_r.json()["usage"]);
}

#[test]
fn bad_samples_are_refused_naming_the_field() {
    let server = Server::tiny(&[]);
    let url = server.url("/api/annotate");
    let cases = [
        (json!({"options": ["a"], "answer": "A"}), "question"),
        (json!({"question": " ", "answer": "4"}), "question"),
        (
            json!({"question": "q", "options": ["a", ""], "answer": "A"}),
            "options[1]",
        ),
        (
            json!({"question": "q", "options": ["a", "b"], "answer": "E"}),
            "answer",
        ),
        (
            json!({"question": "q", "options": ["a", 3], "answer": "A"}),
            "options[1]",
        ),
        (
            json!({"question": "q", "answer": "1", "kinds": []}),
            "kinds",
        ),
        (
            json!({"question": "q", "answer": "1", "kinds": ["cot", "cot"]}),
            "kinds[1]",
        ),
        (
            json!({"question": "q", "answer": "1", "kinds": ["wisdom"]}),
            "kinds[0]",
        ),
        (
            json!({"question": "q", "answer": "1", "temperature": -1}),
            "temperature",
        ),
        (
            json!({"question": "q", "answer": "1", "max_tokens": 0}),
            "max_tokens",
        ),
        // More tokens than the 256-token context holds.
        (
            json!({"question": "q ".repeat(400), "answer": "1"}),
            "prompt",
        ),
    ];
    for (body, field) in cases {
        let r = post(&url, &body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        let e: shared::api::ApiError = serde_json::from_str(&r.body).unwrap();
        assert_eq!(e.field.as_deref(), Some(field), "{body}: {}", r.body);
        assert_eq!(e.error_type, "validation");
    }
    let r = post_raw(&url, "{not json");
    assert_eq!((r.status, r.json()["field"].as_str()), (422, Some("body")));
    let huge = json!({"question": "x".repeat(2 << 20), "answer": "1"});
    let r = post(&url, &huge);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error_type"], "too_large");
    // The server is fine afterwards.
    assert_eq!(post(&url, &creak_request(1)).status, 200);
}

#[test]
fn each_kind_goes_to_its_own_teacher() {
    let llama = fixture("llama-tiny");
    let qwen = fixture("qwen2-tiny");
    let server = Server::spawn(&[
        "--model",
        llama.to_str().unwrap(),
        "--model",
        qwen.to_str().unwrap(),
        "--teacher",
        "cot=qwen2-tiny",
    ]);
    let r = post(&server.url("/api/annotate"), &creak_request(2));
    assert_eq!(r.status, 200, "{}", r.body);
    let resp: AnnotateResponse = serde_json::from_str(&r.body).unwrap();
    let by_kind = |k| resp.annotations.iter().find(|a| a.kind == k).unwrap();
    assert_eq!(by_kind(Kind::Cot).model, "qwen2-tiny");
    assert_eq!(by_kind(Kind::Fundamental).model, "llama-tiny");
    assert_eq!(by_kind(Kind::Mistakes).model, "llama-tiny");
    // A teacher that is not a loaded model stops the server at start.
    let out = bin()
        .args(["serve", "--port", "0", "--model"])
        .arg(&llama)
        .args(["--teacher", "cot=ghost"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ghost"), "{stderr}");
}

#[test]
fn the_sample_picker_serves_real_examples() {
    let data = data_dir();
    assert!(
        data.join("creak/dev.json").exists(),
        "this test needs the team's data folder at {} (or TEACHERLM_DATA)",
        data.display()
    );
    let server = Server::tiny(&["--data-dir", data.to_str().unwrap()]);
    let page = |q: &str| common::get(&server.url(&format!("/api/samples?{q}")));
    let r = page("dataset=creak&limit=2");
    assert_eq!(r.status, 200, "{}", r.body);
    let list: shared::samples::SampleList = serde_json::from_str(&r.body).unwrap();
    assert_eq!(list.total, 1371);
    assert_eq!(list.samples[0].id, "dev_0");
    assert_eq!(
        list.samples[0].sample,
        Sample::creak("Eating soup means eating only solids.", false)
    );
    let ecqa: shared::samples::SampleList =
        serde_json::from_str(&page("dataset=ecqa&limit=1").body).unwrap();
    let s = &ecqa.samples[0].sample;
    assert_eq!(s.options.len(), 5);
    assert_eq!(s.gold_letter().unwrap(), Some('C'), "{s:?}");
    let mmlu: shared::samples::SampleList =
        serde_json::from_str(&page("dataset=mmlu&subject=astronomy&offset=3&limit=5").body)
            .unwrap();
    assert_eq!(mmlu.total, 152);
    assert_eq!(mmlu.samples.len(), 5);
    assert_eq!(mmlu.samples[0].id, "astronomy/3");
    assert_eq!(mmlu.samples[0].sample.subject.as_deref(), Some("astronomy"));
    let gsm: shared::samples::SampleList =
        serde_json::from_str(&page("dataset=gsm8k&limit=1").body).unwrap();
    assert_eq!(gsm.samples[0].sample.answer, "18");
    assert!(gsm.samples[0].sample.options.is_empty());
    // Every picked sample is a valid annotation request.
    for s in list
        .samples
        .iter()
        .chain(&ecqa.samples)
        .chain(&mmlu.samples)
        .chain(&gsm.samples)
    {
        s.sample.prompts().unwrap();
    }
    for (q, field) in [
        ("dataset=imdb", "dataset"),
        ("dataset=mmlu&subject=alchemy", "subject"),
        ("dataset=creak&limit=0", "limit"),
    ] {
        let r = page(q);
        assert_eq!(r.status, 422, "{q}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{q}");
    }
}

#[test]
fn the_annotate_command_prints_streams_and_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("sample.json");
    std::fs::write(&one, creak_request(3).to_string()).unwrap();
    let model = fixture("llama-tiny");
    let run = |args: &[&str], input: &std::path::Path| {
        bin()
            .arg("annotate")
            .arg(input)
            .arg("--model")
            .arg(&model)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--json"], &one);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp: AnnotateResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resp.annotations.len(), 3);
    // The command gives what the server gives for the same seed.
    let server = Server::tiny(&[]);
    let served: AnnotateResponse =
        serde_json::from_str(&post(&server.url("/api/annotate"), &creak_request(3)).body).unwrap();
    assert_eq!(served.record, resp.record);

    let out = run(&["--stream", "--kinds", "cot"], &one);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("== Chain of thought =="), "{text}");
    assert!(!text.contains("== Fundamentals =="), "{text}");

    // JSON Lines: one response per line; a bad line is named.
    let many = dir.path().join("many.jsonl");
    let lines = format!("{}\n{}\n", creak_request(1), creak_request(2));
    std::fs::write(&many, &lines).unwrap();
    let out = run(&["--json", "--kinds", "fundamental"], &many);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    std::fs::write(
        &many,
        format!("{}\n{{\"question\": 1}}\n", creak_request(1)),
    )
    .unwrap();
    let out = run(&["--json"], &many);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("many.jsonl:2") && stderr.contains("question"),
        "{stderr}"
    );
}
