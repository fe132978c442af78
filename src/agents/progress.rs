//! What the agent manager knows of each agent's MCP session, followed from the event bus: its
//! shim connected, its client listed our tools (how many times), it called a tool (how many
//! times). Launches wait on these; the manager's loop is woken by the changes it acts on.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use crate::events::Event;

#[derive(Default)]
pub struct Progress {
    inner: Mutex<Inner>,
    /// Wakes anyone waiting on a condition (launches waiting for readiness or delivery).
    changed: Notify,
    /// Wakes the manager's loop.
    wake: Notify,
}

#[derive(Default)]
struct Inner {
    connected: HashSet<String>,
    tool_lists: HashMap<String, u64>,
    tool_calls: HashMap<String, u64>,
}

impl Progress {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes in one event: session events update the agents' progress; changes to tasks and
    /// messages wake the loop; the rest is of no interest here.
    pub fn take(&self, event: &Event) {
        match event {
            Event::AgentConnected { agent_id } => {
                self.with(|s| s.connected.insert(agent_id.clone()));
            }
            Event::AgentToolsListed { agent_id } => {
                self.with(|s| *s.tool_lists.entry(agent_id.clone()).or_default() += 1);
            }
            Event::AgentToolCalled { agent_id } => {
                self.with(|s| *s.tool_calls.entry(agent_id.clone()).or_default() += 1);
            }
            Event::TaskCreated { .. }
            | Event::TaskStatusChanged { .. }
            | Event::MessageSent { .. }
            | Event::WorkflowStarted { .. } => {
                self.wake_loop();
                return;
            }
            Event::TaskMerge { .. }
            | Event::AgentLogged { .. }
            | Event::MemorySaved { .. }
            | Event::MemoryDeleted { .. } => return,
        }
        self.changed.notify_waiters();
    }

    /// Follows the bus until it closes. A subscriber that fell behind has lost session events:
    /// launches waiting on them time out and are retried, so say so and go on.
    pub async fn follow(&self, mut events: broadcast::Receiver<Event>) {
        loop {
            match events.recv().await {
                Ok(event) => {
                    self.take(&event);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the agent manager fell behind the event bus");
                    self.wake_loop();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    pub fn wake_loop(&self) {
        self.wake.notify_one();
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.with(|s| s.connected.contains(agent_id))
    }

    /// How many times the agent's client listed our tools.
    pub fn tool_lists(&self, agent_id: &str) -> u64 {
        self.with(|s| s.tool_lists.get(agent_id).copied().unwrap_or(0))
    }

    /// The agent's model can see our tools: its client listed them, or already called one
    /// (a client may know the tools from an earlier session).
    pub fn has_tools(&self, agent_id: &str) -> bool {
        self.with(|s| s.tool_lists.contains_key(agent_id) || s.tool_calls.contains_key(agent_id))
    }

    pub fn tool_calls(&self, agent_id: &str) -> u64 {
        self.with(|s| s.tool_calls.get(agent_id).copied().unwrap_or(0))
    }

    pub fn forget(&self, agent_id: &str) {
        self.with(|s| {
            s.connected.remove(agent_id);
            s.tool_lists.remove(agent_id);
            s.tool_calls.remove(agent_id);
        });
    }

    /// Waits until `cond` holds or `timeout` passes; true when it held.
    pub async fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if cond(self) {
                return true;
            }
            // Re-check at least every 250 ms: some conditions (a session ended) change without
            // an event.
            let step = deadline.min(tokio::time::Instant::now() + Duration::from_millis(250));
            if tokio::time::timeout_at(step, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return cond(self);
            }
        }
    }

    /// Waits for a wake-up of the manager loop, or `timeout`.
    pub async fn next_wake(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> String {
        id.to_string()
    }

    #[test]
    fn session_events_build_each_agents_progress() {
        let p = Progress::default();
        assert!(!p.is_connected("a") && !p.has_tools("a"));
        p.take(&Event::AgentConnected {
            agent_id: agent("a"),
        });
        assert!(p.is_connected("a") && !p.has_tools("a"));
        p.take(&Event::AgentToolsListed {
            agent_id: agent("a"),
        });
        p.take(&Event::AgentToolsListed {
            agent_id: agent("a"),
        });
        p.take(&Event::AgentToolCalled {
            agent_id: agent("b"),
        });
        assert_eq!((p.tool_lists("a"), p.tool_calls("a")), (2, 0));
        assert!(
            p.has_tools("b"),
            "a tool call shows the client knows the tools"
        );
        p.forget("a");
        assert!(!p.is_connected("a") && p.tool_lists("a") == 0);
    }

    #[tokio::test]
    async fn a_task_change_wakes_the_loop() {
        let p = Progress::default();
        p.take(&Event::TaskStatusChanged {
            task_id: "t".into(),
            agent_id: None,
            status: crate::queue::TaskStatus::Queued,
        });
        // The wake-up was stored: the next wait returns at once.
        tokio::time::timeout(Duration::from_secs(1), p.next_wake(Duration::from_secs(30)))
            .await
            .expect("woken");
    }
}
