//! The app's sections, in navigation order: one table feeds the side navigation and the
//! Overview cards, so a section is added in one place.

/// One top-level section of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Route path, e.g. `/annotate`.
    pub path: &'static str,
    /// Navigation label and page title.
    pub title: &'static str,
    /// One sentence on what the section is for.
    pub summary: &'static str,
    /// SVG path data of the section's icon, drawn on a 24x24 stroked grid.
    pub icon: &'static str,
    /// Whether this build can already do what the section promises.
    pub available: bool,
}

/// The Overview section (the landing page).
pub const OVERVIEW: Section = Section {
    path: "/",
    title: "Overview",
    summary: "What TeacherLM Studio does and whether its server is up.",
    icon: "M3 3h7v7H3zM14 3h7v7h-7zM14 14h7v7h-7zM3 14h7v7H3z",
    available: true,
};

/// The Annotate section.
pub const ANNOTATE: Section = Section {
    path: "/annotate",
    title: "Annotate",
    summary: "Have the teacher model explain a sample: fundamentals, chain of thought and common mistakes.",
    icon: "M12 20h9M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4z",
    available: true,
};

/// The Jobs section.
pub const JOBS: Section = Section {
    path: "/jobs",
    title: "Jobs",
    summary: "Annotate whole datasets in durable, resumable background jobs and export the results.",
    icon: "M8 6h13M8 12h13M8 18h13M3.5 6h.01M3.5 12h.01M3.5 18h.01",
    available: false,
};

/// The Solve section.
pub const SOLVE: Section = Section {
    path: "/solve",
    title: "Solve",
    summary: "Solve math problems with code that is executed to verify, amend and vote on answers.",
    icon: "M18 4H6l6 8-6 8h12",
    available: false,
};

/// The Students section.
pub const STUDENTS: Section = Section {
    path: "/students",
    title: "Students",
    summary: "Fine-tune small student models on annotated data and run them in your browser.",
    icon: "M22 10 12 5 2 10l10 5 10-5zM6 12.5V17c3 2.5 9 2.5 12 0v-4.5",
    available: false,
};

/// The Evaluate section.
pub const EVALUATE: Section = Section {
    path: "/evaluate",
    title: "Evaluate",
    summary: "Measure teachers and students on held-out questions and compare them side by side.",
    icon: "M3 3v18h18M8 17v-6M13 17V7M18 17v-3",
    available: false,
};

/// Every section, in navigation order.
pub const SECTIONS: [Section; 6] = [OVERVIEW, ANNOTATE, JOBS, SOLVE, STUDENTS, EVALUATE];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_and_absolute() {
        for (i, a) in SECTIONS.iter().enumerate() {
            assert!(a.path.starts_with('/'), "{}", a.path);
            for b in &SECTIONS[i + 1..] {
                assert_ne!(a.path, b.path);
            }
        }
    }
}
