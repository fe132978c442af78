//! The agent manager: turns queued tasks into running agents and folds their work back.
//!
//! For each task it can start (under `max_concurrent_agents`), it registers an agent with a fresh
//! token, claims the task atomically, makes a worktree, starts the agent CLI in a tmux session,
//! waits until the agent's shim has connected, types the first message and confirms the agent
//! started working. When the agent reports its task done or failed, the manager keeps the final
//! pane text, commits what is left in the worktree, ends the session and merges the branch into
//! the base branch (in memory: the user's checkout is never touched). A dead agent's task is
//! requeued, starting from the dead agent's last commit, a bounded number of times.
//!
//! Git goes through `worktree`, tmux through `tmux`; both block, so they run on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::adapters::{self, AgentLaunch, CliKind};
use super::prompt;
use super::tmux::Tmux;
use super::worktree::{BaseRef, MergeOutcome, Worktrees};
use crate::queue::{Priority, TaskStatus};
use crate::state::Shared;
use crate::states::{AgentStatus, EventKind, MergeStatus};
use crate::store::{NewTask, TaskView};

/// How often the manager looks for dead agents and free slots without being woken.
const TICK: Duration = Duration::from_secs(2);
/// Width × height of each agent's terminal.
const PANE_SIZE: (u16, u16) = (200, 50);
/// How long a resumed launch waits at least for the agent's shim to come back: a shim that was
/// waiting for the coordinator retries every second.
const RESUME_GRACE: Duration = Duration::from_secs(10);
/// A pane unchanged this long shows an agent between turns.
const QUIET: Duration = Duration::from_secs(2);

pub struct AgentManager {
    state: Shared,
    tmux: Tmux,
    worktrees: Arc<Worktrees>,
    base_branch: String,
    cli: CliKind,
    exe: PathBuf,
    /// Agents being started or finished: the dead-agent check leaves them alone.
    busy: Arc<Mutex<HashSet<String>>>,
    /// Each agent's last pane text hash and when it last changed: a pane that stays the same
    /// means the agent is between turns, the only time a message may be typed into it.
    panes: Mutex<HashMap<String, (u64, std::time::Instant)>>,
    /// Agents this manager started and has not yet finished (their session may still be
    /// closing): each holds one of the `max_concurrent_agents` slots until it is terminated.
    slots: Arc<Mutex<HashSet<String>>>,
    tasks: TaskTracker,
    /// When waiting merges were last tried.
    last_merge_retry: Mutex<Option<std::time::Instant>>,
    /// Cancelled when the manager stops: a launch still waiting for its agent gives up without
    /// failing the task, and the next start resumes it (`resume_interrupted_launches`).
    stopping: CancellationToken,
}

/// A launch that stopped because the coordinator is shutting down, not because the agent failed.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the coordinator is shutting down")
    }
}

impl std::error::Error for Interrupted {}

/// A launch that failed for a cause outside the task: the agent's CLI did not connect, did not
/// list our tools or did not act on its first message, or its worktree could not be made. The
/// task goes to a new agent, under `max_attempts`, instead of failing.
#[derive(Debug)]
struct AgentStartFailed(String);

impl std::fmt::Display for AgentStartFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AgentStartFailed {}

/// How far an interrupted launch had come, from its agent's events.
#[derive(Debug, Clone, Copy)]
struct LaunchProgress {
    connected: bool,
    tools_listed: bool,
    typed: bool,
}

impl AgentManager {
    /// Checks what spawning needs (a git repository, tmux, a known CLI) before anything runs.
    pub fn new(state: Shared) -> Result<AgentManager> {
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
        let tmux = Tmux::new(settings.tmux_socket.clone());
        tmux.version().context("agents run in tmux")?;
        Ok(AgentManager {
            tmux,
            worktrees: Arc::new(worktrees),
            base_branch,
            cli,
            exe,
            busy: Arc::new(Mutex::new(HashSet::new())),
            slots: Arc::new(Mutex::new(HashSet::new())),
            panes: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            last_merge_retry: Mutex::new(None),
            state,
        })
    }

    pub fn base_branch(&self) -> &str {
        &self.base_branch
    }

    /// Runs until `shutdown`; then waits (bounded) for launches and merges in progress.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(cli = self.cli.as_str(), base = %self.base_branch, "agent manager started");
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
            for (agent, task) in self.state.signals.take_ended() {
                self.spawn_finish(agent, task);
            }
            self.check_dead().await;
            self.retry_waiting_merges().await;
            self.type_messages().await;
            self.fill().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.state.signals.next_wake(TICK) => {}
            }
        }
        self.stopping.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tasks.wait()).await;
    }

    /// Waits for `cond` like `AgentSignals::wait_for`, but gives up with [`Interrupted`] when the
    /// manager stops.
    async fn wait_for(
        &self,
        timeout: Duration,
        cond: impl FnMut(&super::signals::AgentSignals) -> bool,
    ) -> Result<bool> {
        tokio::select! {
            met = self.state.signals.wait_for(timeout, cond) => Ok(met),
            _ = self.stopping.cancelled() => Err(Interrupted.into()),
        }
    }

    /// A restart can catch agents mid-launch or mid-finish. An agent whose task ended but which
    /// was never finished is finished now. One whose session was never started has its task
    /// queued again. One whose session runs but whose first message was not confirmed is
    /// picked up where it stopped: wait for its shim and its tool list if they had not come
    /// yet, then deliver (or, if the message was already typed, only confirm it).
    async fn resume_interrupted_launches(self: &Arc<Self>) {
        let store = &self.state.store;
        for (rt, task_id) in store.unfinished_agents().unwrap_or_default() {
            tracing::info!(agent = %rt.agent_id, task = %task_id, "finishing an agent whose task ended before the restart");
            // Its live session already counts against the cap (`agents_in_slots`).
            self.spawn_finish(rt.agent_id, task_id);
        }
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
            let events = store.agent_events(&rt.agent_id).unwrap_or_default();
            let logged = |kind: EventKind| events.iter().any(|e| e.kind == kind);
            if logged(EventKind::PromptDelivered) {
                continue; // working; adopted as it is
            }
            if rt.tmux_session.is_none() {
                let _ = store.log_event(
                    Some(&rt.agent_id),
                    Some(&task_id),
                    EventKind::LaunchInterrupted,
                    "the coordinator stopped before the agent's session started",
                );
                let _ = store.requeue_task(
                    &task_id,
                    "the coordinator stopped while starting an agent for this task",
                );
                // The session may have started after all, too late to be recorded.
                let (tmux, session) = (self.tmux.clone(), self.session_name(&rt.agent_id));
                let _ = self.blocking(move || tmux.kill_session(&session)).await;
                self.remove_worktree(&rt.agent_id, true).await;
                let _ = store.terminate_agent(&rt.agent_id);
                continue;
            }
            let progress = LaunchProgress {
                connected: logged(EventKind::Connected),
                tools_listed: logged(EventKind::ToolsListed),
                typed: logged(EventKind::PromptSent),
            };
            tracing::info!(agent = %rt.agent_id, task = %task_id, ?progress, "resuming an interrupted launch");
            let _ = store.log_event(
                Some(&rt.agent_id),
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
                let result = me.resume_launch(&rt, &task_id, progress).await;
                me.launch_ended(&agent_id, &task_id, result).await;
            });
        }
    }

    async fn resume_launch(
        &self,
        rt: &crate::store::AgentRuntime,
        task_id: &str,
        progress: LaunchProgress,
    ) -> Result<()> {
        let session = rt.tmux_session.clone().unwrap_or_default();
        if !progress.typed && !progress.tools_listed {
            // The launch's own deadline, counted from when it began; a shim that waited for
            // this coordinator gets a moment to connect even when that deadline has passed.
            let ready_timeout = Duration::from_secs(self.state.config.agents.ready_timeout_secs);
            let began = std::time::Duration::from_millis(rt.created_at_ms.max(0) as u64);
            let now = std::time::Duration::from_millis(crate::time::now_ms().max(0) as u64);
            let left = (began + ready_timeout)
                .saturating_sub(now)
                .max(RESUME_GRACE);
            self.wait_until_ready(&rt.agent_id, task_id, &session, left, progress.connected)
                .await?;
        }
        let agent_dir = adapters::agent_dir(&self.state.config.data_dir, id8(&rt.agent_id));
        let path = agent_dir.join("first_message.md");
        let message = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the agent's first message {}", path.display()))?;
        self.settle(&session).await;
        self.deliver(
            &rt.agent_id,
            task_id,
            &session,
            &message,
            &agent_dir,
            !progress.typed,
        )
        .await
    }

    /// What happens after a launch or a resumed launch: a failure ends the agent and fails the
    /// task, or queues it again when the cause was not the task's; unless the agent finished
    /// meanwhile or the coordinator is stopping (then the next start resumes).
    async fn launch_ended(&self, agent_id: &str, task_id: &str, result: Result<()>) {
        if let Err(e) = result {
            let finished = self
                .state
                .store
                .get_task(task_id)
                .is_ok_and(|t| t.status.is_terminal());
            if e.is::<Interrupted>() {
                tracing::info!(agent = %agent_id, task = %task_id, "launch interrupted by shutdown; it resumes at the next start");
            } else if !finished {
                let retry = e.is::<AgentStartFailed>();
                tracing::warn!(agent = %agent_id, task = %task_id, retry, "launch failed: {e:#}");
                self.abort_launch(agent_id, task_id, &format!("{e:#}"), retry)
                    .await;
            }
        }
        self.set_busy(agent_id, false);
    }

    fn is_busy(&self, agent: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(agent)
    }

    fn set_busy(&self, agent: &str, busy: bool) {
        let mut set = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if busy {
            set.insert(agent.to_string());
        } else {
            set.remove(agent);
        }
    }

    /// An agent being launched: it holds a slot, and the dead-agent check leaves it alone.
    fn take_slot(&self, agent: &str) {
        self.set_busy(agent, true);
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent.to_string());
    }

    fn release_slot(&self, agent: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(agent);
    }

    /// Agents holding a slot: those being started or finished here, and any live session the
    /// database knows of (agents from before a coordinator restart).
    fn agents_in_slots(&self) -> usize {
        let mut ids = self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Ok(live) = self.state.store.live_managed_agents() {
            ids.extend(live.into_iter().map(|a| a.agent_id));
        }
        ids.len()
    }

    /// Claims queued tasks while the cap allows and starts an agent for each. The cap counts
    /// agents until they are fully ended, not only tasks in progress: the next agent starts
    /// after the previous one's session is closed and its work merged.
    async fn fill(self: &Arc<Self>) {
        let store = &self.state.store;
        let cap = self.state.config.max_concurrent_agents;
        loop {
            if self.agents_in_slots() >= cap as usize {
                return;
            }
            match store.active_task_count() {
                Ok(n) if n < i64::from(cap) => {}
                _ => return,
            }
            let (agent, token) =
                match store.register_agent(self.cli.as_str(), Some(self.cli.as_str())) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::error!("cannot register an agent: {e}");
                        return;
                    }
                };
            let task = match store.claim_next(&agent.id, cap) {
                Ok(Some(task)) => task,
                Ok(None) | Err(_) => {
                    let _ = store.discard_unused_agent(&agent.id);
                    return;
                }
            };
            self.take_slot(&agent.id);
            let me = self.clone();
            self.tasks.spawn(async move {
                let agent_id = agent.id.clone();
                // A fast agent may finish its task while the launch is still confirming
                // delivery; then `finish` owns the agent, and `launch_ended` leaves it be.
                let result = me.launch(&agent_id, &token, &task).await;
                me.launch_ended(&agent_id, &task.id, result).await;
            });
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| anyhow!("blocking task failed: {e}"))?
    }

    fn session_name(&self, agent_id: &str) -> String {
        format!(
            "{}-{}",
            self.state.config.agents.session_prefix,
            id8(agent_id)
        )
    }

    async fn launch(self: &Arc<Self>, agent_id: &str, token: &str, task: &TaskView) -> Result<()> {
        let store = &self.state.store;
        let settings = &self.state.config.agents;
        let id8 = id8(agent_id).to_string();

        // Where the work starts: a conflict follow-up or a dead agent's commit, else the
        // creating agent's current work, else the base branch.
        let base = match store.task_base_ref(&task.id)? {
            Some(commit) => BaseRef::Commit(commit),
            None => match self.parent_checkpoint(task).await {
                Some(commit) => BaseRef::Commit(commit),
                None => BaseRef::Branch(self.base_branch.clone()),
            },
        };
        let wt = self.worktrees.clone();
        let copy = settings.copy_untracked.clone();
        let info = {
            let id8 = id8.clone();
            self.blocking(move || wt.create(&id8, &base, &copy))
                .await
                .map_err(|e| AgentStartFailed(format!("cannot make the agent's worktree: {e:#}")))?
        };

        let agent_dir = adapters::agent_dir(&self.state.config.data_dir, &id8);
        let system_prompt = self.render_system(agent_id, &info.path, &info.branch, task)?;
        let memories = self.memories_for(task).await;
        let first_message = self.render_task(task, memories)?;
        let launch = AgentLaunch {
            agent_id: agent_id.to_string(),
            token: token.to_string(),
            exe: self.exe.clone(),
            socket: self.state.config.socket_path.clone(),
            worktree: info.path.clone(),
            agent_dir: agent_dir.clone(),
            system_prompt: system_prompt.clone(),
            model: settings.model.clone(),
            custom_command: settings.custom_command.clone(),
            codex_config: settings.codex_config.clone(),
        };
        let spec = adapters::launch_spec_on(self.cli, &launch, &settings.host)?;
        create_private_dir(&agent_dir)?;
        for (path, text) in &spec.files {
            // Some CLIs read a dot-directory of the agent's dir (Droid's `.factory/`).
            if let Some(parent) = path.parent() {
                create_private_dir(parent)?;
            }
            write_private(path, text)?;
        }
        for (link, target) in &spec.links {
            replace_link(link, target)?;
        }
        let message = if spec.prompt_in_first_message {
            format!("{system_prompt}\n\n{first_message}")
        } else {
            first_message
        };
        write_private(&agent_dir.join("first_message.md"), &message)?;

        let session = self.session_name(agent_id);
        {
            let tmux = self.tmux.clone();
            let (session, cwd, command, env) = (
                session.clone(),
                info.path.clone(),
                spec.command.clone(),
                spec.env.clone(),
            );
            self.blocking(move || tmux.new_session(&session, &cwd, &command, &env, PANE_SIZE))
                .await?;
        }
        store.set_agent_runtime(
            agent_id,
            &session,
            &info.path.display().to_string(),
            &info.branch,
            &info.base_commit,
        )?;
        store.log_event(
            Some(agent_id),
            Some(&task.id),
            EventKind::Created,
            &format!(
                "{} in {} on {}",
                self.cli.as_str(),
                info.path.display(),
                info.branch
            ),
        )?;

        let ready_timeout = Duration::from_secs(settings.ready_timeout_secs);
        self.wait_until_ready(agent_id, &task.id, &session, ready_timeout, false)
            .await?;
        // Let the input box finish drawing: wait for the pane to stop changing.
        self.settle(&session).await;

        self.deliver(agent_id, &task.id, &session, &message, &agent_dir, true)
            .await
    }

    /// Ready: the agent's own shim connected (its MCP session initialized), then its client
    /// listed our tools, so that they exist for the model before it sees the task: a client
    /// may connect well before it asks for the tools (Claude Code's first turn ran without them
    /// on a busy machine). Each stage is an event; `connected` skips the first stage.
    async fn wait_until_ready(
        &self,
        agent_id: &str,
        task_id: &str,
        session: &str,
        timeout: Duration,
        connected: bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let cli = self.cli.as_str();
        let secs = self.state.config.agents.ready_timeout_secs;
        if !connected {
            self.wait_for(left(), |s| {
                s.is_initialized(agent_id) || !self.tmux.is_alive(session)
            })
            .await?;
            if !self.state.signals.is_initialized(agent_id) {
                let pane = self.pane_tail(session, 15).await;
                return Err(AgentStartFailed(format!(
                    "the {cli} CLI did not connect to Hephaestus within {secs}s; its terminal showed:\n{pane}"
                ))
                .into());
            }
            self.state.store.log_event(
                Some(agent_id),
                Some(task_id),
                EventKind::Connected,
                "the agent's MCP server initialized",
            )?;
        }
        self.wait_for(left(), |s| {
            s.has_tools(agent_id) || !self.tmux.is_alive(session)
        })
        .await?;
        if !self.state.signals.has_tools(agent_id) {
            let pane = self.pane_tail(session, 15).await;
            return Err(AgentStartFailed(format!(
                "the {cli} CLI connected to Hephaestus but did not list its tools within {secs}s; its terminal showed:\n{pane}"
            ))
            .into());
        }
        self.state.store.log_event(
            Some(agent_id),
            Some(task_id),
            EventKind::ToolsListed,
            "the agent's MCP client listed the Hephaestus tools",
        )?;
        Ok(())
    }

    /// Types the first message (unless `paste` is false: it was typed before a restart) and
    /// confirms the agent acted on it. When it did not: if its client listed our tools again
    /// after the message went in and the agent sits between turns, its turn may have run
    /// without them, so the message is typed again; otherwise Enter is pressed again.
    async fn deliver(
        &self,
        agent_id: &str,
        task_id: &str,
        session: &str,
        message: &str,
        agent_dir: &std::path::Path,
        paste: bool,
    ) -> Result<()> {
        let store = &self.state.store;
        let signals = &self.state.signals;
        let timeout = Duration::from_secs(self.state.config.agents.delivery_timeout_secs);
        let calls_before = signals.tool_calls(agent_id);
        let mut lists_at_send = signals.tool_lists(agent_id);
        let mut retype = paste;
        for attempt in 1..=3u32 {
            let typed = if retype {
                self.paste(session, message, agent_dir).await?;
                tokio::time::sleep(Duration::from_millis(150)).await;
                lists_at_send = signals.tool_lists(agent_id);
                if attempt == 1 { "typed" } else { "typed again" }
            } else {
                "Enter only"
            };
            let tmux = self.tmux.clone();
            let s = session.to_string();
            self.blocking(move || tmux.send_key(&s, "Enter")).await?;
            store.log_event(
                Some(agent_id),
                Some(task_id),
                EventKind::PromptSent,
                &format!("attempt {attempt} ({typed})"),
            )?;
            if self
                .wait_for(timeout * attempt, |s| {
                    s.tool_calls(agent_id) > calls_before || !self.tmux.is_alive(session)
                })
                .await?
                && signals.tool_calls(agent_id) > calls_before
            {
                store.log_event(
                    Some(agent_id),
                    Some(task_id),
                    EventKind::PromptDelivered,
                    "the agent made its first tool call",
                )?;
                return Ok(());
            }
            if !self.tmux.is_alive(session) {
                break;
            }
            retype = signals.tool_lists(agent_id) > lists_at_send && self.is_quiet(session).await;
        }
        let pane = self.pane_tail(session, 15).await;
        Err(AgentStartFailed(format!(
            "the {} CLI did not start working on its task after the first message; its terminal showed:\n{pane}",
            self.cli.as_str()
        ))
        .into())
    }

    async fn paste(&self, session: &str, text: &str, agent_dir: &std::path::Path) -> Result<()> {
        let tmux = self.tmux.clone();
        let (session, text, scratch) = (
            session.to_string(),
            text.to_string(),
            agent_dir.join("paste.txt"),
        );
        self.blocking(move || tmux.paste(&session, &text, &scratch))
            .await
    }

    /// The pane did not change for [`QUIET`]: the agent is between turns.
    async fn is_quiet(&self, session: &str) -> bool {
        let before = self.pane_tail(session, 50).await;
        tokio::time::sleep(QUIET).await;
        before == self.pane_tail(session, 50).await
    }

    async fn settle(&self, session: &str) {
        let mut last = String::new();
        for _ in 0..20 {
            let now = self.pane_tail(session, 50).await;
            if !now.trim().is_empty() && now == last {
                return;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn pane_tail(&self, session: &str, lines: usize) -> String {
        let tmux = self.tmux.clone();
        let s = session.to_string();
        let text = self
            .blocking(move || tmux.capture(&s, 0))
            .await
            .unwrap_or_default();
        let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }

    /// The creating agent's worktree, committed now, when the task came from a working agent.
    async fn parent_checkpoint(&self, task: &TaskView) -> Option<String> {
        let parent_agent = task.created_by_agent_id.as_deref()?;
        let rt = self.state.store.agent_runtime(parent_agent).ok()?;
        let (path, branch) = (PathBuf::from(rt.worktree_path?), rt.branch?);
        if rt.status == AgentStatus::Terminated || !path.exists() {
            return None;
        }
        let wt = self.worktrees.clone();
        let message = format!("[hephaestus] checkpoint for task {}", task.id);
        self.blocking(move || {
            wt.checkpoint(&path, &message)?;
            wt.branch_commit(&branch)
        })
        .await
        .ok()
    }

    fn render_system(
        &self,
        agent_id: &str,
        worktree: &std::path::Path,
        branch: &str,
        task: &TaskView,
    ) -> Result<String> {
        let workflow = match &task.workflow_id {
            Some(w) => self
                .state
                .store
                .get_workflow(w)
                .map(|w| w.name)
                .unwrap_or_default(),
            None => String::new(),
        };
        let values = HashMap::from([
            ("agent_id", agent_id.to_string()),
            ("worktree", worktree.display().to_string()),
            ("branch", branch.to_string()),
            ("base_branch", self.base_branch.clone()),
            ("workflow", workflow),
        ]);
        prompt::render(prompt::AGENT_SYSTEM, &values)
    }

    fn render_task(&self, task: &TaskView, memories: String) -> Result<String> {
        let (mut phase, mut phase_description, mut phases) =
            (String::new(), String::new(), String::new());
        if let (Some(w), Some(order)) = (&task.workflow_id, task.phase)
            && let Ok(wf) = self.state.store.get_workflow(w)
        {
            for p in &wf.phases {
                let mark = if p.order == order { "→" } else { " " };
                phases.push_str(&format!("{mark} {}. {}\n", p.order, p.name));
                if p.order == order {
                    phase = format!("{} ({})", p.order, p.name);
                    phase_description = p.description.trim().to_string();
                }
            }
        }
        let values = HashMap::from([
            ("task_id", task.id.clone()),
            ("priority", task.priority.as_str().to_string()),
            ("description", task.description.trim().to_string()),
            ("done_definition", task.done_definition.trim().to_string()),
            ("phase", phase),
            ("phase_description", phase_description),
            ("phases", phases.trim_end().to_string()),
            ("memories", memories),
        ]);
        prompt::render(prompt::AGENT_TASK, &values)
    }

    /// The memories most relevant to a task, as a list for its first message.
    async fn memories_for(&self, task: &TaskView) -> String {
        let query = crate::memory::Query {
            text: format!("{}\n{}", task.description, task.done_definition),
            limit: 5,
            min_similarity: Some(0.2),
            ..Default::default()
        };
        let state = self.state.clone();
        match self.blocking(move || state.memory.search(&query)).await {
            Ok(found) => found
                .iter()
                .map(|f| format!("- [{}] {}", f.memory.memory_type, f.memory.content.trim()))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => {
                tracing::warn!(task = %task.id, "cannot search memories for the task: {e:#}");
                String::new()
            }
        }
    }

    /// A launch failed: end the session, keep whatever the agent wrote on its branch (the
    /// task's next agent starts from it), and fail the task with the reason; or, when the cause
    /// was not the task's (`retry`), queue it again while it has attempts left.
    async fn abort_launch(&self, agent_id: &str, task_id: &str, reason: &str, retry: bool) {
        let store = &self.state.store;
        let _ = store.log_event(
            Some(agent_id),
            Some(task_id),
            EventKind::LaunchFailed,
            reason,
        );
        let commit = match store.agent_runtime(agent_id) {
            Ok(rt) => self
                .stop_and_commit(
                    &rt,
                    "[hephaestus] work of an agent that did not start properly",
                )
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        };
        if let Some(c) = &commit {
            let _ = store.set_task_base_ref(task_id, c);
        }
        // The session may exist without the database knowing of it yet.
        let (tmux, session) = (self.tmux.clone(), self.session_name(agent_id));
        let _ = self.blocking(move || tmux.kill_session(&session)).await;
        self.remove_worktree(agent_id, commit.is_none()).await;
        let attempts = store.task_attempts(task_id).unwrap_or(0) + 1;
        let max = self.state.config.agents.max_attempts;
        if retry && attempts < max {
            let _ = store.requeue_task(
                task_id,
                &format!("{reason}\n(the launch failed; the task goes to a new agent, attempt {attempts} of {max})"),
            );
        } else if retry {
            let _ = store.fail_task(
                task_id,
                &format!("{reason}\n(the launch failed {attempts} times)"),
            );
        } else {
            let _ = store.fail_task(task_id, reason);
        }
        let _ = store.set_agent_merge(agent_id, MergeStatus::Abandoned, None);
        let _ = store.terminate_agent(agent_id);
        self.release_slot(agent_id);
        self.state.signals.forget(agent_id);
        self.state.signals.queue_changed();
    }

    fn spawn_finish(self: &Arc<Self>, agent_id: String, task_id: String) {
        let Ok(rt) = self.state.store.agent_runtime(&agent_id) else {
            return;
        };
        if rt.tmux_session.is_none() || rt.status == AgentStatus::Terminated {
            return; // not one of ours (an external or hand-registered agent)
        }
        self.set_busy(&agent_id, true);
        let me = self.clone();
        self.tasks.spawn(async move {
            if let Err(e) = me.finish(&agent_id, &task_id).await {
                tracing::error!(agent = %agent_id, task = %task_id, "finishing the agent failed: {e:#}");
                let _ = me.state.store.terminate_agent(&agent_id);
                me.release_slot(&agent_id);
            }
            me.set_busy(&agent_id, false);
            me.state.signals.queue_changed();
        });
    }

    /// The agent reported its task done or failed: keep its last output, commit, stop it, merge.
    async fn finish(&self, agent_id: &str, task_id: &str) -> Result<()> {
        let store = &self.state.store;
        let rt = store.agent_runtime(agent_id)?;
        let task = store.get_task(task_id)?;
        let session = rt.tmux_session.clone().unwrap_or_default();
        // Give the CLI a moment to print its last words after the tool call returned.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let final_output = {
            let tmux = self.tmux.clone();
            let s = session.clone();
            self.blocking(move || tmux.capture(&s, 10_000))
                .await
                .unwrap_or_default()
        };
        store.log_event_with(
            Some(agent_id),
            Some(task_id),
            EventKind::Terminated,
            &format!("task {}", task.status),
            Some(&final_output),
        )?;
        let committed = self
            .stop_and_commit(
                &rt,
                &format!(
                    "[hephaestus] {}",
                    crate::text::first_line(&task.description, 60)
                ),
            )
            .await;
        if let Err(e) = &committed {
            tracing::warn!(agent = %agent_id, "final commit failed: {e:#}");
        }
        if task.status == TaskStatus::Done {
            self.merge_back(&rt, &task).await?;
        } else {
            store.set_agent_merge(agent_id, MergeStatus::Abandoned, None)?;
            self.remove_worktree(agent_id, false).await;
        }
        store.terminate_agent(agent_id)?;
        self.release_slot(agent_id);
        self.state.signals.forget(agent_id);
        Ok(())
    }

    async fn stop_and_commit(
        &self,
        rt: &crate::store::AgentRuntime,
        message: &str,
    ) -> Result<Option<String>> {
        let tmux = self.tmux.clone();
        let wt = self.worktrees.clone();
        let session = rt.tmux_session.clone().unwrap_or_default();
        let path = rt.worktree_path.clone().map(PathBuf::from);
        let message = message.to_string();
        self.blocking(move || {
            tmux.kill_session(&session)?;
            match path {
                Some(p) if p.exists() => wt.checkpoint(&p, &message),
                _ => Ok(None),
            }
        })
        .await
    }

    async fn remove_worktree(&self, agent_id: &str, delete_branch: bool) {
        let wt = self.worktrees.clone();
        let id8 = id8(agent_id).to_string();
        if let Err(e) = self.blocking(move || wt.remove(&id8, delete_branch)).await {
            tracing::warn!(agent = %agent_id, "cannot remove the worktree: {e:#}");
        }
    }

    /// Merges the agent's branch into the base branch; on a conflict nothing changes and a
    /// follow-up task is queued to resolve it on the agent's branch.
    async fn merge_back(&self, rt: &crate::store::AgentRuntime, task: &TaskView) -> Result<()> {
        let store = &self.state.store;
        let Some(branch) = rt.branch.clone() else {
            return Ok(());
        };
        let wt = self.worktrees.clone();
        let (b, target) = (branch.clone(), self.base_branch.clone());
        let message = format!(
            "Merge {branch}: {}",
            crate::text::first_line(&task.description, 60)
        );
        let outcome = self
            .blocking(move || wt.merge(&b, &target, &message))
            .await?;
        match outcome {
            MergeOutcome::Conflict { files } => {
                store.set_task_merge(&task.id, MergeStatus::Conflict, &files)?;
                store.set_agent_merge(&rt.agent_id, MergeStatus::Conflict, None)?;
                let head = {
                    let wt = self.worktrees.clone();
                    let b = branch.clone();
                    self.blocking(move || wt.branch_commit(&b)).await?
                };
                store.log_event(
                    Some(&rt.agent_id),
                    Some(&task.id),
                    EventKind::MergeConflict,
                    &files.join(", "),
                )?;
                let description = format!(
                    "Resolve the merge conflict between branch {branch} and {base}.\n\nThe work of task {task_id} could not be merged into {base} because these files conflict: {files}.\nYour worktree starts at that work. Merge {base} into it (git merge {base}), resolve every conflict keeping the intent of both sides, run the tests, and commit.\n\nOriginal task:\n{original}",
                    base = self.base_branch,
                    task_id = task.id,
                    files = files.join(", "),
                    original = task.description,
                );
                store
                    .create_task(NewTask {
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
                    })
                    .map_err(|e| anyhow!("cannot queue the conflict follow-up: {e}"))?;
                self.remove_worktree(&rt.agent_id, false).await;
            }
            MergeOutcome::Waiting { files } => {
                // Logged once; the retries that find the same files in the way stay quiet.
                if task.merge_status != Some(MergeStatus::Waiting) {
                    store.log_event(
                        Some(&rt.agent_id),
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
                store.set_task_merge(&task.id, MergeStatus::Waiting, &files)?;
                store.set_agent_merge(&rt.agent_id, MergeStatus::Waiting, None)?;
                // The branch holds the work; the worktree is no longer needed.
                self.remove_worktree(&rt.agent_id, false).await;
            }
            MergeOutcome::UpToDate => {
                store.set_task_merge(&task.id, MergeStatus::UpToDate, &[])?;
                store.set_agent_merge(&rt.agent_id, MergeStatus::Merged, None)?;
                self.remove_worktree(&rt.agent_id, true).await;
            }
            MergeOutcome::FastForward { commit } | MergeOutcome::Merged { commit } => {
                store.set_task_merge(&task.id, MergeStatus::Merged, &[])?;
                store.set_agent_merge(&rt.agent_id, MergeStatus::Merged, Some(&commit))?;
                store.log_event(
                    Some(&rt.agent_id),
                    Some(&task.id),
                    EventKind::Merged,
                    &format!("{branch} into {} at {commit}", self.base_branch),
                )?;
                self.remove_worktree(&rt.agent_id, true).await;
            }
        }
        Ok(())
    }

    /// Merges that wait for the user's checkout are tried again, at most every few seconds
    /// (each try reads the checkout's status).
    async fn retry_waiting_merges(&self) {
        const EVERY: Duration = Duration::from_secs(4);
        {
            let mut last = self
                .last_merge_retry
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
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

    /// Types waiting inbox messages into the terminals of agents that are between turns.
    async fn type_messages(&self) {
        let Ok(agents) = self.state.store.live_managed_agents() else {
            return;
        };
        for rt in agents {
            if self.is_busy(&rt.agent_id) || rt.task_id.is_none() {
                continue;
            }
            let Ok(pending) = self.state.store.untyped_messages(&rt.agent_id) else {
                continue;
            };
            if pending.is_empty() {
                continue;
            }
            let Some(session) = rt.tmux_session.clone() else {
                continue;
            };
            let (tmux, s) = (self.tmux.clone(), session.clone());
            let Ok(pane) = self.blocking(move || tmux.capture(&s, 0)).await else {
                continue;
            };
            let hash = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                pane.hash(&mut h);
                h.finish()
            };
            let quiet = {
                let mut panes = self.panes.lock().unwrap_or_else(|e| e.into_inner());
                let now = std::time::Instant::now();
                let entry = panes.entry(rt.agent_id.clone()).or_insert((hash, now));
                if entry.0 != hash {
                    *entry = (hash, now);
                }
                now.duration_since(entry.1) >= QUIET
            };
            if !quiet {
                continue;
            }
            let mut text =
                String::from("[Hephaestus] Message(s) for you (get_messages returns them too):");
            for (_, from, body) in &pending {
                text.push_str(&format!(
                    "\n- from {}: {}",
                    from.as_deref().unwrap_or("a person"),
                    body
                ));
            }
            let dir = adapters::agent_dir(&self.state.config.data_dir, id8(&rt.agent_id));
            if let Err(e) = self.type_message(&session, &text, &dir).await {
                tracing::warn!(agent = %rt.agent_id, "cannot type messages: {e:#}");
                continue;
            }
            let ids: Vec<i64> = pending.iter().map(|m| m.0).collect();
            let _ = self.state.store.mark_typed(&ids);
            let _ = self.state.store.log_event(
                Some(&rt.agent_id),
                rt.task_id.as_deref(),
                EventKind::MessagesTyped,
                &format!("{} message(s)", ids.len()),
            );
        }
    }

    /// Agents whose program exited or whose session vanished without finishing their task.
    async fn check_dead(&self) {
        let Ok(agents) = self.state.store.live_managed_agents() else {
            return;
        };
        for rt in agents {
            if self.is_busy(&rt.agent_id) {
                continue;
            }
            let Some(session) = rt.tmux_session.clone() else {
                continue;
            };
            let tmux = self.tmux.clone();
            let s = session.clone();
            let alive = self
                .blocking(move || Ok(tmux.is_alive(&s)))
                .await
                .unwrap_or(true);
            if alive {
                continue;
            }
            self.handle_dead(rt).await;
        }
    }

    async fn handle_dead(&self, rt: crate::store::AgentRuntime) {
        // Agents whose task just ended are busy (being finished) by the time this runs, so an
        // agent with no task here is a leftover (e.g. from before a restart): just end it.
        let store = &self.state.store;
        let agent_id = rt.agent_id.clone();
        let session = rt.tmux_session.clone().unwrap_or_default();
        let output = {
            let tmux = self.tmux.clone();
            self.blocking(move || tmux.capture(&session, 10_000))
                .await
                .unwrap_or_default()
        };
        let _ = store.log_event_with(
            Some(&agent_id),
            rt.task_id.as_deref(),
            EventKind::Died,
            "the agent's program exited or its session vanished",
            Some(&output),
        );
        let commit = self
            .stop_and_commit(&rt, "[hephaestus] work of an agent that stopped")
            .await
            .ok()
            .flatten();
        if let Some(task_id) = rt.task_id.clone() {
            let attempts = store.task_attempts(&task_id).unwrap_or(0) + 1;
            let max = self.state.config.agents.max_attempts;
            if attempts < max {
                // The next agent continues from whatever this one committed.
                let head = match (&rt.branch, commit) {
                    (_, Some(c)) => Some(c),
                    (Some(b), None) => {
                        let (wt, b) = (self.worktrees.clone(), b.clone());
                        self.blocking(move || wt.branch_commit(&b)).await.ok()
                    }
                    _ => None,
                };
                if let Some(h) = head {
                    let _ = store.set_task_base_ref(&task_id, &h);
                }
                let _ = store.requeue_task(
                    &task_id,
                    &format!(
                        "agent {agent_id} stopped before finishing (attempt {attempts} of {max})"
                    ),
                );
                tracing::warn!(agent = %agent_id, task = %task_id, attempts, "agent died; task requeued");
            } else {
                let _ = store.fail_task(
                    &task_id,
                    &format!("agents stopped before finishing this task {attempts} times"),
                );
                tracing::warn!(agent = %agent_id, task = %task_id, attempts, "agent died; task failed after its last attempt");
            }
        }
        let _ = store.set_agent_merge(&agent_id, MergeStatus::Abandoned, None);
        self.remove_worktree(&agent_id, false).await;
        let _ = store.terminate_agent(&agent_id);
        self.release_slot(&agent_id);
        self.state.signals.forget(&agent_id);
        self.state.signals.queue_changed();
    }
}

/// What `agents gc` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub sessions_killed: Vec<String>,
    pub worktrees_removed: Vec<String>,
    /// Per-agent dirs (CLI config, private CLI homes, the first message) of agents that ended.
    pub agent_dirs_removed: Vec<String>,
}

impl AgentManager {
    /// The managed agent whose id starts with `prefix` (at least 4 characters).
    pub fn resolve(&self, prefix: &str) -> Result<crate::store::AgentRuntime> {
        resolve_agent(&self.state.store, prefix)
    }

    /// Stops an agent at a person's request: its task fails (it is not retried), its work is
    /// committed on its branch and kept there.
    pub async fn kill(&self, prefix: &str) -> Result<String> {
        let rt = self.resolve(prefix)?;
        if rt.status == AgentStatus::Terminated {
            anyhow::bail!("agent {} has already ended", rt.agent_id);
        }
        if self.is_busy(&rt.agent_id) {
            anyhow::bail!(
                "agent {} is starting or finishing right now; try again in a few seconds",
                rt.agent_id
            );
        }
        self.set_busy(&rt.agent_id, true);
        let store = &self.state.store;
        let session = rt.tmux_session.clone().unwrap_or_default();
        let output = {
            let (tmux, s) = (self.tmux.clone(), session.clone());
            self.blocking(move || tmux.capture(&s, 10_000))
                .await
                .unwrap_or_default()
        };
        let _ = store.log_event_with(
            Some(&rt.agent_id),
            rt.task_id.as_deref(),
            EventKind::Killed,
            "stopped by a person",
            Some(&output),
        );
        let commit = self
            .stop_and_commit(&rt, "[hephaestus] work of an agent stopped by a person")
            .await
            .ok()
            .flatten();
        if let Some(task) = &rt.task_id {
            let _ = store.fail_task(
                task,
                "the agent was stopped by a person (hephaestus agents kill)",
            );
        }
        let _ = store.set_agent_merge(&rt.agent_id, MergeStatus::Abandoned, None);
        self.remove_worktree(&rt.agent_id, false).await;
        let _ = store.terminate_agent(&rt.agent_id);
        self.release_slot(&rt.agent_id);
        self.set_busy(&rt.agent_id, false);
        self.state.signals.forget(&rt.agent_id);
        self.state.signals.queue_changed();
        Ok(match (rt.branch, commit) {
            (Some(b), Some(c)) => format!(
                "stopped agent {}; its work is committed on {b} at {c}",
                rt.agent_id
            ),
            (Some(b), None) => format!("stopped agent {}; its branch {b} is kept", rt.agent_id),
            _ => format!("stopped agent {}", rt.agent_id),
        })
    }

    /// Types a person's message into an agent's terminal.
    pub async fn send(&self, prefix: &str, text: &str) -> Result<String> {
        let rt = self.resolve(prefix)?;
        let Some(session) = rt
            .tmux_session
            .clone()
            .filter(|_| rt.status != AgentStatus::Terminated)
        else {
            anyhow::bail!("agent {} is not running", rt.agent_id);
        };
        let dir = adapters::agent_dir(&self.state.config.data_dir, id8(&rt.agent_id));
        self.type_message(&session, text, &dir).await?;
        self.state.store.log_event(
            Some(&rt.agent_id),
            rt.task_id.as_deref(),
            EventKind::MessageFromPerson,
            text,
        )?;
        Ok(format!("sent to agent {}", rt.agent_id))
    }

    async fn type_message(
        &self,
        session: &str,
        text: &str,
        agent_dir: &std::path::Path,
    ) -> Result<()> {
        self.paste(session, text, agent_dir).await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (tmux, s) = (self.tmux.clone(), session.to_string());
        self.blocking(move || tmux.send_key(&s, "Enter")).await
    }

    /// Removes what no live agent owns: sessions on our tmux server and agent worktrees.
    /// Branches of merged agents go too; other branches stay, they may hold work.
    pub async fn gc(&self) -> Result<GcReport> {
        let store = &self.state.store;
        let agents = store.all_managed_agents()?;
        let live: HashSet<String> = agents
            .iter()
            .filter(|a| a.status != AgentStatus::Terminated || self.is_busy(&a.agent_id))
            .map(|a| id8(&a.agent_id).to_string())
            .collect();
        let prefix = format!("{}-", self.state.config.agents.session_prefix);
        let mut report = GcReport::default();
        let tmux = self.tmux.clone();
        let sessions = self.blocking(move || tmux.list_sessions()).await?;
        for s in sessions {
            let Some(id) = s.strip_prefix(&prefix) else {
                continue;
            };
            if !live.contains(id) {
                let (tmux, name) = (self.tmux.clone(), s.clone());
                self.blocking(move || tmux.kill_session(&name)).await?;
                report.sessions_killed.push(s);
            }
        }
        let wt = self.worktrees.clone();
        let worktrees = self.blocking(move || wt.list()).await?;
        for (id, path) in worktrees {
            if live.contains(&id) {
                continue;
            }
            let merged = agents
                .iter()
                .any(|a| id8(&a.agent_id) == id && a.merge_status == Some(MergeStatus::Merged));
            let wt = self.worktrees.clone();
            let i = id.clone();
            self.blocking(move || wt.remove(&i, merged)).await?;
            report.worktrees_removed.push(path.display().to_string());
        }
        // What a dead agent's CLI left in its home (Codex keeps a ~250 MB package cache there)
        // and its token, which nothing accepts any more. Links in it to the user's logins are
        // removed as links: remove_dir_all does not follow them.
        let agents_dir = self.state.config.data_dir.join("agents");
        report.agent_dirs_removed = self
            .blocking(move || {
                let mut removed = Vec::new();
                let entries = match std::fs::read_dir(&agents_dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("cannot list {}", agents_dir.display())));
                    }
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let owned = entry.file_name().to_str().is_some_and(|n| live.contains(n));
                    // A dir made after `live` was read belongs to an agent being launched.
                    let fresh = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < Duration::from_secs(60)));
                    if owned || fresh || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    std::fs::remove_dir_all(&path)
                        .with_context(|| format!("cannot remove {}", path.display()))?;
                    removed.push(path.display().to_string());
                }
                Ok(removed)
            })
            .await?;
        Ok(report)
    }
}

/// The managed agent whose id starts with `prefix`.
pub fn resolve_agent(
    store: &crate::store::Store,
    prefix: &str,
) -> Result<crate::store::AgentRuntime> {
    if prefix.len() < 4 {
        anyhow::bail!("give at least 4 characters of the agent id");
    }
    let matches: Vec<_> = store
        .all_managed_agents()?
        .into_iter()
        .filter(|a| a.agent_id.starts_with(prefix))
        .collect();
    match matches.len() {
        0 => anyhow::bail!("no agent id starts with {prefix}: see `hephaestus agents --all`"),
        1 => Ok(matches.into_iter().next().expect("one match")),
        n => anyhow::bail!("{n} agents start with {prefix}: give more of the id"),
    }
}

pub fn id8(agent_id: &str) -> &str {
    &agent_id[..agent_id.len().min(8)]
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Points `link` at `target`, replacing an older link; a missing target is left alone (there is
/// nothing to share yet), so no dangling link can make a CLI write outside the agent's dir.
fn replace_link(link: &std::path::Path, target: &std::path::Path) -> Result<()> {
    if !target.exists() {
        return Ok(());
    }
    match std::fs::remove_file(link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot replace {}", link.display()));
        }
        _ => {}
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))
}

/// Writes a file only its owner can read: these hold the agent's token.
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
