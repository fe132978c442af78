//! The control protocol the `hephaestus` CLI speaks to a running coordinator: one JSON request
//! per line, one JSON response per line, after the handshake. Both ends live here.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{Hello, PROTOCOL_VERSION, Role, Welcome};
use crate::queue::{Priority, TaskStatus};
use crate::services;
use crate::state::Shared;
use crate::states::{AgentStatus, MemoryType, WorkflowStatus};
use crate::store::{NewTask, OpError, TaskFilter};

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
    /// Stops an agent; its task fails and its work stays on its branch.
    AgentKill {
        id: String,
    },
    /// Types a message into an agent's terminal.
    AgentSend {
        id: String,
        text: String,
    },
    /// Removes sessions and worktrees no live agent owns.
    AgentGc,
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
struct Response {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
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
            Ok(req) => match execute(&state, req).await {
                Ok(data) => Response {
                    ok: true,
                    data: Some(data),
                    error: None,
                },
                Err(e) => Response {
                    ok: false,
                    data: None,
                    error: Some(e.to_string()),
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

fn agents(state: &Shared) -> Result<&crate::agents::handle::AgentsHandle, OpError> {
    state.agents.as_ref().ok_or_else(|| {
        OpError::Invalid("agent spawning is off in this coordinator (serve --no-agents, or [agents] enabled = false)".into())
    })
}

fn agent_op(e: anyhow::Error) -> OpError {
    OpError::Invalid(format!("{e:#}"))
}

/// Agents with their CLI, task, age and the last line their terminal shows.
async fn agent_rows(state: &Shared, all: bool) -> Result<Value, OpError> {
    let store = &state.store;
    let runtimes: std::collections::HashMap<String, crate::store::AgentRuntime> = store
        .all_managed_agents()?
        .into_iter()
        .map(|r| (r.agent_id.clone(), r))
        .collect();
    let terminal = state.agents.as_ref().map(|a| a.terminal());
    let now = crate::time::now_ms();
    let mut rows = Vec::new();
    for a in store.list_agents(all)? {
        let rt = runtimes.get(&a.id);
        let session = rt
            .and_then(|r| r.tmux_session.as_deref())
            .filter(|_| a.status != AgentStatus::Terminated);
        let last_output = match (terminal, session) {
            (Some(t), Some(s)) => t.last_line(s).await.map(|l| l.trim().to_string()),
            _ => None,
        };
        let mut v = json!(a);
        v["age"] = json!(rt.map(|r| crate::time::age(r.created_at_ms, now)));
        v["tmux_session"] = json!(rt.and_then(|r| r.tmux_session.clone()));
        v["branch"] = json!(rt.and_then(|r| r.branch.clone()));
        v["merge_status"] = json!(rt.and_then(|r| r.merge_status));
        v["last_output"] = json!(last_output);
        rows.push(v);
    }
    Ok(Value::Array(rows))
}

async fn execute(state: &Shared, req: Request) -> Result<Value, OpError> {
    let store = &state.store;
    Ok(match req {
        Request::Status => json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
            "data_dir": state.config.data_dir,
            "socket": state.config.socket_path,
            "max_concurrent_agents": state.config.max_concurrent_agents,
            "agents_enabled": state.config.agents.enabled,
            "agent_cli": state.config.agents.cli,
            "tmux_socket": state.config.agents.tmux_socket,
            "memory": {
                "embedder": state.memory.embedder_id(),
                "token_rerank": state.memory.token_reranking(),
                "degraded": state.memory.degraded(),
                "note": state.memory.note(),
                "backend": state.memory.backend(),
                "indexed": state.memory.indexed(),
                "pending": state.memory.pending(),
            },
            "tasks": store.task_counts(None)?,
            "workflows": store.list_workflows(Some(WorkflowStatus::Active))?,
            "agents": store.list_agents(false)?,
        }),
        Request::TaskCreate {
            description,
            done_definition,
            priority,
            phase,
            workflow_id,
            depends_on,
            idempotency_key,
            boost,
        } => {
            let (task, created) = services::tasks::create(
                state,
                NewTask {
                    description,
                    done_definition,
                    priority,
                    phase,
                    workflow_id,
                    depends_on,
                    idempotency_key,
                    created_by: None,
                    boosted: boost,
                    base_ref: None,
                },
            )?;
            json!({"task": task, "created": created})
        }
        Request::TaskList {
            statuses,
            phase,
            workflow_id,
            limit,
        } => {
            json!(store.list_tasks(&TaskFilter {
                statuses,
                phase,
                workflow_id,
                assigned_agent_id: None,
                limit
            })?)
        }
        Request::TaskShow { id } => json!(store.get_task(&id)?),
        Request::TaskAssign { task_id, agent_id } => {
            json!(services::tasks::assign(state, &task_id, &agent_id)?)
        }
        Request::WorkflowDefinitions => json!(store.list_definitions()?),
        Request::WorkflowList { status } => {
            let status = status
                .map(|s| s.parse::<WorkflowStatus>())
                .transpose()
                .map_err(OpError::Invalid)?;
            json!(store.list_workflows(status)?)
        }
        Request::WorkflowStart {
            definition_id,
            description,
            parameters,
            working_directory,
        } => {
            let (workflow, first_task) = services::workflows::start(
                state,
                services::workflows::StartWorkflow {
                    definition_id,
                    description,
                    parameters,
                    working_directory,
                    created_by: None,
                },
            )?;
            json!({"workflow": workflow, "first_task": first_task})
        }
        Request::WorkflowShow { id } => json!(store.get_workflow(&id)?),
        Request::AgentList { all } => agent_rows(state, all).await?,
        Request::AgentShow { id } => {
            let rt = crate::agents::resolve_agent(store, &id).map_err(agent_op)?;
            json!({
                "id": rt.agent_id,
                "status": rt.status,
                "task_id": rt.task_id,
                "tmux_session": rt.tmux_session,
                "tmux_socket": state.config.agents.tmux_socket,
                "worktree": rt.worktree_path,
                "branch": rt.branch,
                "events": store.agent_events(&rt.agent_id)?,
            })
        }
        Request::AgentKill { id } => json!(agents(state)?.kill(&id).await.map_err(agent_op)?),
        Request::AgentSend { id, text } => {
            json!(agents(state)?.send(&id, &text).await.map_err(agent_op)?)
        }
        Request::AgentGc => json!(agents(state)?.gc().await.map_err(agent_op)?),
        Request::MemorySearch {
            query,
            limit,
            memory_types,
        } => {
            let memory_types = memory_types
                .iter()
                .map(|t| t.parse::<MemoryType>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(OpError::Invalid)?;
            let q = crate::memory::Query {
                text: query,
                limit: limit.unwrap_or(5),
                memory_types,
                ..Default::default()
            };
            let state = state.clone();
            json!(
                tokio::task::spawn_blocking(move || state.memory.search(&q))
                    .await
                    .map_err(|e| OpError::Internal(e.into()))?
                    .map_err(agent_op)?
            )
        }
        Request::MemoryList { limit } => json!(store.list_memories(limit.unwrap_or(50))?),
        Request::MemoryExport => json!(store.all_memories()?),
        Request::MemoryImport { memories } => {
            let checked = memories
                .into_iter()
                .enumerate()
                .map(|(i, m)| match m.check() {
                    Ok(memory_type) => Ok(m.into_new(memory_type)),
                    Err(e) => Err(OpError::Invalid(format!("memory {}: {e}", i + 1))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let state = state.clone();
            json!(
                tokio::task::spawn_blocking(move || -> anyhow::Result<ImportReport> {
                    let mut report = ImportReport::default();
                    for m in checked {
                        match services::memory::save(&state, m)? {
                            crate::memory::Saved::Stored { .. } => report.stored += 1,
                            crate::memory::Saved::Pending { .. } => report.pending += 1,
                            crate::memory::Saved::Duplicate { .. } => report.duplicates += 1,
                        }
                    }
                    Ok(report)
                })
                .await
                .map_err(|e| OpError::Internal(e.into()))?
                .map_err(agent_op)?
            )
        }
        Request::MemoryDelete { id } => {
            let state = state.clone();
            let deleted = tokio::task::spawn_blocking(move || state.memory.delete(id))
                .await
                .map_err(|e| OpError::Internal(e.into()))?
                .map_err(agent_op)?;
            if !deleted {
                return Err(OpError::NotFound(format!(
                    "no memory {id}: see `hephaestus memory list`"
                )));
            }
            json!({"deleted": id})
        }
        Request::MemorySave {
            content,
            memory_type,
            tags,
            related_files,
        } => {
            let memory = ImportedMemory {
                content,
                memory_type,
                tags,
                related_files,
                created_at_ms: None,
            };
            let memory_type = memory.check().map_err(OpError::Invalid)?;
            let memory = memory.into_new(memory_type);
            let state = state.clone();
            json!(
                tokio::task::spawn_blocking(move || services::memory::save(&state, memory))
                    .await
                    .map_err(|e| OpError::Internal(e.into()))?
                    .map_err(agent_op)?
            )
        }
        Request::MemoryReindex => {
            let state = state.clone();
            json!(
                tokio::task::spawn_blocking(move || state.memory.reindex())
                    .await
                    .map_err(|e| OpError::Internal(e.into()))?
                    .map_err(agent_op)?
            )
        }
        Request::AgentRegister { name, cli_type } => {
            let (agent, token) = store.register_agent(&name, cli_type.as_deref())?;
            json!({"agent": agent, "token": token})
        }
    })
}

/// A blocking control connection, for the CLI.
pub struct Client {
    read: BufReader<StdUnixStream>,
    write: StdUnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client> {
        let stream = StdUnixStream::connect(socket).map_err(|e| {
            anyhow!(
                "cannot reach the coordinator at {}: {e}; start it with `hephaestus serve`",
                socket.display()
            )
        })?;
        let mut write = stream.try_clone()?;
        let hello = Hello {
            hephaestus: PROTOCOL_VERSION,
            role: Role::Control,
            agent_id: None,
            token: None,
            pid: std::process::id(),
        };
        write.write_all(&hello.line())?;
        let mut read = BufReader::new(stream);
        let mut line = String::new();
        read.read_line(&mut line)
            .context("coordinator closed the connection during the handshake")?;
        let welcome: Welcome = serde_json::from_str(&line)
            .context("unexpected handshake answer from the coordinator")?;
        if !welcome.ok {
            bail!(
                "coordinator refused the connection: {}",
                welcome.error.unwrap_or_default()
            );
        }
        Ok(Client { read, write })
    }

    pub fn call(&mut self, req: &Request) -> Result<Value> {
        let mut bytes = serde_json::to_vec(req)?;
        bytes.push(b'\n');
        self.write
            .write_all(&bytes)
            .context("cannot send request to the coordinator")?;
        let mut line = String::new();
        if self.read.read_line(&mut line)? == 0 {
            bail!("coordinator closed the connection before answering");
        }
        let resp: Response =
            serde_json::from_str(&line).context("unreadable answer from the coordinator")?;
        if resp.ok {
            Ok(resp.data.unwrap_or(Value::Null))
        } else {
            Err(anyhow!(
                resp.error.unwrap_or_else(|| "unknown error".into())
            ))
        }
    }
}

/// A memory from a person: `memory save`, or one line of a `memory export`. The agent, task and
/// workflow it came from are not carried over: they belong to the exporting project's database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportedMemory {
    pub content: String,
    pub memory_type: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub related_files: Vec<String>,
    #[serde(default)]
    pub created_at_ms: Option<i64>,
}

impl ImportedMemory {
    /// What the coordinator would refuse, said before anything is stored; the memory's type
    /// when it is fine.
    pub fn check(&self) -> std::result::Result<MemoryType, String> {
        if self.content.trim().is_empty() {
            return Err("the memory's text must not be empty".into());
        }
        self.memory_type.parse::<MemoryType>()
    }

    /// A memory with no agent, task or workflow: one a person saves or imports.
    fn into_new(self, memory_type: MemoryType) -> crate::store::NewMemory {
        crate::store::NewMemory {
            content: self.content,
            memory_type,
            tags: self.tags,
            related_files: self.related_files,
            created_at_ms: self.created_at_ms,
            ..Default::default()
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub stored: usize,
    pub duplicates: usize,
    pub pending: usize,
}
