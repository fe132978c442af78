//! Memory tools: save_memory, search_memories.

use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData as McpError, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{McpSession, attempt, reply, tool_error};
use crate::memory::{Query, Saved};
use crate::states::MemoryType;
use crate::store::NewMemory;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SaveMemoryParams {
    /// One self-contained fact another agent can use (what, where, why).
    pub content: String,
    pub memory_type: MemoryType,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Paths the memory is about.
    #[serde(default)]
    pub related_files: Option<Vec<String>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SavedMemory {
    pub id: i64,
    /// stored | duplicate (an existing memory says the same; its id is returned) | pending
    pub outcome: String,
    /// Similarity to the existing memory, for a duplicate.
    pub similarity: Option<f32>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Memories from every workflow.
    #[default]
    All,
    /// Only memories saved in your own workflow.
    Workflow,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchMemoriesParams {
    /// What you want to know, in words.
    pub query: String,
    /// Default 5.
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub memory_types: Option<Vec<MemoryType>>,
    /// Smallest similarity (0 to 1) a result may have.
    #[serde(default)]
    pub min_score: Option<f32>,
    #[serde(default)]
    pub scope: Option<Scope>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FoundMemory {
    pub id: i64,
    pub content: String,
    #[schemars(with = "String")]
    pub memory_type: MemoryType,
    /// Cosine similarity to the query (what min_score applies to).
    pub similarity: f32,
    /// Similarity refined by how well the memory's words cover the query's (equal to it without the local model).
    pub relevance: f32,
    /// Relevance, recency and type combined: the ranking.
    pub score: f32,
    pub agent_id: Option<String>,
    pub age: String,
    pub tags: Vec<String>,
    pub related_files: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MemoryResults {
    pub memories: Vec<FoundMemory>,
}

/// Runs memory work off the reactor: a remote embedder may take seconds.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("memory task failed: {e}"))?
}

impl McpSession {
    /// The caller's current task and its workflow, recorded with what it saves.
    fn task_and_workflow(&self, caller: &str) -> (Option<String>, Option<String>) {
        let task = self
            .state
            .store
            .get_agent(caller)
            .ok()
            .and_then(|a| a.current_task_id);
        let workflow = task
            .as_deref()
            .and_then(|t| self.state.store.get_task(t).ok())
            .and_then(|t| t.workflow_id);
        (task, workflow)
    }
}

#[tool_router(router = memory_tools, vis = "pub(crate)")]
impl McpSession {
    #[tool(
        description = "Save what you learned for other agents. A near-duplicate of an existing memory is not stored again; its id is returned.",
        output_schema = schema_for_output::<SavedMemory>()
    )]
    async fn save_memory(
        &self,
        Parameters(p): Parameters<SaveMemoryParams>,
    ) -> Result<CallToolResult, McpError> {
        let caller = attempt!(self.caller());
        if p.content.trim().is_empty() {
            return Ok(tool_error("content must not be empty"));
        }
        let (task_id, workflow_id) = self.task_and_workflow(&caller);
        let state = self.state.clone();
        let saved = attempt!(
            blocking(move || crate::services::memory::save(
                &state,
                NewMemory {
                    content: p.content,
                    memory_type: p.memory_type,
                    tags: p.tags.unwrap_or_default(),
                    related_files: p.related_files.unwrap_or_default(),
                    agent_id: Some(caller),
                    task_id,
                    workflow_id,
                    created_at_ms: None,
                }
            ))
            .await
            .map_err(|e| tool_error(format!("cannot save the memory: {e:#}")))
        );
        let (id, outcome, similarity, text) = match saved {
            Saved::Stored { id } => (id, "stored", None, format!("Memory {id} saved")),
            Saved::Pending { id } => (
                id,
                "pending",
                None,
                format!("Memory {id} saved; it will be searchable shortly"),
            ),
            Saved::Duplicate { id, similarity } => (
                id,
                "duplicate",
                Some(similarity),
                format!("Not stored: memory {id} already says this (similarity {similarity:.2})"),
            ),
        };
        reply(
            text,
            &SavedMemory {
                id,
                outcome: outcome.into(),
                similarity,
            },
        )
    }

    #[tool(
        description = "Find what other agents learned, by meaning. Ranked by relevance, recency and type.",
        output_schema = schema_for_output::<MemoryResults>()
    )]
    async fn search_memories(
        &self,
        Parameters(p): Parameters<SearchMemoriesParams>,
    ) -> Result<CallToolResult, McpError> {
        let caller = attempt!(self.caller());
        let workflow_id = match p.scope.unwrap_or_default() {
            Scope::All => None,
            Scope::Workflow => match self.task_and_workflow(&caller).1 {
                Some(w) => Some(w),
                None => {
                    return Ok(tool_error(
                        "you are not working in a workflow: use scope all",
                    ));
                }
            },
        };
        let state = self.state.clone();
        let found = attempt!(
            blocking(move || state.memory.search(&Query {
                text: p.query,
                limit: p.limit.unwrap_or(5).clamp(1, 50) as usize,
                memory_types: p.memory_types.unwrap_or_default(),
                min_similarity: p.min_score,
                workflow_id,
            }))
            .await
            .map_err(|e| tool_error(format!("cannot search memories: {e:#}")))
        );
        let now = crate::time::now_ms();
        let memories: Vec<FoundMemory> = found
            .into_iter()
            .map(|f| FoundMemory {
                id: f.memory.id,
                content: f.memory.content,
                memory_type: f.memory.memory_type,
                similarity: f.similarity,
                relevance: f.relevance,
                score: f.score,
                agent_id: f.memory.agent_id,
                age: crate::time::age(f.memory.created_at_ms, now),
                tags: f.memory.tags,
                related_files: f.memory.related_files,
            })
            .collect();
        let mut text = format!(
            "{} memor{}",
            memories.len(),
            if memories.len() == 1 { "y" } else { "ies" }
        );
        for m in &memories {
            text.push_str(&format!(
                "\n- [{} {:.2}] {}",
                m.memory_type, m.similarity, m.content
            ));
        }
        reply(text, &MemoryResults { memories })
    }
}
