//! What the guardian last read of each agent, shared with the front ends (`status`, `agents`)
//! as a cheap handle. In memory: after a restart the guardian reads every agent again within a
//! poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::hooks::HookSignal;
use super::screen::Reading;

/// One agent's state as last read, since when, and when its screen last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    #[serde(flatten)]
    pub reading: Reading,
    /// When it entered this state (ms since the epoch).
    pub since_ms: i64,
    /// When its screen last changed.
    pub screen_changed_ms: i64,
}

#[derive(Clone, Default)]
pub struct Seen {
    sightings: Arc<Mutex<HashMap<String, Sighting>>>,
    /// The last lifecycle hook each agent's CLI ran (`hooks.rs`).
    hooks: Arc<Mutex<HashMap<String, HookSignal>>>,
    /// Where live agents' work overlaps, as the conductor last found it.
    overlaps: Arc<Mutex<Vec<super::conductor::Overlap>>>,
}

impl Seen {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sighting>> {
        self.sightings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hooks(&self) -> std::sync::MutexGuard<'_, HashMap<String, HookSignal>> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the hook an agent's CLI just ran.
    pub fn hooked(&self, agent_id: &str, signal: HookSignal) {
        self.hooks().insert(agent_id.to_string(), signal);
    }

    pub fn last_hook(&self, agent_id: &str) -> Option<HookSignal> {
        self.hooks().get(agent_id).cloned()
    }

    pub fn set_overlaps(&self, found: Vec<super::conductor::Overlap>) {
        *self.overlaps.lock().unwrap_or_else(|e| e.into_inner()) = found;
    }

    pub fn overlaps(&self) -> Vec<super::conductor::Overlap> {
        self.overlaps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn get(&self, agent_id: &str) -> Option<Sighting> {
        self.lock().get(agent_id).cloned()
    }

    /// Records a reading; true when the state changed (or it is the first).
    pub fn update(
        &self,
        agent_id: &str,
        reading: Reading,
        screen_changed_ms: i64,
        now: i64,
    ) -> bool {
        let mut all = self.lock();
        match all.get_mut(agent_id) {
            Some(s) if s.reading.state == reading.state => {
                s.reading = reading;
                s.screen_changed_ms = screen_changed_ms;
                false
            }
            _ => {
                all.insert(
                    agent_id.to_string(),
                    Sighting {
                        reading,
                        since_ms: now,
                        screen_changed_ms,
                    },
                );
                true
            }
        }
    }

    /// Keeps only the agents in `live`.
    pub fn retain(&self, live: &std::collections::HashSet<String>) {
        self.lock().retain(|id, _| live.contains(id));
        self.hooks().retain(|id, _| live.contains(id));
    }
}
