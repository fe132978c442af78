//! `hephaestus status`: the coordinator, tasks by status, active workflows and agents, memory.

use anyhow::Result;

use super::Output;
use super::agents::print_agents;
use super::workflow::print_workflows;
use crate::control::Request;
use crate::control::replies::{AgentRow, Status};

pub(super) fn run(out: &Output) -> Result<()> {
    out.show(Request::Status, |v: Status| print_status(&v))
}

fn print_status(v: &Status) {
    println!(
        "coordinator pid {} · up {}s · socket {}",
        v.pid,
        v.uptime_seconds,
        v.socket.display()
    );
    let tasks: Vec<String> = v.tasks.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "tasks: {}",
        if tasks.is_empty() {
            "none".to_string()
        } else {
            tasks.join(", ")
        }
    );
    println!("active workflows:");
    print_workflows(&v.workflows);
    println!(
        "agents ({} active, max {} working):",
        v.agents.len(),
        v.max_concurrent_agents
    );
    if let Some(problem) = &v.agents_problem {
        println!("  agents cannot start: {problem}");
    }
    let rows: Vec<AgentRow> = v
        .agents
        .iter()
        .map(|agent| AgentRow {
            agent: agent.clone(),
            age: None,
            tmux_session: None,
            branch: None,
            merge_status: None,
            last_output: None,
            state: v.agent_states.get(&agent.id).cloned(),
        })
        .collect();
    print_agents(&rows);
    // The agents only the person can move on, and how.
    for (id, seen) in &v.agent_states {
        if let Some(what) = seen.reading.state.needs_person() {
            println!(
                "  waiting for you: agent {} is {} ({}); {}",
                &id[..id.len().min(8)],
                seen.reading.state,
                seen.reading.why,
                what.replace("ID", &id[..id.len().min(8)])
            );
        }
    }
    for o in &v.overlaps {
        println!("  overlap: {}", o.describe());
        if let Some(d) = v.decisions.iter().find(|d| d.decision.agents == o.agents) {
            println!("    {}", super::usage::decision_line(d));
        }
    }
    match (&v.llm_guardian.model, &v.llm_guardian.off) {
        (Some(model), _) => println!("guardian LLM: {model}"),
        (None, why) => println!(
            "guardian LLM: off ({}); screen rules and reminders work without it",
            why.as_deref().unwrap_or("not configured")
        ),
    }
    if let (Some(model), false) = (&v.llm_conductor.model, v.overlaps.is_empty()) {
        println!("conductor LLM: {model}");
    }
    if let Some(u) = &v.llm_usage {
        println!("LLM usage: {}", super::usage::line(u));
    }
    let m = &v.memory;
    println!(
        "memory: {} indexed, {} pending · embedder {}{} · {}",
        m.indexed,
        m.pending,
        m.embedder,
        if m.token_rerank {
            " with token re-ranking"
        } else {
            ""
        },
        m.backend
    );
    if let Some(note) = &m.note {
        println!("memory: {note}");
    } else if m.degraded {
        println!(
            "memory quality is degraded: the hashing embedder matches words, not meaning (set memory.embedder)"
        );
    }
}
