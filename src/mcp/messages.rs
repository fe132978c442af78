//! Messaging tools: send_message, broadcast_message, get_messages.

use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData as McpError, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{McpSession, attempt, refusal, reply};
use crate::services;
use crate::views::MessageView;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendMessageParams {
    /// The receiving agent's id (get_agent_status lists them).
    pub recipient_agent_id: String,
    /// Short and self-contained; at most 4000 characters.
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Sent {
    /// Agents the message was queued for.
    pub recipients: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct BroadcastParams {
    /// Goes to every other active agent; at most one broadcast per 10 seconds.
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Inbox {
    /// Unread messages, oldest first; each is returned once.
    pub messages: Vec<MessageView>,
}

#[tool_router(router = message_tools, vis = "pub(crate)")]
impl McpSession {
    #[tool(
        description = "Send a message to one agent. It is typed into that agent's terminal when it is between turns, and get_messages returns it.",
        output_schema = schema_for_output::<Sent>()
    )]
    async fn send_message(
        &self,
        Parameters(p): Parameters<SendMessageParams>,
    ) -> Result<CallToolResult, McpError> {
        let caller = attempt!(self.caller());
        attempt!(
            services::messages::send(&self.state, &caller, &p.recipient_agent_id, &p.message)
                .map_err(refusal)
        );
        reply(
            format!("Message queued for agent {}", p.recipient_agent_id),
            &Sent {
                recipients: vec![p.recipient_agent_id],
            },
        )
    }

    #[tool(
        description = "Send a message to every other active agent (at most one broadcast per 10 seconds).",
        output_schema = schema_for_output::<Sent>()
    )]
    async fn broadcast_message(
        &self,
        Parameters(p): Parameters<BroadcastParams>,
    ) -> Result<CallToolResult, McpError> {
        let caller = attempt!(self.caller());
        let recipients = attempt!(
            services::messages::broadcast(&self.state, &caller, &p.message).map_err(refusal)
        );
        reply(
            format!("Broadcast queued for {} agent(s)", recipients.len()),
            &Sent { recipients },
        )
    }

    #[tool(
        description = "Your unread messages from other agents, oldest first (each is returned once).",
        output_schema = schema_for_output::<Inbox>()
    )]
    async fn get_messages(&self) -> Result<CallToolResult, McpError> {
        let caller = attempt!(self.caller());
        let messages = attempt!(self.state.store.take_messages(&caller).map_err(refusal));
        let mut text = format!("{} unread message(s)", messages.len());
        for m in &messages {
            text.push_str(&format!(
                "\n- from {}{}: {}",
                m.from_agent_id.as_deref().unwrap_or("a person"),
                if m.broadcast { " (broadcast)" } else { "" },
                m.body
            ));
        }
        reply(text, &Inbox { messages })
    }
}
