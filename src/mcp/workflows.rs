//! Workflow tools: list_workflow_definitions, start_workflow_execution, list_workflow_executions,
//! get_workflow_execution.

use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData as McpError, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{McpSession, attempt, refusal, reply};
use crate::services::{self, workflows::StartWorkflow};
use crate::states::WorkflowStatus;
use crate::views::{TaskView, WorkflowDefinitionView, WorkflowView};

#[derive(Debug, Serialize, JsonSchema)]
pub struct DefinitionList {
    pub definitions: Vec<WorkflowDefinitionView>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StartWorkflowParams {
    /// A definition id from list_workflow_definitions, e.g. "bug-fix".
    pub definition_id: String,
    /// What this run is for.
    pub description: String,
    /// Launch parameters by name, as the definition lists them.
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Directory the agents work in; default: the project root.
    #[serde(default)]
    pub working_directory: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StartedWorkflow {
    pub workflow: WorkflowView,
    /// The phase 1 task that starts the work.
    pub first_task: TaskView,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatusFilter {
    All,
    Active,
    Paused,
    Completed,
    Failed,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListWorkflowExecutionsParams {
    /// Default: all.
    #[serde(default)]
    pub status: Option<WorkflowStatusFilter>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowView>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetWorkflowExecutionParams {
    pub workflow_id: String,
}

fn describe(w: &WorkflowView) -> String {
    let counts: Vec<String> = w
        .task_counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    format!(
        "workflow {} ({}) [{}]: {} — tasks: {}",
        w.id,
        w.definition_id,
        w.status,
        crate::text::first_line(&w.description, 60),
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        }
    )
}

#[tool_router(router = workflow_tools, vis = "pub(crate)")]
impl McpSession {
    #[tool(
        description = "List the workflow definitions that can be started, with their phases and launch parameters.",
        output_schema = schema_for_output::<DefinitionList>()
    )]
    async fn list_workflow_definitions(&self) -> Result<CallToolResult, McpError> {
        let definitions = attempt!(self.state.store.list_definitions().map_err(refusal));
        let mut text = format!("{} workflow definition(s)", definitions.len());
        for d in &definitions {
            let params: Vec<String> = d
                .parameters
                .iter()
                .map(|p| format!("{}{}", p.name, if p.required { "*" } else { "" }))
                .collect();
            text.push_str(&format!(
                "\n- {}: {} ({} phases; parameters: {})",
                d.id,
                d.name,
                d.phases.len(),
                if params.is_empty() {
                    "none".into()
                } else {
                    params.join(", ")
                }
            ));
        }
        reply(text, &DefinitionList { definitions })
    }

    #[tool(
        description = "Start a workflow: creates its phases and queues the first phase's task.",
        output_schema = schema_for_output::<StartedWorkflow>()
    )]
    async fn start_workflow_execution(
        &self,
        Parameters(p): Parameters<StartWorkflowParams>,
    ) -> Result<CallToolResult, McpError> {
        let caller = attempt!(self.caller());
        let (workflow, first_task) = attempt!(
            services::workflows::start(
                &self.state,
                StartWorkflow {
                    definition_id: p.definition_id,
                    description: p.description,
                    parameters: p.parameters.unwrap_or_default(),
                    working_directory: p.working_directory,
                    created_by: Some(caller),
                }
            )
            .map_err(refusal)
        );
        reply(
            format!(
                "Started {}; first task {}",
                describe(&workflow),
                first_task.id
            ),
            &StartedWorkflow {
                workflow,
                first_task,
            },
        )
    }

    #[tool(
        description = "List workflow executions, newest first.",
        output_schema = schema_for_output::<WorkflowList>()
    )]
    async fn list_workflow_executions(
        &self,
        Parameters(p): Parameters<ListWorkflowExecutionsParams>,
    ) -> Result<CallToolResult, McpError> {
        let status = match p.status.unwrap_or(WorkflowStatusFilter::All) {
            WorkflowStatusFilter::All => None,
            WorkflowStatusFilter::Active => Some(WorkflowStatus::Active),
            WorkflowStatusFilter::Paused => Some(WorkflowStatus::Paused),
            WorkflowStatusFilter::Completed => Some(WorkflowStatus::Completed),
            WorkflowStatusFilter::Failed => Some(WorkflowStatus::Failed),
        };
        let workflows = attempt!(self.state.store.list_workflows(status).map_err(refusal));
        let mut text = format!("{} workflow execution(s)", workflows.len());
        for w in &workflows {
            text.push_str("\n- ");
            text.push_str(&describe(w));
        }
        reply(text, &WorkflowList { workflows })
    }

    #[tool(
        description = "Read one workflow execution: its phases and task counts.",
        output_schema = schema_for_output::<WorkflowView>()
    )]
    async fn get_workflow_execution(
        &self,
        Parameters(p): Parameters<GetWorkflowExecutionParams>,
    ) -> Result<CallToolResult, McpError> {
        let workflow = attempt!(
            self.state
                .store
                .get_workflow(&p.workflow_id)
                .map_err(refusal)
        );
        reply(describe(&workflow), &workflow)
    }
}
