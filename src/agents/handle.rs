//! How the rest of the coordinator reaches the agent manager: a handle that sends it commands
//! over a channel and reads the agents' terminals, instead of holding the manager itself (no
//! `Arc` cycle, no module cycle: this file needs neither the manager nor the shared state).

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::adapters::{CliKind, Host};
use super::terminal::Terminal;

/// What `agents gc` removed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub sessions_killed: Vec<String>,
    pub worktrees_removed: Vec<String>,
    /// Per-agent dirs (CLI config, private CLI homes, the first message) of agents that ended.
    pub agent_dirs_removed: Vec<String>,
}

/// A person's command for the manager, with where to send its answer.
pub enum Command {
    /// Stop an agent: its task fails, its work stays on its branch.
    Kill {
        agent: String,
        reply: oneshot::Sender<Result<String>>,
    },
    /// Type a message into an agent's terminal.
    Send {
        agent: String,
        text: String,
        reply: oneshot::Sender<Result<String>>,
    },
    /// Type a reminder into an agent's terminal and confirm it acted on it (made a tool call);
    /// the answer says whether it did. `agent` is the full id.
    Nudge {
        agent: String,
        text: String,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// Type the guardian's guidance into an agent between turns and confirm it acted on it;
    /// the answer says whether it did. `agent` is the full id.
    Guide {
        agent: String,
        text: String,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// Answer the question an agent's dialog asks: press `keys` (e.g. the free-text option's
    /// number), type `text` and Enter, and confirm it went on (made a tool call). `agent` is
    /// the full id.
    Answer {
        agent: String,
        keys: Vec<String>,
        text: String,
        reply: oneshot::Sender<Result<String>>,
    },
    /// End a stuck agent: its work stays on its branch, its task goes to a new agent
    /// (`requeue`) or fails.
    EndStuck {
        agent: String,
        requeue: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Press keys at a dialog the guardian recognised as safe to answer; `rule` names it.
    Press {
        agent: String,
        keys: Vec<String>,
        rule: String,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Where the live agents' work, as it stands, overlaps (the conductor's facts).
    Overlaps {
        reply: oneshot::Sender<Result<Vec<crate::guardian::conductor::Overlap>>>,
    },
    /// Remove sessions, worktrees and dirs no live agent owns.
    Gc {
        reply: oneshot::Sender<Result<GcReport>>,
    },
}

#[derive(Clone)]
pub struct AgentsHandle {
    commands: mpsc::Sender<Command>,
    terminal: Terminal,
    /// The configured CLI (or why the setting is wrong), and where it would be found.
    cli: Result<CliKind, String>,
    host: Host,
}

impl AgentsHandle {
    /// A handle and the receiving end the manager takes; `cli` is `agents.cli` as configured.
    pub fn new(
        terminal: Terminal,
        cli: &str,
        host: Host,
    ) -> (AgentsHandle, mpsc::Receiver<Command>) {
        let (commands, rx) = mpsc::channel(32);
        let cli = CliKind::parse(cli).map_err(|e| format!("{e:#}"));
        (
            AgentsHandle {
                commands,
                terminal,
                cli,
                host,
            },
            rx,
        )
    }

    /// Why agents cannot start right now, when they cannot: the configured CLI is unknown or
    /// not installed. Looked up each time, so installing the CLI clears it.
    pub fn cli_problem(&self) -> Option<String> {
        match &self.cli {
            Ok(kind) => self.host.missing_cli(*kind),
            Err(e) => Some(e.clone()),
        }
    }

    /// The agents' terminals, to read (the last line each shows, say).
    pub fn terminal(&self) -> &Terminal {
        &self.terminal
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let stopped =
            || anyhow!("the agent manager is not running (the coordinator's log says why)");
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn kill(&self, agent: &str) -> Result<String> {
        self.ask(|reply| Command::Kill {
            agent: agent.to_string(),
            reply,
        })
        .await
    }

    pub async fn send(&self, agent: &str, text: &str) -> Result<String> {
        self.ask(|reply| Command::Send {
            agent: agent.to_string(),
            text: text.to_string(),
            reply,
        })
        .await
    }

    pub async fn nudge(&self, agent: &str, text: &str) -> Result<bool> {
        self.ask(|reply| Command::Nudge {
            agent: agent.to_string(),
            text: text.to_string(),
            reply,
        })
        .await
    }

    pub async fn guide(&self, agent: &str, text: &str) -> Result<bool> {
        self.ask(|reply| Command::Guide {
            agent: agent.to_string(),
            text: text.to_string(),
            reply,
        })
        .await
    }

    pub async fn answer(&self, agent: &str, keys: Vec<String>, text: &str) -> Result<String> {
        self.ask(|reply| Command::Answer {
            agent: agent.to_string(),
            keys,
            text: text.to_string(),
            reply,
        })
        .await
    }

    pub async fn end_stuck(&self, agent: &str, requeue: bool) -> Result<()> {
        self.ask(|reply| Command::EndStuck {
            agent: agent.to_string(),
            requeue,
            reply,
        })
        .await
    }

    pub async fn press(&self, agent: &str, keys: Vec<String>, rule: &str) -> Result<()> {
        self.ask(|reply| Command::Press {
            agent: agent.to_string(),
            keys,
            rule: rule.to_string(),
            reply,
        })
        .await
    }

    pub async fn overlaps(&self) -> Result<Vec<crate::guardian::conductor::Overlap>> {
        self.ask(|reply| Command::Overlaps { reply }).await
    }

    pub async fn gc(&self) -> Result<GcReport> {
        self.ask(|reply| Command::Gc { reply }).await
    }
}
