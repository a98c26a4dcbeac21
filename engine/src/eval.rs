//! The evaluation tasks of TeacherLM and their prompts, exactly as the authors'
//! lm-evaluation-harness fork builds them (`evaluate/lm_eval/tasks/{mmlu, creak,
//! ecqa, strategy_qa}.py` in hahaplus/TeacherLM): a zero-shot prompt ending in
//! `A: The answer is (`, then the log-likelihood of each option letter.
//!
//! Data comes from the team's `data` folder: `mmlu/test/<subject>_test.csv` (a
//! header row, numeric answers 0-3, quoted fields that hold commas and line
//! breaks) and `teacherlm/eval_{creak, ecqa, strategy_qa}.jsonl` (the authors'
//! evaluation inputs: `question` with its options, `answer` as "(A)").

use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use shared::eval::EvalTask;
use shared::eval::SUBJECTS;

use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::score::{ChoiceRequest, score_choices};

/// One multiple-choice question, ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The task it belongs to.
    pub task: EvalTask,
    /// The MMLU subject, or the task name.
    pub subject: String,
    /// The prompt, ending in `A: The answer is (`.
    pub prompt: String,
    /// The continuations compared: option letters.
    pub options: Vec<String>,
    /// Index of the right option.
    pub gold: usize,
}

/// How the model answered one question.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Log-likelihood of each option.
    pub logprobs: Vec<f64>,
    /// The option with the highest log-likelihood (the first on a tie, as
    /// `np.argmax`).
    pub predicted: usize,
}

/// Scores every question with `model`, `batch_size` prompts per forward pass,
/// reporting `(done, total)` questions as it goes. Prompts and options are
/// encoded separately and without special tokens, as the authors' harness does.
pub fn evaluate(
    model: &Model,
    questions: &[Question],
    batch_size: usize,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<Vec<Prediction>> {
    let tok = model.tokenizer();
    let items = questions
        .iter()
        .map(|q| {
            Ok(ChoiceRequest {
                context: tok.encode(&q.prompt, false)?,
                options: q
                    .options
                    .iter()
                    .map(|o| tok.encode(o, false))
                    .collect::<Result<_>>()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let total = items.len();
    let mut done = 0;
    let scores = score_choices(model.lm(), &items, batch_size, |n| {
        done += n;
        on_progress(done, total);
    })?;
    Ok(scores
        .into_iter()
        .map(|logprobs| {
            let predicted = logprobs
                .iter()
                .enumerate()
                .fold(0, |best, (i, &v)| if v > logprobs[best] { i } else { best });
            Prediction {
                logprobs,
                predicted,
            }
        })
        .collect())
}

/// Option letters, as the authors' tasks list them.
const LETTERS: [&str; 8] = ["A", "B", "C", "D", "E", "F", "G", "H"];

/// The questions of `task` under the data folder `data_dir`, at most `limit` per
/// MMLU subject (or per task for the others).
pub fn load(data_dir: &Path, task: EvalTask, limit: Option<usize>) -> Result<Vec<Question>> {
    match task {
        EvalTask::Mmlu => {
            let mut out = Vec::new();
            for (subject, _) in SUBJECTS {
                out.extend(load_mmlu_subject(data_dir, subject, limit)?);
            }
            Ok(out)
        }
        EvalTask::Creak => load_jsonl(data_dir, task, "eval_creak.jsonl", 2, limit),
        EvalTask::Ecqa => load_jsonl(data_dir, task, "eval_ecqa.jsonl", 5, limit),
        EvalTask::StrategyQa => load_jsonl(data_dir, task, "eval_strategy_qa.jsonl", 2, limit),
    }
}

/// The first `limit` questions of one MMLU subject.
pub fn load_mmlu_subject(
    data_dir: &Path,
    subject: &str,
    limit: Option<usize>,
) -> Result<Vec<Question>> {
    let path = data_dir
        .join("mmlu/test")
        .join(format!("{subject}_test.csv"));
    let file = std::fs::File::open(&path).map_err(|source| EngineError::Io {
        path: path.clone(),
        source,
    })?;
    let mut reader = csv::Reader::from_reader(file);
    let mut out = Vec::new();
    for record in reader.records() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let line = out.len() + 2;
        let record = record.map_err(|e| bad_row(&path, line, e))?;
        if record.len() != 6 {
            return Err(bad_row(
                &path,
                line,
                format!("{} fields, expected 6", record.len()),
            ));
        }
        let gold: usize = record[5]
            .trim()
            .parse()
            .ok()
            .filter(|&g: &usize| g < 4)
            .ok_or_else(|| bad_row(&path, line, format!("answer `{}` is not 0-3", &record[5])))?;
        let options: Vec<&str> = (1..5).map(|i| &record[i]).collect();
        out.push(Question {
            task: EvalTask::Mmlu,
            subject: subject.to_string(),
            prompt: mmlu_prompt(subject, &record[0], &options),
            options: LETTERS[..4].iter().map(|l| l.to_string()).collect(),
            gold,
        });
    }
    Ok(out)
}

/// `Mmlu.doc_to_text`: a question not ending in `. , ? ! "` gains a full stop, then
/// line breaks in the question and options become spaces.
pub fn mmlu_prompt(subject: &str, question: &str, options: &[&str]) -> String {
    let mut q = question.to_string();
    if !q.ends_with(['.', ',', '?', '!', '"']) {
        q.push('.');
    }
    let q = q.replace('\n', " ");
    let options: Vec<String> = options
        .iter()
        .zip(LETTERS)
        .map(|(o, l)| format!("({l}) {}", o.replace('\n', " ")))
        .collect();
    format!(
        "The following are multiple choice questions (with answers) about {}. Q: {q} {} A: The answer is (",
        subject.replace('_', " "),
        options.join(" ")
    )
}

/// A row of the authors' CREAK / ECQA / StrategyQA evaluation files.
#[derive(Debug, Deserialize)]
struct JsonRow {
    question: String,
    answer: String,
}

fn load_jsonl(
    data_dir: &Path,
    task: EvalTask,
    file: &str,
    options: usize,
    limit: Option<usize>,
) -> Result<Vec<Question>> {
    let path = data_dir.join("teacherlm").join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| EngineError::Io {
        path: path.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let row: JsonRow = serde_json::from_str(line).map_err(|e| bad_row(&path, i + 1, e))?;
        let gold = LETTERS[..options]
            .iter()
            .position(|l| row.answer == format!("({l})"))
            .ok_or_else(|| {
                bad_row(
                    &path,
                    i + 1,
                    format!("answer `{}` is not one of the options", row.answer),
                )
            })?;
        out.push(Question {
            task,
            subject: task.name().to_string(),
            // `doc_to_text` of creak.py, ecqa.py and strategy_qa.py. ECQA's
            // `question` already starts with "Q: ", so its prompts read "Q: Q: ...",
            // as the authors evaluated them.
            prompt: format!("Q: {} A: The answer is (", row.question),
            options: LETTERS[..options].iter().map(|l| l.to_string()).collect(),
            gold,
        });
    }
    Ok(out)
}

fn bad_row(path: &PathBuf, line: usize, e: impl std::fmt::Display) -> EngineError {
    EngineError::bad_file(path, format!("line {line}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmlu_prompt_follows_the_authors_format() {
        let p = mmlu_prompt(
            "high_school_physics",
            "Which is\nfastest",
            &["a\nb", "c", "d", "e"],
        );
        assert_eq!(
            p,
            "The following are multiple choice questions (with answers) about high school physics. \
             Q: Which is fastest. (A) a b (B) c (C) d (D) e A: The answer is ("
        );
        // A question ending in punctuation keeps it as it is.
        assert!(mmlu_prompt("x", "Why?", &["1", "2", "3", "4"]).contains("Q: Why? (A) 1"));
    }
}
