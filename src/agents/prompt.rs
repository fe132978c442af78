//! Renders the agent prompt templates in prompts/: `{{name}}` is replaced by a value and
//! `{{#if name}} … {{/if}}` keeps its body only when the value is not empty. A name the caller
//! did not supply is an error, so a template and its caller cannot drift apart silently.

use std::collections::HashMap;

use anyhow::{Result, anyhow, bail};

/// The system prompt every agent gets.
pub const AGENT_SYSTEM: &str = include_str!("../../prompts/agent_system.md");
/// The first message: the task and its context.
pub const AGENT_TASK: &str = include_str!("../../prompts/agent_task.md");
/// The reminder typed into an agent whose turn ended without a report on its task.
pub const NUDGE_REPORT: &str = include_str!("../../prompts/nudge_report.md");
/// The guardian's LLM judgement: what it is asked to do, and the question about one agent.
pub const GUARDIAN_JUDGEMENT: &str = include_str!("../../prompts/guardian_judgement.md");
pub const GUARDIAN_QUESTION: &str = include_str!("../../prompts/guardian_question.md");
/// The conductor's LLM decision about two agents whose work overlaps: what it is asked to do,
/// and the facts about one pair.
pub const CONDUCTOR_DECISION: &str = include_str!("../../prompts/conductor_decision.md");
pub const CONDUCTOR_QUESTION: &str = include_str!("../../prompts/conductor_question.md");
/// The follow-up task queued when an agent's work conflicts with the base branch.
pub const CONFLICT_TASK: &str = include_str!("../../prompts/conflict_task.md");

pub fn render(template: &str, values: &HashMap<&str, String>) -> Result<String> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    // Stack of "is the current section kept" flags.
    let mut keep: Vec<bool> = Vec::new();
    while let Some(start) = rest.find("{{") {
        if keep.iter().all(|k| *k) {
            out.push_str(&rest[..start]);
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow!("unclosed {{{{ in template"))?;
        let tag = after[..end].trim();
        rest = &after[end + 2..];
        if let Some(name) = tag.strip_prefix("#if ") {
            let value = values
                .get(name.trim())
                .ok_or_else(|| anyhow!("template uses unknown value {name:?}"))?;
            keep.push(!value.trim().is_empty());
            // A section tag alone on its line leaves no blank line behind.
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        } else if tag == "/if" {
            if keep.pop().is_none() {
                bail!("{{{{/if}}}} without {{{{#if}}}}");
            }
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        } else {
            let value = values
                .get(tag)
                .ok_or_else(|| anyhow!("template uses unknown value {tag:?}"))?;
            if keep.iter().all(|k| *k) {
                out.push_str(value);
            }
        }
    }
    if !keep.is_empty() {
        bail!("{{{{#if}}}} without {{{{/if}}}}");
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn substitutes_and_keeps_sections_with_values() {
        let t = "a {{x}}\n{{#if y}}\nwhy {{y}}\n{{/if}}\nend";
        assert_eq!(
            render(t, &values(&[("x", "1"), ("y", "2")])).unwrap(),
            "a 1\nwhy 2\nend"
        );
        assert_eq!(
            render(t, &values(&[("x", "1"), ("y", "")])).unwrap(),
            "a 1\nend"
        );
        assert!(
            render(t, &values(&[("x", "1")]))
                .unwrap_err()
                .to_string()
                .contains("\"y\"")
        );
        assert!(render("{{#if x}}", &values(&[("x", "1")])).is_err());
    }

    #[test]
    fn every_agent_template_renders() {
        let all = values(&[
            ("agent_id", "A1"),
            ("worktree", "/w"),
            ("branch", "hephaestus/agent-a1"),
            ("base_branch", "trunk"),
            ("workflow", "Bug Fix"),
            ("task_id", "T1"),
            ("priority", "high"),
            ("description", "fix it"),
            ("done_definition", "tests pass"),
            ("phase", "2 (Implement Fix)"),
            ("phase_description", "implement"),
            ("phases", "  1. A\n→ 2. B"),
            ("memories", "- m1"),
        ]);
        let system = render(AGENT_SYSTEM, &all).unwrap();
        assert!(system.contains("hephaestus/agent-a1") && system.contains("\"Bug Fix\""));
        let task = render(AGENT_TASK, &all).unwrap();
        assert!(task.contains("fix it") && task.contains("→ 2. B") && task.contains("- m1"));
        assert!(!task.contains("{{"));
    }
}
