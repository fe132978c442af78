//! The conductor at run time: with two or more agents at work, every
//! `guardian.conductor_every_secs` it gathers the overlap facts (`conductor.rs`: shared files
//! and forecast conflicts from the agent manager, near-identical tasks from the memory
//! embedder), logs each new overlap on both agents, and, with an LLM configured for the
//! conductor, asks it once what to do and does it: a message to each agent (typed through their
//! inboxes when they are between turns), a reconcile task queued after both of theirs, or a
//! word to the person. Each decision is stored (`conductor_decisions`) and logged.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::Guardian;
use super::conductor::{self, Decision, Overlap, Side};
use crate::llm::CallFor;
use crate::queue::Priority;
use crate::state::Shared;
use crate::states::{ConductorAction, EventKind, LlmComponent};
use crate::store::{NewDecision, NewTask};

/// What the conductor remembers between comparisons.
#[derive(Default)]
pub(super) struct Conducting {
    /// Per pair of agents, the overlap last logged (each is logged once, and again only when
    /// it changes).
    logged: HashMap<[String; 2], Overlap>,
    /// Per pair, the conflicts the last decision knew of: a pair is decided on once, and again
    /// only when a conflict appears that the decision did not know of.
    decided: HashMap<[String; 2], Vec<String>>,
    /// Task vectors of the embedder named, by task id (a task's text does not change).
    vectors: (String, HashMap<String, Vec<f32>>),
}

/// Who the conductor's messages come from, as the agents read it.
const SENDER: &str = "conductor";

impl Guardian {
    /// With two or more agents at work, compares their work every
    /// `guardian.conductor_every_secs`, off the poll loop.
    pub(super) fn conduct(&mut self, now: i64, live: usize) {
        if live < 2 {
            if !self.state.seen.overlaps().is_empty() {
                self.state.seen.set_overlaps(Vec::new());
            }
            return;
        }
        let every = self.state.config.guardian.conductor_every_secs as i64 * 1000;
        if self.conducting.load(Ordering::SeqCst) || now - self.conducted_ms < every {
            return;
        }
        if self.state.agents.is_none() {
            return;
        }
        self.conducted_ms = now;
        let (running, shared, memory) = (
            self.conducting.clone(),
            self.state.clone(),
            self.conductor.clone(),
        );
        running.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Err(e) = compare_and_act(&shared, &memory).await {
                tracing::debug!("the conductor could not compare the agents' work: {e:#}");
            }
            running.store(false, Ordering::SeqCst);
        });
    }
}

async fn compare_and_act(shared: &Shared, memory: &Arc<Mutex<Conducting>>) -> Result<()> {
    let agents = shared.agents.clone().context("no agent manager")?;
    let found = agents.overlaps().await?;
    let found = add_similar_tasks(shared, memory, found).await;
    let fresh: Vec<Overlap> = {
        let mut m = lock(memory);
        let fresh: Vec<Overlap> = found
            .iter()
            .filter(|o| m.logged.get(&o.agents) != Some(o))
            .cloned()
            .collect();
        for o in &fresh {
            m.logged.insert(o.agents.clone(), o.clone());
        }
        m.logged
            .retain(|pair, _| found.iter().any(|o| &o.agents == pair));
        m.decided
            .retain(|pair, _| found.iter().any(|o| &o.agents == pair));
        fresh
    };
    shared.seen.set_overlaps(found);
    for o in &fresh {
        let text = o.describe();
        for (agent, task) in o.agents.iter().zip(&o.tasks) {
            let _ = shared
                .events
                .record(agent, task.as_deref(), EventKind::Overlap, &text);
        }
        tracing::info!("{text}");
    }
    if shared.llm.describe(LlmComponent::Conductor).is_err() {
        return Ok(());
    }
    for o in fresh {
        let due = {
            let m = lock(memory);
            match m.decided.get(&o.agents) {
                None => true,
                Some(known) => o.conflicts.iter().any(|c| !known.contains(c)),
            }
        };
        if !due {
            continue;
        }
        match decide_and_act(shared, &o).await {
            Ok(()) => {
                lock(memory)
                    .decided
                    .insert(o.agents.clone(), o.conflicts.clone());
            }
            // Asked again at the next change of the overlap, not at every comparison.
            Err(e) => {
                lock(memory)
                    .decided
                    .insert(o.agents.clone(), o.conflicts.clone());
                tracing::warn!("the conductor's decision failed: {e:#}")
            }
        }
    }
    Ok(())
}

/// The live agents' tasks compared by their texts' vectors (each task embedded once).
async fn add_similar_tasks(
    shared: &Shared,
    memory: &Arc<Mutex<Conducting>>,
    found: Vec<Overlap>,
) -> Vec<Overlap> {
    let threshold = shared.config.guardian.similar_tasks;
    if threshold > 1.0 {
        return found;
    }
    let Ok(live) = shared.store.live_managed_agents() else {
        return found;
    };
    let agents: Vec<(String, String)> = live
        .into_iter()
        .filter_map(|rt| Some((rt.agent_id, rt.task_id?)))
        .collect();
    let missing: Vec<(String, String)> = {
        let m = lock(memory);
        agents
            .iter()
            .filter(|(_, t)| !m.vectors.1.contains_key(t))
            .filter_map(|(_, t)| {
                let task = shared.store.get_task(t).ok()?;
                Some((t.clone(), task.description))
            })
            .collect()
    };
    if !missing.is_empty() {
        let state = shared.clone();
        let texts = missing.clone();
        let embedded = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(|(_, d)| d.as_str()).collect();
            state.memory.sentence_vectors(&refs)
        })
        .await;
        match embedded {
            Ok(Ok((space, vectors))) => {
                let mut m = lock(memory);
                if m.vectors.0 != space {
                    m.vectors = (space, HashMap::new());
                }
                for ((task, _), v) in missing.into_iter().zip(vectors) {
                    m.vectors.1.insert(task, v);
                }
            }
            Ok(Err(e)) => tracing::debug!("cannot embed the agents' tasks: {e:#}"),
            Err(e) => tracing::debug!("embedding the agents' tasks failed: {e}"),
        }
    }
    let m = lock(memory);
    let mut m_vectors = m.vectors.1.clone();
    m_vectors.retain(|t, _| agents.iter().any(|(_, at)| at == t));
    conductor::with_similar_tasks(found, &agents, &m_vectors, threshold)
}

/// Asks the conductor's LLM about one overlap, stores its decision and carries it out.
async fn decide_and_act(shared: &Shared, o: &Overlap) -> Result<()> {
    let store = &shared.store;
    let mut sides = Vec::new();
    for (agent, task) in o.agents.iter().zip(&o.tasks) {
        let rt = store.agent_runtime(agent)?;
        let task = match task {
            Some(t) => Some(store.get_task(t)?),
            None => None,
        };
        sides.push((rt, task));
    }
    let side = |i: usize| -> Side<'_> {
        let (rt, task) = &sides[i];
        Side {
            agent_id: &rt.agent_id,
            branch: rt.branch.as_deref().unwrap_or("?"),
            task_id: task.as_ref().map_or("(none)", |t| t.id.as_str()),
            description: task
                .as_ref()
                .map_or("(no task)", |t| t.description.as_str()),
        }
    };
    let question = conductor::question(o, [side(0), side(1)])?;
    let workflow_id = sides
        .iter()
        .find_map(|(_, t)| t.as_ref().and_then(|t| t.workflow_id.clone()));
    let call_for = CallFor {
        workflow_id: workflow_id.clone(),
        ..Default::default()
    };
    let decision: Decision = shared
        .llm
        .ask(
            LlmComponent::Conductor,
            &call_for,
            crate::agents::prompt::CONDUCTOR_DECISION,
            &question,
        )
        .await?;
    let wanted = |m: &Option<String>| m.clone().filter(|m| !m.trim().is_empty());
    let new = NewDecision {
        agents: o.agents.clone(),
        tasks: o.tasks.clone(),
        files: o.files.clone(),
        conflicts: o.conflicts.clone(),
        similar_tasks: o.similar_tasks.map(f64::from),
        action: decision.action,
        reason: decision.reason.trim().to_string(),
        messages: [
            wanted(&decision.message_to_first),
            wanted(&decision.message_to_second),
        ],
    };
    let id = store.insert_decision(&new)?;
    let mut failures = Vec::new();
    let mut done = Vec::new();
    if decision.action != ConductorAction::None && decision.action != ConductorAction::TellPerson {
        for (agent, message) in o.agents.iter().zip(&new.messages) {
            let Some(message) = message else { continue };
            match crate::services::messages::note(shared, SENDER, agent, message) {
                Ok(()) => done.push(format!("told agent {}", short(agent))),
                Err(e) => failures.push(format!("cannot message agent {}: {e}", short(agent))),
            }
        }
    }
    let mut reconcile_task = None;
    if decision.action == ConductorAction::Reconcile {
        let tasks: Vec<&crate::views::TaskView> =
            sides.iter().filter_map(|(_, t)| t.as_ref()).collect();
        let key = format!(
            "conductor-reconcile-{}",
            tasks
                .iter()
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>()
                .join("-")
        );
        let created = crate::services::tasks::create(
            shared,
            NewTask {
                description: decision.reconcile_task.clone().unwrap_or_default(),
                done_definition: format!(
                    "the work of tasks {} is brought together as described; tests pass",
                    tasks
                        .iter()
                        .map(|t| t.id.as_str())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                priority: Some(Priority::High),
                workflow_id,
                depends_on: tasks.iter().map(|t| t.id.clone()).collect(),
                idempotency_key: Some(key),
                ..Default::default()
            },
        );
        match created {
            Ok((task, _)) => {
                done.push(format!("queued task {} after both", short(&task.id)));
                reconcile_task = Some(task.id);
            }
            Err(e) => failures.push(format!("cannot queue the reconcile task: {e}")),
        }
    }
    let failure = (!failures.is_empty()).then(|| failures.join("; "));
    store.decision_outcome(id, reconcile_task.as_deref(), failure.as_deref())?;
    let mut text = format!("{}: {}", decision.action, new.reason);
    if !done.is_empty() {
        text.push_str(&format!(" ({})", done.join(", ")));
    }
    if let Some(f) = &failure {
        text.push_str(&format!("; failed: {f}"));
    }
    for (agent, task) in o.agents.iter().zip(&o.tasks) {
        let _ = shared
            .events
            .record(agent, task.as_deref(), EventKind::Conducted, &text);
    }
    tracing::info!(agents = ?o.agents, "conductor: {text}");
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
