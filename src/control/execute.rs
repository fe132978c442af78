//! The coordinator's answer to each control request: parse, call a service or read the store,
//! and return the reply type (`replies.rs`) as JSON. One function per group of requests.

use serde::Serialize;
use serde_json::Value;

use super::Request;
use super::replies::{
    AgentDetail, AgentRow, Deleted, ImportReport, Registered, Status, TaskCreated, WorkflowStarted,
};
use crate::agents::handle::AgentsHandle;
use crate::memory::Saved;
use crate::services;
use crate::state::Shared;
use crate::states::{AgentStatus, MemoryType, WorkflowStatus};
use crate::store::{NewTask, OpError, TaskFilter};

type Answer = Result<Value, OpError>;

fn answer(reply: impl Serialize) -> Answer {
    Ok(serde_json::to_value(reply)?)
}

pub(super) async fn execute(state: &Shared, req: Request) -> Answer {
    match req {
        Request::Status => status(state),
        Request::TaskCreate { .. }
        | Request::TaskList { .. }
        | Request::TaskShow { .. }
        | Request::TaskAssign { .. } => tasks(state, req),
        Request::WorkflowDefinitions
        | Request::WorkflowList { .. }
        | Request::WorkflowStart { .. }
        | Request::WorkflowShow { .. } => workflows(state, req),
        Request::AgentList { .. }
        | Request::AgentShow { .. }
        | Request::AgentExplain { .. }
        | Request::AgentKill { .. }
        | Request::AgentSend { .. }
        | Request::AgentAnswer { .. }
        | Request::AgentHook { .. }
        | Request::AgentGc
        | Request::AgentRegister { .. } => agents(state, req).await,
        Request::Usage { by } => answer(state.store.usage_totals(by)?),
        Request::GuardianTimeline { agent } => {
            let agent = match agent {
                Some(prefix) => Some(
                    crate::agents::resolve_agent(&state.store, &prefix)
                        .map_err(refused)?
                        .agent_id,
                ),
                None => None,
            };
            let analyses = state.store.analyses(agent.as_deref(), 200)?;
            let (steers, followed) = state.store.steer_counts(agent.as_deref())?;
            let decisions = state.store.decisions(agent.as_deref(), 200)?;
            answer(super::replies::GuardianTimeline {
                conductor_llm: state
                    .llm
                    .describe(crate::states::LlmComponent::Conductor)
                    .into(),
                decisions,
                llm: state
                    .llm
                    .describe(crate::states::LlmComponent::Guardian)
                    .into(),
                steers,
                followed,
                analyses,
            })
        }
        Request::MemorySearch { .. }
        | Request::MemoryList { .. }
        | Request::MemoryReindex
        | Request::MemoryExport
        | Request::MemoryImport { .. }
        | Request::MemoryDelete { .. }
        | Request::MemorySave { .. } => memory(state, req).await,
    }
}

fn status(state: &Shared) -> Answer {
    let store = &state.store;
    let config = &state.config;
    let agents = store.list_agents(false)?;
    let overlaps = state.seen.overlaps();
    answer(Status {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.started.elapsed().as_secs(),
        data_dir: config.data_dir.clone(),
        socket: config.socket_path.clone(),
        max_concurrent_agents: config.max_concurrent_agents,
        agents_enabled: config.agents.enabled,
        agent_cli: config.agents.cli.clone(),
        agents_problem: state.agents.as_ref().and_then(|a| a.cli_problem()),
        tmux_socket: config.agents.tmux_socket.clone(),
        memory: state.memory.status(),
        tasks: store.task_counts(None)?,
        workflows: store.list_workflows(Some(WorkflowStatus::Active))?,
        llm_guardian: state
            .llm
            .describe(crate::states::LlmComponent::Guardian)
            .into(),
        llm_usage: store.usage_totals(None)?.into_iter().next(),
        llm_conductor: state
            .llm
            .describe(crate::states::LlmComponent::Conductor)
            .into(),
        decisions: overlaps
            .iter()
            .filter_map(|o| {
                store
                    .decisions(Some(&o.agents[0]), 50)
                    .ok()?
                    .into_iter()
                    .find(|d| d.decision.agents == o.agents)
            })
            .collect(),
        overlaps,
        agent_states: agents
            .iter()
            .filter_map(|a| Some((a.id.clone(), state.seen.get(&a.id)?)))
            .collect(),
        agents,
    })
}

fn tasks(state: &Shared, req: Request) -> Answer {
    let store = &state.store;
    match req {
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
            answer(TaskCreated { task, created })
        }
        Request::TaskList {
            statuses,
            phase,
            workflow_id,
            limit,
        } => answer(store.list_tasks(&TaskFilter {
            statuses,
            phase,
            workflow_id,
            assigned_agent_id: None,
            limit,
        })?),
        Request::TaskShow { id } => answer(store.get_task(&id)?),
        Request::TaskAssign { task_id, agent_id } => {
            answer(services::tasks::assign(state, &task_id, &agent_id)?)
        }
        _ => unreachable!("not a task request"),
    }
}

fn workflows(state: &Shared, req: Request) -> Answer {
    let store = &state.store;
    match req {
        Request::WorkflowDefinitions => answer(store.list_definitions()?),
        Request::WorkflowList { status } => {
            let status = status
                .map(|s| s.parse::<WorkflowStatus>())
                .transpose()
                .map_err(OpError::Invalid)?;
            answer(store.list_workflows(status)?)
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
            answer(WorkflowStarted {
                workflow,
                first_task,
            })
        }
        Request::WorkflowShow { id } => answer(store.get_workflow(&id)?),
        _ => unreachable!("not a workflow request"),
    }
}

fn handle(state: &Shared) -> Result<&AgentsHandle, OpError> {
    state.agents.as_ref().ok_or_else(|| {
        OpError::Invalid("agent spawning is off in this coordinator (serve --no-agents, or [agents] enabled = false)".into())
    })
}

fn refused(e: anyhow::Error) -> OpError {
    OpError::Invalid(format!("{e:#}"))
}

async fn agents(state: &Shared, req: Request) -> Answer {
    let store = &state.store;
    match req {
        Request::AgentList { all } => answer(agent_rows(state, all).await?),
        Request::AgentShow { id } => {
            let rt = crate::agents::resolve_agent(store, &id).map_err(refused)?;
            answer(AgentDetail {
                events: store.agent_events(&rt.agent_id)?,
                state: state.seen.get(&rt.agent_id),
                id: rt.agent_id,
                status: rt.status,
                task_id: rt.task_id,
                tmux_session: rt.tmux_session,
                tmux_socket: state.config.agents.tmux_socket.clone(),
                worktree: rt.worktree_path,
                branch: rt.branch,
            })
        }
        Request::AgentExplain { id } => answer(explain(state, &id).await?),
        Request::AgentKill { id } => answer(handle(state)?.kill(&id).await.map_err(refused)?),
        Request::AgentSend { id, text } => {
            answer(handle(state)?.send(&id, &text).await.map_err(refused)?)
        }
        Request::AgentAnswer { id, text } => answer(answer_question(state, &id, &text).await?),
        Request::AgentHook {
            agent_id,
            token,
            event,
            payload,
        } => {
            store.authenticate(&agent_id, Some(&token))?;
            let said = crate::guardian::hooks::state_of(&event, &payload);
            if let Some((agent_state, why)) = said.clone() {
                state.seen.hooked(
                    &agent_id,
                    crate::guardian::hooks::HookSignal {
                        state: agent_state,
                        event,
                        why,
                        at_ms: crate::time::now_ms(),
                    },
                );
            }
            answer(said.map(|(s, _)| s))
        }
        Request::AgentGc => answer(handle(state)?.gc().await.map_err(refused)?),
        Request::AgentRegister { name, cli_type } => {
            let (agent, token) = store.register_agent(&name, cli_type.as_deref())?;
            answer(Registered { agent, token })
        }
        _ => unreachable!("not an agent request"),
    }
}

/// Agents with their CLI, task, age and the last line their terminal shows.
async fn agent_rows(state: &Shared, all: bool) -> Result<Vec<AgentRow>, OpError> {
    let store = &state.store;
    let runtimes: std::collections::HashMap<String, crate::store::AgentRuntime> = store
        .all_managed_agents()?
        .into_iter()
        .map(|r| (r.agent_id.clone(), r))
        .collect();
    // Sessions of an earlier coordinator can outlive a start without agents: read them too.
    let own;
    let terminal = match &state.agents {
        Some(a) => a.terminal(),
        None => {
            own = crate::agents::terminal::Terminal::new(crate::agents::tmux::Tmux::new(
                state.config.agents.tmux_socket.clone(),
            ));
            &own
        }
    };
    let now = crate::time::now_ms();
    let mut rows = Vec::new();
    for agent in store.list_agents(all)? {
        let rt = runtimes.get(&agent.id);
        let session = rt
            .and_then(|r| r.tmux_session.as_deref())
            .filter(|_| agent.status != AgentStatus::Terminated);
        let last_output = match session {
            Some(s) => terminal.last_line(s).await.map(|l| l.trim().to_string()),
            None => None,
        };
        rows.push(AgentRow {
            age: rt.map(|r| crate::time::age(r.created_at_ms, now)),
            tmux_session: rt.and_then(|r| r.tmux_session.clone()),
            branch: rt.and_then(|r| r.branch.clone()),
            merge_status: rt.and_then(|r| r.merge_status),
            last_output,
            state: state.seen.get(&agent.id),
            agent,
        });
    }
    Ok(rows)
}

/// Reads the agent's screen now with its CLI's rules, the way the guardian does.
/// An agent's screen now, and how its CLI's rules read it.
struct ReadNow {
    agent_id: String,
    cli: String,
    rules: crate::guardian::screen::Rules,
    screen: String,
    reading: crate::guardian::screen::Reading,
    unchanged_ms: Option<i64>,
}

async fn read_now(state: &Shared, id: &str) -> Result<ReadNow, OpError> {
    use crate::guardian::screen::{self, Look, Rules};
    let rt = crate::agents::resolve_agent(&state.store, id).map_err(refused)?;
    let session = rt
        .tmux_session
        .clone()
        .filter(|_| rt.status != AgentStatus::Terminated)
        .ok_or_else(|| OpError::Invalid(format!("agent {} is not running", rt.agent_id)))?;
    let terminal = crate::agents::terminal::Terminal::new(crate::agents::tmux::Tmux::new(
        state.config.agents.tmux_socket.clone(),
    ));
    let glance = terminal.look(&session).await.unwrap_or_default();
    let cli = rt.cli_type.clone().unwrap_or_else(|| "custom".into());
    let rules_dir = state.config.guardian.rules_dir.clone();
    let c = cli.clone();
    let rules = tokio::task::spawn_blocking(move || Rules::load(&c, Some(&rules_dir)))
        .await
        .map_err(|e| OpError::Internal(e.into()))?
        .map_err(refused)?;
    let seen = state.seen.get(&rt.agent_id);
    let now = crate::time::now_ms();
    let unchanged_ms = seen.as_ref().map(|s| now - s.screen_changed_ms);
    let delivered = store_delivered(state, &rt.agent_id);
    let reading = screen::read(
        &rules,
        &Look {
            screen: &glance.screen,
            title: &glance.title,
            alive: glance.alive,
            unchanged_for: std::time::Duration::from_millis(unchanged_ms.unwrap_or(0).max(0) as u64),
            delivered,
        },
    );
    let reading = crate::guardian::hooks::merge(
        reading,
        state.seen.last_hook(&rt.agent_id).as_ref(),
        seen.as_ref().map_or(now, |s| s.screen_changed_ms),
    );
    Ok(ReadNow {
        agent_id: rt.agent_id,
        cli,
        rules,
        screen: glance.screen,
        reading,
        unchanged_ms,
    })
}

async fn explain(state: &Shared, id: &str) -> Result<super::replies::Explained, OpError> {
    let now = read_now(state, id).await?;
    Ok(super::replies::Explained {
        agent_id: now.agent_id,
        cli: now.cli,
        reading: now.reading,
        unchanged_ms: now.unchanged_ms,
        screen: now.screen,
    })
}

/// Types a person's answer into the dialog an agent waits at, the way its CLI's rule says;
/// refused unless the agent's screen shows it waiting for an answer now.
async fn answer_question(state: &Shared, id: &str, text: &str) -> Result<String, OpError> {
    use crate::states::AgentState;
    if text.trim().is_empty() {
        return Err(OpError::Invalid("the answer is empty".into()));
    }
    let handle = handle(state)?;
    let now = read_now(state, id).await?;
    if !matches!(
        now.reading.state,
        AgentState::BlockedQuestion | AgentState::BlockedPermission
    ) {
        return Err(OpError::Invalid(format!(
            "agent {} is not waiting for an answer: its screen reads {} ({}); `agents send` types a message into its terminal",
            now.agent_id, now.reading.state, now.reading.why
        )));
    }
    let recipe = now
        .rules
        .rule(&now.reading.rule)
        .and_then(|r| r.answer.as_ref());
    // Typed into a menu of choices, any text followed by Enter picks the highlighted one,
    // which in a permission dialog is "Yes": only a dialog whose rule says how is answered.
    if now.reading.state == AgentState::BlockedPermission && recipe.is_none() {
        return Err(OpError::Invalid(format!(
            "agent {} waits at a permission dialog that cannot be answered by text; `hephaestus agents attach {}` to answer it yourself",
            now.agent_id,
            &now.agent_id[..8.min(now.agent_id.len())]
        )));
    }
    let keys =
        crate::guardian::screen::keys_before_answer(&now.rules, &now.reading.rule, &now.screen)
            .map_err(|e| OpError::Invalid(format!("agent {}: {e}", now.agent_id)))?;
    handle
        .answer(&now.agent_id, keys, text)
        .await
        .map_err(refused)
}

fn store_delivered(state: &Shared, agent_id: &str) -> bool {
    state.store.agent_events(agent_id).is_ok_and(|events| {
        events
            .iter()
            .any(|e| e.kind == crate::states::EventKind::PromptDelivered)
    })
}

/// Runs blocking memory work (it embeds, or talks to a vector store) off the reactor thread.
async fn blocking<T: Send + 'static>(
    state: &Shared,
    f: impl FnOnce(&Shared) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, OpError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|e| OpError::Internal(e.into()))?
        .map_err(refused)
}

async fn memory(state: &Shared, req: Request) -> Answer {
    let store = &state.store;
    match req {
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
            answer(blocking(state, move |s| s.memory.search(&q)).await?)
        }
        Request::MemoryList { limit } => answer(store.list_memories(limit.unwrap_or(50))?),
        Request::MemoryExport => answer(store.all_memories()?),
        Request::MemoryImport { memories } => {
            // Checked whole first: one bad memory, and nothing is stored.
            let checked = memories
                .into_iter()
                .enumerate()
                .map(|(i, m)| match m.check() {
                    Ok(memory_type) => Ok(m.into_new(memory_type)),
                    Err(e) => Err(OpError::Invalid(format!("memory {}: {e}", i + 1))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let report = blocking(state, move |s| {
                let mut report = ImportReport::default();
                for m in checked {
                    match services::memory::save(s, m)? {
                        Saved::Stored { .. } => report.stored += 1,
                        Saved::Pending { .. } => report.pending += 1,
                        Saved::Duplicate { .. } => report.duplicates += 1,
                    }
                }
                Ok(report)
            })
            .await?;
            answer(report)
        }
        Request::MemoryDelete { id } => {
            if !blocking(state, move |s| services::memory::delete(s, id)).await? {
                return Err(OpError::NotFound(format!(
                    "no memory {id}: see `hephaestus memory list`"
                )));
            }
            answer(Deleted { deleted: id })
        }
        Request::MemorySave {
            content,
            memory_type,
            tags,
            related_files,
        } => {
            let memory = super::ImportedMemory {
                content,
                memory_type,
                tags,
                related_files,
                created_at_ms: None,
            };
            let memory_type = memory.check().map_err(OpError::Invalid)?;
            let memory = memory.into_new(memory_type);
            answer(blocking(state, move |s| services::memory::save(s, memory)).await?)
        }
        Request::MemoryReindex => answer(blocking(state, |s| s.memory.reindex()).await?),
        _ => unreachable!("not a memory request"),
    }
}
