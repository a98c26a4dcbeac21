//! The project's SQLite database (`$TEACHERLM_HOME/teacherlm.sqlite` by default):
//! evaluation runs, kept so the web app can show them. Opening it creates the
//! file and its tables; later features add their tables to [`MIGRATIONS`].

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use shared::eval::EvalReport;

/// Failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database folder could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A stored report is not valid JSON for this version.
    #[error("database {path}: evaluation #{id} cannot be read: {source}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The row.
        id: i64,
        /// What the decoder said.
        source: serde_json::Error,
    },
}

/// Schema steps, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE eval_runs (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        model TEXT NOT NULL,
        questions INTEGER NOT NULL,
        report TEXT NOT NULL
    )"];

/// A stored evaluation run.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEval {
    /// Row id.
    pub id: i64,
    /// When it was saved (UTC, RFC 3339).
    pub created_at: String,
    /// The report.
    pub report: EvalReport,
}

/// An open database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sqlite = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sqlite)?;
        // WAL: the server reads while a CLI run writes.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        let done: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sqlite)?;
        let tx = conn.transaction().map_err(sqlite)?;
        for step in MIGRATIONS.iter().skip(done) {
            tx.execute_batch(step).map_err(sqlite)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len())
            .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Saves an evaluation run and returns its id.
    pub fn save_eval(&self, report: &EvalReport) -> Result<i64, StoreError> {
        let json = serde_json::to_string(report).expect("reports serialise");
        self.conn
            .execute(
                "INSERT INTO eval_runs (model, questions, report) VALUES (?1, ?2, ?3)",
                params![report.model, report.questions as i64, json],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every stored evaluation run, newest first.
    pub fn evals(&self) -> Result<Vec<StoredEval>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, created_at, report FROM eval_runs ORDER BY id DESC")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, created_at, json) = row.map_err(|e| self.sqlite(e))?;
            let report = serde_json::from_str(&json).map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                id,
                source,
            })?;
            out.push(StoredEval {
                id,
                created_at,
                report,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::eval::{EvalTask, Outcome};

    #[test]
    fn reports_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/teacherlm.sqlite");
        let outcomes = [Outcome {
            task: EvalTask::Creak,
            subject: "creak".into(),
            correct: true,
        }];
        let report = EvalReport::tally("tiny", &outcomes, 1.5);
        let id = Store::open(&path).unwrap().save_eval(&report).unwrap();
        let store = Store::open(&path).unwrap();
        let all = store.evals().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].id, &all[0].report), (id, &report));
        assert!(all[0].created_at.ends_with('Z'), "{}", all[0].created_at);
    }
}
