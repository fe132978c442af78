//! The guardian's judgement: an LLM reads an agent's task and the newest part of its screen and
//! says whether its work is on its task, and if not, what to tell it. Asked only when something
//! happened (the screen changed since the last judgement, at most every
//! `guardian.judge_every_secs`), never on a fixed clock, and only with what changed: the screen
//! lines that are new since the last look.
//!
//! Pure but for `judge`, which asks through `llm/`.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agents::prompt;
use crate::llm::{Answer, CallFor, Llm, LlmError};
use crate::states::{AgentState, LlmComponent, SteeringType};

/// What the judgement says of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// How well its work follows its task, from 0 (not at all) to 1 (exactly).
    pub alignment_score: f64,
    pub aligned: bool,
    pub needs_steering: bool,
    /// Why it needs steering (with `needs_steering`).
    #[serde(default)]
    pub steering_type: Option<SteeringType>,
    /// What to tell the agent (with `needs_steering`): one or two sentences.
    #[serde(default)]
    pub message: Option<String>,
    /// What the agent is doing, in one sentence.
    pub summary: String,
}

impl Answer for Verdict {
    fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.alignment_score) {
            return Err(format!(
                "alignment_score {} is not between 0 and 1",
                self.alignment_score
            ));
        }
        if self.summary.trim().is_empty() {
            return Err("summary is empty".into());
        }
        if self.needs_steering {
            if self.message.as_deref().is_none_or(|m| m.trim().is_empty()) {
                return Err("needs_steering is true but message is empty".into());
            }
            if self.steering_type.is_none() {
                return Err("needs_steering is true but steering_type is missing".into());
            }
        }
        Ok(())
    }
}

/// What a judgement reads of one agent.
pub struct Seen<'a> {
    pub task_id: &'a str,
    pub description: &'a str,
    pub done_definition: &'a str,
    pub state: AgentState,
    pub screen: &'a str,
    /// The screen the last judgement read, if there was one.
    pub last_screen: Option<&'a str>,
    /// What the last judgements said, oldest first.
    pub summaries: &'a [String],
    pub max_chars: usize,
}

/// Lines kept around the new ones, so the model sees where they sit.
const CONTEXT_LINES: usize = 5;

/// The part of `screen` a judgement reads: all of it the first time; after that, the lines that
/// were not on the last screen, with the last few lines for context. None when no line is new.
/// Bounded to `max_chars`, keeping the newest end.
pub fn new_part(screen: &str, last: Option<&str>, max_chars: usize) -> Option<(String, bool)> {
    let lines: Vec<&str> = screen
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let text = match last {
        None => lines.join("\n"),
        Some(last) => {
            // Lines compared without their digits: a spinner's timer and token count change
            // every second, and are not news.
            let mut before: HashMap<String, usize> = HashMap::new();
            for l in last.lines().map(str::trim_end) {
                *before.entry(without_digits(l)).or_default() += 1;
            }
            let mut fresh = Vec::new();
            for l in &lines {
                match before.get_mut(&without_digits(l)) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => fresh.push(*l),
                }
            }
            if fresh.is_empty() {
                return None;
            }
            let tail = &lines[lines.len().saturating_sub(CONTEXT_LINES)..];
            let mut text = fresh.join("\n");
            text.push_str("\n[the screen ends with]\n");
            text.push_str(&tail.join("\n"));
            text
        }
    };
    if text.trim().is_empty() {
        return None;
    }
    let start = text.len().saturating_sub(max_chars);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    Some((text[start..].to_string(), last.is_some()))
}

fn without_digits(line: &str) -> String {
    line.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// The question about one agent, or none when nothing on its screen is new.
pub fn question(seen: &Seen<'_>) -> Option<String> {
    let (pane, continued) = new_part(seen.screen, seen.last_screen, seen.max_chars)?;
    let values = HashMap::from([
        ("task_id", seen.task_id.to_string()),
        ("description", seen.description.to_string()),
        ("done_definition", seen.done_definition.to_string()),
        ("state", seen.state.to_string()),
        ("previous", seen.summaries.join("\n")),
        ("continued", if continued { "yes" } else { "" }.to_string()),
        // The screen goes in a fenced block its own text must not close.
        ("pane", pane.replace("```", "'''")),
    ]);
    match prompt::render(prompt::GUARDIAN_QUESTION, &values) {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::error!("the guardian's question template: {e:#}");
            None
        }
    }
}

pub async fn judge(llm: &Llm, call_for: &CallFor, question: &str) -> Result<Verdict, LlmError> {
    llm.ask::<Verdict>(
        LlmComponent::Guardian,
        call_for,
        prompt::GUARDIAN_JUDGEMENT,
        question,
    )
    .await
}

/// The most of a model's message typed into an agent.
const MAX_STEER_CHARS: usize = 500;

/// The text typed into the agent for a steer: one line, no control characters, bounded.
pub fn steer_text(kind: SteeringType, message: &str) -> String {
    let clean: String = message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_STEER_CHARS)
        .collect();
    format!("[Hephaestus guardian: {kind}] {clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(json: &str) -> Result<Verdict, String> {
        let v: Verdict = serde_json::from_str(json).map_err(|e| e.to_string())?;
        v.check().map(|_| v)
    }

    #[test]
    fn a_verdict_that_wants_a_steer_must_say_what_and_why() {
        assert!(verdict(r#"{"alignment_score":0.9,"aligned":true,"needs_steering":false,"summary":"writing tests"}"#).is_ok());
        let err = verdict(r#"{"alignment_score":0.2,"aligned":false,"needs_steering":true,"summary":"x","steering_type":"drifting"}"#).unwrap_err();
        assert!(err.contains("message is empty"), "{err}");
        let err = verdict(
            r#"{"alignment_score":1.5,"aligned":true,"needs_steering":false,"summary":"x"}"#,
        )
        .unwrap_err();
        assert!(err.contains("between 0 and 1"), "{err}");
        let err = verdict(r#"{"alignment_score":0.2,"aligned":false,"needs_steering":true,"summary":"x","message":"m","steering_type":"lost"}"#).unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }

    #[test]
    fn only_what_is_new_on_the_screen_is_read_again() {
        let first = "$ cargo test\nrunning 3 tests\n> ";
        let (all, continued) = new_part(first, None, 1000).unwrap();
        assert_eq!(all, "$ cargo test\nrunning 3 tests\n>");
        assert!(!continued);
        let second = "$ cargo test\nrunning 3 tests\ntest a ... ok\ntest b ... FAILED\n> ";
        let (part, continued) = new_part(second, Some(first), 1000).unwrap();
        assert!(continued);
        assert!(
            part.starts_with("test a ... ok\ntest b ... FAILED\n[the screen ends with]"),
            "{part}"
        );
        assert_eq!(new_part(second, Some(second), 1000), None, "nothing new");
        // A spinner's timer ticking is not news.
        assert_eq!(
            new_part(
                "✻ Working… (12s · ↓ 340 tokens)",
                Some("✻ Working… (11s · ↓ 298 tokens)"),
                1000
            ),
            None
        );
        assert_eq!(
            steer_text(SteeringType::Stuck, "stop\n\u{1b}[2J looping   now"),
            "[Hephaestus guardian: stuck] stop [2J looping now"
        );
        // Bounded, keeping the newest end.
        let long = "x".repeat(50) + "\nthe end";
        let (cut, _) = new_part(&long, None, 10).unwrap();
        assert_eq!(cut, "xx\nthe end");
    }

    #[test]
    fn the_question_names_the_task_and_what_was_said_before() {
        let summaries = vec!["reading the code".to_string()];
        let q = question(&Seen {
            task_id: "t1",
            description: "Add a --json flag",
            done_definition: "tests pass",
            state: AgentState::Working,
            screen: "editing cli.rs",
            last_screen: None,
            summaries: &summaries,
            max_chars: 1000,
        })
        .unwrap();
        assert!(q.contains("Task t1:\nAdd a --json flag"), "{q}");
        assert!(q.contains("reading the code"), "{q}");
        assert!(q.contains("editing cli.rs"), "{q}");
        assert!(!q.contains("since you last looked"), "{q}");
    }
}
