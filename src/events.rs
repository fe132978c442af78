//! The event bus: one closed enum of what happens in the coordinator, published on a tokio
//! broadcast channel. The agent manager follows it (and the guardian and the board's live stream
//! will); the services publish on it. Nothing else tells another part to wake up.
//!
//! Entries of an agent's log are the persisted kind: [`Events::record`] writes the row in
//! `agent_events` and publishes it in the same call, so the log and the bus never disagree.
//! Everything else is a notification of a change already committed to SQLite, which stays the
//! truth: a subscriber that falls behind (`RecvError::Lagged`) reads the state again from there.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::queue::TaskStatus;
use crate::states::{EventKind, MergeStatus};
use crate::store::{OpResult, Store};

/// How many events a subscriber may fall behind before it misses some.
const CAPACITY: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A task was created: queued, or blocked behind its dependencies.
    TaskCreated {
        task_id: String,
        workflow_id: Option<String>,
        status: TaskStatus,
    },
    /// A task changed status: claimed by an agent, reported by it, unblocked, requeued, or
    /// failed by the coordinator.
    TaskStatusChanged {
        task_id: String,
        agent_id: Option<String>,
        status: TaskStatus,
    },
    /// An agent's work was merged back, or its merge waits or conflicts.
    TaskMerge {
        task_id: String,
        agent_id: String,
        status: MergeStatus,
        files: Vec<String>,
    },
    /// An entry of an agent's log (persisted): launched, delivered, died, ended, ...
    AgentLogged {
        agent_id: String,
        task_id: Option<String>,
        kind: EventKind,
        message: String,
    },
    /// A managed agent's shim connected and its MCP session began.
    AgentConnected {
        agent_id: String,
    },
    /// A managed agent's client asked for our tool list.
    AgentToolsListed {
        agent_id: String,
    },
    /// A managed agent called one of our tools.
    AgentToolCalled {
        agent_id: String,
    },
    /// A message went into agents' inboxes (`from` is none for a person).
    MessageSent {
        from: Option<String>,
        to: Vec<String>,
    },
    MemorySaved {
        memory_id: i64,
    },
    MemoryDeleted {
        memory_id: i64,
    },
    WorkflowStarted {
        workflow_id: String,
        first_task_id: String,
    },
}

/// The bus. Cheap to clone; every clone publishes on the same channel.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    store: Store,
}

impl Events {
    pub fn new(store: Store) -> Events {
        Events {
            tx: broadcast::channel(CAPACITY).0,
            store,
        }
    }

    /// Events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publishes a change that is already committed. Nobody listening is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// Writes an entry of an agent's log and publishes it.
    pub fn record(
        &self,
        agent_id: &str,
        task_id: Option<&str>,
        kind: EventKind,
        message: &str,
    ) -> OpResult<()> {
        self.record_with(agent_id, task_id, kind, message, None)
    }

    /// [`Events::record`] with a long `details` text (e.g. the agent's final terminal output),
    /// which is kept in the log but not sent on the bus.
    pub fn record_with(
        &self,
        agent_id: &str,
        task_id: Option<&str>,
        kind: EventKind,
        message: &str,
        details: Option<&str>,
    ) -> OpResult<()> {
        self.store
            .log_event_with(Some(agent_id), task_id, kind, message, details)?;
        self.publish(Event::AgentLogged {
            agent_id: agent_id.to_string(),
            task_id: task_id.map(str::to_string),
            kind,
            message: message.to_string(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorded_entry_is_in_the_log_and_on_the_bus() {
        let store = Store::open_in_memory().unwrap();
        let (agent, _) = store.register_agent("a", None).unwrap();
        let events = Events::new(store.clone());
        let mut rx = events.subscribe();
        events
            .record_with(&agent.id, None, EventKind::Died, "it exited", Some("pane"))
            .unwrap();
        let logged = store.agent_events(&agent.id).unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].kind, EventKind::Died);
        assert_eq!(logged[0].details.as_deref(), Some("pane"));
        assert_eq!(
            rx.recv().await.unwrap(),
            Event::AgentLogged {
                agent_id: agent.id,
                task_id: None,
                kind: EventKind::Died,
                message: "it exited".into(),
            }
        );
    }
}
