//! Launches a restart interrupted (even `kill -9`): at start, each agent whose task is still
//! `assigned` is picked up where its events say it stopped (`policy::resume`). Agents whose task
//! ended before the restart need nothing here: the loop finishes them (`finish.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::manager::AgentManager;
use super::policy::{self, LaunchProgress, Resume};
use crate::queue::TaskStatus;
use crate::services;
use crate::states::{AgentStatus, EventKind};
use crate::store::AgentRuntime;

/// How long a resumed launch waits at least for the agent's shim to come back: a shim that was
/// waiting for the coordinator retries every second.
const RESUME_GRACE: Duration = Duration::from_secs(10);

impl AgentManager {
    pub(super) async fn resume_interrupted_launches(self: &Arc<Self>) {
        let store = &self.state.store;
        let Ok(agents) = store.all_managed_agents() else {
            return;
        };
        for rt in agents {
            let Some(task_id) = rt.task_id.clone() else {
                continue;
            };
            if rt.status == AgentStatus::Terminated
                || !store
                    .get_task(&task_id)
                    .is_ok_and(|t| t.status == TaskStatus::Assigned)
            {
                continue;
            }
            let events = match store.agent_events(&rt.agent_id) {
                Ok(events) => events,
                Err(e) => {
                    // Without its log the launch's progress is unknown: leave the agent be
                    // rather than type its task in again.
                    tracing::warn!(agent = %rt.agent_id, "cannot read the agent's events: {e}");
                    continue;
                }
            };
            let logged = |kind: EventKind| events.iter().any(|e| e.kind == kind);
            let progress = LaunchProgress {
                session: rt.tmux_session.is_some(),
                connected: logged(EventKind::Connected),
                tools_listed: logged(EventKind::ToolsListed),
                typed: logged(EventKind::PromptSent),
                delivered: logged(EventKind::PromptDelivered),
            };
            match policy::resume(progress) {
                Resume::Adopt => {}
                Resume::Requeue => self.requeue_unstarted(&rt, &task_id).await,
                Resume::Continue {
                    wait_ready,
                    connected,
                    paste,
                } => {
                    tracing::info!(agent = %rt.agent_id, task = %task_id, ?progress, "resuming an interrupted launch");
                    let _ = self.state.events.record(
                        &rt.agent_id,
                        Some(&task_id),
                        EventKind::LaunchResumed,
                        &format!(
                            "the coordinator restarted during the launch (connected: {}, tools listed: {}, message typed: {})",
                            progress.connected, progress.tools_listed, progress.typed
                        ),
                    );
                    self.take_slot(&rt.agent_id);
                    let me = self.clone();
                    self.tasks.spawn(async move {
                        let agent_id = rt.agent_id.clone();
                        let result = me
                            .resume_launch(&rt, &task_id, wait_ready, connected, paste)
                            .await;
                        me.launch_ended(&agent_id, &task_id, result).await;
                    });
                }
            }
        }
    }

    /// The coordinator stopped before the agent's session started: a new agent gets the task.
    async fn requeue_unstarted(&self, rt: &AgentRuntime, task_id: &str) {
        let _ = self.state.events.record(
            &rt.agent_id,
            Some(task_id),
            EventKind::LaunchInterrupted,
            "the coordinator stopped before the agent's session started",
        );
        let _ = services::tasks::requeue(
            &self.state,
            task_id,
            "the coordinator stopped while starting an agent for this task",
        );
        // The session may have started after all, too late to be recorded.
        let _ = self.terminal.end(&self.session_name(&rt.agent_id)).await;
        self.remove_worktree(&rt.agent_id, true).await;
        let _ = self.retire(&rt.agent_id);
    }

    async fn resume_launch(
        &self,
        rt: &AgentRuntime,
        task_id: &str,
        wait_ready: bool,
        connected: bool,
        paste: bool,
    ) -> Result<()> {
        let session = rt.tmux_session.clone().unwrap_or_default();
        if wait_ready {
            // The launch's own deadline, counted from when it began; a shim that waited for
            // this coordinator gets a moment to connect even when that deadline has passed.
            let ready_timeout = Duration::from_secs(self.state.config.agents.ready_timeout_secs);
            let began = Duration::from_millis(rt.created_at_ms.max(0) as u64);
            let now = Duration::from_millis(crate::time::now_ms().max(0) as u64);
            let left = (began + ready_timeout)
                .saturating_sub(now)
                .max(RESUME_GRACE);
            self.wait_until_ready(&rt.agent_id, task_id, &session, left, connected)
                .await?;
        }
        let path = self.agent_dir(&rt.agent_id).join("first_message.md");
        let message = self
            .blocking(move || {
                std::fs::read_to_string(&path).with_context(|| {
                    format!("reading the agent's first message {}", path.display())
                })
            })
            .await?;
        self.settle(&session).await;
        self.deliver(&rt.agent_id, task_id, &session, &message, paste)
            .await
    }
}
