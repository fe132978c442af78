//! Agents whose program exited or whose session vanished before they finished: their work is
//! committed and their task continued by a new agent from that commit, up to `max_attempts`.

use super::manager::AgentManager;
use super::teardown::Ending;

impl AgentManager {
    pub(super) async fn check_dead(&self) {
        let Ok(agents) = self.state.store.live_managed_agents() else {
            return;
        };
        for rt in agents {
            let Some(session) = rt.tmux_session.clone() else {
                continue;
            };
            if self.is_busy(&rt.agent_id) || self.terminal.is_alive(&session).await {
                continue;
            }
            // Checked again: a launch or finish may have begun during the tmux call.
            if !self.claim_busy(&rt.agent_id) {
                continue;
            }
            // An agent whose task ended is finished, not mourned: its report may have come
            // after this loop looked for ended tasks. One with no task at all is a leftover
            // (e.g. from before a restart): it is just ended.
            let reported = self
                .state
                .store
                .unfinished_agents()
                .is_ok_and(|ended| ended.iter().any(|(a, _)| a.agent_id == rt.agent_id));
            if reported {
                self.set_busy(&rt.agent_id, false);
                self.progress.wake_loop();
                continue;
            }
            if let Err(e) = self.teardown(&rt, Ending::Died).await {
                tracing::warn!(agent = %rt.agent_id, "ending a dead agent failed: {e:#}");
            }
            self.set_busy(&rt.agent_id, false);
        }
    }
}
