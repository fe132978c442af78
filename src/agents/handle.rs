//! How the rest of the coordinator reaches the agent manager: a handle that sends it commands
//! over a channel and reads the agents' terminals, instead of holding the manager itself (no
//! `Arc` cycle, no module cycle: this file needs neither the manager nor the shared state).

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

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
    /// Remove sessions, worktrees and dirs no live agent owns.
    Gc {
        reply: oneshot::Sender<Result<GcReport>>,
    },
}

#[derive(Clone)]
pub struct AgentsHandle {
    commands: mpsc::Sender<Command>,
    terminal: Terminal,
}

impl AgentsHandle {
    /// A handle and the receiving end the manager takes.
    pub fn new(terminal: Terminal) -> (AgentsHandle, mpsc::Receiver<Command>) {
        let (commands, rx) = mpsc::channel(32);
        (AgentsHandle { commands, terminal }, rx)
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

    pub async fn gc(&self) -> Result<GcReport> {
        self.ask(|reply| Command::Gc { reply }).await
    }
}
