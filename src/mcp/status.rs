//! Status tools: get_agent_status, health_check.

use std::collections::BTreeMap;

use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData as McpError, tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use super::{McpSession, attempt, refusal, reply};
use crate::views::AgentView;

#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentStatus {
    /// You, the caller.
    pub you: AgentView,
    /// Every agent that is not terminated.
    pub agents: Vec<AgentView>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// "ok" when the coordinator and its database answer.
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
    pub schema_version: i64,
    pub active_agents: usize,
    pub max_concurrent_agents: u32,
    /// Number of tasks per status.
    pub tasks: BTreeMap<String, i64>,
    /// The embedder memory search uses.
    pub memory_embedder: String,
    /// True when memory search runs without a real model (lexical overlap only).
    pub memory_degraded: bool,
    /// Why memory runs below its configured quality, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_note: Option<String>,
    /// Where memories are searched: "embedded" or "qdrant at URL".
    pub memory_backend: String,
    pub memories_indexed: usize,
    /// Why no agent can be started (the configured CLI is not installed), when none can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents_problem: Option<String>,
}

#[tool_router(router = status_tools, vis = "pub(crate)")]
impl McpSession {
    #[tool(
        description = "Who you are and which agents are working on what.",
        output_schema = schema_for_output::<AgentStatus>()
    )]
    async fn get_agent_status(&self) -> Result<CallToolResult, McpError> {
        let you = attempt!(self.caller_agent());
        let agents = attempt!(self.state.store.list_agents(false).map_err(refusal));
        let mut text = format!(
            "You are {} ({}). {} agent(s) active:",
            you.id,
            you.name,
            agents.len()
        );
        for a in &agents {
            text.push_str(&format!(
                "\n- {} {} [{}]{}",
                a.id,
                a.name,
                a.status,
                a.current_task_id
                    .as_deref()
                    .map(|t| format!(" task {t}"))
                    .unwrap_or_default()
            ));
        }
        reply(text, &AgentStatus { you, agents })
    }

    #[tool(
        description = "Check that the coordinator and its database answer.",
        output_schema = schema_for_output::<Health>()
    )]
    async fn health_check(&self) -> Result<CallToolResult, McpError> {
        let store = &self.state.store;
        let schema_version = attempt!(
            store
                .schema_version()
                .map_err(|e| refusal(crate::store::OpError::Internal(e)))
        );
        let tasks = attempt!(store.task_counts(None).map_err(refusal));
        let active_agents = attempt!(store.list_agents(false).map_err(refusal)).len();
        let memory = self.state.memory.status();
        let health = Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.state.started.elapsed().as_secs(),
            schema_version,
            active_agents,
            max_concurrent_agents: self.state.config.max_concurrent_agents,
            tasks,
            memory_embedder: memory.embedder,
            memory_degraded: memory.degraded,
            memory_note: memory.note,
            memory_backend: memory.backend,
            memories_indexed: memory.indexed,
            agents_problem: self.state.agents.as_ref().and_then(|a| a.cli_problem()),
        };
        reply(
            format!(
                "healthy: {} agent(s), uptime {}s",
                health.active_agents, health.uptime_seconds
            ),
            &health,
        )
    }
}
