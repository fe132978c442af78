//! `hephaestus usage`: what the chat models cost, from the usage row every call writes; and
//! `hephaestus guardian`: what the guardian's model said, and what came of its steers.

use anyhow::Result;

use super::Output;
use crate::control::Request;
use crate::control::replies::GuardianTimeline;
use crate::store::{UsageBy, UsageTotal};

pub(super) fn run(out: &Output, by: Option<UsageBy>) -> Result<()> {
    out.show(Request::Usage { by }, |totals: Vec<UsageTotal>| {
        if totals.is_empty() {
            println!("no LLM calls yet");
        }
        for t in &totals {
            match by {
                Some(_) => println!("{:<40} {}", t.key, line(t)),
                None => println!("{}", line(t)),
            }
        }
    })
}

/// One total in a line: calls, tokens, and the cost with how much of it is known.
pub(super) fn line(t: &UsageTotal) -> String {
    let cost = if t.calls_without_cost == t.calls {
        "cost unknown (not in the price table)".to_string()
    } else if t.calls_without_cost > 0 {
        format!(
            "${:.4} (+{} call(s) of unknown cost)",
            t.cost_usd, t.calls_without_cost
        )
    } else {
        format!("${:.4}", t.cost_usd)
    };
    format!(
        "{} call(s) · {} input tokens ({} cached) · {} output tokens · {cost}",
        t.calls, t.input_tokens, t.cached_tokens, t.output_tokens
    )
}

pub(super) fn guardian(out: &Output, agent: Option<String>) -> Result<()> {
    out.show(
        Request::GuardianTimeline { agent },
        |t: GuardianTimeline| {
            match (&t.llm.model, &t.llm.off) {
                (Some(m), _) => println!("guardian LLM: {m}"),
                (None, why) => println!("guardian LLM: off ({})", why.as_deref().unwrap_or("")),
            }
            if t.steers > 0 {
                println!(
                    "steers: {} typed, {} followed ({:.0}%)",
                    t.steers,
                    t.followed,
                    100.0 * t.followed as f64 / t.steers as f64
                );
            }
            if !t.decisions.is_empty() || t.conductor_llm.model.is_some() {
                match (&t.conductor_llm.model, &t.conductor_llm.off) {
                    (Some(m), _) => println!("conductor LLM: {m}"),
                    (None, why) => {
                        println!("conductor LLM: off ({})", why.as_deref().unwrap_or(""))
                    }
                }
            }
            for d in t.decisions.iter().rev() {
                let when = crate::time::age(d.at_ms, crate::time::now_ms());
                let pair = &d.decision.agents;
                println!(
                    "{when:>5} ago  agents {} and {}  {}",
                    &pair[0][..pair[0].len().min(8)],
                    &pair[1][..pair[1].len().min(8)],
                    decision_line(d)
                );
            }
            if t.analyses.is_empty() {
                println!("no judgements yet");
            }
            for a in t.analyses.iter().rev() {
                let when = crate::time::age(a.at_ms, crate::time::now_ms());
                println!(
                    "{when:>5} ago  agent {}  {}  alignment {:.2}  {}",
                    &a.agent_id[..a.agent_id.len().min(8)],
                    a.agent_state,
                    a.alignment_score,
                    a.summary
                );
                if let (Some(kind), Some(msg)) = (a.steering_type, &a.message) {
                    let outcome = match a.steer_outcome {
                        Some(o) => o.to_string(),
                        None if a.needs_steering => "not typed".to_string(),
                        None => String::new(),
                    };
                    println!("         steer ({kind}, {outcome}): {msg}");
                }
            }
        },
    )
}

/// One conductor decision in a line: what it did, why, and what came of it.
pub(super) fn decision_line(d: &crate::store::ConductorDecision) -> String {
    let mut text = format!("conductor: {}: {}", d.decision.action, d.decision.reason);
    if let Some(t) = &d.reconcile_task_id {
        text.push_str(&format!(
            " (task {} queued after both)",
            &t[..t.len().min(8)]
        ));
    }
    if let Some(f) = &d.failure {
        text.push_str(&format!("; failed: {f}"));
    }
    text
}
