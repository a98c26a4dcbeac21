//! Zero-shot evaluation results as TeacherLM reports them: accuracy per task, and
//! for MMLU per subject and per category. The server stores them and the web app
//! shows them; `engine` produces the predictions they are tallied from.
//!
//! MMLU's 57 subjects and four categories are those of Hendrycks et al.'s
//! `categories.py` (hendrycks/test): each subject has a subcategory, and
//! subcategories group into STEM, humanities, social sciences and other
//! (business, health, misc.).

use serde::{Deserialize, Serialize};

/// The evaluation tasks of TeacherLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalTask {
    /// MMLU, 57 subjects (14,042 test questions).
    Mmlu,
    /// CREAK claims, true or false (1,371).
    Creak,
    /// ECQA, five options (2,194).
    Ecqa,
    /// StrategyQA with its facts, true or false (228).
    #[serde(rename = "strategyqa")]
    StrategyQa,
}

impl EvalTask {
    /// Every task, in report order.
    pub const ALL: [EvalTask; 4] = [
        EvalTask::Mmlu,
        EvalTask::Creak,
        EvalTask::Ecqa,
        EvalTask::StrategyQa,
    ];

    /// The name on the command line, in the API and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mmlu => "mmlu",
            Self::Creak => "creak",
            Self::Ecqa => "ecqa",
            Self::StrategyQa => "strategyqa",
        }
    }

    /// The task called `name` (as [`EvalTask::name`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A reporting category of MMLU subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Physics, chemistry, biology, computer science, math, engineering.
    Stem,
    /// History, philosophy, law.
    Humanities,
    /// Politics, culture, economics, geography, psychology.
    SocialSciences,
    /// Business, health, miscellaneous.
    Other,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 4] = [
        Category::Stem,
        Category::Humanities,
        Category::SocialSciences,
        Category::Other,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stem => "STEM",
            Self::Humanities => "humanities",
            Self::SocialSciences => "social sciences",
            Self::Other => "other (business, health, misc.)",
        }
    }
}

use Category::{Humanities as H, Other as O, SocialSciences as S, Stem as T};

/// The subjects (file names under `mmlu/test/`) with their category.
pub const SUBJECTS: [(&str, Category); 57] = [
    ("abstract_algebra", T),
    ("anatomy", O),
    ("astronomy", T),
    ("business_ethics", O),
    ("clinical_knowledge", O),
    ("college_biology", T),
    ("college_chemistry", T),
    ("college_computer_science", T),
    ("college_mathematics", T),
    ("college_medicine", O),
    ("college_physics", T),
    ("computer_security", T),
    ("conceptual_physics", T),
    ("econometrics", S),
    ("electrical_engineering", T),
    ("elementary_mathematics", T),
    ("formal_logic", H),
    ("global_facts", O),
    ("high_school_biology", T),
    ("high_school_chemistry", T),
    ("high_school_computer_science", T),
    ("high_school_european_history", H),
    ("high_school_geography", S),
    ("high_school_government_and_politics", S),
    ("high_school_macroeconomics", S),
    ("high_school_mathematics", T),
    ("high_school_microeconomics", S),
    ("high_school_physics", T),
    ("high_school_psychology", S),
    ("high_school_statistics", T),
    ("high_school_us_history", H),
    ("high_school_world_history", H),
    ("human_aging", O),
    ("human_sexuality", S),
    ("international_law", H),
    ("jurisprudence", H),
    ("logical_fallacies", H),
    ("machine_learning", T),
    ("management", O),
    ("marketing", O),
    ("medical_genetics", O),
    ("miscellaneous", O),
    ("moral_disputes", H),
    ("moral_scenarios", H),
    ("nutrition", O),
    ("philosophy", H),
    ("prehistory", H),
    ("professional_accounting", O),
    ("professional_law", H),
    ("professional_medicine", O),
    ("professional_psychology", S),
    ("public_relations", S),
    ("security_studies", S),
    ("sociology", S),
    ("us_foreign_policy", S),
    ("virology", O),
    ("world_religions", H),
];

/// The category of an MMLU subject.
pub fn category(subject: &str) -> Option<Category> {
    SUBJECTS
        .iter()
        .find(|(s, _)| *s == subject)
        .map(|&(_, c)| c)
}

/// Right answers out of questions asked.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Accuracy {
    /// Questions answered right.
    pub correct: usize,
    /// Questions asked.
    pub total: usize,
}

impl Accuracy {
    /// `correct / total` (0 when nothing was asked).
    pub fn value(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }

    fn add(&mut self, correct: bool) {
        self.total += 1;
        self.correct += usize::from(correct);
    }
}

/// A named group's accuracy (an MMLU subject or category).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupAccuracy {
    /// Subject file name or category name.
    pub name: String,
    /// Its accuracy.
    pub accuracy: Accuracy,
}

/// One task's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The task.
    pub task: EvalTask,
    /// Over every question of the task.
    pub accuracy: Accuracy,
    /// Mean of the subjects' accuracies (MMLU's usual headline number); equals
    /// `accuracy` for single-subject tasks.
    pub subject_mean: f64,
    /// Per MMLU subject, in [`SUBJECTS`] order (empty for other tasks).
    pub subjects: Vec<GroupAccuracy>,
    /// Per MMLU category, in [`Category::ALL`] order (empty for other tasks).
    pub categories: Vec<GroupAccuracy>,
}

/// One question's outcome, what a report is tallied from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The task.
    pub task: EvalTask,
    /// The MMLU subject (the task name for other tasks).
    pub subject: String,
    /// Whether the predicted option was the right one.
    pub correct: bool,
}

/// A whole evaluation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The model evaluated, as the user named it.
    pub model: String,
    /// Per task, in [`EvalTask::ALL`] order.
    pub tasks: Vec<TaskResult>,
    /// Questions scored.
    pub questions: usize,
    /// Wall-clock seconds of scoring.
    pub seconds: f64,
}

impl EvalReport {
    /// Tallies `outcomes` into per-task, per-subject and per-category accuracy.
    pub fn tally(model: &str, outcomes: &[Outcome], seconds: f64) -> Self {
        let tasks = EvalTask::ALL
            .into_iter()
            .filter_map(|task| {
                let of_task: Vec<&Outcome> = outcomes.iter().filter(|o| o.task == task).collect();
                if of_task.is_empty() {
                    return None;
                }
                let mut accuracy = Accuracy::default();
                for o in &of_task {
                    accuracy.add(o.correct);
                }
                let (mut subjects, mut categories) = (Vec::new(), Vec::new());
                if task == EvalTask::Mmlu {
                    for (name, _) in SUBJECTS {
                        let mut a = Accuracy::default();
                        for o in of_task.iter().filter(|o| o.subject == name) {
                            a.add(o.correct);
                        }
                        if a.total > 0 {
                            subjects.push(GroupAccuracy {
                                name: name.to_string(),
                                accuracy: a,
                            });
                        }
                    }
                    for c in Category::ALL {
                        let mut a = Accuracy::default();
                        for o in of_task.iter().filter(|o| category(&o.subject) == Some(c)) {
                            a.add(o.correct);
                        }
                        if a.total > 0 {
                            categories.push(GroupAccuracy {
                                name: c.name().to_string(),
                                accuracy: a,
                            });
                        }
                    }
                }
                let subject_mean = if subjects.is_empty() {
                    accuracy.value()
                } else {
                    subjects.iter().map(|s| s.accuracy.value()).sum::<f64>() / subjects.len() as f64
                };
                Some(TaskResult {
                    task,
                    accuracy,
                    subject_mean,
                    subjects,
                    categories,
                })
            })
            .collect();
        Self {
            model: model.to_string(),
            tasks,
            questions: outcomes.len(),
            seconds,
        }
    }

    /// Questions scored per second.
    pub fn questions_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.questions as f64 / self.seconds
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_sizes_match_hendrycks() {
        let count = |c| SUBJECTS.iter().filter(|(_, k)| *k == c).count();
        assert_eq!(
            Category::ALL.map(count),
            [18, 13, 12, 14],
            "STEM, humanities, social sciences, other"
        );
    }

    #[test]
    fn tally_groups_by_task_subject_and_category() {
        let o = |task, subject: &str, correct| Outcome {
            task,
            subject: subject.into(),
            correct,
        };
        let outcomes = [
            o(EvalTask::Mmlu, "anatomy", true),
            o(EvalTask::Mmlu, "anatomy", false),
            o(EvalTask::Mmlu, "astronomy", true),
            o(EvalTask::Creak, "creak", false),
        ];
        let r = EvalReport::tally("m", &outcomes, 2.0);
        assert_eq!(r.tasks.len(), 2);
        let mmlu = &r.tasks[0];
        assert_eq!((mmlu.accuracy.correct, mmlu.accuracy.total), (2, 3));
        assert!((mmlu.subject_mean - 0.75).abs() < 1e-12);
        let names: Vec<&str> = mmlu.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["STEM", "other (business, health, misc.)"]);
        assert_eq!(r.tasks[1].accuracy.value(), 0.0);
        assert_eq!(r.questions_per_second(), 2.0);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""task":"strategyqa""#) || json.contains(r#""task":"creak""#));
    }
}
