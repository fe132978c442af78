//! What the conductor decided about pairs of agents whose work overlaps, and what came of it.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{OpResult, Store};
use crate::states::ConductorAction;

/// One decision about one pair of agents: the facts it was made on and what it said to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDecision {
    pub agents: [String; 2],
    pub tasks: [Option<String>; 2],
    /// Paths both change, and those a merge of the two would conflict on.
    pub files: Vec<String>,
    pub conflicts: Vec<String>,
    /// How alike their task texts are, when they are near-identical.
    pub similar_tasks: Option<f64>,
    pub action: ConductorAction,
    pub reason: String,
    /// What to tell each agent, in the order of `agents`.
    pub messages: [Option<String>; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConductorDecision {
    pub id: i64,
    pub at_ms: i64,
    #[serde(flatten)]
    pub decision: NewDecision,
    /// The task queued to bring their work together (with `reconcile`).
    pub reconcile_task_id: Option<String>,
    /// What went wrong carrying the action out.
    pub failure: Option<String>,
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConductorDecision> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = r.get(i)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        })
    };
    Ok(ConductorDecision {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        decision: NewDecision {
            agents: [r.get(2)?, r.get(3)?],
            tasks: [r.get(4)?, r.get(5)?],
            files: list(6)?,
            conflicts: list(7)?,
            similar_tasks: r.get(8)?,
            action: r.get(9)?,
            reason: r.get(10)?,
            messages: [r.get(11)?, r.get(12)?],
        },
        reconcile_task_id: r.get(13)?,
        failure: r.get(14)?,
    })
}

impl Store {
    pub fn insert_decision(&self, d: &NewDecision) -> OpResult<i64> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO conductor_decisions (at, agent_a, agent_b, task_a, task_b, files,
                 conflicts, similar_tasks, action, reason, message_a, message_b)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                crate::time::now_ms(),
                d.agents[0],
                d.agents[1],
                d.tasks[0],
                d.tasks[1],
                json_list(&d.files),
                json_list(&d.conflicts),
                d.similar_tasks,
                d.action,
                d.reason,
                d.messages[0],
                d.messages[1],
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// What carrying decision `id` out gave: the task it queued, or why it failed.
    pub fn decision_outcome(
        &self,
        id: i64,
        reconcile_task_id: Option<&str>,
        failure: Option<&str>,
    ) -> OpResult<()> {
        self.lock().execute(
            "UPDATE conductor_decisions SET reconcile_task_id = ?2, failure = ?3 WHERE id = ?1",
            params![id, reconcile_task_id, failure],
        )?;
        Ok(())
    }

    /// The newest first, of pairs with one agent or of all.
    pub fn decisions(
        &self,
        agent_id: Option<&str>,
        limit: usize,
    ) -> OpResult<Vec<ConductorDecision>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, at, agent_a, agent_b, task_a, task_b, files, conflicts, similar_tasks,
                    action, reason, message_a, message_b, reconcile_task_id, failure
             FROM conductor_decisions
             WHERE ?1 IS NULL OR agent_a = ?1 OR agent_b = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![agent_id, limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_kept_with_its_facts_and_its_outcome() {
        let store = Store::open_in_memory().unwrap();
        let d = NewDecision {
            agents: ["a1".into(), "b2".into()],
            tasks: [Some("t1".into()), None],
            files: vec!["src/lib.rs".into(), "README.md".into()],
            conflicts: vec!["src/lib.rs".into()],
            similar_tasks: Some(0.97),
            action: ConductorAction::Reconcile,
            reason: "both rewrite the parser".into(),
            messages: [Some("stop".into()), None],
        };
        let id = store.insert_decision(&d).unwrap();
        let other = NewDecision {
            agents: ["c3".into(), "d4".into()],
            action: ConductorAction::None,
            ..d.clone()
        };
        store.insert_decision(&other).unwrap();
        store.decision_outcome(id, Some("t9"), None).unwrap();
        let of_b = store.decisions(Some("b2"), 10).unwrap();
        assert_eq!(of_b.len(), 1);
        assert_eq!(of_b[0].decision, d);
        assert_eq!(of_b[0].reconcile_task_id.as_deref(), Some("t9"));
        assert_eq!(of_b[0].failure, None);
        let all = store.decisions(None, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].decision.agents[0], "c3", "newest first");
    }
}
