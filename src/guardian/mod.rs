//! The guardian: it watches every managed agent and knows its state within a poll, without an
//! LLM. Each poll it looks at every live agent's terminal (one tmux call each, on the blocking
//! pool), reads the state with the agent's CLI's screen rules (`screen.rs`), and records each
//! change in the agent's log, which puts it on the bus. What it last read is shared with the
//! front ends (`seen.rs`).
//!
//! It reads through `agents/terminal.rs` and changes nothing of the agents yet: nudging and
//! answering go through the agents' handle.

pub mod screen;
pub mod seen;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::agents::terminal::Terminal;
use crate::events::Event;
use crate::state::Shared;
use crate::states::EventKind;
use screen::{Look, Rules};

/// What the guardian remembers of one agent between polls.
struct Watched {
    screen_hash: u64,
    screen_changed_ms: i64,
}

pub struct Guardian {
    state: Shared,
    terminal: Terminal,
    poll: Duration,
    /// Rules by CLI, loaded once (a bad project file is reported and the shipped one used).
    rules: HashMap<String, Rules>,
    watched: HashMap<String, Watched>,
    /// Agents that were handed their first message, followed from the bus.
    delivered: HashSet<String>,
    events: broadcast::Receiver<Event>,
}

impl Guardian {
    /// Subscribes to the bus at once, so no delivery is missed before `run`.
    pub fn new(state: Shared, terminal: Terminal) -> Guardian {
        Guardian {
            events: state.events.subscribe(),
            poll: Duration::from_millis(state.config.guardian.poll_ms),
            state,
            terminal,
            rules: HashMap::new(),
            watched: HashMap::new(),
            delivered: HashSet::new(),
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(poll_ms = self.poll.as_millis() as u64, "guardian started");
        // Agents already at work before a restart were handed their message long ago.
        if let Ok(agents) = self.state.store.live_managed_agents() {
            for rt in agents {
                if self
                    .state
                    .store
                    .agent_events(&rt.agent_id)
                    .is_ok_and(|e| e.iter().any(|e| e.kind == EventKind::PromptDelivered))
                {
                    self.delivered.insert(rt.agent_id);
                }
            }
        }
        loop {
            self.take_events();
            self.poll_once().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    fn take_events(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(Event::AgentLogged {
                    agent_id,
                    kind: EventKind::PromptDelivered,
                    ..
                }) => {
                    self.delivered.insert(agent_id);
                }
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    }

    fn rules_for(&mut self, cli: &str) -> &Rules {
        let dir = self.state.config.guardian.rules_dir.clone();
        self.rules.entry(cli.to_string()).or_insert_with(|| {
            Rules::load(cli, Some(&dir))
                .or_else(|e| {
                    tracing::error!("screen rules for {cli}: {e:#}; using the shipped ones");
                    Rules::load(cli, None)
                })
                .unwrap_or_else(|_| Rules::parse("").expect("empty rules parse"))
        })
    }

    async fn poll_once(&mut self) {
        let Ok(agents) = self.state.store.live_managed_agents() else {
            return;
        };
        let live: HashSet<String> = agents.iter().map(|a| a.agent_id.clone()).collect();
        self.watched.retain(|id, _| live.contains(id));
        self.delivered.retain(|id| live.contains(id));
        self.state.seen.retain(&live);
        for rt in agents {
            let Some(session) = rt.tmux_session.as_deref() else {
                continue;
            };
            let glance = self.terminal.look(session).await.unwrap_or_default();
            let now = crate::time::now_ms();
            let hash = {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                glance.screen.hash(&mut h);
                h.finish()
            };
            let watched = self.watched.entry(rt.agent_id.clone()).or_insert(Watched {
                screen_hash: hash,
                screen_changed_ms: now,
            });
            if watched.screen_hash != hash {
                watched.screen_hash = hash;
                watched.screen_changed_ms = now;
            }
            let changed_ms = watched.screen_changed_ms;
            let delivered = self.delivered.contains(&rt.agent_id);
            let cli = rt.cli_type.clone().unwrap_or_else(|| "custom".into());
            let reading = screen::read(
                self.rules_for(&cli),
                &Look {
                    screen: &glance.screen,
                    title: &glance.title,
                    alive: glance.alive,
                    unchanged_for: Duration::from_millis((now - changed_ms).max(0) as u64),
                    delivered,
                },
            );
            let message = format!("{} ({}: {})", reading.state, reading.rule, reading.why);
            if self
                .state
                .seen
                .update(&rt.agent_id, reading, changed_ms, now)
            {
                let _ = self.state.events.record(
                    &rt.agent_id,
                    rt.task_id.as_deref(),
                    EventKind::StateChanged,
                    &message,
                );
            }
        }
    }
}
