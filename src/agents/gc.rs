//! `agents gc`, and the sweep at start: what no live agent owns goes. Sessions on our private
//! tmux server, agent worktrees (with the branches of merged agents; other branches may hold
//! work and stay), and the per-agent dirs of agents that ended.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result};

use super::handle::GcReport;
use super::manager::{AgentManager, id8};
use crate::states::{AgentStatus, MergeStatus};

/// A dir younger than this may belong to an agent being launched right now.
const FRESH: Duration = Duration::from_secs(60);

impl AgentManager {
    pub(super) async fn gc(&self) -> Result<GcReport> {
        let store = &self.state.store;
        let agents = store.all_managed_agents()?;
        let live: HashSet<String> = agents
            .iter()
            .filter(|a| a.status != AgentStatus::Terminated || self.is_busy(&a.agent_id))
            .map(|a| id8(&a.agent_id).to_string())
            .collect();
        let prefix = format!("{}-", self.state.config.agents.session_prefix);
        let mut report = GcReport::default();
        for s in self.terminal.sessions().await? {
            let Some(id) = s.strip_prefix(&prefix) else {
                continue;
            };
            if !live.contains(id) {
                self.terminal.end(&s).await?;
                report.sessions_killed.push(s);
            }
        }
        let wt = self.worktrees.clone();
        let worktrees = self.blocking(move || wt.list()).await?;
        for (id, path) in worktrees {
            if live.contains(&id) {
                continue;
            }
            let merged = agents.iter().any(|a| {
                id8(&a.agent_id) == id
                    && matches!(
                        a.merge_status,
                        Some(MergeStatus::Merged | MergeStatus::UpToDate)
                    )
            });
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
            .blocking(move || remove_ended_agent_dirs(&agents_dir, &live))
            .await?;
        Ok(report)
    }
}

fn remove_ended_agent_dirs(
    agents_dir: &std::path::Path,
    live: &HashSet<String>,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(agents_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot list {}", agents_dir.display()))
            );
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let owned = entry.file_name().to_str().is_some_and(|n| live.contains(n));
        // A dir made after `live` was read belongs to an agent being launched.
        let fresh = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < FRESH));
        if owned || fresh || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        std::fs::remove_dir_all(&path)
            .with_context(|| format!("cannot remove {}", path.display()))?;
        removed.push(path.display().to_string());
    }
    Ok(removed)
}
