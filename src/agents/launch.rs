//! Starting agents: for each task the cap allows, register an agent with a fresh token, claim
//! the task atomically, make its worktree, write its private files (CLI config with the token,
//! system prompt, first message), start its CLI in a tmux session, then wait until it is ready
//! and hand it its task (`delivery.rs`). A launch that fails ends the agent; its task is failed,
//! or queued for a new agent when the cause was not the task's.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::adapters::{self, AgentLaunch, LaunchSpec};
use super::manager::{AgentManager, id8};
use super::policy;
use super::teardown::Ending;
use crate::services;
use crate::states::EventKind;
use crate::views::TaskView;

/// A launch that stopped because the coordinator is shutting down, not because the agent failed.
#[derive(Debug)]
pub(super) struct Interrupted;

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
pub(super) struct AgentStartFailed(pub String);

impl std::fmt::Display for AgentStartFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AgentStartFailed {}

impl AgentManager {
    /// Claims queued tasks while the cap allows and starts an agent for each.
    pub(super) async fn fill(self: &Arc<Self>) {
        let store = &self.state.store;
        loop {
            let active = store.active_task_count().unwrap_or(i64::MAX);
            let cap = self.state.config.max_concurrent_agents;
            if policy::free_slots(cap, self.agents_in_slots(), active) == 0 {
                return;
            }
            let (agent, token) =
                match store.register_agent(self.cli.as_str(), Some(self.cli.as_str())) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::error!("cannot register an agent: {e}");
                        return;
                    }
                };
            let task = match services::tasks::claim_next(&self.state, &agent.id) {
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
                // delivery; then it is finished once this launch lets go of it.
                let result = me.launch(&agent_id, &token, &task).await;
                me.launch_ended(&agent_id, &task.id, result).await;
            });
        }
    }

    async fn launch(&self, agent_id: &str, token: &str, task: &TaskView) -> Result<()> {
        let settings = &self.state.config.agents;
        // A CLI that is not installed fails at once with that reason, not after a timeout.
        let (host, cli) = (settings.host.clone(), self.cli);
        if let Some(problem) = self.blocking(move || Ok(host.missing_cli(cli))).await? {
            anyhow::bail!("the {} CLI cannot start: {problem}", cli.as_str());
        }
        let base = self.start_point(task).await?;
        let (wt, copy, name) = (
            self.worktrees.clone(),
            settings.copy_untracked.clone(),
            id8(agent_id).to_string(),
        );
        let info = self
            .blocking(move || wt.create(&name, &base, &copy))
            .await
            .map_err(|e| AgentStartFailed(format!("cannot make the agent's worktree: {e:#}")))?;

        let agent_dir = self.agent_dir(agent_id);
        let system_prompt = self.system_prompt(agent_id, &info.path, &info.branch, task)?;
        let first_message = self.first_message(task).await?;
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
        let message = if spec.prompt_in_first_message {
            format!("{system_prompt}\n\n{first_message}")
        } else {
            first_message
        };
        {
            let (dir, spec, message) = (agent_dir.clone(), spec.clone(), message.clone());
            self.blocking(move || write_agent_files(&dir, &spec, &message))
                .await?;
        }

        let session = self.session_name(agent_id);
        self.terminal
            .start(&session, &info.path, &spec.command, &spec.env)
            .await?;
        self.state.store.set_agent_runtime(
            agent_id,
            &session,
            &info.path.display().to_string(),
            &info.branch,
            &info.base_commit,
        )?;
        self.state.events.record(
            agent_id,
            Some(&task.id),
            EventKind::Created,
            &format!(
                "{} in {} on {}",
                self.cli.as_str(),
                info.path.display(),
                info.branch
            ),
        )?;
        let ready_timeout = std::time::Duration::from_secs(settings.ready_timeout_secs);
        self.wait_until_ready(agent_id, &task.id, &session, ready_timeout, false)
            .await?;
        // Let the input box finish drawing: wait for the pane to stop changing.
        self.settle(&session).await;
        self.deliver(agent_id, &task.id, &session, &message, true)
            .await
    }

    /// What happens after a launch or a resumed launch: a failure ends the agent and fails the
    /// task, or queues it again when the cause was not the task's; unless the agent finished
    /// meanwhile or the coordinator is stopping (then the next start resumes).
    pub(super) async fn launch_ended(&self, agent_id: &str, task_id: &str, result: Result<()>) {
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
                let reason = format!("{e:#}");
                match self.state.store.agent_runtime(agent_id) {
                    Ok(rt) => {
                        let rt = crate::store::AgentRuntime {
                            task_id: Some(task_id.to_string()),
                            ..rt
                        };
                        if let Err(e) = self
                            .teardown(
                                &rt,
                                Ending::LaunchFailed {
                                    reason: &reason,
                                    retry,
                                },
                            )
                            .await
                        {
                            tracing::warn!(agent = %agent_id, "ending the agent failed: {e:#}");
                        }
                    }
                    Err(e) => {
                        // The agent's row cannot be read: the task must not stay assigned
                        // to it, nor its slot held.
                        tracing::error!(agent = %agent_id, "cannot read the agent to end it: {e}");
                        let _ = services::tasks::fail(&self.state, task_id, &reason);
                        let _ = self.retire(agent_id);
                    }
                }
            }
        }
        self.set_busy(agent_id, false);
        self.progress.wake_loop();
    }
}

/// The agent's private dir: its CLI's config files (they hold its token, so 0600 in a 0700 dir,
/// never in the worktree), the links to the user's own login files, and the first message.
fn write_agent_files(agent_dir: &std::path::Path, spec: &LaunchSpec, message: &str) -> Result<()> {
    create_private_dir(agent_dir)?;
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
    write_private(&agent_dir.join("first_message.md"), message)
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
