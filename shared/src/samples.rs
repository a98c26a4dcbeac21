//! `GET /api/samples`: real examples from the benchmark data, ready to annotate.

use serde::{Deserialize, Serialize};

use crate::teacherlm::Sample;

/// The datasets the sample picker offers.
pub const DATASETS: &[(&str, &str)] = &[
    ("creak", "CREAK: is the claim true?"),
    ("ecqa", "ECQA: commonsense, five options"),
    ("mmlu", "MMLU: 57 subjects, four options"),
    ("gsm8k", "GSM8K: grade-school math, free answer"),
];

/// One example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SampleItem {
    /// Its id in the source data (`dev_12`, a CQA id, `astronomy/4`, ...).
    pub id: String,
    /// The sample.
    pub sample: Sample,
}

/// Body of `GET /api/samples`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SampleList {
    /// The dataset.
    pub dataset: String,
    /// Examples in the whole dataset (or MMLU subject).
    pub total: usize,
    /// The page asked for.
    pub samples: Vec<SampleItem>,
}
