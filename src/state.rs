//! What every connection handler shares: the store, the configuration, the start time, and the
//! signals the agent manager listens to.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::agents::manager::AgentManager;
use crate::agents::signals::AgentSignals;
use crate::config::Config;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub config: Config,
    pub started: Instant,
    pub signals: AgentSignals,
    pub memory: crate::memory::Memory,
    /// Set once when agent spawning is on.
    pub manager: OnceLock<Arc<AgentManager>>,
}

impl AppState {
    pub fn new(store: Store, config: Config, memory: crate::memory::Memory) -> AppState {
        AppState {
            memory,
            store,
            config,
            started: Instant::now(),
            signals: AgentSignals::default(),
            manager: OnceLock::new(),
        }
    }
}

pub type Shared = Arc<AppState>;
