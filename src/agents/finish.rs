//! Agents whose task ended: found in the database (so a report that came just before a crash is
//! finished by the next coordinator too), ended through `teardown`, and their work merged into
//! the base branch. A merge that conflicts queues a follow-up task; one that waits for the
//! user's checkout is tried again every few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::manager::AgentManager;
use super::policy;
use super::prompt;
use super::teardown::Ending;
use super::worktree::MergeOutcome;
use crate::queue::Priority;
use crate::services;
use crate::states::{EventKind, MergeStatus};
use crate::store::{AgentRuntime, NewTask};
use crate::views::TaskView;

/// How often merges that wait for the user's checkout are tried again.
const MERGE_RETRY_EVERY: Duration = Duration::from_secs(4);

impl AgentManager {
    /// Starts finishing every agent whose task ended and which nobody is busy with.
    pub(super) async fn finish_ended(self: &Arc<Self>) {
        let Ok(ended) = self.state.store.unfinished_agents() else {
            return;
        };
        for (rt, task_id) in ended {
            if !self.claim_busy(&rt.agent_id) {
                continue; // being launched (a fast agent) or finished already
            }
            let me = self.clone();
            self.tasks.spawn(async move {
                let agent_id = rt.agent_id.clone();
                if let Err(e) = me.finish(&rt, &task_id).await {
                    tracing::error!(agent = %agent_id, task = %task_id, "finishing the agent failed: {e:#}");
                }
                me.set_busy(&agent_id, false);
            });
        }
    }

    async fn finish(&self, rt: &AgentRuntime, task_id: &str) -> Result<()> {
        let task = self.state.store.get_task(task_id)?;
        self.teardown(rt, Ending::Finished { task: &task }).await?;
        Ok(())
    }

    /// Merges the agent's branch into the base branch; on a conflict nothing changes and a
    /// follow-up task is queued to resolve it on the agent's branch.
    pub(super) async fn merge_back(&self, rt: &AgentRuntime, task: &TaskView) -> Result<()> {
        let Some(branch) = rt.branch.clone() else {
            return Ok(());
        };
        let agent = rt.agent_id.as_str();
        let events = &self.state.events;
        let wt = self.worktrees.clone();
        let (b, target) = (branch.clone(), self.base_branch.clone());
        let message = format!(
            "Merge {branch}: {}",
            crate::text::first_line(&task.description, 60)
        );
        let outcome = self
            .blocking(move || wt.merge(&b, &target, &message))
            .await?;
        let outcome_of = |status, files: &[String], commit: Option<&str>| {
            services::tasks::merge_outcome(&self.state, &task.id, agent, status, files, commit)
        };
        match outcome {
            MergeOutcome::Conflict { files } => {
                outcome_of(MergeStatus::Conflict, &files, None)?;
                events.record(
                    agent,
                    Some(&task.id),
                    EventKind::MergeConflict,
                    &files.join(", "),
                )?;
                self.queue_conflict_follow_up(&branch, task, &files).await?;
                self.remove_worktree(agent, false).await;
            }
            MergeOutcome::Waiting { files } => {
                // Logged once; the retries that find the same files in the way stay quiet.
                if task.merge_status != Some(MergeStatus::Waiting) {
                    events.record(
                        agent,
                        Some(&task.id),
                        EventKind::MergeWaiting,
                        &format!(
                            "{} is checked out with changes of your own to {}: the merge waits until they are committed or stashed",
                            self.base_branch,
                            files.join(", ")
                        ),
                    )?;
                    tracing::warn!(task = %task.id, files = %files.join(", "), "the merge into the checked-out {} waits for your changes to be committed or stashed", self.base_branch);
                }
                outcome_of(MergeStatus::Waiting, &files, None)?;
                // The branch holds the work; the worktree is no longer needed.
                self.remove_worktree(agent, false).await;
            }
            MergeOutcome::UpToDate => {
                outcome_of(MergeStatus::UpToDate, &[], None)?;
                self.remove_worktree(agent, true).await;
            }
            MergeOutcome::FastForward { commit } | MergeOutcome::Merged { commit } => {
                outcome_of(MergeStatus::Merged, &[], Some(&commit))?;
                events.record(
                    agent,
                    Some(&task.id),
                    EventKind::Merged,
                    &format!("{branch} into {} at {commit}", self.base_branch),
                )?;
                self.remove_worktree(agent, true).await;
            }
        }
        Ok(())
    }

    /// A task, starting from the agent's branch, that merges the base into it and resolves the
    /// conflict there (once per conflicting task: its idempotency key).
    async fn queue_conflict_follow_up(
        &self,
        branch: &str,
        task: &TaskView,
        files: &[String],
    ) -> Result<()> {
        let head = {
            let (wt, b) = (self.worktrees.clone(), branch.to_string());
            self.blocking(move || wt.branch_commit(&b)).await?
        };
        let values = HashMap::from([
            ("branch", branch.to_string()),
            ("base", self.base_branch.clone()),
            ("task_id", task.id.clone()),
            ("files", files.join(", ")),
            ("original", task.description.clone()),
        ]);
        let description = prompt::render(prompt::CONFLICT_TASK, &values)?
            .trim_end()
            .to_string();
        services::tasks::create(
            &self.state,
            NewTask {
                description,
                done_definition: format!(
                    "{} merged into this branch with no conflict left; tests pass",
                    self.base_branch
                ),
                priority: Some(Priority::High),
                phase: task.phase,
                workflow_id: task.workflow_id.clone(),
                idempotency_key: Some(format!("resolve-conflict-{}", task.id)),
                base_ref: Some(head),
                ..Default::default()
            },
        )
        .map_err(|e| anyhow!("cannot queue the conflict follow-up: {e}"))?;
        Ok(())
    }

    /// Merges that wait for the user's checkout are tried again, at most every few seconds
    /// (each try reads the checkout's status).
    pub(super) async fn retry_waiting_merges(&self) {
        {
            let mut last = self
                .last_merge_retry
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            if !policy::merge_retry_due(*last, now, MERGE_RETRY_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let Ok(waiting) = self.state.store.waiting_merges() else {
            return;
        };
        for (rt, task_id) in waiting {
            let Ok(task) = self.state.store.get_task(&task_id) else {
                continue;
            };
            if let Err(e) = self.merge_back(&rt, &task).await {
                tracing::warn!(task = %task_id, "retrying the merge failed: {e:#}");
            }
        }
    }
}
