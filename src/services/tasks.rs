//! Tasks: create, report, hand to an agent, requeue, fail, record a merge.

use crate::events::Event;
use crate::queue::TaskStatus;
use crate::state::AppState;
use crate::states::{EventKind, MemoryType, MergeStatus};
use crate::store::{NewMemory, NewTask, OpResult, StatusUpdate};
use crate::views::TaskView;

/// Creates a task (or returns the one its idempotency key names); true when it is new.
pub fn create(state: &AppState, new: NewTask) -> OpResult<(TaskView, bool)> {
    let (task, created) = state.store.create_task(new)?;
    if created {
        state.events.publish(Event::TaskCreated {
            task_id: task.id.clone(),
            workflow_id: task.workflow_id.clone(),
            status: task.status,
        });
    }
    Ok((task, created))
}

/// An agent reports on its own task: the status change, its log entry, its key learnings as
/// memories (near-duplicates skipped; a failing embedder leaves them pending, never lost), and
/// the dependents it unblocked.
pub async fn report(
    state: &crate::state::Shared,
    agent_id: &str,
    task_id: &str,
    update: StatusUpdate,
) -> OpResult<TaskView> {
    let learnings = update.key_learnings.clone();
    let reported = state.store.update_task_status(agent_id, task_id, update)?;
    let task = reported.task;
    // The report is committed: what follows must not make it look refused.
    if let Err(e) = state.events.record(
        agent_id,
        Some(&task.id),
        EventKind::TaskStatus,
        task.status.as_str(),
    ) {
        tracing::warn!(task = %task.id, "cannot log the report: {e}");
    }
    let learned: Vec<NewMemory> = learnings
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| NewMemory {
            content: l.clone(),
            memory_type: MemoryType::Learning,
            agent_id: Some(agent_id.to_string()),
            task_id: Some(task.id.clone()),
            workflow_id: task.workflow_id.clone(),
            ..Default::default()
        })
        .collect();
    if !learned.is_empty() {
        let memory_state = state.clone();
        let saved = tokio::task::spawn_blocking(move || {
            learned
                .into_iter()
                .try_for_each(|m| super::memory::save(&memory_state, m).map(drop))
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(task = %task.id, "cannot save key learnings: {e:#}"),
            Err(e) => tracing::warn!(task = %task.id, "cannot save key learnings: {e}"),
        }
    }
    state.events.publish(Event::TaskStatusChanged {
        task_id: task.id.clone(),
        agent_id: Some(agent_id.to_string()),
        status: task.status,
    });
    for id in reported.released {
        state.events.publish(Event::TaskStatusChanged {
            task_id: id,
            agent_id: None,
            status: TaskStatus::Queued,
        });
    }
    Ok(task)
}

/// Hands a queued task to an agent (a person's `task assign`), under the concurrency cap.
pub fn assign(state: &AppState, task_id: &str, agent_id: &str) -> OpResult<TaskView> {
    let task = state
        .store
        .claim_task(task_id, agent_id, state.config.max_concurrent_agents)?;
    claimed(state, &task, agent_id);
    Ok(task)
}

/// The first queued task in queue order, for `agent_id`, if the cap allows.
pub fn claim_next(state: &AppState, agent_id: &str) -> OpResult<Option<TaskView>> {
    let task = state
        .store
        .claim_next(agent_id, state.config.max_concurrent_agents)?;
    if let Some(t) = &task {
        claimed(state, t, agent_id);
    }
    Ok(task)
}

fn claimed(state: &AppState, task: &TaskView, agent_id: &str) {
    state.events.publish(Event::TaskStatusChanged {
        task_id: task.id.clone(),
        agent_id: Some(agent_id.to_string()),
        status: task.status,
    });
}

/// Puts an assigned or running task back in the queue (its agent died or did not start).
pub fn requeue(state: &AppState, task_id: &str, reason: &str) -> OpResult<TaskView> {
    let task = state.store.requeue_task(task_id, reason)?;
    state.events.publish(Event::TaskStatusChanged {
        task_id: task.id.clone(),
        agent_id: None,
        status: task.status,
    });
    Ok(task)
}

/// Fails an assigned or running task for a reason outside its agent's report.
/// A task that ended meanwhile is left as it is.
pub fn fail(state: &AppState, task_id: &str, reason: &str) -> OpResult<()> {
    if state.store.fail_task(task_id, reason)? {
        state.events.publish(Event::TaskStatusChanged {
            task_id: task_id.to_string(),
            agent_id: None,
            status: TaskStatus::Failed,
        });
    }
    Ok(())
}

/// How merging a task's work went, on the task and on its agent.
pub fn merge_outcome(
    state: &AppState,
    task_id: &str,
    agent_id: &str,
    status: MergeStatus,
    files: &[String],
    commit: Option<&str>,
) -> OpResult<()> {
    // An agent whose branch had nothing new counts as merged: its work is in the base.
    let agent_status = match status {
        MergeStatus::UpToDate => MergeStatus::Merged,
        other => other,
    };
    state
        .store
        .set_merge(task_id, agent_id, status, agent_status, files, commit)?;
    state.events.publish(Event::TaskMerge {
        task_id: task_id.to_string(),
        agent_id: agent_id.to_string(),
        status,
        files: files.to_vec(),
    });
    Ok(())
}
