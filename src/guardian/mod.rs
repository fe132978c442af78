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

mod conduct;
pub mod conductor;
pub mod hooks;
pub mod judge;
pub mod screen;
pub mod seen;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::agents::terminal::Terminal;
use crate::config::OnStuck;
use crate::events::Event;
use crate::state::Shared;
use crate::states::{AgentState, EventKind, LlmComponent, SteerOutcome};
use screen::{Look, Rules};

/// What the guardian remembers of one agent between polls.
struct Watched {
    screen_hash: u64,
    screen_changed_ms: i64,
    /// Reminders typed for its task, and when the last one was.
    nudges: u32,
    last_nudge_ms: i64,
    /// Keys pressed at dialogs safe to answer, and when last.
    screen_presses: u32,
    last_press_ms: i64,
    /// A reminder or a steer is being typed right now.
    nudging: Arc<AtomicBool>,
    stuck: bool,
    /// The LLM judgement: when it last ran and the screen it read, whether one runs now, and
    /// the steer it wants typed once the agent is between turns.
    judged_ms: i64,
    judged_screen: Option<String>,
    judging: Arc<AtomicBool>,
    /// Judgements that failed in a row: each doubles the wait before the next (up to 32×),
    /// so a provider that is down or a wrong key is not asked every interval.
    judge_failures: Arc<std::sync::atomic::AtomicU32>,
    steering: Arc<Mutex<Steering>>,
    last_steer_ms: i64,
}

/// The steer a judgement wants typed, and the last one typed (shared with the judgements
/// running meanwhile, so that none asks for the same guidance twice in a row).
#[derive(Default)]
struct Steering {
    pending: Option<PendingSteer>,
    typed_last: Option<String>,
}

/// Guidance the judgement wants typed, from the analysis that asked for it.
struct PendingSteer {
    analysis_id: i64,
    text: String,
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
    /// The conductor: when it last compared the agents' work, whether it does now, and what
    /// it remembers between comparisons (`conduct.rs`).
    conducted_ms: i64,
    conducting: Arc<AtomicBool>,
    conductor: Arc<Mutex<conduct::Conducting>>,
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
            conducted_ms: 0,
            conducting: Arc::default(),
            conductor: Arc::default(),
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
        self.conduct(crate::time::now_ms(), live.len());
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
                screen_presses: 0,
                last_press_ms: 0,
                stuck: false,
                judged_ms: 0,
                judged_screen: None,
                judging: Arc::new(AtomicBool::new(false)),
                judge_failures: Arc::default(),
                steering: Arc::default(),
                last_steer_ms: 0,
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
            let (state, rule) = (reading.state, reading.rule.clone());
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
            if state == AgentState::BlockedScreen {
                self.answer_screen(&rt.agent_id, &cli, &rule, now);
            }
            if let Some(task_id) = rt.task_id.as_deref().filter(|_| delivered) {
                self.judge(&rt.agent_id, task_id, &glance.screen, state, now);
                self.steer(&rt.agent_id, task_id, state, now);
                self.unstick(&rt.agent_id, task_id, now);
            }
        }
    }

    /// Presses the keys a `blocked_screen` rule gives (a dialog safe to answer), at most three
    /// times per agent, three seconds apart, with `guardian.answer_screens` on.
    fn answer_screen(&mut self, agent_id: &str, cli: &str, rule: &str, now: i64) {
        if !self.state.config.guardian.answer_screens {
            return;
        }
        let keys = self
            .rules_for(cli)
            .rule(rule)
            .map(|r| r.press.clone())
            .unwrap_or_default();
        let Some(agents) = self.state.agents.clone() else {
            return;
        };
        let Some(watched) = self.watched.get_mut(agent_id) else {
            return;
        };
        if keys.is_empty()
            || watched.screen_presses >= 3
            || now - watched.last_press_ms < 3000
            || watched.nudging.load(Ordering::SeqCst)
        {
            return;
        }
        watched.screen_presses += 1;
        watched.last_press_ms = now;
        let (agent, rule) = (agent_id.to_string(), rule.to_string());
        tracing::info!(agent = %agent, "answering the {rule} with {keys:?}");
        tokio::spawn(async move {
            if let Err(e) = agents.press(&agent, keys, &rule).await {
                tracing::warn!(agent = %agent, "cannot answer the {rule}: {e:#}");
            }
        });
    }

    /// With an LLM configured: asks it about an agent whose screen changed since it last
    /// asked (at most every `guardian.judge_every_secs`), and keeps the steer it wants.
    fn judge(&mut self, agent_id: &str, task_id: &str, screen: &str, state: AgentState, now: i64) {
        if self.state.llm.describe(LlmComponent::Guardian).is_err() {
            return;
        }
        let settings = self.state.config.guardian.clone();
        let Some(watched) = self.watched.get_mut(agent_id) else {
            return;
        };
        if watched.judging.load(Ordering::SeqCst)
            || now - watched.judged_ms
                < (settings.judge_every_secs as i64)
                    .saturating_mul(1000)
                    .saturating_mul(1 << watched.judge_failures.load(Ordering::SeqCst).min(5))
            || !matches!(
                state,
                AgentState::Working | AgentState::Idle | AgentState::Unknown
            )
            || watched.judged_screen.as_deref() == Some(screen)
        {
            return;
        }
        let Ok(task) = self.state.store.get_task(task_id) else {
            return;
        };
        if !task.status.is_active() {
            return;
        }
        let summaries: Vec<String> = self
            .state
            .store
            .analyses(Some(agent_id), 3)
            .unwrap_or_default()
            .into_iter()
            .rev()
            .map(|a| a.summary)
            .collect();
        let question = judge::question(&judge::Seen {
            task_id: &task.id,
            description: &task.description,
            done_definition: &task.done_definition,
            state,
            screen,
            last_screen: watched.judged_screen.as_deref(),
            summaries: &summaries,
            max_chars: settings.max_pane_chars,
        });
        watched.judged_screen = Some(screen.to_string());
        let Some(question) = question else {
            return;
        };
        watched.judged_ms = now;
        let (shared, running, pending, failures) = (
            self.state.clone(),
            watched.judging.clone(),
            watched.steering.clone(),
            watched.judge_failures.clone(),
        );
        let call_for = crate::llm::CallFor {
            workflow_id: task.workflow_id.clone(),
            task_id: Some(task.id.clone()),
            agent_id: Some(agent_id.to_string()),
        };
        running.store(true, Ordering::SeqCst);
        let agent = agent_id.to_string();
        tokio::spawn(async move {
            let verdict = judge::judge(&shared.llm, &call_for, &question).await;
            match &verdict {
                Ok(_) => failures.store(0, Ordering::SeqCst),
                Err(_) => {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
            match verdict {
                Ok(v) => keep_verdict(
                    &shared,
                    &agent,
                    call_for.task_id.as_deref(),
                    state,
                    v,
                    &pending,
                ),
                Err(e) => tracing::warn!(agent = %agent, "the guardian's judgement failed: {e}"),
            }
            running.store(false, Ordering::SeqCst);
        });
    }

    /// Types the pending steer once the agent is between turns (at most every
    /// `guardian.steer_every_secs`), and records whether it acted on it.
    fn steer(&mut self, agent_id: &str, task_id: &str, state: AgentState, now: i64) {
        let every = (self.state.config.guardian.steer_every_secs as i64).saturating_mul(1000);
        let Some(watched) = self.watched.get_mut(agent_id) else {
            return;
        };
        if lock(&watched.steering).pending.is_none() {
            return;
        }
        // A judgement of the screen as it is now may take the steer back: wait for it. (The
        // task is read only when a steer waits: this runs for every agent at every poll.)
        if state != AgentState::Idle
            || watched.nudging.load(Ordering::SeqCst)
            || watched.judging.load(Ordering::SeqCst)
            || (watched.last_steer_ms > 0 && now - watched.last_steer_ms < every)
            || !self
                .state
                .store
                .get_task(task_id)
                .is_ok_and(|t| t.status.is_active())
        {
            return;
        }
        let Some(agents) = self.state.agents.clone() else {
            return;
        };
        // Counted as typed from now, so that a verdict arriving while it is typed does not ask
        // for it again; put back if it could not be typed.
        let (steer, typed_before) = {
            let mut steering = lock(&watched.steering);
            let Some(steer) = steering.pending.take() else {
                return;
            };
            let before = steering.typed_last.replace(steer.text.clone());
            (steer, before)
        };
        watched.last_steer_ms = now;
        let (busy, shared, agent, steering) = (
            watched.nudging.clone(),
            self.state.clone(),
            agent_id.to_string(),
            watched.steering.clone(),
        );
        busy.store(true, Ordering::SeqCst);
        tracing::info!(agent = %agent, "typing the guardian's guidance");
        tokio::spawn(async move {
            match agents.guide(&agent, &steer.text).await {
                Ok(acted) => {
                    let outcome = if acted {
                        SteerOutcome::Followed
                    } else {
                        SteerOutcome::Ignored
                    };
                    if let Err(e) = shared.store.record_steer(steer.analysis_id, outcome) {
                        tracing::error!("cannot record the steer: {e}");
                    }
                }
                Err(e) => {
                    // Not typed (the agent was starting or finishing): it waits for the next
                    // time the agent is between turns, unless a newer verdict replaced it.
                    tracing::warn!(agent = %agent, "cannot type the guidance: {e:#}");
                    let mut steering = lock(&steering);
                    steering.typed_last = typed_before;
                    steering.pending.get_or_insert(steer);
                }
            }
            busy.store(false, Ordering::SeqCst);
        });
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stores a verdict, puts it in the agent's log, and keeps the steer it asks for unless that
/// is the guidance typed last (never the same message twice in a row); a verdict that needs no
/// steer drops one still waiting.
fn keep_verdict(
    state: &Shared,
    agent_id: &str,
    task_id: Option<&str>,
    agent_state: AgentState,
    v: judge::Verdict,
    steering: &Mutex<Steering>,
) {
    let stored = state.store.insert_analysis(&crate::store::NewAnalysis {
        agent_id: agent_id.to_string(),
        task_id: task_id.map(String::from),
        agent_state,
        alignment_score: v.alignment_score,
        aligned: v.aligned,
        needs_steering: v.needs_steering,
        steering_type: v.steering_type,
        message: v.message.clone(),
        summary: v.summary.clone(),
    });
    let id = match stored {
        Ok(id) => id,
        Err(e) => {
            tracing::error!("cannot store the guardian's analysis: {e}");
            return;
        }
    };
    let _ = state.events.record(
        agent_id,
        task_id,
        EventKind::Analysed,
        &format!(
            "alignment {:.2}{}: {}",
            v.alignment_score,
            match v.steering_type {
                Some(t) if v.needs_steering => format!(", {t}"),
                _ => String::new(),
            },
            v.summary
        ),
    );
    let mut steering = lock(steering);
    let (true, Some(kind), Some(message)) = (v.needs_steering, v.steering_type, &v.message) else {
        steering.pending = None;
        return;
    };
    let text = judge::steer_text(kind, message);
    if steering.typed_last.as_deref() == Some(text.as_str()) {
        return;
    }
    steering.pending = Some(PendingSteer {
        analysis_id: id,
        text,
    });
}
