//! Tasks: creation with dependencies and idempotency keys, status updates with authorization,
//! and the atomic claims the agent manager uses.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{Entity, OpError, OpResult, Store, json_list, new_id};
use crate::queue::{DependencyGraph, Priority, QUEUE_ORDER_SQL, TaskStatus};
use crate::states::WorkflowStatus;
use crate::time::{now_ms, rfc3339};
use crate::views::TaskView;

/// What `create_task` needs; the store resolves the rest.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub description: String,
    pub done_definition: String,
    pub priority: Option<Priority>,
    pub phase: Option<i64>,
    pub workflow_id: Option<String>,
    pub depends_on: Vec<String>,
    pub idempotency_key: Option<String>,
    pub created_by: Option<String>,
    pub boosted: bool,
    /// Commit the agent's worktree starts from instead of the base branch.
    pub base_ref: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub statuses: Vec<TaskStatus>,
    pub phase: Option<i64>,
    pub workflow_id: Option<String>,
    pub assigned_agent_id: Option<String>,
    pub limit: Option<usize>,
}

/// A task after its agent's report, and the dependents the report unblocked.
#[derive(Debug, Clone)]
pub struct Reported {
    pub task: TaskView,
    /// Ids of blocked tasks that were queued because this one is done.
    pub released: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub status: TaskStatus,
    pub summary: Option<String>,
    pub failure_reason: Option<String>,
    pub key_learnings: Vec<String>,
}

const TASK_COLUMNS: &str = "t.id, t.description, t.done_definition, t.status, t.priority,
    t.workflow_id, t.phase_order, p.name, t.assigned_agent_id, t.created_by_agent_id,
    t.parent_task_id, t.summary, t.failure_reason, t.key_learnings, t.created_at, t.updated_at,
    t.completed_at, t.merge_status, t.merge_conflict_files";

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<TaskView> {
    let status: String = r.get(3)?;
    let priority: String = r.get(4)?;
    let phase_order: i64 = r.get(6)?;
    Ok(TaskView {
        id: r.get(0)?,
        description: r.get(1)?,
        done_definition: r.get(2)?,
        status: status.parse().unwrap_or(TaskStatus::Pending),
        priority: priority.parse().unwrap_or(Priority::Medium),
        workflow_id: r.get(5)?,
        phase: (phase_order > 0).then_some(phase_order),
        phase_name: r.get(7)?,
        assigned_agent_id: r.get(8)?,
        created_by_agent_id: r.get(9)?,
        parent_task_id: r.get(10)?,
        depends_on: Vec::new(),
        waiting_on: Vec::new(),
        summary: r.get(11)?,
        failure_reason: r.get(12)?,
        key_learnings: json_list(&r.get::<_, String>(13)?),
        created_at: rfc3339(r.get(14)?),
        updated_at: rfc3339(r.get(15)?),
        completed_at: r.get::<_, Option<i64>>(16)?.map(rfc3339),
        merge_status: r.get(17)?,
        merge_conflict_files: json_list(&r.get::<_, String>(18)?),
    })
}

fn load_task(conn: &Connection, id: &str) -> OpResult<TaskView> {
    let mut task = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN phases p ON p.id = t.phase_id WHERE t.id = ?1"
        ))?
        .query_row(params![id], task_from_row)
        .optional()?
        .ok_or_else(|| OpError::Missing {
            entity: Entity::Task,
            id: id.to_string(),
        })?;
    fill_dependencies(conn, &mut task)?;
    Ok(task)
}

fn fill_dependencies(conn: &Connection, task: &mut TaskView) -> OpResult<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.depends_on_task_id, t.status FROM task_dependencies d
         JOIN tasks t ON t.id = d.depends_on_task_id WHERE d.task_id = ?1 ORDER BY t.created_at",
    )?;
    let mut rows = stmt.query(params![task.id])?;
    while let Some(row) = rows.next()? {
        let dep: String = row.get(0)?;
        let status: String = row.get(1)?;
        if status != "done" {
            task.waiting_on.push(dep.clone());
        }
        task.depends_on.push(dep);
    }
    Ok(())
}

fn status_of(conn: &Connection, id: &str) -> OpResult<Option<(TaskStatus, Option<String>)>> {
    Ok(conn
        .prepare_cached("SELECT status, assigned_agent_id FROM tasks WHERE id = ?1")?
        .query_row(params![id], |r| {
            let s: String = r.get(0)?;
            Ok((s.parse().unwrap_or(TaskStatus::Pending), r.get(1)?))
        })
        .optional()?)
}

impl Store {
    /// Creates a task, or returns the existing one when its idempotency key was seen before
    /// (`false` in the second element).
    pub fn create_task(&self, new: NewTask) -> OpResult<(TaskView, bool)> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let created = insert_task(&tx, new)?;
        tx.commit()?;
        Ok(created)
    }

    pub fn get_task(&self, id: &str) -> OpResult<TaskView> {
        load_task(&self.lock(), id)
    }

    /// Tasks matching every given filter, oldest first.
    pub fn list_tasks(&self, filter: &TaskFilter) -> OpResult<Vec<TaskView>> {
        let mut sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN phases p ON p.id = t.phase_id WHERE 1=1"
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if !filter.statuses.is_empty() {
            let marks = vec!["?"; filter.statuses.len()].join(",");
            sql.push_str(&format!(" AND t.status IN ({marks})"));
            args.extend(
                filter
                    .statuses
                    .iter()
                    .map(|s| s.as_str().to_string().into()),
            );
        }
        if let Some(p) = filter.phase {
            sql.push_str(" AND t.phase_order = ?");
            args.push(p.into());
        }
        if let Some(w) = &filter.workflow_id {
            sql.push_str(" AND t.workflow_id = ?");
            args.push(w.clone().into());
        }
        if let Some(a) = &filter.assigned_agent_id {
            sql.push_str(" AND t.assigned_agent_id = ?");
            args.push(a.clone().into());
        }
        sql.push_str(" ORDER BY t.created_at, t.rowid LIMIT ?");
        args.push((filter.limit.unwrap_or(200) as i64).into());
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut tasks = stmt
            .query_map(rusqlite::params_from_iter(args), task_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        for t in &mut tasks {
            fill_dependencies(&conn, t)?;
        }
        Ok(tasks)
    }

    /// Number of tasks in each status (optionally within one workflow).
    pub fn task_counts(&self, workflow_id: Option<&str>) -> OpResult<BTreeMap<String, i64>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT status, COUNT(*) FROM tasks WHERE (?1 IS NULL OR workflow_id = ?1) GROUP BY status",
        )?;
        let rows = stmt
            .query_map(params![workflow_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<BTreeMap<String, i64>, _>>()?;
        Ok(rows)
    }

    /// An agent reports progress on its own task. Finishing a task frees the agent and queues
    /// every dependent whose dependencies are now all done.
    pub fn update_task_status(
        &self,
        caller: &str,
        task_id: &str,
        update: StatusUpdate,
    ) -> OpResult<Reported> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (current, assignee) = status_of(&tx, task_id)?.ok_or_else(|| OpError::Missing {
            entity: Entity::Task,
            id: task_id.to_string(),
        })?;
        if assignee.as_deref() != Some(caller) {
            return Err(OpError::Forbidden(match assignee {
                Some(other) => format!(
                    "task {task_id} is assigned to agent {other}, not to you ({caller}); you may only update tasks assigned to you"
                ),
                None => format!(
                    "task {task_id} is not assigned to anyone ({current}); you may only update tasks assigned to you"
                ),
            }));
        }
        let next = update.status;
        if !matches!(
            next,
            TaskStatus::Done | TaskStatus::Failed | TaskStatus::InProgress
        ) {
            return Err(OpError::Invalid(format!(
                "status must be done, failed or in_progress, not {next}"
            )));
        }
        if current == next && next == TaskStatus::InProgress {
            return Ok(Reported {
                task: load_task(&tx, task_id)?,
                released: Vec::new(),
            });
        }
        if !current.can_become(next) {
            return Err(OpError::Invalid(format!(
                "task {task_id} is already {current} and cannot become {next}"
            )));
        }
        let blank = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
        if next == TaskStatus::Done && blank(&update.summary) {
            return Err(OpError::Invalid(
                "summary is required when marking a task done: say what was done".into(),
            ));
        }
        if next == TaskStatus::Failed && blank(&update.failure_reason) && blank(&update.summary) {
            return Err(OpError::Invalid(
                "failure_reason is required when marking a task failed".into(),
            ));
        }
        let now = now_ms();
        let terminal = next.is_terminal();
        tx.prepare_cached(
            "UPDATE tasks SET status = ?2, updated_at = ?3,
                started_at = COALESCE(started_at, ?3),
                completed_at = CASE WHEN ?4 THEN ?3 ELSE completed_at END,
                summary = COALESCE(?5, summary),
                failure_reason = COALESCE(?6, failure_reason),
                key_learnings = CASE WHEN ?7 = '[]' THEN key_learnings ELSE ?7 END
             WHERE id = ?1",
        )?
        .execute(params![
            task_id,
            next.as_str(),
            now,
            terminal,
            update.summary.filter(|s| !s.trim().is_empty()),
            update.failure_reason.filter(|s| !s.trim().is_empty()),
            serde_json::to_string(&update.key_learnings)?,
        ])?;
        tx.prepare_cached("UPDATE agents SET last_activity_at = ?2 WHERE id = ?1")?
            .execute(params![caller, now])?;
        if terminal {
            tx.prepare_cached(
                "UPDATE agents SET status = 'idle', current_task_id = NULL WHERE id = ?1 AND current_task_id = ?2",
            )?
            .execute(params![caller, task_id])?;
        }
        let released = if next == TaskStatus::Done {
            release_dependents(&tx, task_id, now)?
        } else {
            Vec::new()
        };
        let task = load_task(&tx, task_id)?;
        tx.commit()?;
        Ok(Reported { task, released })
    }

    /// Gives `agent_id` the first queued task in queue order, if the concurrency cap allows.
    pub fn claim_next(&self, agent_id: &str, max_active: u32) -> OpResult<Option<TaskView>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        check_claimant(&tx, agent_id, max_active)?;
        let next: Option<String> = tx
            .prepare_cached(&format!(
                "SELECT id FROM tasks WHERE status = 'queued' ORDER BY {QUEUE_ORDER_SQL} LIMIT 1"
            ))?
            .query_row([], |r| r.get(0))
            .optional()?;
        let Some(task_id) = next else { return Ok(None) };
        assign(&tx, &task_id, agent_id)?;
        let view = load_task(&tx, &task_id)?;
        tx.commit()?;
        Ok(Some(view))
    }

    /// Gives one specific queued task to `agent_id`. Of two concurrent claims, exactly one wins;
    /// the other gets a `Conflict`.
    pub fn claim_task(&self, task_id: &str, agent_id: &str, max_active: u32) -> OpResult<TaskView> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if status_of(&tx, task_id)?.is_none() {
            return Err(OpError::Missing {
                entity: Entity::Task,
                id: task_id.to_string(),
            });
        }
        check_claimant(&tx, agent_id, max_active)?;
        assign(&tx, task_id, agent_id)?;
        let view = load_task(&tx, task_id)?;
        tx.commit()?;
        Ok(view)
    }

    /// Puts an assigned or running task back in the queue (its agent died or was stopped).
    pub fn requeue_task(&self, task_id: &str, reason: &str) -> OpResult<TaskView> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (current, assignee) = status_of(&tx, task_id)?.ok_or_else(|| OpError::Missing {
            entity: Entity::Task,
            id: task_id.to_string(),
        })?;
        if !current.can_become(TaskStatus::Queued) || !current.is_active() {
            return Err(OpError::Invalid(format!(
                "task {task_id} is {current}; only assigned or in-progress tasks can be requeued"
            )));
        }
        let now = now_ms();
        tx.execute(
            "UPDATE tasks SET status = 'queued', assigned_agent_id = NULL, queued_at = ?2,
                updated_at = ?2, attempts = attempts + 1, failure_reason = ?3 WHERE id = ?1",
            params![task_id, now, reason],
        )?;
        if let Some(agent) = assignee {
            tx.execute(
                "UPDATE agents SET status = 'idle', current_task_id = NULL WHERE id = ?1 AND current_task_id = ?2",
                params![agent, task_id],
            )?;
        }
        let view = load_task(&tx, task_id)?;
        tx.commit()?;
        Ok(view)
    }

    /// How many tasks hold an agent right now.
    pub fn active_task_count(&self) -> OpResult<i64> {
        Ok(self
            .lock()
            .prepare_cached(
                "SELECT COUNT(*) FROM tasks WHERE status IN ('assigned', 'in_progress')",
            )?
            .query_row([], |r| r.get(0))?)
    }
}

/// Inserts a task inside the caller's transaction (a task alone, or a workflow's first task),
/// or returns the existing one its idempotency key names (`false`).
pub(super) fn insert_task(tx: &Connection, new: NewTask) -> OpResult<(TaskView, bool)> {
    if new.description.trim().is_empty() {
        return Err(OpError::Invalid("description must not be empty".into()));
    }
    if new.done_definition.trim().is_empty() {
        return Err(OpError::Invalid(
            "done_definition must not be empty: say how to tell the task is finished".into(),
        ));
    }
    if let Some(key) = &new.idempotency_key {
        let existing: Option<String> = tx
            .prepare_cached("SELECT id FROM tasks WHERE idempotency_key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?;
        if let Some(id) = existing {
            return Ok((load_task(tx, &id)?, false));
        }
    }

    // The creator's current task gives the default workflow and phase, and is the parent.
    let parent = creator_task(tx, new.created_by.as_deref())?;
    let workflow_id = new
        .workflow_id
        .clone()
        .or_else(|| parent.as_ref().and_then(|p| p.workflow_id.clone()));
    let parent_phase = parent.as_ref().map(|p| p.phase_order).filter(|o| *o > 0);
    let (phase_id, phase_order) = place(tx, workflow_id.as_deref(), new.phase, parent_phase)?;
    let id = new_id();
    let mut deps = new.depends_on.clone();
    deps.sort();
    deps.dedup();
    let unmet = check_dependencies(tx, &id, &deps)?;

    let priority = new.priority.unwrap_or(Priority::Medium);
    let status = TaskStatus::initial(unmet);
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO tasks (id, workflow_id, phase_id, phase_order, description, done_definition,
            priority, priority_weight, boosted, status, created_by_agent_id, parent_task_id,
            idempotency_key, created_at, queued_at, updated_at, base_ref)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?14, ?16)",
    )?
    .execute(params![
        id,
        workflow_id,
        phase_id,
        phase_order,
        new.description,
        new.done_definition,
        priority.as_str(),
        priority.weight(),
        new.boosted,
        status.as_str(),
        new.created_by,
        parent.as_ref().map(|p| &p.id),
        new.idempotency_key,
        now,
        (status == TaskStatus::Queued).then_some(now),
        new.base_ref,
    ])?;
    for dep in &deps {
        tx.prepare_cached(
            "INSERT INTO task_dependencies (task_id, depends_on_task_id) VALUES (?1, ?2)",
        )?
        .execute(params![id, dep])?;
    }
    let view = load_task(tx, &id)?;
    Ok((view, true))
}

/// The task an agent is working on, as the parent of the tasks it creates.
struct CreatorTask {
    id: String,
    workflow_id: Option<String>,
    phase_order: i64,
}

fn creator_task(tx: &Connection, agent: Option<&str>) -> OpResult<Option<CreatorTask>> {
    let Some(agent) = agent else {
        return Ok(None);
    };
    Ok(tx
        .prepare_cached(
            "SELECT t.id, t.workflow_id, t.phase_order FROM agents a
             JOIN tasks t ON t.id = a.current_task_id WHERE a.id = ?1",
        )?
        .query_row(params![agent], |r| {
            Ok(CreatorTask {
                id: r.get(0)?,
                workflow_id: r.get(1)?,
                phase_order: r.get(2)?,
            })
        })
        .optional()?)
}

/// The phase (its row id and order) a new task goes in: the one asked for, else the creator's,
/// else the first; in a workflow that still takes tasks. Outside any workflow, order 0.
fn place(
    tx: &Connection,
    workflow_id: Option<&str>,
    phase: Option<i64>,
    parent_phase: Option<i64>,
) -> OpResult<(Option<String>, i64)> {
    let Some(wf) = workflow_id else {
        if let Some(p) = phase {
            return Err(OpError::Invalid(format!(
                "phase {p} given but no workflow: pass workflow_id, or create the task from an agent working in a workflow"
            )));
        }
        return Ok((None, 0));
    };
    let status: Option<WorkflowStatus> = tx
        .prepare_cached("SELECT status FROM workflows WHERE id = ?1")?
        .query_row(params![wf], |r| r.get(0))
        .optional()?;
    match status {
        None => {
            return Err(OpError::Missing {
                entity: Entity::Workflow,
                id: wf.to_string(),
            });
        }
        Some(WorkflowStatus::Active | WorkflowStatus::Paused) => {}
        Some(s) => {
            return Err(OpError::Invalid(format!(
                "workflow {wf} is {s}; tasks can only be added to active workflows"
            )));
        }
    }
    let order = phase.or(parent_phase).unwrap_or(1);
    let id: Option<String> = tx
        .prepare_cached("SELECT id FROM phases WHERE workflow_id = ?1 AND phase_order = ?2")?
        .query_row(params![wf, order], |r| r.get(0))
        .optional()?;
    match id {
        Some(id) => Ok((Some(id), order)),
        None => {
            let max: i64 = tx.query_row(
                "SELECT COALESCE(MAX(phase_order), 0) FROM phases WHERE workflow_id = ?1",
                params![wf],
                |r| r.get(0),
            )?;
            Err(OpError::Invalid(format!(
                "phase {order} does not exist in workflow {wf}: use a phase number from 1 to {max}"
            )))
        }
    }
}

/// Checks that every dependency exists and that none would close a cycle; how many are not done.
fn check_dependencies(tx: &Connection, id: &str, deps: &[String]) -> OpResult<usize> {
    let mut graph = DependencyGraph::new();
    let mut unmet = 0;
    for dep in deps {
        match status_of(tx, dep)? {
            None => {
                return Err(OpError::NotFound(format!(
                    "depends_on: no task with id {dep}"
                )));
            }
            Some((s, _)) if s != TaskStatus::Done => unmet += 1,
            Some(_) => {}
        }
        graph
            .add(id, dep)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
    }
    Ok(unmet)
}

fn check_claimant(conn: &Connection, agent_id: &str, max_active: u32) -> OpResult<()> {
    let agent: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT status, current_task_id FROM agents WHERE id = ?1")?
        .query_row(params![agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match agent {
        None => {
            return Err(OpError::Missing {
                entity: Entity::Agent,
                id: agent_id.to_string(),
            });
        }
        Some((status, _)) if status == "terminated" => {
            return Err(OpError::Invalid(format!("agent {agent_id} is terminated")));
        }
        Some((_, Some(task))) => {
            return Err(OpError::Conflict(format!(
                "agent {agent_id} is already working on task {task}"
            )));
        }
        Some(_) => {}
    }
    let active: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM tasks WHERE status IN ('assigned', 'in_progress')")?
        .query_row([], |r| r.get(0))?;
    if active >= i64::from(max_active) {
        return Err(OpError::Conflict(format!(
            "at capacity: {active} of max_concurrent_agents={max_active} agents are working"
        )));
    }
    Ok(())
}

/// The atomic step of a claim: only a row still `queued` changes, and the caller checks that one
/// did.
fn assign(conn: &Connection, task_id: &str, agent_id: &str) -> OpResult<()> {
    let now = now_ms();
    let changed = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'assigned', assigned_agent_id = ?2, assigned_at = ?3, updated_at = ?3
             WHERE id = ?1 AND status = 'queued'",
        )?
        .execute(params![task_id, agent_id, now])?;
    if changed != 1 {
        let (status, who) = status_of(conn, task_id)?.unwrap_or((TaskStatus::Pending, None));
        return Err(OpError::Conflict(format!(
            "task {task_id} is {status}{}, not queued",
            who.map(|w| format!(" (agent {w})")).unwrap_or_default()
        )));
    }
    conn.prepare_cached(
        "UPDATE agents SET status = 'working', current_task_id = ?2, last_activity_at = ?3 WHERE id = ?1",
    )?
    .execute(params![agent_id, task_id, now])?;
    Ok(())
}

/// Queues each blocked dependent of `done_task` that has no unfinished dependency left.
/// Queues the blocked dependents of `done_task` whose dependencies are now all done; their ids.
fn release_dependents(conn: &Connection, done_task: &str, now: i64) -> OpResult<Vec<String>> {
    let released = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'queued', queued_at = ?2, updated_at = ?2
         WHERE status = 'blocked'
           AND id IN (SELECT task_id FROM task_dependencies WHERE depends_on_task_id = ?1)
           AND NOT EXISTS (SELECT 1 FROM task_dependencies d JOIN tasks dep ON dep.id = d.depends_on_task_id
                           WHERE d.task_id = tasks.id AND dep.status != 'done')
         RETURNING id",
        )?
        .query_map(params![done_task, now], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueKey;

    fn task(store: &Store, desc: &str, priority: Priority, deps: &[&str]) -> TaskView {
        store
            .create_task(NewTask {
                description: desc.into(),
                done_definition: "done".into(),
                priority: Some(priority),
                depends_on: deps.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .unwrap()
            .0
    }

    #[test]
    fn dependencies_block_until_done_then_queue() {
        let store = Store::open_in_memory().unwrap();
        let (agent, _) = store.register_agent("a", None).unwrap();
        let first = task(&store, "first", Priority::Low, &[]);
        let second = task(&store, "second", Priority::High, &[&first.id]);
        assert_eq!(second.status, TaskStatus::Blocked);
        assert_eq!(second.waiting_on, vec![first.id.clone()]);

        // The blocked high-priority task is never claimed ahead of its dependency.
        let claimed = store.claim_next(&agent.id, 4).unwrap().unwrap();
        assert_eq!(claimed.id, first.id);
        let done = store
            .update_task_status(
                &agent.id,
                &first.id,
                StatusUpdate {
                    status: TaskStatus::Done,
                    summary: Some("ok".into()),
                    failure_reason: None,
                    key_learnings: vec!["x".into()],
                },
            )
            .unwrap();
        assert_eq!(done.task.key_learnings, vec!["x"]);
        assert_eq!(done.released, vec![second.id.clone()]);
        let second = store.get_task(&second.id).unwrap();
        assert_eq!(second.status, TaskStatus::Queued);
        assert!(second.waiting_on.is_empty());
        assert_eq!(store.get_agent(&agent.id).unwrap().current_task_id, None);
    }

    #[test]
    fn unknown_dependency_and_phase_without_workflow_are_rejected() {
        let store = Store::open_in_memory().unwrap();
        let err = store
            .create_task(NewTask {
                description: "x".into(),
                done_definition: "y".into(),
                depends_on: vec!["nope".into()],
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("depends_on: no task with id nope"));
        let err = store
            .create_task(NewTask {
                description: "x".into(),
                done_definition: "y".into(),
                phase: Some(2),
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("no workflow"), "{err}");
    }

    #[test]
    fn idempotency_key_returns_the_first_task() {
        let store = Store::open_in_memory().unwrap();
        let new = NewTask {
            description: "x".into(),
            done_definition: "y".into(),
            idempotency_key: Some("k1".into()),
            ..Default::default()
        };
        let (a, created_a) = store.create_task(new.clone()).unwrap();
        let (b, created_b) = store.create_task(new).unwrap();
        assert!(created_a && !created_b);
        assert_eq!(a.id, b.id);
        assert_eq!(store.list_tasks(&TaskFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn concurrent_claims_of_one_task_have_one_winner() {
        let store = Store::open_in_memory().unwrap();
        let t = task(&store, "contested", Priority::Medium, &[]);
        let agents: Vec<String> = (0..8)
            .map(|i| store.register_agent(&format!("a{i}"), None).unwrap().0.id)
            .collect();
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = agents
                .iter()
                .map(|a| {
                    let store = store.clone();
                    let id = t.id.clone();
                    s.spawn(move || store.claim_task(&id, a, 100).is_ok() as usize)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn the_cap_is_enforced_and_requeue_frees_a_slot() {
        let store = Store::open_in_memory().unwrap();
        for i in 0..3 {
            task(&store, &format!("t{i}"), Priority::Medium, &[]);
        }
        let a = store.register_agent("a", None).unwrap().0.id;
        let b = store.register_agent("b", None).unwrap().0.id;
        let first = store.claim_next(&a, 1).unwrap().unwrap();
        let err = store.claim_next(&b, 1).unwrap_err().to_string();
        assert!(err.contains("at capacity"), "{err}");
        store.requeue_task(&first.id, "agent died").unwrap();
        assert_eq!(store.active_task_count().unwrap(), 0);
        assert!(store.claim_next(&b, 1).unwrap().is_some());
    }

    #[test]
    fn only_the_assignee_may_update() {
        let store = Store::open_in_memory().unwrap();
        let t = task(&store, "mine", Priority::Medium, &[]);
        let a = store.register_agent("a", None).unwrap().0.id;
        let b = store.register_agent("b", None).unwrap().0.id;
        store.claim_task(&t.id, &a, 4).unwrap();
        let update = StatusUpdate {
            status: TaskStatus::InProgress,
            summary: None,
            failure_reason: None,
            key_learnings: vec![],
        };
        let err = store
            .update_task_status(&b, &t.id, update.clone())
            .unwrap_err();
        assert!(matches!(err, OpError::Forbidden(_)), "{err}");
        assert_eq!(
            store
                .update_task_status(&a, &t.id, update)
                .unwrap()
                .task
                .status,
            TaskStatus::InProgress
        );
        let no_summary = StatusUpdate {
            status: TaskStatus::Done,
            summary: None,
            failure_reason: None,
            key_learnings: vec![],
        };
        assert!(
            store
                .update_task_status(&a, &t.id, no_summary)
                .unwrap_err()
                .to_string()
                .contains("summary is required")
        );
    }

    /// The claim query must hand out tasks in exactly the order `QueueKey` defines.
    #[test]
    fn sql_claim_order_matches_the_queue_key() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 24,
            ..Default::default()
        });
        runner
            .run(
                &proptest::collection::vec((any::<bool>(), 0usize..3, 0i64..3, 0i64..5), 1..12),
                |specs| {
                    let store = Store::open_in_memory().unwrap();
                    let mut expected = Vec::new();
                    for (seq, (boosted, p, phase, at)) in specs.iter().enumerate() {
                        let priority = [Priority::Low, Priority::Medium, Priority::High][*p];
                        let (t, _) = store
                            .create_task(NewTask {
                                description: format!("t{seq}"),
                                done_definition: "d".into(),
                                priority: Some(priority),
                                boosted: *boosted,
                                ..Default::default()
                            })
                            .unwrap();
                        store
                            .lock()
                            .execute(
                                "UPDATE tasks SET phase_order = ?2, queued_at = ?3 WHERE id = ?1",
                                params![t.id, phase, at],
                            )
                            .unwrap();
                        expected.push((
                            QueueKey {
                                boosted: *boosted,
                                priority,
                                phase_order: *phase,
                                queued_at_ms: *at,
                                seq: seq as i64,
                            },
                            t.id,
                        ));
                    }
                    expected.sort_by_key(|e| e.0);
                    let agent = store.register_agent("a", None).unwrap().0.id;
                    for (_, id) in expected {
                        let got = store.claim_next(&agent, 100).unwrap().unwrap();
                        prop_assert_eq!(&got.id, &id);
                        store.requeue_task(&got.id, "x").unwrap();
                        store
                            .lock()
                            .execute(
                                "UPDATE tasks SET status = 'done' WHERE id = ?1",
                                params![got.id],
                            )
                            .unwrap();
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}
