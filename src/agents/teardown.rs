//! The one way an agent ends, whatever the reason: keep its last terminal text in its log, end
//! its session, commit what is left in its worktree, settle its task (merge it, requeue it or
//! fail it), remove the worktree, and retire the agent (terminated, slot freed, forgotten).

use anyhow::Result;

use super::manager::AgentManager;
use super::policy::{self, TaskFate};
use crate::queue::TaskStatus;
use crate::services;
use crate::states::{EventKind, MergeStatus};
use crate::store::AgentRuntime;
use crate::views::TaskView;

/// Why an agent ends, which decides what becomes of its task.
pub(super) enum Ending<'a> {
    /// It reported its task done or failed: merge the work when done.
    Finished { task: &'a TaskView },
    /// Its program exited or its session vanished: another agent continues from its commit.
    Died,
    /// A person stopped it: its task fails, its work stays on its branch.
    Killed,
    /// Its launch failed; `retry` when the cause was not the task's.
    LaunchFailed { reason: &'a str, retry: bool },
    /// It stopped without reporting its task and reminders did not help: its task goes to a
    /// new agent (`requeue`, under `max_attempts`) or fails.
    Stuck { requeue: bool },
}

/// What is left of an ended agent's work.
pub(super) struct Ended {
    /// The commit made of what was left in its worktree, if anything was.
    pub commit: Option<String>,
}

impl AgentManager {
    pub(super) async fn teardown(&self, rt: &AgentRuntime, ending: Ending<'_>) -> Result<Ended> {
        let store = &self.state.store;
        let agent = rt.agent_id.as_str();
        if matches!(ending, Ending::Died | Ending::Killed | Ending::Stuck { .. }) {
            // It reported its task ended just before it was stopped or found dead: its report
            // stands, and a done task's work is merged, not abandoned.
            if let Some(task) = self.reported_task(agent) {
                return Box::pin(self.teardown(rt, Ending::Finished { task: &task })).await;
            }
            // Finished and merged before a crash, only not yet retired.
            if rt.task_id.is_none() && rt.merge_status.is_some_and(|m| m != MergeStatus::Active) {
                self.retire(agent)?;
                return Ok(Ended { commit: None });
            }
        }
        let task_id = match &ending {
            Ending::Finished { task } => Some(task.id.clone()),
            _ => rt.task_id.clone(),
        };
        // The session may exist before the database records it (a launch that failed early).
        let session = rt
            .tmux_session
            .clone()
            .unwrap_or_else(|| self.session_name(agent));
        let commit = self.stop(rt, &session, task_id.as_deref(), &ending).await;
        let attempts = || {
            task_id
                .as_deref()
                .map(|t| store.task_attempts(t).unwrap_or(0))
                .unwrap_or(0)
        };
        let max = self.state.config.agents.max_attempts;
        match (&ending, task_id.as_deref()) {
            (Ending::Finished { task }, _) if task.status == TaskStatus::Done => {
                // A merge that fails outright leaves the work on the agent's branch.
                if let Err(e) = self.merge_back(rt, task).await {
                    tracing::error!(agent, task = %task.id, "merging the agent's work failed: {e:#}");
                }
            }
            (Ending::Died, Some(task)) => {
                let fate = policy::after_unfinished(attempts(), max);
                if let TaskFate::Requeue { .. } = fate {
                    // The next agent continues from whatever this one committed.
                    let head = match (&rt.branch, &commit) {
                        (_, Some(c)) => Some(c.clone()),
                        (Some(b), None) => {
                            let (wt, b) = (self.worktrees.clone(), b.clone());
                            self.blocking(move || wt.branch_commit(&b)).await.ok()
                        }
                        _ => None,
                    };
                    if let Some(h) = head {
                        let _ = store.set_task_base_ref(task, &h);
                    }
                }
                self.settle_unfinished(task, fate, |attempt, max| match attempt {
                    Some(a) => {
                        format!("agent {agent} stopped before finishing (attempt {a} of {max})")
                    }
                    None => format!("agents stopped before finishing this task {max} times"),
                });
            }
            (Ending::Stuck { requeue: true }, Some(task)) => {
                if let Some(c) = &commit {
                    let _ = store.set_task_base_ref(task, c);
                }
                let fate = policy::after_unfinished(attempts(), max);
                self.settle_unfinished(task, fate, |attempt, max| match attempt {
                    Some(a) => format!(
                        "agent {agent} stopped working without reporting the task, and reminders did not help (attempt {a} of {max})"
                    ),
                    None => format!("agents stopped working without reporting this task {max} times"),
                });
            }
            (Ending::Stuck { requeue: false }, Some(task)) => {
                let _ = services::tasks::fail(
                    &self.state,
                    task,
                    "the agent stopped working without reporting the task, and reminders did not help",
                );
            }
            (Ending::Killed, Some(task)) => {
                let _ = services::tasks::fail(
                    &self.state,
                    task,
                    "the agent was stopped by a person (hephaestus agents kill)",
                );
            }
            (Ending::LaunchFailed { reason, retry }, Some(task)) => {
                if let Some(c) = &commit {
                    let _ = store.set_task_base_ref(task, c);
                }
                if *retry {
                    let fate = policy::after_unfinished(attempts(), max);
                    self.settle_unfinished(task, fate, |attempt, max| match attempt {
                        Some(a) => format!(
                            "{reason}\n(the launch failed; the task goes to a new agent, attempt {a} of {max})"
                        ),
                        None => format!("{reason}\n(the launch failed {max} times)"),
                    });
                } else {
                    let _ = services::tasks::fail(&self.state, task, reason);
                }
            }
            // A task failed by its own agent, or an agent with no task (a leftover).
            _ => {}
        }
        if !matches!(&ending, Ending::Finished { task } if task.status == TaskStatus::Done) {
            let _ = store.set_agent_merge(agent, MergeStatus::Abandoned, None);
            // A branch with nothing of the agent's own goes too; one with work stays.
            let keep_branch = commit.is_some() || !matches!(ending, Ending::LaunchFailed { .. });
            self.remove_worktree(agent, !keep_branch).await;
        }
        self.retire(agent)?;
        Ok(Ended { commit })
    }

    /// Keeps the agent's last terminal text in its log (the entry names why it ended), ends
    /// its session and commits what is left in its worktree; that commit, if any.
    async fn stop(
        &self,
        rt: &AgentRuntime,
        session: &str,
        task_id: Option<&str>,
        ending: &Ending<'_>,
    ) -> Option<String> {
        let agent = rt.agent_id.as_str();
        if matches!(ending, Ending::Finished { .. }) {
            // Give the CLI a moment to print its last words after the tool call returned.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        let output = self.terminal.capture(session, 10_000).await;
        let (kind, message, commit_message) = match ending {
            Ending::Finished { task } => (
                EventKind::Terminated,
                format!("task {}", task.status),
                format!(
                    "[hephaestus] {}",
                    crate::text::first_line(&task.description, 60)
                ),
            ),
            Ending::Died => (
                EventKind::Died,
                "the agent's program exited or its session vanished".to_string(),
                "[hephaestus] work of an agent that stopped".to_string(),
            ),
            Ending::Killed => (
                EventKind::Killed,
                "stopped by a person".to_string(),
                "[hephaestus] work of an agent stopped by a person".to_string(),
            ),
            Ending::Stuck { .. } => (
                EventKind::Stuck,
                "ended: it stopped working without reporting its task".to_string(),
                "[hephaestus] work of an agent that stopped without reporting".to_string(),
            ),
            Ending::LaunchFailed { reason, .. } => (
                EventKind::LaunchFailed,
                reason.to_string(),
                "[hephaestus] work of an agent that did not start properly".to_string(),
            ),
        };
        let _ = self
            .state
            .events
            .record_with(agent, task_id, kind, &message, Some(&output));
        let _ = self.terminal.end(session).await;
        match self.checkpoint(rt, &commit_message).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(agent, "final commit failed: {e:#}");
                None
            }
        }
    }

    /// The task the agent reported done or failed, if it has not been finished since.
    fn reported_task(&self, agent: &str) -> Option<TaskView> {
        let ended = self.state.store.unfinished_agents().ok()?;
        let (_, task_id) = ended.into_iter().find(|(a, _)| a.agent_id == agent)?;
        self.state.store.get_task(&task_id).ok()
    }

    /// Requeues or fails a task whose agent did not finish it; `reason(Some(attempt), max)` or
    /// `reason(None, attempts)` says why.
    fn settle_unfinished(
        &self,
        task: &str,
        fate: TaskFate,
        reason: impl Fn(Option<u32>, u32) -> String,
    ) {
        match fate {
            TaskFate::Requeue { attempt, max } => {
                tracing::warn!(task, attempt, max, "task requeued for a new agent");
                let _ = services::tasks::requeue(&self.state, task, &reason(Some(attempt), max));
            }
            TaskFate::Fail { attempts } => {
                tracing::warn!(task, attempts, "task failed after its last attempt");
                let _ = services::tasks::fail(&self.state, task, &reason(None, attempts));
            }
        }
    }

    /// Commits what is left in the agent's worktree; the commit, if there was anything.
    async fn checkpoint(&self, rt: &AgentRuntime, message: &str) -> Result<Option<String>> {
        let Some(path) = rt.worktree_path.clone().map(std::path::PathBuf::from) else {
            return Ok(None);
        };
        let (wt, message) = (self.worktrees.clone(), message.to_string());
        self.blocking(move || {
            if path.exists() {
                wt.checkpoint(&path, &message)
            } else {
                Ok(None)
            }
        })
        .await
    }

    pub(super) async fn remove_worktree(&self, agent_id: &str, delete_branch: bool) {
        let wt = self.worktrees.clone();
        let id8 = super::manager::id8(agent_id).to_string();
        if let Err(e) = self.blocking(move || wt.remove(&id8, delete_branch)).await {
            tracing::warn!(agent = %agent_id, "cannot remove the worktree: {e:#}");
        }
    }

    /// The agent is over: terminated, its slot free, its session progress forgotten.
    pub(super) fn retire(&self, agent_id: &str) -> Result<()> {
        let result = self.state.store.terminate_agent(agent_id);
        self.release_slot(agent_id);
        self.progress.forget(agent_id);
        self.progress.wake_loop();
        Ok(result?)
    }
}
