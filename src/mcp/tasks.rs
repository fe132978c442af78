//! Task tools: create_task, update_task_status, get_tasks, get_task.

use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData as McpError, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{McpSession, attempt, refusal, reply, tool_error};
use crate::queue::{Priority, TaskStatus};
use crate::services;
use crate::store::{NewTask, StatusUpdate, TaskFilter};
use crate::text::first_line;
use crate::views::TaskView;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateTaskParams {
    /// What to do, self-contained: the agent that picks it up sees only this text.
    pub description: String,
    /// How to tell the task is finished (checkable criteria).
    pub done_definition: String,
    /// Phase number in the workflow (1, 2, 3…). Default: your own task's phase.
    #[serde(default)]
    pub phase: Option<i64>,
    /// Default: medium.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Ids of tasks that must be done before this one starts.
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
    /// A key of your choice; creating again with the same key returns the first task instead of a duplicate.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Default: your own task's workflow.
    #[serde(default)]
    pub workflow_id: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateTaskResult {
    pub task: TaskView,
    /// False when the idempotency key matched an existing task, which is returned instead.
    pub created: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStatus {
    InProgress,
    Done,
    Failed,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UpdateTaskStatusParams {
    /// Default: your current task.
    #[serde(default)]
    pub task_id: Option<String>,
    pub status: ReportedStatus,
    /// What you did; required for done.
    #[serde(default)]
    pub summary: Option<String>,
    /// Why it failed; required for failed.
    #[serde(default)]
    pub failure_reason: Option<String>,
    /// Facts later agents should know (gotchas, commands, decisions).
    #[serde(default)]
    pub key_learnings: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    /// Every status.
    All,
    /// Not yet done or failed.
    Open,
    Pending,
    Queued,
    Blocked,
    Assigned,
    InProgress,
    Done,
    Failed,
}

impl StatusFilter {
    fn statuses(self) -> Vec<TaskStatus> {
        use TaskStatus::*;
        match self {
            StatusFilter::All => vec![],
            StatusFilter::Open => vec![Pending, Queued, Blocked, Assigned, InProgress],
            StatusFilter::Pending => vec![Pending],
            StatusFilter::Queued => vec![Queued],
            StatusFilter::Blocked => vec![Blocked],
            StatusFilter::Assigned => vec![Assigned],
            StatusFilter::InProgress => vec![InProgress],
            StatusFilter::Done => vec![Done],
            StatusFilter::Failed => vec![Failed],
        }
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct GetTasksParams {
    /// Default: all.
    #[serde(default)]
    pub status: Option<StatusFilter>,
    /// Only tasks in this phase number.
    #[serde(default)]
    pub phase: Option<i64>,
    /// Only tasks of this workflow.
    #[serde(default)]
    pub workflow_id: Option<String>,
    /// Most tasks to return; default 100.
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    pub count: usize,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct GetTaskParams {
    /// Default: your current task.
    #[serde(default)]
    pub task_id: Option<String>,
}

impl McpSession {
    /// `task_id`, or the caller's current task when it is absent.
    fn task_or_current(&self, task_id: Option<String>) -> Result<String, CallToolResult> {
        if let Some(id) = task_id.filter(|s| !s.trim().is_empty()) {
            return Ok(id);
        }
        let agent = self.caller_agent()?;
        agent.current_task_id.ok_or_else(|| {
            tool_error("you have no current task: pass task_id (get_tasks lists tasks)")
        })
    }
}

fn describe(task: &TaskView) -> String {
    format!(
        "task {} [{}{}] {}",
        task.id,
        task.status,
        task.phase
            .map(|p| format!(", phase {p}"))
            .unwrap_or_default(),
        first_line(&task.description, 80)
    )
}

#[tool_router(router = task_tools, vis = "pub(crate)")]
impl McpSession {
    #[tool(
        description = "Queue a new task for another agent. Returns the task; it waits in 'blocked' until every depends_on task is done.",
        output_schema = schema_for_output::<CreateTaskResult>()
    )]
    async fn create_task(
        &self,
        Parameters(p): Parameters<CreateTaskParams>,
    ) -> Result<CallToolResult, McpError> {
        let caller = attempt!(self.caller());
        let (task, created) = attempt!(
            services::tasks::create(
                &self.state,
                NewTask {
                    description: p.description,
                    done_definition: p.done_definition,
                    priority: p.priority,
                    phase: p.phase,
                    workflow_id: p.workflow_id,
                    depends_on: p.depends_on.unwrap_or_default(),
                    idempotency_key: p.idempotency_key,
                    created_by: Some(caller),
                    boosted: false,
                    base_ref: None,
                }
            )
            .map_err(refusal)
        );
        let text = if created {
            format!("Created {}", describe(&task))
        } else {
            format!(
                "Idempotency key already used: returning existing {}",
                describe(&task)
            )
        };
        reply(text, &CreateTaskResult { task, created })
    }

    #[tool(
        description = "Report progress on a task assigned to you: in_progress, done (with summary) or failed (with failure_reason).",
        output_schema = schema_for_output::<TaskView>()
    )]
    async fn update_task_status(
        &self,
        Parameters(p): Parameters<UpdateTaskStatusParams>,
    ) -> Result<CallToolResult, McpError> {
        let caller = attempt!(self.caller());
        let task_id = attempt!(self.task_or_current(p.task_id));
        let status = match p.status {
            ReportedStatus::InProgress => TaskStatus::InProgress,
            ReportedStatus::Done => TaskStatus::Done,
            ReportedStatus::Failed => TaskStatus::Failed,
        };
        let task = attempt!(
            services::tasks::report(
                &self.state,
                &caller,
                &task_id,
                StatusUpdate {
                    status,
                    summary: p.summary,
                    failure_reason: p.failure_reason,
                    key_learnings: p.key_learnings.unwrap_or_default(),
                },
            )
            .await
            .map_err(refusal)
        );
        reply(format!("Updated {}", describe(&task)), &task)
    }

    #[tool(
        description = "List tasks, oldest first. Filters combine: status, phase, workflow_id.",
        output_schema = schema_for_output::<TaskList>()
    )]
    async fn get_tasks(
        &self,
        Parameters(p): Parameters<GetTasksParams>,
    ) -> Result<CallToolResult, McpError> {
        let filter = TaskFilter {
            statuses: p.status.unwrap_or(StatusFilter::All).statuses(),
            phase: p.phase,
            workflow_id: p.workflow_id,
            assigned_agent_id: None,
            limit: Some(p.limit.unwrap_or(100).clamp(1, 1000) as usize),
        };
        let tasks = attempt!(self.state.store.list_tasks(&filter).map_err(refusal));
        let mut text = format!("{} task(s)", tasks.len());
        for t in &tasks {
            text.push_str("\n- ");
            text.push_str(&describe(t));
        }
        reply(
            text,
            &TaskList {
                count: tasks.len(),
                tasks,
            },
        )
    }

    #[tool(
        description = "Read one task in full (default: your current task).",
        output_schema = schema_for_output::<TaskView>()
    )]
    async fn get_task(
        &self,
        Parameters(p): Parameters<GetTaskParams>,
    ) -> Result<CallToolResult, McpError> {
        let id = attempt!(self.task_or_current(p.task_id));
        let task = attempt!(self.state.store.get_task(&id).map_err(refusal));
        reply(describe(&task), &task)
    }
}
