//! What an agent is told before it starts: its system prompt (who it is, where it works) and
//! its first message (the task, its phase among the workflow's phases, what earlier agents
//! learned), rendered from the templates in `prompts/`; and where its work starts from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::manager::AgentManager;
use super::prompt;
use super::worktree::BaseRef;
use crate::states::AgentStatus;
use crate::views::TaskView;

impl AgentManager {
    /// Where the task's work starts: a conflict follow-up's or a dead agent's commit, else the
    /// creating agent's current work, else the base branch.
    pub(super) async fn start_point(&self, task: &TaskView) -> Result<BaseRef> {
        Ok(match self.state.store.task_base_ref(&task.id)? {
            Some(commit) => BaseRef::Commit(commit),
            None => match self.parent_checkpoint(task).await {
                Some(commit) => BaseRef::Commit(commit),
                None => BaseRef::Branch(self.base_branch.clone()),
            },
        })
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

    pub(super) fn system_prompt(
        &self,
        agent_id: &str,
        worktree: &Path,
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

    pub(super) async fn first_message(&self, task: &TaskView) -> Result<String> {
        let memories = self.memories_for(task).await;
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
}
