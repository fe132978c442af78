//! What people ask of the agent manager through its handle: `agents kill`, `agents send`,
//! `agents answer` and `agents gc`, and the guardian's reminders and endings. Each runs as a task of its own, so the manager's loop never waits on one.

use std::sync::Arc;

use anyhow::{Result, bail};

use super::handle::Command;
use super::manager::AgentManager;
use super::teardown::Ending;
use crate::states::{AgentStatus, EventKind};
use crate::store::{AgentRuntime, Store};

impl AgentManager {
    pub(super) fn spawn_command(self: &Arc<Self>, command: Command) {
        let me = self.clone();
        self.tasks.spawn(async move {
            match command {
                Command::Kill { agent, reply } => {
                    let _ = reply.send(me.kill(&agent).await);
                }
                Command::Send { agent, text, reply } => {
                    let _ = reply.send(me.send(&agent, &text).await);
                }
                Command::Nudge { agent, text, reply } => {
                    let _ = reply.send(me.nudge(&agent, &text).await);
                }
                Command::Guide { agent, text, reply } => {
                    let _ = reply.send(me.guide(&agent, &text).await);
                }
                Command::Answer {
                    agent,
                    keys,
                    text,
                    reply,
                } => {
                    let _ = reply.send(me.answer(&agent, &keys, &text).await);
                }
                Command::EndStuck {
                    agent,
                    requeue,
                    reply,
                } => {
                    let _ = reply.send(me.end_stuck(&agent, requeue).await);
                }
                Command::Press {
                    agent,
                    keys,
                    rule,
                    reply,
                } => {
                    let _ = reply.send(me.press(&agent, &keys, &rule).await);
                }
                Command::Overlaps { reply } => {
                    let _ = reply.send(me.overlaps().await);
                }
                Command::Gc { reply } => {
                    let _ = reply.send(me.gc().await);
                }
            }
        });
    }

    /// Stops an agent at a person's request: its task fails (it is not retried), its work is
    /// committed on its branch and kept there.
    async fn kill(&self, prefix: &str) -> Result<String> {
        let rt = resolve_agent(&self.state.store, prefix)?;
        if rt.status == AgentStatus::Terminated {
            bail!("agent {} has already ended", rt.agent_id);
        }
        if !self.claim_busy(&rt.agent_id) {
            bail!(
                "agent {} is starting or finishing right now; try again in a few seconds",
                rt.agent_id
            );
        }
        let ended = self.teardown(&rt, Ending::Killed).await;
        self.set_busy(&rt.agent_id, false);
        let ended = ended?;
        Ok(match (rt.branch, ended.commit) {
            (Some(b), Some(c)) => format!(
                "stopped agent {}; its work is committed on {b} at {c}",
                rt.agent_id
            ),
            (Some(b), None) => format!("stopped agent {}; its branch {b} is kept", rt.agent_id),
            _ => format!("stopped agent {}", rt.agent_id),
        })
    }

    /// Types a reminder and confirms the agent acted on it by a tool call, pressing Enter once
    /// more if it did not; whether it acted is in the log either way.
    async fn nudge(&self, agent_id: &str, text: &str) -> Result<bool> {
        let rt = self.state.store.agent_runtime(agent_id)?;
        let Some(session) = rt.tmux_session.clone() else {
            bail!("agent {agent_id} has no terminal");
        };
        if !self.claim_busy(agent_id) {
            bail!("agent {agent_id} is starting or finishing right now");
        }
        let acted = self.type_and_confirm(agent_id, &session, text).await;
        self.set_busy(agent_id, false);
        let acted = acted?;
        self.state.events.record(
            agent_id,
            rt.task_id.as_deref(),
            EventKind::Nudged,
            if acted {
                "reminded to report its task; it acted on it"
            } else {
                "reminded to report its task; it did not act on it"
            },
        )?;
        Ok(acted)
    }

    /// An agent that still runs, and its session.
    fn running(&self, agent_id: &str) -> Result<(AgentRuntime, String)> {
        let rt = self.state.store.agent_runtime(agent_id)?;
        match rt
            .tmux_session
            .clone()
            .filter(|_| rt.status != AgentStatus::Terminated)
        {
            Some(session) => Ok((rt, session)),
            None => bail!("agent {agent_id} is not running"),
        }
    }

    /// Types the guardian's guidance and confirms the agent acted on it.
    async fn guide(&self, agent_id: &str, text: &str) -> Result<bool> {
        let (rt, session) = self.running(agent_id)?;
        if !self.claim_busy(agent_id) {
            bail!("agent {agent_id} is starting or finishing right now");
        }
        let acted = self.type_and_watch(agent_id, &session, text).await;
        self.set_busy(agent_id, false);
        let acted = acted?;
        self.state.events.record(
            agent_id,
            rt.task_id.as_deref(),
            EventKind::Steered,
            &format!(
                "{text} ({})",
                if acted {
                    "it acted on it"
                } else {
                    "it did not act on it"
                }
            ),
        )?;
        Ok(acted)
    }

    /// Types a person's answer into the dialog an agent waits at and confirms it went on.
    async fn answer(&self, agent_id: &str, keys: &[String], text: &str) -> Result<String> {
        let (rt, session) = self.running(agent_id)?;
        if !self.claim_busy(agent_id) {
            bail!(
                "agent {agent_id} is starting or finishing right now; try again in a few seconds"
            );
        }
        let acted = async {
            for key in keys {
                self.terminal.press(&session, key).await?;
                // The dialog redraws its free-text field before it takes the text.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            self.type_and_watch(agent_id, &session, text).await
        }
        .await;
        self.set_busy(agent_id, false);
        let acted = acted?;
        self.state.events.record(
            agent_id,
            rt.task_id.as_deref(),
            EventKind::Answered,
            &format!(
                "{text}{}",
                if acted {
                    ""
                } else {
                    " (it has not acted on it yet)"
                }
            ),
        )?;
        Ok(if acted {
            format!("answered agent {agent_id}; it went on")
        } else {
            format!(
                "typed the answer into agent {agent_id}, but it has not acted on it yet; `agents explain` shows its screen"
            )
        })
    }

    /// Types a steer or an answer and says whether the agent went on: a tool call, or its
    /// screen (or its CLI's hook) read as working since. Enter is never pressed again: in the
    /// middle of a turn, or at the next dialog, a stray Enter would choose for the agent.
    async fn type_and_watch(&self, agent_id: &str, session: &str, text: &str) -> Result<bool> {
        let scratch = self.agent_dir(agent_id).join("paste.txt");
        let timeout =
            std::time::Duration::from_secs(self.state.config.agents.delivery_timeout_secs);
        let before = self.progress.tool_calls(agent_id);
        let typed_at = crate::time::now_ms();
        self.terminal.send_line(session, text, &scratch).await?;
        let (seen, id) = (self.state.seen.clone(), agent_id.to_string());
        let waited = self
            .wait_on_agent(session, timeout, move |p| {
                p.tool_calls(&id) > before
                    || seen.get(&id).is_some_and(|s| {
                        s.reading.state == crate::states::AgentState::Working
                            && s.since_ms >= typed_at
                    })
            })
            .await?;
        Ok(matches!(waited, super::delivery::Waited::Met))
    }

    async fn type_and_confirm(&self, agent_id: &str, session: &str, text: &str) -> Result<bool> {
        let scratch = self.agent_dir(agent_id).join("paste.txt");
        let timeout =
            std::time::Duration::from_secs(self.state.config.agents.delivery_timeout_secs);
        let before = self.progress.tool_calls(agent_id);
        self.terminal.send_line(session, text, &scratch).await?;
        for attempt in 0..2 {
            if attempt > 0 {
                self.terminal.press(session, "Enter").await?;
            }
            let waited = self
                .wait_on_agent(session, timeout, |p| p.tool_calls(agent_id) > before)
                .await?;
            match waited {
                super::delivery::Waited::Met => return Ok(true),
                super::delivery::Waited::Exited => return Ok(false),
                super::delivery::Waited::TimedOut => {}
            }
        }
        Ok(false)
    }

    /// Presses the keys a dialog's rule gives, and logs it. Not claimed like the others: such
    /// dialogs come up while the agent is being launched, which holds it, and a CLI held at a
    /// dialog lists no tools, so its first message cannot be typed meanwhile.
    async fn press(&self, agent_id: &str, keys: &[String], rule: &str) -> Result<()> {
        let (rt, session) = self.running(agent_id)?;
        for key in keys {
            self.terminal.press(&session, key).await?;
        }
        self.state.events.record(
            agent_id,
            rt.task_id.as_deref(),
            EventKind::ScreenAnswered,
            &format!("pressed {} at the {rule}", keys.join(", ")),
        )?;
        Ok(())
    }

    /// Every live agent's work as it stands, compared pair by pair (on the blocking pool: it
    /// reads every worktree).
    async fn overlaps(&self) -> Result<Vec<crate::guardian::conductor::Overlap>> {
        let mut work = Vec::new();
        for rt in self.state.store.live_managed_agents()? {
            if let (Some(path), Some(base)) = (
                rt.worktree_path.clone(),
                self.state.store.agent_base_commit(&rt.agent_id)?,
            ) {
                work.push((
                    rt.agent_id,
                    rt.task_id,
                    std::path::PathBuf::from(path),
                    base,
                ));
            }
        }
        if work.len() < 2 {
            return Ok(Vec::new());
        }
        let wt = self.worktrees.clone();
        self.blocking(move || {
            let mut snaps = Vec::new();
            for (agent, task, path, base) in work {
                // An agent whose worktree is being made or removed right now is left out.
                match wt.snapshot(&path, &base) {
                    Ok(s) => snaps.push((agent, task, s)),
                    Err(e) => tracing::debug!(agent = %agent, "no snapshot: {e:#}"),
                }
            }
            crate::guardian::conductor::overlaps(&snaps, |a, b| wt.forecast_conflicts(a, b))
        })
        .await
    }

    /// Ends an agent the guardian found stuck, as `guardian.on_stuck` says.
    async fn end_stuck(&self, agent_id: &str, requeue: bool) -> Result<()> {
        let rt = self.state.store.agent_runtime(agent_id)?;
        if rt.status == AgentStatus::Terminated {
            return Ok(());
        }
        if !self.claim_busy(agent_id) {
            bail!("agent {agent_id} is starting or finishing right now");
        }
        let ended = self.teardown(&rt, Ending::Stuck { requeue }).await;
        self.set_busy(agent_id, false);
        ended.map(drop)
    }

    /// Types a person's message into an agent's terminal.
    async fn send(&self, prefix: &str, text: &str) -> Result<String> {
        let rt = resolve_agent(&self.state.store, prefix)?;
        let Some(session) = rt
            .tmux_session
            .clone()
            .filter(|_| rt.status != AgentStatus::Terminated)
        else {
            bail!("agent {} is not running", rt.agent_id);
        };
        let scratch = self.agent_dir(&rt.agent_id).join("paste.txt");
        self.terminal.send_line(&session, text, &scratch).await?;
        self.state.events.record(
            &rt.agent_id,
            rt.task_id.as_deref(),
            EventKind::MessageFromPerson,
            text,
        )?;
        Ok(format!("sent to agent {}", rt.agent_id))
    }
}

/// The managed agent whose id starts with `prefix` (at least 4 characters).
pub fn resolve_agent(store: &Store, prefix: &str) -> Result<AgentRuntime> {
    if prefix.len() < 4 {
        bail!("give at least 4 characters of the agent id");
    }
    let matches: Vec<_> = store
        .all_managed_agents()?
        .into_iter()
        .filter(|a| a.agent_id.starts_with(prefix))
        .collect();
    match matches.len() {
        0 => bail!("no agent id starts with {prefix}: see `hephaestus agents --all`"),
        1 => Ok(matches.into_iter().next().expect("one match")),
        n => bail!("{n} agents start with {prefix}: give more of the id"),
    }
}
