//! What the agent manager records about running agents: where each works, how its work was
//! merged, and the system-side failures and requeues of tasks.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Entity, OpError, OpResult, Store};
use crate::states::{AgentStatus, MergeStatus};
use crate::time::now_ms;

/// A managed agent as the agent manager sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRuntime {
    pub agent_id: String,
    pub name: String,
    pub status: AgentStatus,
    pub cli_type: Option<String>,
    pub task_id: Option<String>,
    pub tmux_session: Option<String>,
    pub worktree_path: Option<String>,
    pub branch: Option<String>,
    pub merge_status: Option<MergeStatus>,
    pub created_at_ms: i64,
}

const RUNTIME_COLUMNS: &str = "id, name, status, cli_type, current_task_id, tmux_session, worktree_path, branch, merge_status, created_at";

/// [`RUNTIME_COLUMNS`] of the agents table under `alias`, for joins.
fn runtime_columns_of(alias: &str) -> String {
    RUNTIME_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn runtime_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRuntime> {
    Ok(AgentRuntime {
        agent_id: r.get(0)?,
        name: r.get(1)?,
        status: r.get(2)?,
        cli_type: r.get(3)?,
        task_id: r.get(4)?,
        tmux_session: r.get(5)?,
        worktree_path: r.get(6)?,
        branch: r.get(7)?,
        merge_status: r.get(8)?,
        created_at_ms: r.get(9)?,
    })
}

impl Store {
    /// Records where a freshly spawned agent runs.
    pub fn set_agent_runtime(
        &self,
        agent_id: &str,
        tmux_session: &str,
        worktree_path: &str,
        branch: &str,
        base_commit: &str,
    ) -> OpResult<()> {
        self.lock().execute(
            "UPDATE agents SET tmux_session = ?2, worktree_path = ?3, branch = ?4, base_commit = ?5,
                merge_status = 'active', last_activity_at = ?6 WHERE id = ?1",
            params![agent_id, tmux_session, worktree_path, branch, base_commit, now_ms()],
        )?;
        Ok(())
    }

    pub fn agent_runtime(&self, agent_id: &str) -> OpResult<AgentRuntime> {
        self.lock()
            .prepare_cached(&format!(
                "SELECT {RUNTIME_COLUMNS} FROM agents WHERE id = ?1"
            ))?
            .query_row(params![agent_id], runtime_from_row)
            .optional()?
            .ok_or_else(|| OpError::Missing {
                entity: Entity::Agent,
                id: agent_id.to_string(),
            })
    }

    /// The commit an agent's worktree started from, once it has one.
    pub fn agent_base_commit(&self, agent_id: &str) -> OpResult<Option<String>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT base_commit FROM agents WHERE id = ?1",
                params![agent_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Managed agents that hold a tmux session and are not terminated.
    pub fn live_managed_agents(&self) -> OpResult<Vec<AgentRuntime>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUNTIME_COLUMNS} FROM agents WHERE kind = 'managed' AND status != 'terminated'
             AND tmux_session IS NOT NULL ORDER BY created_at"
        ))?;
        let rows = stmt
            .query_map([], runtime_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Done tasks whose merge waits for the user's checkout, with the agent whose branch holds
    /// the work, oldest first.
    pub fn waiting_merges(&self) -> OpResult<Vec<(AgentRuntime, String)>> {
        let conn = self.lock();
        let columns = runtime_columns_of("a");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {columns}, t.id FROM tasks t JOIN agents a ON a.id = t.assigned_agent_id
             WHERE t.merge_status = 'waiting' AND a.branch IS NOT NULL ORDER BY t.updated_at"
        ))?;
        let rows = stmt
            .query_map([], |r| Ok((runtime_from_row(r)?, r.get(10)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Managed agents still running whose task is done or failed but which were never
    /// finished (committed, ended, merged): a coordinator killed between the agent's report and
    /// the merge leaves them so. With the task's id, oldest report first.
    pub fn unfinished_agents(&self) -> OpResult<Vec<(AgentRuntime, String)>> {
        let conn = self.lock();
        let columns = runtime_columns_of("a");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {columns}, t.id FROM tasks t JOIN agents a ON a.id = t.assigned_agent_id
             WHERE a.kind = 'managed' AND a.status != 'terminated' AND a.tmux_session IS NOT NULL
               AND a.merge_status = 'active' AND t.status IN ('done', 'failed')
             ORDER BY t.completed_at"
        ))?;
        let rows = stmt
            .query_map([], |r| Ok((runtime_from_row(r)?, r.get(10)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every managed agent, terminated or not (for garbage collection).
    pub fn all_managed_agents(&self) -> OpResult<Vec<AgentRuntime>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUNTIME_COLUMNS} FROM agents WHERE kind = 'managed' ORDER BY created_at"
        ))?;
        let rows = stmt
            .query_map([], runtime_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Deletes an agent row that never got a task (a claim found nothing to do).
    pub fn discard_unused_agent(&self, agent_id: &str) -> OpResult<()> {
        self.lock().execute(
            "DELETE FROM agents WHERE id = ?1 AND current_task_id IS NULL
             AND NOT EXISTS (SELECT 1 FROM tasks WHERE assigned_agent_id = ?1 OR created_by_agent_id = ?1)
             AND NOT EXISTS (SELECT 1 FROM agent_events WHERE agent_id = ?1)",
            params![agent_id],
        )?;
        Ok(())
    }

    pub fn set_agent_merge(
        &self,
        agent_id: &str,
        status: MergeStatus,
        commit: Option<&str>,
    ) -> OpResult<()> {
        self.lock().execute(
            "UPDATE agents SET merge_status = ?2, merge_commit = COALESCE(?3, merge_commit) WHERE id = ?1",
            params![agent_id, status, commit],
        )?;
        Ok(())
    }

    /// How a task's merge went, on the task and on the agent whose branch holds it, together.
    pub fn set_merge(
        &self,
        task_id: &str,
        agent_id: &str,
        status: MergeStatus,
        agent_status: MergeStatus,
        files: &[String],
        commit: Option<&str>,
    ) -> OpResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE tasks SET merge_status = ?2, merge_conflict_files = ?3, updated_at = ?4 WHERE id = ?1",
            params![task_id, status, serde_json::to_string(files)?, now_ms()],
        )?;
        tx.execute(
            "UPDATE agents SET merge_status = ?2, merge_commit = COALESCE(?3, merge_commit) WHERE id = ?1",
            params![agent_id, agent_status, commit],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Where a task's worktree should start, when not from the base branch.
    pub fn task_base_ref(&self, task_id: &str) -> OpResult<Option<String>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT base_ref FROM tasks WHERE id = ?1",
                params![task_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// How many times a task was handed to an agent that did not finish it.
    pub fn task_attempts(&self, task_id: &str) -> OpResult<u32> {
        Ok(self
            .lock()
            .query_row(
                "SELECT attempts FROM tasks WHERE id = ?1",
                params![task_id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Fails an assigned or running task for a reason outside the agent (it never started, it
    /// kept dying) and frees its agent. False when the task was not assigned or running (it
    /// ended meanwhile): nothing changed.
    pub fn fail_task(&self, task_id: &str, reason: &str) -> OpResult<bool> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let failed = tx.execute(
            "UPDATE tasks SET status = 'failed', failure_reason = ?2, completed_at = ?3, updated_at = ?3
             WHERE id = ?1 AND status IN ('assigned', 'in_progress')",
            params![task_id, reason, now],
        )?;
        if failed == 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE agents SET status = 'idle', current_task_id = NULL WHERE current_task_id = ?1",
            params![task_id],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Sets where a requeued task's next agent starts (the dead agent's last commit).
    pub fn set_task_base_ref(&self, task_id: &str, base_ref: &str) -> OpResult<()> {
        self.lock().execute(
            "UPDATE tasks SET base_ref = ?2 WHERE id = ?1",
            params![task_id, base_ref],
        )?;
        Ok(())
    }
}
