//! The guardian: it watches every managed agent and knows its state within a poll, without an
//! LLM. Each poll it looks at every live agent's terminal (one tmux call each, on the blocking
//! pool), reads the state with the agent's CLI's screen rules (`screen.rs`), weighed against the
//! last lifecycle hook its CLI ran where it runs them (`hooks.rs`), and records each
//! change in the agent's log, which puts it on the bus. What it last read is shared with the
//! front ends (`seen.rs`).
//!
//! An agent idle at its prompt after its task was handed over, with no report, is reminded
//! (`prompts/nudge_report.md`, typed and confirmed through the agents' handle) every
//! `guardian.idle_nudge_secs`; after `guardian.max_nudges` reminders it is marked stuck, and
//! ended as `guardian.on_stuck` says. It reads through `agents/terminal.rs` and acts only through
//! the handle.

pub mod hooks;
pub mod screen;
pub mod seen;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::agents::terminal::Terminal;
use crate::config::OnStuck;
use crate::events::Event;
use crate::state::Shared;
use crate::states::{AgentState, EventKind};
use screen::{Look, Rules};

/// What the guardian remembers of one agent between polls.
struct Watched {
    screen_hash: u64,
    screen_changed_ms: i64,
    /// Reminders typed for its task, and when the last one was.
    nudges: u32,
    last_nudge_ms: i64,
    /// A reminder is being typed right now.
    nudging: Arc<AtomicBool>,
    stuck: bool,
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
                nudges: 0,
                last_nudge_ms: 0,
                nudging: Arc::new(AtomicBool::new(false)),
                stuck: false,
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
            let reading = hooks::merge(
                reading,
                self.state.seen.last_hook(&rt.agent_id).as_ref(),
                changed_ms,
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
            if let Some(task_id) = rt.task_id.as_deref().filter(|_| delivered) {
                self.unstick(&rt.agent_id, task_id, now);
            }
        }
    }

    /// An agent idle without a report for long enough is reminded, and after the last
    /// reminder marked stuck (and ended, as `guardian.on_stuck` says).
    fn unstick(&mut self, agent_id: &str, task_id: &str, now: i64) {
        let settings = self.state.config.guardian.clone();
        let Some(seen) = self.state.seen.get(agent_id) else {
            return;
        };
        let Some(watched) = self.watched.get_mut(agent_id) else {
            return;
        };
        let wait_ms = settings.idle_nudge_secs as i64 * 1000;
        if seen.reading.state != AgentState::Idle
            || watched.stuck
            || watched.nudging.load(Ordering::SeqCst)
            || now - seen.since_ms < wait_ms
            || now - watched.last_nudge_ms < wait_ms
        {
            return;
        }
        let Some(agents) = self.state.agents.clone() else {
            return;
        };
        let Ok(task) = self.state.store.get_task(task_id) else {
            return;
        };
        if !task.status.is_active() {
            return; // reported meanwhile; the manager finishes it
        }
        if watched.nudges < settings.max_nudges {
            watched.nudges += 1;
            watched.last_nudge_ms = now;
            let values = HashMap::from([
                ("task_id", task.id.clone()),
                ("status", task.status.as_str().to_string()),
            ]);
            let text =
                match crate::agents::prompt::render(crate::agents::prompt::NUDGE_REPORT, &values) {
                    Ok(t) => t.trim_end().to_string(),
                    Err(e) => {
                        tracing::error!("the reminder template: {e:#}");
                        return;
                    }
                };
            let (agent, busy) = (agent_id.to_string(), watched.nudging.clone());
            busy.store(true, Ordering::SeqCst);
            tracing::info!(agent = %agent, task = %task.id, nudge = watched.nudges, "reminding an idle agent to report its task");
            tokio::spawn(async move {
                if let Err(e) = agents.nudge(&agent, &text).await {
                    tracing::warn!(agent = %agent, "cannot remind the agent: {e:#}");
                }
                busy.store(false, Ordering::SeqCst);
            });
            return;
        }
        watched.stuck = true;
        let _ = self.state.store.mark_stuck(agent_id);
        let _ = self.state.events.record(
            agent_id,
            Some(task_id),
            EventKind::Stuck,
            &format!(
                "idle without reporting its task; {} reminder(s) did not help",
                watched.nudges
            ),
        );
        tracing::warn!(
            agent = agent_id,
            task = task_id,
            "agent stuck: idle without reporting its task after {} reminder(s)",
            watched.nudges
        );
        let requeue = match settings.on_stuck {
            OnStuck::Wait => return,
            OnStuck::Requeue => true,
            OnStuck::Fail => false,
        };
        let agent = agent_id.to_string();
        tokio::spawn(async move {
            if let Err(e) = agents.end_stuck(&agent, requeue).await {
                tracing::warn!(agent = %agent, "cannot end the stuck agent: {e:#}");
            }
        });
    }
}
