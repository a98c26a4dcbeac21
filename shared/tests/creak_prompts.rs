//! The prompt builder reproduces the authors' own prompt strings for all 1371
//! CREAK validation rows, byte for byte.
//!
//! Needs the team's data folder: `../shared/data` beside the repository (or
//! `$TEACHERLM_DATA`), file `teacherlm/enhance_creak_validation_prompts.jsonl`.

use std::path::PathBuf;

use serde::Deserialize;
use shared::teacherlm::{Kind, Sample};

#[derive(Deserialize)]
struct Row {
    ex_id: String,
    sentence: String,
    label: String,
    text: String,
    cot_text: String,
    error_text: String,
    fundamental_text: String,
}

fn prompts_file() -> PathBuf {
    let data = std::env::var_os("TEACHERLM_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        PathBuf::from,
    );
    data.join("teacherlm/enhance_creak_validation_prompts.jsonl")
}

#[test]
fn every_creak_validation_prompt_is_reproduced_byte_for_byte() {
    let path = prompts_file();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "this test needs the team's data folder: cannot read {} ({e}); \
             place it at ../shared/data beside the repository or set TEACHERLM_DATA",
            path.display()
        )
    });
    let mut rows = 0;
    for (n, line) in text.lines().enumerate() {
        let row: Row = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1));
        let label = match row.label.as_str() {
            "true" => true,
            "false" => false,
            other => panic!("{}: label `{other}`", row.ex_id),
        };
        let p = Sample::creak(&row.sentence, label).prompts().unwrap();
        assert_eq!(p.text, row.text, "{} text", row.ex_id);
        assert_eq!(p.cot_text, row.cot_text, "{} cot_text", row.ex_id);
        assert_eq!(p.error_text, row.error_text, "{} error_text", row.ex_id);
        assert_eq!(
            p.fundamental_text, row.fundamental_text,
            "{} fundamental_text",
            row.ex_id
        );
        assert_eq!(p.for_kind(Kind::Cot), row.cot_text);
        rows += 1;
    }
    assert_eq!(rows, 1371, "CREAK validation has 1371 rows");
}
