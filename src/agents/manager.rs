//! The agent manager: turns queued tasks into running agents and folds their work back. This
//! file holds its state and its loop; each concern it drives has a file of its own:
//! `launch.rs` (claim a task, start an agent), `briefing.rs` (what it is told),
//! `delivery.rs` (wait until it is ready, hand it its task), `resume.rs` (launches a restart
//! interrupted), `finish.rs` (an agent whose task ended: end, merge), `death.rs` (agents that
//! died), `inbox.rs` (messages typed into idle agents), `commands.rs` (`agents kill/send`),
//! `gc.rs`; `teardown.rs` is the one way an agent ends, `policy.rs` the decisions (pure),
//! `progress.rs` what the bus says of each agent's session.
//!
//! Git goes through `worktree.rs`, tmux through `terminal.rs`; both on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::adapters::CliKind;
use super::handle::Command;
use super::progress::Progress;
use super::terminal::Terminal;
use super::worktree::Worktrees;
use crate::events::Event;
use crate::state::Shared;

/// How often the manager looks for dead agents and free slots without being woken.
const TICK: Duration = Duration::from_secs(2);

pub struct AgentManager {
    pub(super) state: Shared,
    pub(super) terminal: Terminal,
    pub(super) worktrees: Arc<Worktrees>,
    pub(super) base_branch: String,
    pub(super) cli: CliKind,
    /// The hephaestus executable: every agent's MCP server is its `shim`.
    pub(super) exe: PathBuf,
    /// Each agent's MCP session, followed from the bus.
    pub(super) progress: Arc<Progress>,
    /// Agents being started, finished or stopped: the others leave them alone.
    busy: Mutex<HashSet<String>>,
    /// Agents this manager started and has not yet ended (their session may still be
    /// closing): each holds one of the `max_concurrent_agents` slots until it is terminated.
    slots: Mutex<HashSet<String>>,
    /// Each agent's last pane text hash and when it last changed (see `inbox.rs`).
    pub(super) panes: Mutex<HashMap<String, (u64, std::time::Instant)>>,
    pub(super) tasks: TaskTracker,
    /// When waiting merges were last tried.
    pub(super) last_merge_retry: Mutex<Option<std::time::Instant>>,
    /// Cancelled when the manager stops: a launch still waiting for its agent gives up without
    /// failing the task, and the next start resumes it.
    pub(super) stopping: CancellationToken,
    /// Taken by `run`: subscribed at construction, so no session event is missed.
    events: Mutex<Option<broadcast::Receiver<Event>>>,
    commands: Mutex<Option<mpsc::Receiver<Command>>>,
}

impl AgentManager {
    /// Checks what spawning needs (a git repository, tmux, a known CLI) before anything runs.
    /// `commands` is the receiving end of the state's `AgentsHandle`.
    pub fn new(
        state: Shared,
        terminal: Terminal,
        commands: mpsc::Receiver<Command>,
    ) -> Result<AgentManager> {
        let settings = &state.config.agents;
        let cli = CliKind::parse(&settings.cli)?;
        let worktrees = Worktrees::open(&state.config.project_root, &settings.worktrees_dir)
            .with_context(|| {
                format!(
                    "agents need a git repository at {}",
                    state.config.project_root.display()
                )
            })?;
        let base_branch = match &settings.base_branch {
            Some(b) => b.clone(),
            None => worktrees.current_branch()?,
        };
        let exe = std::env::current_exe()
            .context("cannot find the hephaestus executable for the shim")?;
        terminal.tmux().version().context("agents run in tmux")?;
        Ok(AgentManager {
            events: Mutex::new(Some(state.events.subscribe())),
            commands: Mutex::new(Some(commands)),
            terminal,
            worktrees: Arc::new(worktrees),
            base_branch,
            cli,
            exe,
            progress: Arc::new(Progress::default()),
            busy: Mutex::new(HashSet::new()),
            slots: Mutex::new(HashSet::new()),
            panes: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            last_merge_retry: Mutex::new(None),
            state,
        })
    }

    /// Runs until `shutdown`; then waits (bounded) for launches and merges in progress.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(cli = self.cli.as_str(), base = %self.base_branch, "agent manager started");
        if let Some(events) = take(&self.events) {
            let progress = self.progress.clone();
            tokio::spawn(async move { progress.follow(events).await });
        }
        // Commands get an answer while the loop is busy (a teardown can take seconds).
        if let Some(mut commands) = take(&self.commands) {
            let me = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        command = commands.recv() => match command {
                            Some(command) => me.spawn_command(command),
                            None => return,
                        },
                    }
                }
            });
        }
        // Leftovers of a previous run (sessions and worktrees no live agent owns) go first.
        match self.gc().await {
            Ok(r)
                if !r.sessions_killed.is_empty()
                    || !r.worktrees_removed.is_empty()
                    || !r.agent_dirs_removed.is_empty() =>
            {
                tracing::info!(
                    sessions = r.sessions_killed.len(),
                    worktrees = r.worktrees_removed.len(),
                    agent_dirs = r.agent_dirs_removed.len(),
                    "removed leftovers of a previous run"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot sweep leftovers: {e:#}"),
        }
        self.resume_interrupted_launches().await;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            self.finish_ended().await;
            self.check_dead().await;
            self.retry_waiting_merges().await;
            self.type_messages().await;
            self.fill().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.progress.next_wake(TICK) => {}
            }
        }
        self.stopping.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tasks.wait()).await;
    }

    pub(super) fn is_busy(&self, agent: &str) -> bool {
        lock(&self.busy).contains(agent)
    }

    /// Marks an agent busy; false when it already was (someone else is on it).
    pub(super) fn claim_busy(&self, agent: &str) -> bool {
        lock(&self.busy).insert(agent.to_string())
    }

    pub(super) fn set_busy(&self, agent: &str, busy: bool) {
        let mut set = lock(&self.busy);
        if busy {
            set.insert(agent.to_string());
        } else {
            set.remove(agent);
        }
    }

    /// An agent being launched: it holds a slot, and the others leave it alone.
    pub(super) fn take_slot(&self, agent: &str) {
        self.set_busy(agent, true);
        lock(&self.slots).insert(agent.to_string());
    }

    pub(super) fn release_slot(&self, agent: &str) {
        lock(&self.slots).remove(agent);
    }

    /// Agents holding a slot: those being started or finished here, and any live session the
    /// database knows of (agents from before a coordinator restart).
    pub(super) fn agents_in_slots(&self) -> usize {
        let mut ids = lock(&self.slots).clone();
        if let Ok(live) = self.state.store.live_managed_agents() {
            ids.extend(live.into_iter().map(|a| a.agent_id));
        }
        ids.len()
    }

    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| anyhow!("blocking task failed: {e}"))?
    }

    pub(super) fn session_name(&self, agent_id: &str) -> String {
        format!(
            "{}-{}",
            self.state.config.agents.session_prefix,
            id8(agent_id)
        )
    }

    /// The agent's private dir in the data dir (its CLI config, the first message).
    pub(super) fn agent_dir(&self, agent_id: &str) -> PathBuf {
        super::adapters::agent_dir(&self.state.config.data_dir, id8(agent_id))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    lock(slot).take()
}

/// The first 8 characters of an agent id: its session, worktree and branch names.
pub fn id8(agent_id: &str) -> &str {
    &agent_id[..agent_id.len().min(8)]
}
