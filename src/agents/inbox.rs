//! Messages for agents are typed into their terminals when they are between turns: a pane that
//! has not changed for a while (compared across the manager's ticks) shows an agent waiting at
//! its prompt, the only time typed input cannot land in the middle of its work.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use super::manager::AgentManager;
use crate::states::EventKind;

/// A pane unchanged this long shows an agent between turns.
pub(super) const QUIET: Duration = Duration::from_secs(2);

impl AgentManager {
    /// Types waiting inbox messages into the terminals of agents that are between turns.
    pub(super) async fn type_messages(&self) {
        let Ok(agents) = self.state.store.live_managed_agents() else {
            return;
        };
        for rt in agents {
            if rt.task_id.is_none() {
                continue;
            }
            let Ok(pending) = self.state.store.untyped_messages(&rt.agent_id) else {
                continue;
            };
            let Some(session) = rt.tmux_session.clone().filter(|_| !pending.is_empty()) else {
                continue;
            };
            let pane = self.terminal.capture(&session, 0).await;
            if !self.quiet_since_last_look(&rt.agent_id, &pane) {
                continue;
            }
            let mut text =
                String::from("[Hephaestus] Message(s) for you (get_messages returns them too):");
            for (_, from, body) in &pending {
                text.push_str(&format!(
                    "\n- from {}: {}",
                    from.as_deref().unwrap_or("a person"),
                    body
                ));
            }
            // Claimed while typing: a steer, an answer or a reminder typed at the same moment
            // would land in the middle of this text.
            if !self.claim_busy(&rt.agent_id) {
                continue;
            }
            let scratch = self.agent_dir(&rt.agent_id).join("paste.txt");
            let typed = self.terminal.send_line(&session, &text, &scratch).await;
            self.set_busy(&rt.agent_id, false);
            if let Err(e) = typed {
                tracing::warn!(agent = %rt.agent_id, "cannot type messages: {e:#}");
                continue;
            }
            let ids: Vec<i64> = pending.iter().map(|m| m.0).collect();
            let _ = self.state.store.mark_typed(&ids);
            let _ = self.state.events.record(
                &rt.agent_id,
                rt.task_id.as_deref(),
                EventKind::MessagesTyped,
                &format!("{} message(s)", ids.len()),
            );
        }
    }

    /// The agent's pane is what it was when last looked at, [`QUIET`] ago or more.
    fn quiet_since_last_look(&self, agent_id: &str, pane: &str) -> bool {
        let hash = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            pane.hash(&mut h);
            h.finish()
        };
        let mut panes = self.panes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = panes.entry(agent_id.to_string()).or_insert((hash, now));
        if entry.0 != hash {
            *entry = (hash, now);
        }
        now.duration_since(entry.1) >= QUIET
    }
}
