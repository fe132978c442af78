//! The guardian's judgements of agents at work, and what came of the steers they led to.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{OpResult, Store};
use crate::states::{AgentState, SteerOutcome, SteeringType};

#[derive(Debug, Clone, PartialEq)]
pub struct NewAnalysis {
    pub agent_id: String,
    pub task_id: Option<String>,
    pub agent_state: AgentState,
    pub alignment_score: f64,
    pub aligned: bool,
    pub needs_steering: bool,
    pub steering_type: Option<SteeringType>,
    pub message: Option<String>,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub id: i64,
    pub at_ms: i64,
    pub agent_id: String,
    pub task_id: Option<String>,
    pub agent_state: AgentState,
    pub alignment_score: f64,
    pub aligned: bool,
    pub needs_steering: bool,
    pub steering_type: Option<SteeringType>,
    pub message: Option<String>,
    pub summary: String,
    pub steered_at_ms: Option<i64>,
    pub steer_outcome: Option<SteerOutcome>,
}

const COLUMNS: &str =
    "id, at, agent_id, task_id, agent_state, alignment_score, aligned, needs_steering,
                       steering_type, message, summary, steered_at, steer_outcome";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Analysis> {
    Ok(Analysis {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        agent_id: r.get(2)?,
        task_id: r.get(3)?,
        agent_state: r.get(4)?,
        alignment_score: r.get(5)?,
        aligned: r.get(6)?,
        needs_steering: r.get(7)?,
        steering_type: r.get(8)?,
        message: r.get(9)?,
        summary: r.get(10)?,
        steered_at_ms: r.get(11)?,
        steer_outcome: r.get(12)?,
    })
}

impl Store {
    pub fn insert_analysis(&self, a: &NewAnalysis) -> OpResult<i64> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO guardian_analyses (at, agent_id, task_id, agent_state, alignment_score,
                 aligned, needs_steering, steering_type, message, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                crate::time::now_ms(),
                a.agent_id,
                a.task_id,
                a.agent_state,
                a.alignment_score,
                a.aligned,
                a.needs_steering,
                a.steering_type,
                a.message,
                a.summary
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn record_steer(&self, analysis_id: i64, outcome: SteerOutcome) -> OpResult<()> {
        self.lock().execute(
            "UPDATE guardian_analyses SET steered_at = ?2, steer_outcome = ?3 WHERE id = ?1",
            params![analysis_id, crate::time::now_ms(), outcome],
        )?;
        Ok(())
    }

    /// The newest first, of one agent or of all.
    pub fn analyses(&self, agent_id: Option<&str>, limit: usize) -> OpResult<Vec<Analysis>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM guardian_analyses
             WHERE ?1 IS NULL OR agent_id = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![agent_id, limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Steers typed (of one agent or all) and how many of them were followed.
    pub fn steer_counts(&self, agent_id: Option<&str>) -> OpResult<(u64, u64)> {
        let conn = self.lock();
        let (typed, followed): (i64, i64) = conn.query_row(
            "SELECT COUNT(steered_at), COALESCE(SUM(steer_outcome = 'followed'), 0)
             FROM guardian_analyses WHERE ?1 IS NULL OR agent_id = ?1",
            params![agent_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((typed as u64, followed as u64))
    }

    /// The last steer typed into an agent, if any.
    pub fn last_steer(&self, agent_id: &str) -> OpResult<Option<Analysis>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM guardian_analyses
                     WHERE agent_id = ?1 AND steered_at IS NOT NULL ORDER BY steered_at DESC LIMIT 1"
                ),
                params![agent_id],
                row,
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyses_are_kept_newest_first_with_their_steers() {
        let store = Store::open_in_memory().unwrap();
        let a = NewAnalysis {
            agent_id: "a".into(),
            task_id: Some("t".into()),
            agent_state: AgentState::Working,
            alignment_score: 0.4,
            aligned: false,
            needs_steering: true,
            steering_type: Some(SteeringType::Drifting),
            message: Some("back to the task".into()),
            summary: "refactoring the logger".into(),
        };
        let first = store.insert_analysis(&a).unwrap();
        store
            .insert_analysis(&NewAnalysis {
                agent_id: "b".into(),
                ..a.clone()
            })
            .unwrap();
        assert!(store.last_steer("a").unwrap().is_none());
        store.record_steer(first, SteerOutcome::Followed).unwrap();
        assert_eq!(store.steer_counts(None).unwrap(), (1, 1));
        assert_eq!(store.steer_counts(Some("b")).unwrap(), (0, 0));
        let steer = store.last_steer("a").unwrap().unwrap();
        assert_eq!(steer.steer_outcome, Some(SteerOutcome::Followed));
        assert_eq!(steer.steering_type, Some(SteeringType::Drifting));
        assert_eq!(store.analyses(Some("a"), 10).unwrap().len(), 1);
        let all = store.analyses(None, 10).unwrap();
        assert_eq!(all[0].agent_id, "b", "newest first");
    }
}
