//! The only module that touches SQLite: the coordinator's state (workflows, phases, tasks,
//! dependencies, agents, events) behind a cheap cloneable handle.
//!
//! One connection behind a `std::sync::Mutex`, held only for short synchronous sections and
//! never across an `.await` (as in mini-redis's `db.rs`): SQLite serializes writers anyway, and a
//! point query costs microseconds. Every check that guards a write runs in the same transaction
//! as the write, so two callers can never both win (see `claim_*`).

mod agents;
mod analyses;
mod conductor;
mod memories;
mod messages;
mod migrations;
mod runtime;
mod tasks;
mod usage;
mod workflows;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension};

use crate::states::EventKind;

pub use agents::{AgentKind, Authenticated};
pub use analyses::{Analysis, NewAnalysis};
pub use conductor::{ConductorDecision, NewDecision};
pub use memories::{MemoryRow, MemoryVectors, NewMemory, StoredTokens, TokenBlobs};
pub use runtime::AgentRuntime;
pub use tasks::{NewTask, Reported, StatusUpdate, TaskFilter};
pub use usage::{UsageBy, UsageRow, UsageTotal};
pub use workflows::NewWorkflow;

/// One entry of an agent's event log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AgentEvent {
    pub kind: EventKind,
    pub message: String,
    /// Long text such as the agent's final terminal output.
    pub details: Option<String>,
    pub at_ms: i64,
}

/// What a caller named by id that does not exist: each front end says how to find the right one
/// (a tool to call, a command to run), so the store names neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Task,
    Workflow,
    Agent,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Task => "task",
            Entity::Workflow => "workflow",
            Entity::Agent => "agent",
        }
    }
}

/// An error a caller can act on, or an internal fault.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("no {} with id {id}", entity.as_str())]
    Missing { entity: Entity, id: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Internal(e.into())
    }
}

impl From<serde_json::Error> for OpError {
    fn from(e: serde_json::Error) -> Self {
        OpError::Internal(e.into())
    }
}

pub type OpResult<T> = std::result::Result<T, OpError>;

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        Self::init(conn).with_context(|| format!("cannot prepare database {}", path.display()))
    }

    /// A private in-memory database, for unit tests.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        // WAL lets readers (sqlite3, backups) work while the coordinator writes; NORMAL sync is
        // durable across process crashes in WAL mode and keeps commits fast.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Query-planner stability: without it, the bundled SQLite (built with STAT4) re-prepares
        // a cached statement whenever a bound value might change its plan, which profiling showed
        // was most of the CPU of a get_task call. Our queries are point lookups on indexes.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The schema version now in force.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .lock()
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })?)
    }

    /// Appends an entry to the agent event log.
    pub fn log_event(
        &self,
        agent_id: Option<&str>,
        task_id: Option<&str>,
        kind: EventKind,
        message: &str,
    ) -> OpResult<()> {
        self.log_event_with(agent_id, task_id, kind, message, None)
    }

    /// Appends an entry with a long `details` text (e.g. an agent's final pane output).
    pub fn log_event_with(
        &self,
        agent_id: Option<&str>,
        task_id: Option<&str>,
        kind: EventKind,
        message: &str,
        details: Option<&str>,
    ) -> OpResult<()> {
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO agent_events (agent_id, task_id, kind, message, details, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(rusqlite::params![
            agent_id,
            task_id,
            kind,
            message,
            details,
            crate::time::now_ms()
        ])?;
        Ok(())
    }

    /// An agent's events, oldest first.
    pub fn agent_events(&self, agent_id: &str) -> OpResult<Vec<AgentEvent>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT kind, message, details, created_at FROM agent_events WHERE agent_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(rusqlite::params![agent_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        // A kind this build does not know (a newer one wrote it) is passed over, not a reason
        // to lose the whole log.
        Ok(rows
            .into_iter()
            .filter_map(|(kind, message, details, at_ms)| match kind.parse() {
                Ok(kind) => Some(AgentEvent {
                    kind,
                    message,
                    details,
                    at_ms,
                }),
                Err(e) => {
                    tracing::warn!(agent = agent_id, "skipping an agent event: {e}");
                    None
                }
            })
            .collect())
    }

    /// Flushes the WAL into the main file; called on orderly shutdown.
    pub fn checkpoint(&self) -> Result<()> {
        self.lock()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let current: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0);
    let latest = migrations::MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > latest {
        anyhow::bail!(
            "database schema version {current} is newer than this build understands ({latest}); upgrade hephaestus"
        );
    }
    for (version, sql) in migrations::MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("migration {version} failed"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, crate::time::now_ms()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_reopen_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let latest = migrations::MIGRATIONS.last().unwrap().0;
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest);
        let mode: String = store
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .lock()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
    }

    /// The values a column's `CHECK (col IN (...))` allows, from the schema SQLite holds.
    fn checked_values(store: &Store, table: &str, column: &str) -> Vec<String> {
        let sql: String = store
            .lock()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        let needle = format!("CHECK ({column} IN (");
        let start = sql
            .find(&needle)
            .unwrap_or_else(|| panic!("no CHECK on {table}.{column}"))
            + needle.len();
        let end = start + sql[start..].find(')').unwrap();
        sql[start..end]
            .split(',')
            .map(|v| v.trim().trim_matches('\'').to_string())
            .collect()
    }

    fn texts<T: std::fmt::Display>(all: &[T]) -> Vec<String> {
        all.iter().map(T::to_string).collect()
    }

    /// Each state enum and its column's CHECK constraint list the same values, in the same
    /// order: a variant added on one side only fails here, not at run time.
    #[test]
    fn the_schema_checks_the_same_values_the_state_enums_have() {
        use crate::queue::{Priority, TaskStatus};
        use crate::states::{AgentKind, AgentStatus, MemoryType, PhaseStatus, WorkflowStatus};
        let store = Store::open_in_memory().unwrap();
        let task_statuses: Vec<String> =
            TaskStatus::ALL.iter().map(|s| s.as_str().into()).collect();
        let priorities: Vec<String> = [Priority::Low, Priority::Medium, Priority::High]
            .iter()
            .map(|p| p.as_str().into())
            .collect();
        for (table, column, values) in [
            ("tasks", "status", task_statuses),
            ("tasks", "priority", priorities),
            ("agents", "status", texts(AgentStatus::ALL)),
            ("agents", "kind", texts(AgentKind::ALL)),
            ("workflows", "status", texts(WorkflowStatus::ALL)),
            ("phases", "status", texts(PhaseStatus::ALL)),
            ("memories", "memory_type", texts(MemoryType::ALL)),
            (
                "llm_usage",
                "component",
                texts(crate::states::LlmComponent::ALL),
            ),
            (
                "llm_usage",
                "cost_source",
                texts(crate::states::CostSource::ALL),
            ),
            (
                "guardian_analyses",
                "agent_state",
                texts(crate::states::AgentState::ALL),
            ),
            (
                "guardian_analyses",
                "steering_type",
                texts(crate::states::SteeringType::ALL),
            ),
            (
                "conductor_decisions",
                "action",
                texts(crate::states::ConductorAction::ALL),
            ),
            (
                "guardian_analyses",
                "steer_outcome",
                texts(crate::states::SteerOutcome::ALL),
            ),
        ] {
            assert_eq!(
                checked_values(&store, table, column),
                values,
                "{table}.{column}"
            );
        }
    }

    #[test]
    fn a_store_of_an_older_schema_keeps_its_memories_through_the_token_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // The schema as version 4 left it, with one embedded memory.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
            )
            .unwrap();
            for (version, sql) in migrations::MIGRATIONS.iter().filter(|m| m.0 <= 4) {
                conn.execute_batch(sql).unwrap();
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?1, 0)",
                    rusqlite::params![version],
                )
                .unwrap();
            }
            let vector: Vec<u8> = [0.6f32, 0.8].iter().flat_map(|x| x.to_le_bytes()).collect();
            conn.execute(
                "INSERT INTO memories (content, memory_type, embedder_id, dim, vector, created_at)
                 VALUES ('use WAL mode', 'decision', 'all-minilm-l6-v2', 2, ?1, 0)",
                [vector],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            migrations::MIGRATIONS.last().unwrap().0
        );
        let vectors = store.memory_vectors("all-minilm-l6-v2", 2).unwrap();
        assert_eq!(vectors.len(), 1);
        assert_eq!(vectors[0].0.content, "use WAL mode");
        assert_eq!(vectors[0].1, vec![0.6, 0.8]);
        // Embedded as far as vectors go; still to embed for token vectors.
        assert_eq!(
            store
                .count_memory_vectors("all-minilm-l6-v2", 2, false)
                .unwrap(),
            (1, 1)
        );
        assert_eq!(
            store
                .count_memory_vectors("all-minilm-l6-v2", 2, true)
                .unwrap(),
            (0, 1)
        );
        assert_eq!(
            store
                .memories_to_embed("all-minilm-l6-v2", 2, true)
                .unwrap()
                .len(),
            1
        );
        let id = vectors[0].0.id;
        assert!(
            store
                .memory_tokens(&[id], "all-minilm-l6-v2")
                .unwrap()
                .is_empty()
        );
        let tokens = TokenBlobs {
            ids: &42u32.to_le_bytes(),
            vectors: b"token vector bytes",
        };
        store
            .set_memory_vector(
                id,
                MemoryVectors {
                    embedder_id: "all-minilm-l6-v2",
                    vector: &[0.6, 0.8],
                    tokens: Some(tokens),
                },
            )
            .unwrap();
        let stored = store.memory_tokens(&[id], "all-minilm-l6-v2").unwrap();
        assert_eq!(
            stored[&id],
            (tokens.ids.to_vec(), tokens.vectors.to_vec()),
            "kept as they were written"
        );
        // Another embedder's vector takes the token vectors with it.
        store
            .set_memory_vector(
                id,
                MemoryVectors {
                    embedder_id: "hashing-v1-2",
                    vector: &[1.0, 0.0],
                    tokens: None,
                },
            )
            .unwrap();
        assert!(
            store
                .memory_tokens(&[id], "hashing-v1-2")
                .unwrap()
                .is_empty()
        );
        let mut seen = 0;
        store
            .each_memory_token_ids("all-minilm-l6-v2", |_| seen += 1)
            .unwrap();
        assert_eq!(seen, 0);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Store::open(&path)
            .unwrap()
            .lock()
            .execute("INSERT INTO schema_migrations VALUES (99, 0)", [])
            .unwrap();
        let err = format!("{:#}", Store::open(&path).err().unwrap());
        assert!(err.contains("newer than this build"), "{err}");
    }
}
