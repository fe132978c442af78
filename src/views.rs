//! The shapes the coordinator shows its readers: a task, an agent, a workflow and its phases, a
//! message. Tool results carry them, so their JSON schemas and `///` docs are part of the agents'
//! contract (`tests/snapshots/tools_list.json`); the control replies and the CLI's printers use
//! them too. Pure data: the store fills them from its rows, and nothing here knows SQL.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::phases::LaunchParameter;
use crate::queue::{Priority, TaskStatus};
use crate::states::{AgentKind, AgentStatus, MergeStatus, PhaseStatus, WorkflowStatus};

/// A task as tools and the CLI show it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskView {
    pub id: String,
    pub description: String,
    pub done_definition: String,
    pub status: TaskStatus,
    pub priority: Priority,
    pub workflow_id: Option<String>,
    /// Phase number within the workflow (1-based); absent outside workflows.
    pub phase: Option<i64>,
    pub phase_name: Option<String>,
    pub assigned_agent_id: Option<String>,
    pub created_by_agent_id: Option<String>,
    pub parent_task_id: Option<String>,
    /// Tasks that must be done before this one can start.
    pub depends_on: Vec<String>,
    /// Those of `depends_on` that are not done yet.
    pub waiting_on: Vec<String>,
    pub summary: Option<String>,
    pub failure_reason: Option<String>,
    pub key_learnings: Vec<String>,
    /// How the agent's work was merged back: merged, up_to_date or conflict.
    #[schemars(with = "Option<String>")]
    pub merge_status: Option<MergeStatus>,
    /// Files that conflicted when `merge_status` is conflict.
    pub merge_conflict_files: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

/// An agent as tools and the CLI show it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub kind: AgentKind,
    /// idle | working | stuck | terminated
    #[schemars(with = "String")]
    pub status: AgentStatus,
    pub cli_type: Option<String>,
    pub current_task_id: Option<String>,
    pub created_at: String,
    pub last_activity_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowDefinitionView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Phase names in order.
    pub phases: Vec<String>,
    pub has_result: bool,
    /// What `start_workflow_execution` accepts in `parameters`.
    pub parameters: Vec<LaunchParameter>,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct PhaseView {
    pub order: i64,
    pub name: String,
    pub description: String,
    pub done_definitions: Vec<String>,
    #[schemars(with = "String")]
    pub status: PhaseStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowView {
    pub id: String,
    pub definition_id: String,
    pub name: String,
    pub description: String,
    /// active | paused | completed | failed
    #[schemars(with = "String")]
    pub status: WorkflowStatus,
    pub working_directory: Option<String>,
    pub launch_parameters: BTreeMap<String, String>,
    pub created_by_agent_id: Option<String>,
    pub created_at: String,
    pub phases: Vec<PhaseView>,
    /// Number of tasks per status.
    pub task_counts: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MessageView {
    pub id: i64,
    /// Sending agent; absent for a person's message and the coordinator's.
    pub from_agent_id: Option<String>,
    /// The part of the coordinator that sent it (`conductor`), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_coordinator: Option<String>,
    pub broadcast: bool,
    pub body: String,
    pub sent_at: String,
}
