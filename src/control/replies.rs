//! What the coordinator answers to control requests, as types both ends use: the coordinator
//! serializes them, the CLI reads them back to print (a field renamed on one side fails to
//! compile on the other, not at run time). `--json` prints the answer as it came.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::guardian::screen::Reading;
use crate::guardian::seen::Sighting;
use crate::memory::MemoryStatus;
use crate::states::{MemoryType, MergeStatus};
use crate::store::AgentEvent;
use crate::views::{AgentView, TaskView, WorkflowView};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    pub uptime_seconds: u64,
    pub data_dir: std::path::PathBuf,
    pub socket: std::path::PathBuf,
    pub max_concurrent_agents: u32,
    pub agents_enabled: bool,
    pub agent_cli: String,
    /// Why agents cannot start (the configured CLI is not installed), when they cannot.
    #[serde(default)]
    pub agents_problem: Option<String>,
    pub tmux_socket: String,
    pub memory: MemoryStatus,
    /// Number of tasks per status.
    pub tasks: BTreeMap<String, i64>,
    /// Active workflows.
    pub workflows: Vec<WorkflowView>,
    /// Active agents.
    pub agents: Vec<AgentView>,
    /// What the guardian's judgement asks, or why it is off.
    pub llm_guardian: LlmUse,
    /// Every chat-model call's usage, in one total (none before the first call).
    #[serde(default)]
    pub llm_usage: Option<crate::store::UsageTotal>,
    /// Where live agents' work overlaps, as the conductor last found it.
    #[serde(default)]
    pub overlaps: Vec<crate::guardian::conductor::Overlap>,
    /// What the conductor's LLM asks, or why it is off.
    pub llm_conductor: LlmUse,
    /// The conductor's last decision about each pair in `overlaps`, where it made one.
    #[serde(default)]
    pub decisions: Vec<crate::store::ConductorDecision>,
    /// What the guardian last read of each active agent, by id.
    #[serde(default)]
    pub agent_states: BTreeMap<String, crate::guardian::seen::Sighting>,
}

/// `hephaestus guardian`: what the judgement said and what came of its steers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardianTimeline {
    pub llm: LlmUse,
    /// The newest 200, newest first.
    pub analyses: Vec<crate::store::Analysis>,
    /// What the conductor's LLM asks, or why it is off, and its newest 200 decisions about
    /// overlapping agents, newest first.
    pub conductor_llm: LlmUse,
    #[serde(default)]
    pub decisions: Vec<crate::store::ConductorDecision>,
    /// Over all of them.
    pub steers: u64,
    pub followed: u64,
}

/// A component's chat model: what it asks, or why it asks none and how to turn it on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlmUse {
    pub model: Option<String>,
    pub off: Option<String>,
}

impl From<Result<String, String>> for LlmUse {
    fn from(r: Result<String, String>) -> LlmUse {
        match r {
            Ok(model) => LlmUse {
                model: Some(model),
                off: None,
            },
            Err(why) => LlmUse {
                model: None,
                off: Some(why),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task: TaskView,
    /// False when the idempotency key named an existing task, which is returned instead.
    pub created: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowStarted {
    pub workflow: WorkflowView,
    pub first_task: TaskView,
}

/// An agent as `hephaestus agents` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentRow {
    #[serde(flatten)]
    pub agent: AgentView,
    /// How long ago it started (managed agents).
    pub age: Option<String>,
    pub tmux_session: Option<String>,
    pub branch: Option<String>,
    pub merge_status: Option<MergeStatus>,
    /// The last line its terminal shows.
    pub last_output: Option<String>,
    /// What the guardian last read of it: its state, since when, and which rule said so.
    #[serde(default)]
    pub state: Option<Sighting>,
}

/// One agent with where it runs and its event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentDetail {
    pub id: String,
    pub status: crate::states::AgentStatus,
    pub task_id: Option<String>,
    pub tmux_session: Option<String>,
    pub tmux_socket: String,
    pub worktree: Option<String>,
    pub branch: Option<String>,
    pub events: Vec<AgentEvent>,
    #[serde(default)]
    pub state: Option<Sighting>,
}

/// How the guardian reads an agent's screen right now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explained {
    pub agent_id: String,
    pub cli: String,
    pub reading: Reading,
    /// How long the screen had not changed, as the guardian last saw it.
    pub unchanged_ms: Option<i64>,
    /// The screen that was read.
    pub screen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    pub agent: AgentView,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: i64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ImportReport {
    pub stored: usize,
    pub duplicates: usize,
    pub pending: usize,
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
    pub fn check(&self) -> Result<MemoryType, String> {
        if self.content.trim().is_empty() {
            return Err("the memory's text must not be empty".into());
        }
        self.memory_type.parse::<MemoryType>()
    }

    /// A memory with no agent, task or workflow: one a person saves or imports.
    pub fn into_new(self, memory_type: MemoryType) -> crate::store::NewMemory {
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
