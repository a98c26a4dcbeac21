//! The zero-shot harness against an independent scoring with transformers
//! (`fixtures/eval-reference.json`, made by `fixtures/make_fixtures.py`): the same
//! prompts, the same per-option log-likelihoods and the same predictions on a
//! 3-subject slice of MMLU for tiny Llama, BLOOM and OPT models. Also reads every
//! task's full data.
//!
//! Needs the team's data folder (`../shared/data` beside the repository, or
//! `TEACHERLM_DATA`).

mod common;

use std::path::PathBuf;

use common::fixture;
use engine::eval::{self, EvalTask};
use engine::{LoadOptions, Model};

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("TEACHERLM_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        PathBuf::from,
    );
    assert!(
        dir.join("mmlu/test").is_dir(),
        "these tests read MMLU, CREAK, ECQA and StrategyQA from the team's data folder, \
         which is missing at {} (set TEACHERLM_DATA to its path)",
        dir.display()
    );
    dir
}

fn reference() -> serde_json::Value {
    let path = fixture("eval-reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn harness_matches_an_independent_transformers_scoring() {
    let data = data_dir();
    let r = reference();
    let limit = r["limit"].as_u64().unwrap() as usize;
    let mut questions = Vec::new();
    for s in r["subjects"].as_array().unwrap() {
        questions.extend(eval::load_mmlu_subject(&data, s.as_str().unwrap(), Some(limit)).unwrap());
    }
    let want = r["questions"].as_array().unwrap();
    assert_eq!(questions.len(), want.len());
    for (q, w) in questions.iter().zip(want) {
        assert_eq!(q.prompt, w["prompt"].as_str().unwrap(), "prompt");
        assert_eq!(q.gold as u64, w["gold"].as_u64().unwrap(), "gold");
    }
    for (name, expected) in r["models"].as_object().unwrap() {
        let model = Model::load(fixture(name), LoadOptions::default()).unwrap();
        let mut progress = Vec::new();
        let got = eval::evaluate(&model, &questions, 5, |done, total| {
            progress.push((done, total))
        })
        .unwrap();
        assert_eq!(
            progress.last(),
            Some(&(questions.len(), questions.len())),
            "{name}: progress"
        );
        let predicted: Vec<u64> = got.iter().map(|p| p.predicted as u64).collect();
        let want: Vec<u64> = expected["predicted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(predicted, want, "{name}: predictions");
        for (i, (p, w)) in got
            .iter()
            .zip(expected["logprobs"].as_array().unwrap())
            .enumerate()
        {
            for (a, b) in p.logprobs.iter().zip(w.as_array().unwrap()) {
                let b = b.as_f64().unwrap();
                assert!(
                    (a - b).abs() < 1e-4,
                    "{name} question {i}: log-likelihood {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn every_task_reads_its_full_data() {
    let data = data_dir();
    let counts: Vec<(EvalTask, usize)> = EvalTask::ALL
        .into_iter()
        .map(|t| (t, eval::load(&data, t, None).unwrap().len()))
        .collect();
    assert_eq!(
        counts,
        [
            (EvalTask::Mmlu, 14_042),
            (EvalTask::Creak, 1_371),
            (EvalTask::Ecqa, 2_194),
            (EvalTask::StrategyQa, 228),
        ]
    );
    // Quoted fields keep their commas and line breaks until the prompt joins them.
    let algebra = eval::load_mmlu_subject(&data, "abstract_algebra", Some(3)).unwrap();
    assert!(
        algebra[2].prompt.contains(r#"(C) 0,1 (D) 0,4"#),
        "{}",
        algebra[2].prompt
    );
    let ecqa = eval::load(&data, EvalTask::Ecqa, Some(1)).unwrap();
    assert!(
        ecqa[0].prompt.starts_with("Q: Q: What kind of people"),
        "{}",
        ecqa[0].prompt
    );
    assert_eq!((ecqa[0].options.len(), ecqa[0].gold), (5, 2));
}

#[test]
fn bad_data_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("teacherlm")).unwrap();
    std::fs::write(
        dir.path().join("teacherlm/eval_creak.jsonl"),
        "{\"question\": \"q (A) True (B) False\", \"answer\": \"(A)\"}\n{\"question\": \"q\", \"answer\": \"(C)\"}\n",
    )
    .unwrap();
    let err = eval::load(dir.path(), EvalTask::Creak, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("eval_creak.jsonl") && err.contains("line 2"),
        "{err}"
    );
    let err = eval::load(dir.path(), EvalTask::Mmlu, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("abstract_algebra_test.csv"), "{err}");
}
