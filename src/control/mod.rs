//! The control protocol the `hephaestus` CLI speaks to a running coordinator: one JSON request
//! per line, one JSON response per line, after the handshake. This file holds the requests and
//! the coordinator's read loop; `execute.rs` answers each request through the services,
//! `replies.rs` has the answers' types, which `client.rs` (the CLI's end) reads back.

mod client;
mod execute;
pub mod replies;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

pub use client::Client;
pub use replies::{ImportReport, ImportedMemory};

use crate::queue::{Priority, TaskStatus};
use crate::state::Shared;

/// Largest control request accepted, in bytes.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    TaskCreate {
        description: String,
        done_definition: String,
        #[serde(default)]
        priority: Option<Priority>,
        #[serde(default)]
        phase: Option<i64>,
        #[serde(default)]
        workflow_id: Option<String>,
        #[serde(default)]
        depends_on: Vec<String>,
        #[serde(default)]
        idempotency_key: Option<String>,
        #[serde(default)]
        boost: bool,
    },
    TaskList {
        #[serde(default)]
        statuses: Vec<TaskStatus>,
        #[serde(default)]
        phase: Option<i64>,
        #[serde(default)]
        workflow_id: Option<String>,
        #[serde(default)]
        limit: Option<usize>,
    },
    TaskShow {
        id: String,
    },
    /// Hands a queued task to an agent (the same atomic claim the agent manager uses).
    TaskAssign {
        task_id: String,
        agent_id: String,
    },
    WorkflowDefinitions,
    WorkflowList {
        #[serde(default)]
        status: Option<String>,
    },
    WorkflowStart {
        definition_id: String,
        description: String,
        #[serde(default)]
        parameters: serde_json::Map<String, Value>,
        #[serde(default)]
        working_directory: Option<String>,
    },
    WorkflowShow {
        id: String,
    },
    AgentList {
        #[serde(default)]
        all: bool,
    },
    /// One agent with where it runs (id prefix accepted).
    AgentShow {
        id: String,
    },
    /// How the guardian reads an agent's screen now, and which rule says so.
    AgentExplain {
        id: String,
    },
    /// Stops an agent; its task fails and its work stays on its branch.
    AgentKill {
        id: String,
    },
    /// Types a message into an agent's terminal.
    AgentSend {
        id: String,
        text: String,
    },
    /// Types a person's answer into the question or permission dialog an agent waits at.
    AgentAnswer {
        id: String,
        text: String,
    },
    /// A lifecycle hook an agent's CLI ran (`hephaestus hook EVENT`), with the hook's input.
    AgentHook {
        agent_id: String,
        token: String,
        event: String,
        #[serde(default)]
        payload: Value,
    },
    /// Removes sessions and worktrees no live agent owns.
    AgentGc,
    /// The guardian's judgements and steers, of one agent (id prefix) or all, newest first.
    GuardianTimeline {
        #[serde(default)]
        agent: Option<String>,
    },
    /// Chat-model usage totals, grouped (or one total).
    Usage {
        #[serde(default)]
        by: Option<crate::store::UsageBy>,
    },
    MemorySearch {
        query: String,
        #[serde(default)]
        limit: Option<usize>,
        #[serde(default)]
        memory_types: Vec<String>,
    },
    MemoryList {
        #[serde(default)]
        limit: Option<usize>,
    },
    MemoryReindex,
    /// Every memory, oldest first, as `memory export` writes them.
    MemoryExport,
    /// Saves memories from an export (duplicates of stored ones are skipped).
    MemoryImport {
        memories: Vec<ImportedMemory>,
    },
    /// Deletes a memory (a wrong one misleads every later agent).
    MemoryDelete {
        id: i64,
    },
    /// Saves a memory written by a person (no agent, task or workflow).
    MemorySave {
        content: String,
        memory_type: String,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        related_files: Vec<String>,
    },
    /// Registers an agent that runs outside the agent manager; returns its id and token.
    AgentRegister {
        name: String,
        #[serde(default)]
        cli_type: Option<String>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Response {
    pub(crate) ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// A refusal as the CLI shows it: a missing task, workflow or agent names the command that
/// lists the right ones.
fn refusal(e: crate::store::OpError) -> String {
    use crate::store::{Entity, OpError};
    match &e {
        OpError::Missing { entity, .. } => {
            let hint = match entity {
                Entity::Task => "see `hephaestus task list`",
                Entity::Workflow => "see `hephaestus workflow list`",
                Entity::Agent => "see `hephaestus agents --all`",
            };
            format!("{e}: {hint}")
        }
        _ => e.to_string(),
    }
}

/// Coordinator side: answers requests until the client hangs up.
pub async fn serve<R, W>(mut read: R, mut write: W, state: Shared) -> Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut read)
            .take(MAX_REQUEST_BYTES)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let response = match serde_json::from_slice::<Request>(&line) {
            Ok(req) => match execute::execute(&state, req).await {
                Ok(data) => Response {
                    ok: true,
                    data: Some(data),
                    error: None,
                },
                Err(e) => Response {
                    ok: false,
                    data: None,
                    error: Some(refusal(e)),
                },
            },
            Err(e) => Response {
                ok: false,
                data: None,
                error: Some(format!("invalid control request: {e}")),
            },
        };
        let mut bytes = serde_json::to_vec(&response)?;
        bytes.push(b'\n');
        write.write_all(&bytes).await?;
        if !line.ends_with(b"\n") {
            return Ok(());
        }
    }
}
