//! `teacherlm eval` end to end: a tiny OPT fixture on a slice of every task, the
//! table on stdout, the JSON report, the run stored in a real SQLite file, and
//! clear errors for bad flags and a missing data folder.
//!
//! Needs the team's data folder (`../shared/data` beside the repository, or
//! `TEACHERLM_DATA`).

use std::path::PathBuf;
use std::process::Command;

use backend::store::Store;
use shared::eval::{EvalReport, EvalTask};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("TEACHERLM_DATA")
        .map_or_else(|| root().join("../shared/data"), PathBuf::from);
    assert!(
        dir.join("mmlu/test").is_dir(),
        "this test reads MMLU, CREAK, ECQA and StrategyQA from the team's data folder, \
         which is missing at {} (set TEACHERLM_DATA to its path)",
        dir.display()
    );
    dir
}

fn eval(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_teacherlm"))
        .env_remove("TEACHERLM_CONFIG")
        .env("RUST_LOG", "warn")
        .arg("eval")
        .args(args)
        .output()
        .expect("teacherlm runs")
}

#[test]
fn eval_prints_a_table_writes_json_and_stores_the_run() {
    let data = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("teacherlm.sqlite");
    let json = tmp.path().join("report.json");
    let model = root().join("engine/tests/fixtures/opt-tiny");
    let out = eval(&[
        "--model",
        model.to_str().unwrap(),
        "--limit",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
        "--database",
        db.to_str().unwrap(),
        "--output",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    for want in [
        "mmlu",
        "STEM",
        "humanities",
        "abstract_algebra",
        "creak",
        "ecqa",
        "strategyqa",
    ] {
        assert!(stdout.contains(want), "`{want}` missing from:\n{stdout}");
    }
    assert!(stderr.contains("120/120 questions"), "progress: {stderr}");

    let report: EvalReport =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report.questions, 57 * 2 + 3 * 2);
    let tasks: Vec<EvalTask> = report.tasks.iter().map(|t| t.task).collect();
    assert_eq!(tasks, EvalTask::ALL);
    assert_eq!(report.tasks[0].subjects.len(), 57);
    assert_eq!(report.tasks[0].categories.len(), 4);

    let stored = Store::open(&db).unwrap().evals().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].report, report);
}

#[test]
fn eval_rejects_bad_flags_and_missing_data_clearly() {
    let out = eval(&["--tasks", "mmlu,gsm8k", "--no-store"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown task `gsm8k`"), "{stderr}");

    let tmp = tempfile::tempdir().unwrap();
    let out = eval(&[
        "--tasks",
        "creak",
        "--data-dir",
        tmp.path().to_str().unwrap(),
        "--no-store",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot read the creak data") && stderr.contains("eval_creak.jsonl"),
        "{stderr}"
    );
}
