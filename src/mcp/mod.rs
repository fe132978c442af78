//! The MCP server the coordinator runs for each shim connection, built on rmcp.
//!
//! One [`McpSession`] per connection knows who is calling, so tools never take an agent id.
//! Tools live one group per file (`tasks`, `workflows`, `status`); their parameter structs and
//! `///` docs are the agents' contract. A failure the agent can act on is a tool result with
//! `isError: true`; bad parameters are JSON-RPC -32602 (rmcp answers those).

mod memories;
mod messages;
mod status;
mod tasks;
pub mod transport;
mod workflows;

use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use rmcp::handler::server::tool::{ToolCallContext, ToolRouter};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeRequestParams, InitializeResult, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool_handler};
use serde::Serialize;

use crate::events::Event;
use crate::state::Shared;
use crate::store::{AgentKind, Entity, OpError};
use crate::views::AgentView;

/// Who is on the other end of one connection.
pub struct McpSession {
    state: Shared,
    /// Set at the handshake for managed agents, at `initialize` for external ones.
    agent_id: Mutex<Option<String>>,
    /// The shim's pid, from the handshake; tells reconnects of one external client apart.
    peer_pid: u32,
    /// A managed agent (authenticated with a token): the agent manager follows its progress.
    managed: bool,
    /// This session announced its managed agent as connected.
    announced: std::sync::atomic::AtomicBool,
}

impl McpSession {
    pub fn new(state: Shared, agent_id: Option<String>, peer_pid: u32) -> Self {
        let managed = agent_id.is_some();
        McpSession {
            state,
            agent_id: Mutex::new(agent_id),
            peer_pid,
            managed,
            announced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The calling agent's id; `None` before an external client has sent `initialize`.
    pub fn agent_id(&self) -> Option<String> {
        self.agent_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Gives a person's own agent CLI (no agent id in the handshake) an identity named after
    /// the client.
    fn register_external(&self, client_name: &str) -> Result<String, McpError> {
        let name = client_name.trim();
        let name = if name.is_empty() {
            "unknown-client"
        } else {
            name
        };
        let agent = self
            .state
            .store
            .register_external_agent(name, self.peer_pid)
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        tracing::info!(agent = %agent.id, client = name, "external agent connected");
        *self.agent_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(agent.id.clone());
        Ok(agent.id)
    }

    /// The connection's agent, once it has shown up: an external client is registered under
    /// `client_name`, and a managed agent counts as connected for the agent manager. Called on
    /// `initialize`, and on `tools/list` and `tools/call` too, because clients on the 2026-07-28
    /// lifecycle (Claude Code 2.1) never send `initialize` and name themselves in each request's
    /// `_meta` instead.
    fn connected(&self, client_name: impl FnOnce() -> String) -> Result<String, McpError> {
        if let Some(id) = self.agent_id() {
            if self.managed
                && !self
                    .announced
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                self.publish(Event::AgentConnected {
                    agent_id: id.clone(),
                });
            }
            return Ok(id);
        }
        self.register_external(&client_name())
    }

    fn publish(&self, event: Event) {
        self.state.events.publish(event);
    }

    fn caller(&self) -> Result<String, CallToolResult> {
        self.agent_id().ok_or_else(|| {
            tool_error("this connection has no agent yet: send initialize before calling tools")
        })
    }

    fn caller_agent(&self) -> Result<AgentView, CallToolResult> {
        let id = self.caller()?;
        self.state.store.get_agent(&id).map_err(refusal)
    }
}

static ROUTER: LazyLock<ToolRouter<McpSession>> = LazyLock::new(|| {
    McpSession::task_tools()
        + McpSession::workflow_tools()
        + McpSession::status_tools()
        + McpSession::message_tools()
        + McpSession::memory_tools()
});

/// The tool router, built once for all connections.
pub fn router() -> &'static ToolRouter<McpSession> {
    &ROUTER
}

/// The tools as `tools/list` shows them, built once. schemars marks unsigned integers with
/// formats of its own (`uint`, `uint32`, `uint64`) that JSON Schema validators do not know:
/// OpenCode's warns about each one, printed over its own screen. They go; the `minimum: 0`
/// beside each says the same.
pub fn tool_list() -> Vec<rmcp::model::Tool> {
    static TOOLS: LazyLock<Vec<rmcp::model::Tool>> = LazyLock::new(|| {
        router()
            .list_all()
            .into_iter()
            .map(|mut tool| {
                tool.input_schema = std::sync::Arc::new(portable(&tool.input_schema));
                tool.output_schema = tool
                    .output_schema
                    .map(|s| std::sync::Arc::new(portable(&s)));
                tool
            })
            .collect()
    });
    TOOLS.clone()
}

fn portable(schema: &rmcp::model::JsonObject) -> rmcp::model::JsonObject {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if map
                    .get("format")
                    .and_then(|f| f.as_str())
                    .is_some_and(|f| f.starts_with("uint"))
                {
                    map.remove("format");
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::Value::Object(schema.clone());
    strip(&mut v);
    match v {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an object stays an object"),
    }
}

/// What `initialize` tells every agent about working with Hephaestus.
pub const INSTRUCTIONS: &str = include_str!("../../prompts/mcp_instructions.md");

#[tool_handler(router = router())]
impl ServerHandler for McpSession {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hephaestus", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        self.connected(|| request.client_info.name.clone())?;
        self.negotiate_initialize(&request)
    }

    /// Listing the tools is when they exist for the model: the agent manager types a managed
    /// agent's first message only after this. For clients that never send `initialize`, it is
    /// also the moment the agent counts as connected.
    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, McpError> {
        let agent = self.connected(|| client_name(&context.meta))?;
        if self.managed {
            self.publish(Event::AgentToolsListed { agent_id: agent });
        }
        let cache_hints = context
            .protocol_version()
            .is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28);
        Ok(rmcp::model::ListToolsResult {
            result_type: Some(rmcp::model::ResultType::COMPLETE),
            tools: tool_list(),
            meta: None,
            next_cursor: None,
            ttl_ms: cache_hints.then_some(0),
            cache_scope: cache_hints.then_some(rmcp::model::CacheScope::Public),
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let started = Instant::now();
        let tool = request.name.clone();
        let agent = self.connected(|| client_name(&context.meta))?;
        if self.managed {
            self.publish(Event::AgentToolCalled {
                agent_id: agent.clone(),
            });
        }
        let result = router()
            .call(ToolCallContext::new(self, request, context))
            .await;
        let result = arguments_error_as_invalid_params(result);
        let outcome = match &result {
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(_) => "rpc_error",
        };
        tracing::debug!(
            agent = %agent,
            tool = %tool,
            micros = started.elapsed().as_micros() as u64,
            outcome,
            "tool call"
        );
        result
    }
}

/// rmcp reports arguments that do not fit a tool's schema as an `isError` result; the contract
/// here is JSON-RPC -32602 naming the field, so the client sees a protocol fault for a malformed
/// call and a tool error only for refusals the agent can act on. rmcp (pinned) marks these
/// results with a fixed prefix; a test in tests/mcp_protocol.rs catches any change.
fn arguments_error_as_invalid_params(
    result: Result<CallToolResponse, McpError>,
) -> Result<CallToolResponse, McpError> {
    const PREFIX: &str = "failed to deserialize parameters: ";
    if let Ok(CallToolResponse::Complete(r)) = &result
        && r.is_error == Some(true)
        && r.structured_content.is_none()
        && let [block] = r.content.as_slice()
        && let Some(text) = block.as_text()
        && let Some(detail) = text.text.strip_prefix(PREFIX)
    {
        return Err(McpError::invalid_params(
            format!("invalid arguments: {detail}"),
            None,
        ));
    }
    result
}

/// Terminates an external agent whose client went away for good.
pub fn on_disconnect(state: &Shared, session_agent: Option<String>) {
    if let Some(id) = session_agent
        && let Ok(agent) = state.store.get_agent(&id)
        && agent.kind == AgentKind::External
    {
        let _ = state.store.terminate_agent(&id);
    }
}

/// The client's name from a request's `_meta` (2026-07-28 lifecycle), or empty.
fn client_name(meta: &rmcp::model::RequestMetaObject) -> String {
    meta.client_info().map(|c| c.name).unwrap_or_default()
}

/// A successful result: a short text for the model plus the structured value.
fn reply<T: Serialize>(text: impl Into<String>, value: &T) -> Result<CallToolResult, McpError> {
    let value = serde_json::to_value(value)
        .map_err(|e| McpError::internal_error(format!("cannot encode result: {e}"), None))?;
    let mut result = CallToolResult::success(vec![ContentBlock::text(text.into())]);
    result.structured_content = Some(value);
    Ok(result)
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// A store refusal as a result the agent can read and act on: a missing task, workflow or
/// agent names the tool that lists the right ones.
fn refusal(e: OpError) -> CallToolResult {
    match e {
        OpError::Internal(err) => {
            tracing::error!("internal error in tool call: {err:#}");
            tool_error(format!("internal coordinator error, retry shortly: {err}"))
        }
        OpError::Missing { entity, .. } => {
            let hint = match entity {
                Entity::Task => "use get_tasks to list tasks",
                Entity::Workflow => "use list_workflow_executions to list workflows",
                Entity::Agent => "get_agent_status lists the active agents",
            };
            tool_error(format!("{e}: {hint}"))
        }
        other => tool_error(other.to_string()),
    }
}

/// Unwraps an operation or returns its refusal as the tool's result.
macro_rules! attempt {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(refused) => return Ok(refused),
        }
    };
}
pub(crate) use attempt;
