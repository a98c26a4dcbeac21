//! `teacherlm eval`: zero-shot accuracy of a model on TeacherLM's tasks (MMLU's 57
//! subjects, CREAK, ECQA, StrategyQA) with the authors' prompts and letter
//! scoring. Prints a table (or JSON), and stores the run in the database for
//! the web app.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use engine::eval::{self, EvalTask, Question};
use shared::eval::{EvalReport, GroupAccuracy, Outcome};

use super::Cli;
use super::generate::{Dtype, load_model};
use super::progress::Progress;
use crate::configuration::Overrides;
use crate::store::Store;

/// Flags of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Catalogue name, file in the model directory, or path (GGUF file or
    /// Hugging Face folder).
    #[arg(long, default_value = shared::catalogue::DEFAULT_MODEL.name)]
    model: String,
    /// Weight precision for GGUF models.
    #[arg(long, value_enum, default_value = "quantized")]
    dtype: Dtype,
    /// Tasks to run, comma-separated: mmlu, creak, ecqa, strategyqa.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mmlu,creak,ecqa,strategyqa"
    )]
    tasks: Vec<String>,
    /// At most this many questions per MMLU subject (per task for the others).
    #[arg(long)]
    limit: Option<usize>,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Do not store the run in the database.
    #[arg(long)]
    no_store: bool,
}

pub fn run(cli: &Cli, args: &EvalArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.limit == Some(0) {
        bail!("--limit must be at least 1");
    }
    let tasks = args
        .tasks
        .iter()
        .map(|t| {
            EvalTask::parse(t.trim()).with_context(|| {
                format!(
                    "unknown task `{t}` in --tasks (known: {})",
                    EvalTask::ALL.map(EvalTask::name).join(", ")
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let settings = cli.settings(Overrides::default())?;
    let mut questions: Vec<Question> = Vec::new();
    for &task in &tasks {
        questions.extend(eval::load(&settings.data_dir, task, args.limit).with_context(|| {
            format!(
                "cannot read the {} data (the data folder is {}; set it with --data-dir or TEACHERLM_DATA)",
                task.name(),
                settings.data_dir.display()
            )
        })?);
    }
    let model = load_model(cli, &args.model, args.dtype)?;
    eprintln!(
        "evaluating {} on {} questions ({})",
        args.model,
        questions.len(),
        tasks
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let start = Instant::now();
    let mut progress = Progress::new("questions", questions.len());
    let predictions = eval::evaluate(&model, &questions, args.batch_size, |done, _| {
        progress.update(done)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let outcomes: Vec<Outcome> = questions
        .iter()
        .zip(&predictions)
        .map(|(q, p)| Outcome {
            task: q.task,
            subject: q.subject.clone(),
            correct: p.predicted == q.gold,
        })
        .collect();
    let report = EvalReport::tally(&args.model, &outcomes, seconds);

    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.output {
        std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !args.no_store {
        let store = Store::open(&settings.database)?;
        let id = store.save_eval(&report)?;
        eprintln!("saved as evaluation #{id} in {}", store.path().display());
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{json}")?;
    } else {
        write!(out, "{}", table(&report))?;
    }
    Ok(())
}

/// The report as a terminal table: each task, then MMLU's categories and
/// subjects.
fn table(report: &EvalReport) -> String {
    let mut s = format!("\n{:<44} {:>9} {:>9}\n", "task", "questions", "accuracy");
    let row = |s: &mut String, name: &str, g: &shared::eval::Accuracy| {
        s.push_str(&format!(
            "{name:<44} {:>9} {:>8.1}%\n",
            g.total,
            100.0 * g.value()
        ));
    };
    for t in &report.tasks {
        row(&mut s, t.task.name(), &t.accuracy);
        if !t.subjects.is_empty() {
            s.push_str(&format!(
                "{:<44} {:>9} {:>8.1}%\n",
                "  mean over subjects",
                t.subjects.len(),
                100.0 * t.subject_mean
            ));
        }
        let groups = |s: &mut String, title: &str, gs: &[GroupAccuracy]| {
            if !gs.is_empty() {
                s.push_str(&format!("  {title}\n"));
                for g in gs {
                    row(s, &format!("    {}", g.name), &g.accuracy);
                }
            }
        };
        groups(&mut s, "categories", &t.categories);
        groups(&mut s, "subjects", &t.subjects);
    }
    s.push_str(&format!(
        "\n{} questions in {:.0} s ({:.2} questions/s)\n",
        report.questions,
        report.seconds,
        report.questions_per_second()
    ));
    s
}
