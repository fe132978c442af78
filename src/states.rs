//! The closed sets of states the coordinator keeps, besides the queue's own (`queue.rs`): an
//! agent's status, how its work was merged, a memory's type, a workflow's status and the kinds of
//! agent events. Each is one enum, used in Rust end to end and mapped to its SQL text here, once
//! (`ToSql`/`FromSql`); where the schema has a CHECK constraint, a store test checks that it
//! lists the same values.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An enum stored as text: its variants with their SQL/JSON spelling, `ALL`, `as_str`,
/// `FromStr` (the error lists the valid values), `Display` and the SQL mapping.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
        what = $what:literal;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " {:?}: use one of {}"),
                        other,
                        $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                text.parse().map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    };
}

text_enum! {
    pub enum AgentKind {
        /// Spawned (or registered) by the coordinator; authenticates with a token.
        Managed = "managed",
        /// A person's own agent CLI that registered Hephaestus in its MCP config.
        External = "external",
    }
    what = "agent kind";
}

text_enum! {
    /// What an agent is doing, as far as the coordinator knows.
    pub enum AgentStatus {
        Idle = "idle",
        Working = "working",
        Stuck = "stuck",
        /// Ended for good: its token is refused, its session and worktree are gone.
        Terminated = "terminated",
    }
    what = "agent status";
}

text_enum! {
    /// How an agent's branch came back into the base branch: on the agent while it runs and
    /// after, and on its task once the merge was tried.
    pub enum MergeStatus {
        /// The agent is working; nothing to merge yet.
        Active = "active",
        Merged = "merged",
        /// The branch had nothing the base lacked.
        UpToDate = "up_to_date",
        /// The base is checked out with changes of the user's own to the merge's files.
        Waiting = "waiting",
        /// Left undone; a follow-up task resolves it.
        Conflict = "conflict",
        /// The task failed or the agent stopped: its branch is not merged.
        Abandoned = "abandoned",
    }
    what = "merge status";
}

text_enum! {
    // What kind of knowledge a memory holds; it weighs in the ranking. (No doc comment: it
    // would become the description in the agents' tool schemas.)
    pub enum MemoryType {
        ErrorFix = "error_fix",
        Discovery = "discovery",
        Decision = "decision",
        Learning = "learning",
        Warning = "warning",
        CodebaseKnowledge = "codebase_knowledge",
    }
    what = "memory type";
}

/// A plain learning: what an agent's key learnings become.
impl Default for MemoryType {
    fn default() -> Self {
        MemoryType::Learning
    }
}

impl MemoryType {
    /// How much each kind of memory is worth to a later agent, before similarity and age.
    pub fn weight(self) -> f32 {
        match self {
            MemoryType::ErrorFix => 1.0,
            MemoryType::Warning => 0.9,
            MemoryType::Decision | MemoryType::CodebaseKnowledge => 0.8,
            MemoryType::Discovery => 0.7,
            MemoryType::Learning => 0.6,
        }
    }
}

text_enum! {
    /// A workflow execution's status.
    pub enum WorkflowStatus {
        Active = "active",
        Paused = "paused",
        Completed = "completed",
        Failed = "failed",
    }
    what = "workflow status";
}

text_enum! {
    /// What an agent is doing right now, as the guardian reads it from its terminal (and its
    /// session): never a guess; when the signals disagree it is `unknown`.
    pub enum AgentState {
        /// Launched, not yet at its prompt.
        Starting = "starting",
        /// Busy with a turn.
        Working = "working",
        /// At its prompt, its turn over.
        Idle = "idle",
        /// Asking to approve a tool call.
        BlockedPermission = "blocked_permission",
        /// Its turn ended with a question for the person.
        BlockedQuestion = "blocked_question",
        /// Stopped at a dialog: trust, onboarding, login, update.
        BlockedScreen = "blocked_screen",
        /// Showing an API or authentication error.
        Error = "error",
        /// Its program has exited.
        Exited = "exited",
        Unknown = "unknown",
    }
    what = "agent state";
}

text_enum! {
    /// What the conductor does about two agents whose work overlaps.
    pub enum ConductorAction {
        /// Tell each agent what the other is doing and how to keep out of its way.
        MessageAgents = "message_agents",
        /// Queue a task, after both of theirs, that brings their work together.
        Reconcile = "reconcile",
        /// Only a person can sort it out: say so.
        TellPerson = "tell_person",
        /// The overlap is harmless (their work merges cleanly and does not repeat).
        None = "none",
    }
    what = "conductor action";
}

text_enum! {
    /// What asked a chat model (`llm/`), as the usage rows name it.
    pub enum LlmComponent {
        Guardian = "guardian",
        Conductor = "conductor",
        Validator = "validator",
    }
    what = "LLM component";
}

text_enum! {
    /// Where a call's cost came from.
    pub enum CostSource {
        /// The provider said what it cost.
        Provider = "provider",
        /// Tokens times the price table.
        PriceTable = "price_table",
        /// Neither: the model is not in the price table.
        Unknown = "unknown",
    }
    what = "cost source";
}

text_enum! {
    /// Why the guardian's judgement wants an agent steered.
    pub enum SteeringType {
        /// Going round in circles, or making no progress.
        Stuck = "stuck",
        /// Working on something other than its task.
        Drifting = "drifting",
        /// Breaking a constraint of its task or phase.
        ViolatingConstraints = "violating_constraints",
        /// Building far more than the task asks.
        OverEngineering = "over_engineering",
        /// Misreading its task.
        Confused = "confused",
        /// Done, or waiting, without saying so.
        Idle = "idle",
    }
    what = "steering type";
}

text_enum! {
    /// What came of a steer typed into an agent.
    pub enum SteerOutcome {
        /// It acted on it (a tool call after the message).
        Followed = "followed",
        Ignored = "ignored",
    }
    what = "steer outcome";
}

impl AgentState {
    /// What the person must do for an agent in this state, when only they can move it on.
    pub fn needs_person(self) -> Option<&'static str> {
        match self {
            AgentState::BlockedQuestion | AgentState::BlockedPermission => {
                Some("`hephaestus agents answer ID TEXT` answers it")
            }
            AgentState::BlockedScreen => {
                Some("a dialog waits: `hephaestus agents attach ID` to see it")
            }
            AgentState::Error => Some("its CLI shows an error: `hephaestus agents explain ID`"),
            _ => None,
        }
    }
}

text_enum! {
    /// A workflow phase's status.
    pub enum PhaseStatus {
        Pending = "pending",
        InProgress = "in_progress",
        Completed = "completed",
        Failed = "failed",
        Skipped = "skipped",
    }
    what = "phase status";
}

text_enum! {
    /// The kinds of events kept in an agent's log (`agent_events`).
    pub enum EventKind {
        /// Its worktree and session exist.
        Created = "created",
        /// Its shim connected and its MCP session initialized.
        Connected = "connected",
        /// Its client listed our tools: the first message may go in.
        ToolsListed = "tools_listed",
        PromptSent = "prompt_sent",
        /// It made its first tool call after the first message.
        PromptDelivered = "prompt_delivered",
        LaunchFailed = "launch_failed",
        /// The coordinator stopped before the agent's session started.
        LaunchInterrupted = "launch_interrupted",
        LaunchResumed = "launch_resumed",
        /// It reported its task done or failed and was ended (with its final terminal text).
        Terminated = "terminated",
        Died = "died",
        Killed = "killed",
        Merged = "merged",
        MergeConflict = "merge_conflict",
        MergeWaiting = "merge_waiting",
        MessagesTyped = "messages_typed",
        MessageFromPerson = "message_from_person",
        /// It changed its task's status.
        TaskStatus = "task_status",
        /// The guardian saw its state change (the message names the rule that said so).
        StateChanged = "state_changed",
        /// A reminder was typed in: its turn ended without a report.
        Nudged = "nudged",
        /// Reminders did not help: it is marked stuck (and, per `guardian.on_stuck`, ended).
        Stuck = "stuck",
        /// A person's answer to the question its dialog asked was typed in.
        Answered = "answered",
        /// The guardian's LLM judged its work (the message has the score and summary).
        Analysed = "analysed",
        /// The guardian's guidance was typed in.
        Steered = "steered",
        /// The guardian pressed the keys a dialog's rule gives (a screen safe to answer).
        ScreenAnswered = "screen_answered",
        /// Its work and another agent's change the same files (the message says whether a
        /// merge of the two would conflict).
        Overlap = "overlap",
        /// The conductor decided what to do about an overlap (the message says what and why).
        Conducted = "conducted",
    }
    what = "event kind";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_parses_back_and_a_wrong_one_lists_the_choices() {
        for v in MergeStatus::ALL {
            assert_eq!(v.as_str().parse::<MergeStatus>().unwrap(), *v);
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        for v in EventKind::ALL {
            assert_eq!(v.as_str().parse::<EventKind>().unwrap(), *v);
        }
        let err = "fixed".parse::<MemoryType>().unwrap_err();
        assert_eq!(
            err,
            "unknown memory type \"fixed\": use one of error_fix, discovery, decision, learning, warning, codebase_knowledge"
        );
    }
}
