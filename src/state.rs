//! What every connection handler shares: the store, the configuration, the start time, memory
//! and the event bus.

use std::sync::Arc;
use std::time::Instant;

use crate::agents::handle::AgentsHandle;
use crate::config::Config;
use crate::events::Events;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub config: Config,
    pub started: Instant,
    pub events: Events,
    pub memory: crate::memory::Memory,
    /// The agent manager's handle, when agent spawning is on.
    pub agents: Option<AgentsHandle>,
    /// What the guardian last read of each agent.
    pub seen: crate::guardian::seen::Seen,
    /// The chat models the components may ask (each may be off).
    pub llm: crate::llm::Llm,
}

impl AppState {
    pub fn new(
        store: Store,
        config: Config,
        memory: crate::memory::Memory,
        agents: Option<AgentsHandle>,
    ) -> AppState {
        AppState {
            llm: crate::llm::Llm::new(
                config.llm.clone(),
                store.clone(),
                std::env::temp_dir().join(format!(
                    "hephaestus-llm-{}",
                    config.agents.tmux_socket.trim_start_matches("hephaestus-")
                )),
            ),
            events: Events::new(store.clone()),
            memory,
            store,
            config,
            started: Instant::now(),
            agents,
            seen: Default::default(),
        }
    }
}

pub type Shared = Arc<AppState>;

#[cfg(test)]
impl AppState {
    /// A coordinator's shared state over an in-memory database and the hashing embedder, for
    /// unit tests of the services. Its config is that of an empty project in a temp dir.
    pub fn for_tests() -> Shared {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("hephaestus.toml"), "").expect("config file");
        let config =
            Config::load(dir.path(), &Default::default(), &Default::default()).expect("config");
        let store = Store::open_in_memory().expect("store");
        let memory = crate::memory::Memory::open(
            store.clone(),
            Arc::new(crate::memory::embedder::HashingEmbedder::new(256)),
            Box::new(crate::memory::vectors::Embedded::new()),
            Default::default(),
        )
        .expect("memory");
        Arc::new(AppState::new(store, config, memory, None))
    }
}
