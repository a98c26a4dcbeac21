//! Real examples from the team's benchmark data, as samples to annotate: CREAK
//! claims, ECQA questions, MMLU questions by subject, GSM8K problems.
//!
//! The files are small (at most a few MB) and read per request, so edits to the
//! data folder show up without a restart.

use std::path::{Path, PathBuf};

use shared::samples::{SampleItem, SampleList};
use shared::teacherlm::Sample;

/// The data could not be read, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum SamplesError {
    /// The dataset name is not offered.
    #[error("unknown dataset `{0}`; offered: creak, ecqa, mmlu, gsm8k")]
    UnknownDataset(String),
    /// The MMLU subject does not exist.
    #[error("unknown MMLU subject `{0}`")]
    UnknownSubject(String),
    /// A file is missing or unreadable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong (the line, when there is one).
        message: String,
    },
}

fn file_error(path: &Path, message: impl ToString) -> SamplesError {
    SamplesError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<String, SamplesError> {
    std::fs::read_to_string(path).map_err(|e| {
        file_error(
            path,
            format!("{e} (the team's data folder is set by --data-dir or TEACHERLM_DATA)"),
        )
    })
}

/// The objects of a JSON Lines file with their 0-based line numbers (blank
/// lines skipped); a bad line is named.
fn json_lines(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, SamplesError> {
    read(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map(|v| (n, v))
                .map_err(|e| file_error(path, format!("line {}: {e}", n + 1)))
        })
        .collect()
}

/// A page of `dataset` (`subject` selects the MMLU subject, default the first).
pub fn list(
    data_dir: &Path,
    dataset: &str,
    subject: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<SampleList, SamplesError> {
    let all = match dataset {
        "creak" => creak(data_dir)?,
        "ecqa" => ecqa(data_dir)?,
        "mmlu" => mmlu(data_dir, subject.unwrap_or(shared::eval::SUBJECTS[0].0))?,
        "gsm8k" => gsm8k(data_dir)?,
        other => return Err(SamplesError::UnknownDataset(other.to_string())),
    };
    Ok(SampleList {
        dataset: dataset.to_string(),
        total: all.len(),
        samples: all.into_iter().skip(offset).take(limit).collect(),
    })
}

/// CREAK dev claims (`creak/dev.json`, one JSON object per line), asked as the
/// authors asked them.
fn creak(data_dir: &Path) -> Result<Vec<SampleItem>, SamplesError> {
    let path = data_dir.join("creak/dev.json");
    let mut out = Vec::new();
    for (n, v) in json_lines(&path)? {
        let (Some(sentence), Some(label)) = (v["sentence"].as_str(), v["label"].as_str()) else {
            return Err(file_error(
                &path,
                format!("line {}: needs `sentence` and `label`", n + 1),
            ));
        };
        out.push(SampleItem {
            id: v["ex_id"].as_str().unwrap_or_default().to_string(),
            sample: Sample::creak(sentence, label == "true"),
        });
    }
    Ok(out)
}

/// ECQA test questions (`ecqa/cqa_data_test.csv`): five options and the gold
/// option's text.
fn ecqa(data_dir: &Path) -> Result<Vec<SampleItem>, SamplesError> {
    let path = data_dir.join("ecqa/cqa_data_test.csv");
    let mut reader = csv::Reader::from_path(&path).map_err(|e| file_error(&path, e))?;
    let headers = reader.headers().map_err(|e| file_error(&path, e))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| file_error(&path, format!("no `{name}` column")))
    };
    let (id, text, answer) = (col("q_no")?, col("q_text")?, col("q_ans")?);
    let options: Vec<usize> = (1..=5)
        .map(|i| col(&format!("q_op{i}")))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for record in reader.records() {
        let r = record.map_err(|e| file_error(&path, e))?;
        out.push(SampleItem {
            id: r[id].to_string(),
            sample: Sample {
                question: r[text].to_string(),
                options: options.iter().map(|&i| r[i].to_string()).collect(),
                answer: r[answer].to_string(),
                subject: None,
            },
        });
    }
    Ok(out)
}

/// One MMLU subject's test questions (`mmlu/test/{subject}_test.csv`).
fn mmlu(data_dir: &Path, subject: &str) -> Result<Vec<SampleItem>, SamplesError> {
    if !shared::eval::SUBJECTS.iter().any(|(s, _)| *s == subject) {
        return Err(SamplesError::UnknownSubject(subject.to_string()));
    }
    let path = data_dir.join(format!("mmlu/test/{subject}_test.csv"));
    let mut reader = csv::Reader::from_path(&path).map_err(|e| file_error(&path, e))?;
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let r = record.map_err(|e| file_error(&path, e))?;
        if r.len() != 6 {
            return Err(file_error(
                &path,
                format!("row {}: {} fields, expected 6", n + 2, r.len()),
            ));
        }
        let gold: usize = r[5]
            .trim()
            .parse()
            .ok()
            .filter(|&g: &usize| g < 4)
            .ok_or_else(|| file_error(&path, format!("row {}: answer `{}`", n + 2, &r[5])))?;
        out.push(SampleItem {
            id: format!("{subject}/{n}"),
            sample: Sample {
                question: r[0].to_string(),
                options: (1..5).map(|i| r[i].to_string()).collect(),
                answer: shared::teacherlm::letter(gold).to_string(),
                subject: Some(subject.replace('_', " ")),
            },
        });
    }
    Ok(out)
}

/// GSM8K test problems (`gsm8k/test.jsonl`): the free answer after `####`.
fn gsm8k(data_dir: &Path) -> Result<Vec<SampleItem>, SamplesError> {
    let path = data_dir.join("gsm8k/test.jsonl");
    let mut out = Vec::new();
    for (n, v) in json_lines(&path)? {
        let (Some(question), Some(solution)) = (v["question"].as_str(), v["answer"].as_str())
        else {
            return Err(file_error(
                &path,
                format!("line {}: needs `question` and `answer`", n + 1),
            ));
        };
        let Some((_, answer)) = solution.rsplit_once("####") else {
            return Err(file_error(
                &path,
                format!("line {}: no `####` answer", n + 1),
            ));
        };
        out.push(SampleItem {
            id: format!("test/{n}"),
            sample: Sample {
                question: question.to_string(),
                options: Vec::new(),
                answer: answer.trim().replace(',', ""),
                subject: None,
            },
        });
    }
    Ok(out)
}
