//! Handing an agent its task: wait until it is ready (its shim connected, then its client
//! listed our tools), type the first message once its screen has settled, and confirm it by the
//! agent's first tool call, retrying the way `policy::after_silent_message` says.

use std::time::Duration;

use anyhow::Result;

use super::inbox::QUIET;
use super::launch::{AgentStartFailed, Interrupted};
use super::manager::AgentManager;
use super::policy::{self, Retry};
use super::progress::Progress;
use crate::states::EventKind;

/// How a wait on an agent ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Waited {
    Met,
    /// Its program exited first.
    Exited,
    TimedOut,
}

/// One stage of an agent becoming ready: what it failed to do if it did not, and the event
/// that says it did.
struct ReadyStage {
    failure: &'static str,
    kind: EventKind,
    done: &'static str,
    reached: fn(&Progress, &str) -> bool,
}

impl AgentManager {
    /// Waits until `cond` holds of the agent's progress, its program exits, or `timeout`
    /// passes; gives up with [`Interrupted`] when the manager stops.
    pub(super) async fn wait_on_agent(
        &self,
        session: &str,
        timeout: Duration,
        cond: impl Fn(&Progress) -> bool,
    ) -> Result<Waited> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(&self.progress) {
                return Ok(Waited::Met);
            }
            if !self.terminal.is_alive(session).await {
                return Ok(if cond(&self.progress) {
                    Waited::Met
                } else {
                    Waited::Exited
                });
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Waited::TimedOut);
            }
            // Liveness is looked at again at least every 250 ms.
            tokio::select! {
                _ = self.progress.wait_for(left.min(Duration::from_millis(250)), |p| cond(p)) => {}
                _ = self.stopping.cancelled() => return Err(Interrupted.into()),
            }
        }
    }

    /// Ready: the agent's own shim connected (its MCP session began), then its client listed
    /// our tools, so that they exist for the model before it sees the task: a client may
    /// connect well before it asks for the tools (Claude Code's first turn ran without them on
    /// a busy machine). Each stage is an event; `connected` skips the first stage.
    pub(super) async fn wait_until_ready(
        &self,
        agent_id: &str,
        task_id: &str,
        session: &str,
        timeout: Duration,
        connected: bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let cli = self.cli.as_str();
        let secs = self.state.config.agents.ready_timeout_secs;
        let stages = [
            ReadyStage {
                failure: "did not connect to Hephaestus",
                kind: EventKind::Connected,
                done: "the agent's MCP server initialized",
                reached: Progress::is_connected,
            },
            ReadyStage {
                failure: "connected to Hephaestus but did not list its tools",
                kind: EventKind::ToolsListed,
                done: "the agent's MCP client listed the Hephaestus tools",
                reached: Progress::has_tools,
            },
        ];
        for stage in stages.into_iter().skip(usize::from(connected)) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reached = |p: &Progress| (stage.reached)(p, agent_id);
            let waited = self.wait_on_agent(session, left, reached).await?;
            if waited != Waited::Met {
                let pane = self.terminal.tail(session, 15).await;
                let status = match waited {
                    Waited::Exited => self.terminal.exit_status(session).await,
                    _ => None,
                };
                let what = match (waited, status) {
                    (Waited::Exited, Some(127)) => {
                        "exited at once: its command was not found (status 127)".to_string()
                    }
                    (Waited::Exited, Some(status)) => format!("exited with status {status}"),
                    (Waited::Exited, None) => "exited".to_string(),
                    _ => format!("{} within {secs}s", stage.failure),
                };
                return Err(AgentStartFailed(format!(
                    "the {cli} CLI {what}; its terminal showed:\n{pane}"
                ))
                .into());
            }
            self.state
                .events
                .record(agent_id, Some(task_id), stage.kind, stage.done)?;
        }
        Ok(())
    }

    /// Types the first message (unless `paste` is false: it was typed before a restart) and
    /// confirms the agent acted on it, up to three tries with a growing wait.
    pub(super) async fn deliver(
        &self,
        agent_id: &str,
        task_id: &str,
        session: &str,
        message: &str,
        paste: bool,
    ) -> Result<()> {
        let events = &self.state.events;
        let progress = &self.progress;
        let scratch = self.agent_dir(agent_id).join("paste.txt");
        let timeout = Duration::from_secs(self.state.config.agents.delivery_timeout_secs);
        let calls_before = progress.tool_calls(agent_id);
        let mut lists_at_send = progress.tool_lists(agent_id);
        let mut retype = paste;
        for attempt in 1..=3u32 {
            let typed = if retype {
                self.terminal.type_text(session, message, &scratch).await?;
                tokio::time::sleep(Duration::from_millis(150)).await;
                lists_at_send = progress.tool_lists(agent_id);
                if attempt == 1 { "typed" } else { "typed again" }
            } else {
                "Enter only"
            };
            self.terminal.press(session, "Enter").await?;
            events.record(
                agent_id,
                Some(task_id),
                EventKind::PromptSent,
                &format!("attempt {attempt} ({typed})"),
            )?;
            let waited = self
                .wait_on_agent(session, timeout * attempt, |p| {
                    p.tool_calls(agent_id) > calls_before
                })
                .await?;
            match waited {
                Waited::Met => {
                    events.record(
                        agent_id,
                        Some(task_id),
                        EventKind::PromptDelivered,
                        "the agent made its first tool call",
                    )?;
                    return Ok(());
                }
                Waited::Exited => break,
                Waited::TimedOut => {}
            }
            let lists_now = progress.tool_lists(agent_id);
            // Looking for idleness takes a while: only when it can change the answer.
            let idle = lists_now > lists_at_send && self.terminal.is_idle(session, QUIET).await;
            retype = policy::after_silent_message(lists_now, lists_at_send, idle) == Retry::Retype;
        }
        let pane = self.terminal.tail(session, 15).await;
        Err(AgentStartFailed(format!(
            "the {} CLI did not start working on its task after the first message; its terminal showed:\n{pane}",
            self.cli.as_str()
        ))
        .into())
    }

    /// Waits (bounded) until the screen stops changing: the CLI has drawn its input box.
    pub(super) async fn settle(&self, session: &str) {
        let mut last = String::new();
        for _ in 0..20 {
            let now = self.terminal.tail(session, 50).await;
            if !now.trim().is_empty() && now == last {
                return;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}
