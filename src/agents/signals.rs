//! What the MCP sessions tell the agent manager: an agent's shim connected and initialized, its
//! client listed our tools, an agent called a tool, an agent finished its task, the queue
//! changed. In memory only; the manager turns these into waits and wake-ups.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
pub struct AgentSignals {
    inner: Mutex<Inner>,
    /// Wakes anyone waiting on a condition (launches waiting for readiness or delivery).
    changed: Notify,
    /// Wakes the manager's loop.
    wake: Notify,
}

#[derive(Default)]
struct Inner {
    initialized: HashSet<String>,
    /// How many times each agent's client asked for our tool list.
    tool_lists: HashMap<String, u64>,
    tool_calls: HashMap<String, u64>,
    ended: VecDeque<(String, String)>,
}

impl AgentSignals {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn initialized(&self, agent_id: &str) {
        self.with(|s| s.initialized.insert(agent_id.to_string()));
        self.changed.notify_waiters();
    }

    /// The agent's client asked for our tools: from now on its model can see them.
    pub fn tools_listed(&self, agent_id: &str) {
        self.with(|s| *s.tool_lists.entry(agent_id.to_string()).or_default() += 1);
        self.changed.notify_waiters();
    }

    pub fn tool_called(&self, agent_id: &str) {
        self.with(|s| *s.tool_calls.entry(agent_id.to_string()).or_default() += 1);
        self.changed.notify_waiters();
    }

    pub fn task_ended(&self, agent_id: &str, task_id: &str) {
        self.with(|s| {
            s.ended
                .push_back((agent_id.to_string(), task_id.to_string()))
        });
        self.wake.notify_one();
    }

    pub fn queue_changed(&self) {
        self.wake.notify_one();
    }

    pub fn is_initialized(&self, agent_id: &str) -> bool {
        self.with(|s| s.initialized.contains(agent_id))
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

    pub fn take_ended(&self) -> Vec<(String, String)> {
        self.with(|s| s.ended.drain(..).collect())
    }

    pub fn forget(&self, agent_id: &str) {
        self.with(|s| {
            s.initialized.remove(agent_id);
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
            // Re-check at least every 250 ms: some conditions (pane contents) change without a signal.
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
