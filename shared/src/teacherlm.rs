//! TeacherLM's annotation prompts (arXiv 2310.19019) and the record layout the
//! authors released, built from one sample.
//!
//! The strings follow the authors' `enhance/data_prepare.py` (hahaplus/TeacherLM,
//! commit 8b5e85c) to the byte: the gold answer is *in* the prompt, so the teacher
//! explains a known answer.
//!
//! ```text
//! text             = "Q: {question} (A) {opt_a} (B) {opt_b} ... A: The answer is ({gold})."
//! cot_text         = text + " Let's think step by step."
//! error_text       = text + " The common mistakes are:"
//! fundamental_text = text + " The fundamental of this question is:"
//! ```
//!
//! Only the three trigger prompts pass through `remove_duplicated_block`; `text`
//! keeps the question as given, exactly as the authors' `add_prompts` did.
//! `engine`-free and I/O-free: the browser builds the same prompts it shows.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One kind of annotation; the paper ran one specialised teacher per kind
/// (TeacherLM-Fundamental, TeacherLM-CoT, TeacherLM-CommonMistake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The fundamental knowledge the question rests on.
    Fundamental,
    /// A chain of thought from the question to the gold answer.
    Cot,
    /// The mistakes people commonly make on the question.
    Mistakes,
}

impl Kind {
    /// Every kind, in the order the paper lists them.
    pub const ALL: [Kind; 3] = [Kind::Fundamental, Kind::Cot, Kind::Mistakes];

    /// The phrase appended to `text` that asks for this kind; the annotation is
    /// what the teacher writes after it (`enhance.py`).
    pub fn trigger(self) -> &'static str {
        match self {
            Kind::Fundamental => "The fundamental of this question is:",
            Kind::Cot => "Let's think step by step.",
            Kind::Mistakes => "The common mistakes are:",
        }
    }

    /// The stable lower-case name used in the API and in config files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fundamental => "fundamental",
            Kind::Cot => "cot",
            Kind::Mistakes => "mistakes",
        }
    }

    /// A heading for people.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Fundamental => "Fundamentals",
            Kind::Cot => "Chain of thought",
            Kind::Mistakes => "Common mistakes",
        }
    }

    /// Parses [`Kind::name`] (also the authors' `error` for mistakes).
    pub fn parse(s: &str) -> Option<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fundamental" | "fundamentals" => Some(Kind::Fundamental),
            "cot" | "chain_of_thought" => Some(Kind::Cot),
            "mistakes" | "error" | "common_mistakes" => Some(Kind::Mistakes),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A question to annotate, with its gold answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sample {
    /// The question as it follows `Q: `. For CREAK this is
    /// `Determine the correctness of the following sentence. {sentence}`.
    pub question: String,
    /// Answer options, lettered (A), (B), ... in order. Empty for a free-form
    /// answer (GSM8K-style).
    #[serde(default)]
    pub options: Vec<String>,
    /// The gold answer: with options, its letter (`B` or `(B)`) or its exact
    /// text; without options, the answer itself (`72`).
    pub answer: String,
    /// The subject (MMLU), kept with the record; not part of the prompt, which
    /// the authors built without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A sample that cannot become a prompt, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleError {
    /// The request field (`question`, `options[2]`, `answer`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for SampleError {}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SampleError {
    SampleError {
        field: field.into(),
        message: message.into(),
    }
}

/// Most options a sample may have: one per letter.
pub const MAX_OPTIONS: usize = 26;

impl Sample {
    /// A CREAK claim, asked the way the authors asked it, with True/False options.
    pub fn creak(sentence: &str, label_true: bool) -> Sample {
        Sample {
            question: format!("Determine the correctness of the following sentence. {sentence}"),
            options: vec!["True".into(), "False".into()],
            answer: if label_true { "A" } else { "B" }.into(),
            subject: None,
        }
    }

    /// The gold option's letter, or `None` for a free-form answer.
    pub fn gold_letter(&self) -> Result<Option<char>, SampleError> {
        if self.options.is_empty() {
            return Ok(None);
        }
        let a = self.answer.trim();
        let bare = a
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or(a);
        let mut chars = bare.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_uppercase() && ((c as u8 - b'A') as usize) < self.options.len() {
                return Ok(Some(c));
            }
        }
        if let Some(i) = self.options.iter().position(|o| o.trim() == a) {
            return Ok(Some(letter(i)));
        }
        Err(invalid(
            "answer",
            format!(
                "`{a}` is neither an option letter (A-{}) nor the text of an option",
                letter(self.options.len() - 1)
            ),
        ))
    }

    /// Checks the sample, naming the first field at fault.
    pub fn validate(&self) -> Result<(), SampleError> {
        if self.question.trim().is_empty() {
            return Err(invalid("question", "is empty"));
        }
        if self.options.len() > MAX_OPTIONS {
            return Err(invalid(
                "options",
                format!("has {} entries; at most {MAX_OPTIONS}", self.options.len()),
            ));
        }
        if let Some(i) = self.options.iter().position(|o| o.trim().is_empty()) {
            return Err(invalid(format!("options[{i}]"), "is empty"));
        }
        if self.answer.trim().is_empty() {
            return Err(invalid("answer", "is empty"));
        }
        self.gold_letter().map(|_| ())
    }

    /// `text`: the question, its options and the gold answer.
    pub fn text(&self) -> Result<String, SampleError> {
        self.validate()?;
        let mut text = format!("Q: {}", self.question);
        for (i, option) in self.options.iter().enumerate() {
            text.push_str(&format!(" ({}) {option}", letter(i)));
        }
        match self.gold_letter()? {
            Some(gold) => text.push_str(&format!(" A: The answer is ({gold}).")),
            // (reconstructed) The authors released only multiple-choice prompts;
            // a free answer takes the letter's place without parentheses.
            None => text.push_str(&format!(" A: The answer is {}.", self.answer.trim())),
        }
        Ok(text)
    }

    /// All four prompt strings of the authors' layout.
    pub fn prompts(&self) -> Result<Prompts, SampleError> {
        let text = self.text()?;
        let with = |kind: Kind| remove_duplicated_block(&format!("{text} {}", kind.trigger()));
        Ok(Prompts {
            cot_text: with(Kind::Cot),
            error_text: with(Kind::Mistakes),
            fundamental_text: with(Kind::Fundamental),
            text,
        })
    }
}

/// The option letter of index `i` (0 -> `A`).
pub fn letter(i: usize) -> char {
    (b'A' + i as u8) as char
}

/// The four prompt strings of one sample, named as in the authors' data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prompts {
    /// Question, options and gold answer.
    pub text: String,
    /// `text` + ` Let's think step by step.`
    pub cot_text: String,
    /// `text` + ` The common mistakes are:`
    pub error_text: String,
    /// `text` + ` The fundamental of this question is:`
    pub fundamental_text: String,
}

impl Prompts {
    /// The prompt that asks for `kind`.
    pub fn for_kind(&self, kind: Kind) -> &str {
        match kind {
            Kind::Fundamental => &self.fundamental_text,
            Kind::Cot => &self.cot_text,
            Kind::Mistakes => &self.error_text,
        }
    }
}

/// The authors' `remove_duplicated_block`: one left-to-right pass replacing two
/// spaces by one (so three spaces become two, as Python's `str.replace`), then,
/// when the result ends with a space, spaces stripped from both ends.
pub fn remove_duplicated_block(input: &str) -> String {
    let out = input.replace("  ", " ");
    if out.ends_with(' ') {
        out.trim_matches(' ').to_string()
    } else {
        out
    }
}

/// A sample with its annotations, in the layout the authors released
/// (`CREAK_cot.jsonl`): the four prompts, the generated `fundamental`, `cot` and
/// `error`, `all` (the CoT prompt followed by its generation) and `cot_tail`
/// (`all` with duplicated spaces removed: the answer-first training target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotationRecord {
    /// Question, options and gold answer.
    pub text: String,
    /// The chain-of-thought prompt.
    pub cot_text: String,
    /// The common-mistakes prompt.
    pub error_text: String,
    /// The fundamentals prompt.
    pub fundamental_text: String,
    /// What the teacher wrote after the fundamentals trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fundamental: Option<String>,
    /// What the teacher wrote after the chain-of-thought trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cot: Option<String>,
    /// What the teacher wrote after the common-mistakes trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `cot_text` followed by the generated chain of thought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<String>,
    /// `all` through [`remove_duplicated_block`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cot_tail: Option<String>,
}

impl AnnotationRecord {
    /// A record holding the prompts and no annotation yet.
    pub fn new(prompts: Prompts) -> Self {
        Self {
            text: prompts.text,
            cot_text: prompts.cot_text,
            error_text: prompts.error_text,
            fundamental_text: prompts.fundamental_text,
            fundamental: None,
            cot: None,
            error: None,
            all: None,
            cot_tail: None,
        }
    }

    /// Stores the generation for `kind`. `generated` is the text after the
    /// trigger, as the model wrote it (a base model's usually starts with a
    /// space; a chat model's reply does not, so one is put between).
    pub fn set(&mut self, kind: Kind, generated: &str) {
        let annotation = generated.trim().to_string();
        match kind {
            Kind::Fundamental => self.fundamental = Some(annotation),
            Kind::Mistakes => self.error = Some(annotation),
            Kind::Cot => {
                let sep = if generated.starts_with(char::is_whitespace) {
                    ""
                } else {
                    " "
                };
                let all = format!("{}{sep}{}", self.cot_text, generated.trim_end());
                self.cot_tail = Some(remove_duplicated_block(&all));
                self.all = Some(all);
                self.cot = Some(annotation);
            }
        }
    }

    /// The annotation of `kind`, when generated.
    pub fn get(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Fundamental => self.fundamental.as_deref(),
            Kind::Cot => self.cot.as_deref(),
            Kind::Mistakes => self.error.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mc(question: &str, options: &[&str], answer: &str) -> Sample {
        Sample {
            question: question.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
            answer: answer.into(),
            subject: None,
        }
    }

    #[test]
    fn duplicated_blocks_follow_python_replace() {
        assert_eq!(remove_duplicated_block("a  b"), "a b");
        // One pass: three spaces become two, four become two.
        assert_eq!(remove_duplicated_block("a   b"), "a  b");
        assert_eq!(remove_duplicated_block("a    b"), "a  b");
        // Trailing space: both ends stripped; otherwise a leading one stays.
        assert_eq!(remove_duplicated_block(" a "), "a");
        assert_eq!(remove_duplicated_block(" a"), " a");
        assert_eq!(remove_duplicated_block(""), "");
    }

    #[test]
    fn multiple_choice_and_free_form_prompts() {
        let p = mc("What is 2+2?", &["3", "4", "5", "6"], "(B)")
            .prompts()
            .unwrap();
        assert_eq!(
            p.text,
            "Q: What is 2+2? (A) 3 (B) 4 (C) 5 (D) 6 A: The answer is (B)."
        );
        assert_eq!(p.cot_text, format!("{} Let's think step by step.", p.text));
        assert_eq!(
            mc("What is 2+2?", &["3", "4"], "4").gold_letter().unwrap(),
            Some('B')
        );
        let free = mc("Tom has 3 apples and buys 4. How many?", &[], "7");
        assert_eq!(
            free.prompts().unwrap().error_text,
            "Q: Tom has 3 apples and buys 4. How many? A: The answer is 7. The common mistakes are:"
        );
        // Duplicated spaces reach `text` untouched but not the trigger prompts.
        let p = mc("Is  it?", &["yes", "no"], "a").prompts().unwrap();
        assert!(p.text.contains("Is  it?"));
        assert!(p.fundamental_text.starts_with("Q: Is it? (A) yes"));
    }

    #[test]
    fn bad_samples_name_their_field() {
        let e = mc("q", &["x", " "], "A").prompts().unwrap_err();
        assert_eq!(e.field, "options[1]");
        let e = mc("q", &["x", "y"], "C").prompts().unwrap_err();
        assert_eq!(e.field, "answer");
        assert_eq!(mc(" ", &[], "1").prompts().unwrap_err().field, "question");
        assert_eq!(mc("q", &[], "").prompts().unwrap_err().field, "answer");
    }

    #[test]
    fn record_keeps_the_released_layout() {
        let mut r =
            AnnotationRecord::new(Sample::creak("Soup is solid.", false).prompts().unwrap());
        r.set(Kind::Cot, " Soup is  mostly liquid.\n");
        assert_eq!(r.cot.as_deref(), Some("Soup is  mostly liquid."));
        assert_eq!(
            r.all.as_deref(),
            Some(
                "Q: Determine the correctness of the following sentence. Soup is solid. (A) True (B) False A: The answer is (B). Let's think step by step. Soup is  mostly liquid."
            )
        );
        assert!(
            r.cot_tail
                .as_deref()
                .unwrap()
                .ends_with("step. Soup is mostly liquid.")
        );
        r.set(Kind::Mistakes, "Thinking soup is solid.");
        assert_eq!(r.get(Kind::Mistakes), Some("Thinking soup is solid."));
        assert_eq!(r.get(Kind::Fundamental), None);
        assert_eq!(Kind::parse("error"), Some(Kind::Mistakes));
    }
}
