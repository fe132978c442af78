//! The conductor. Its facts, without an LLM: where two agents' work, as it stands in their
//! worktrees (committed or not), changes the same files, whether merging the two would
//! conflict (a merge of their trees in memory), and whether their task texts are near-identical
//! (the memory embedder's vectors). The agent manager reads the worktrees
//! (`agents/worktree.rs`); this module pairs them up and words what it found. The guardian
//! logs each new overlap on both agents and `status` lists the current ones.
//!
//! With an LLM configured for it, the conductor then asks it once per overlap what to do
//! ([`Decision`]): message both agents, queue a task that reconciles their work after both, or
//! tell the person. Pure; the guardian asks and acts.

use std::collections::HashMap;

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agents::worktree::Snapshot;
use crate::llm::Answer;
use crate::states::ConductorAction;

/// Two agents whose work touches the same files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overlap {
    pub agents: [String; 2],
    pub tasks: [Option<String>; 2],
    /// Paths both change, sorted.
    pub files: Vec<String>,
    /// Of those, the ones a merge of the two would conflict on.
    pub conflicts: Vec<String>,
    /// How alike their task texts are (cosine), when it is at least the configured threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similar_tasks: Option<f32>,
}

impl Overlap {
    /// What the overlap means, for the log and `status`.
    pub fn describe(&self) -> String {
        let short = |id: &str| id[..id.len().min(8)].to_string();
        let (a, b) = (short(&self.agents[0]), short(&self.agents[1]));
        let mut text = if self.files.is_empty() {
            format!("agents {a} and {b} have near-identical tasks")
        } else {
            format!("agents {a} and {b} both change {}", list(&self.files))
        };
        if !self.files.is_empty() {
            if self.conflicts.is_empty() {
                text.push_str("; their work merges cleanly so far");
            } else {
                text.push_str(&format!(
                    "; merging their work would conflict on {}",
                    list(&self.conflicts)
                ));
            }
        }
        if let Some(s) = self.similar_tasks.filter(|_| !self.files.is_empty()) {
            text.push_str(&format!("; their tasks are near-identical ({s:.2})"));
        } else if let Some(s) = self.similar_tasks {
            text.push_str(&format!(" ({s:.2})"));
        }
        text
    }
}

fn list(files: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out = files
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if files.len() > SHOWN {
        out.push_str(&format!(" and {} more", files.len() - SHOWN));
    }
    out
}

/// Every pair of agents whose changes share a path, with the conflicts `forecast` finds for
/// the pair (asked only for pairs that share one: a merge cannot conflict otherwise).
pub fn overlaps(
    work: &[(String, Option<String>, Snapshot)],
    forecast: impl Fn(&Snapshot, &Snapshot) -> Result<Vec<String>>,
) -> Result<Vec<Overlap>> {
    let mut found = Vec::new();
    for (i, (agent_a, task_a, a)) in work.iter().enumerate() {
        for (agent_b, task_b, b) in &work[i + 1..] {
            let files: Vec<String> = a
                .changed
                .iter()
                .filter(|f| b.changed.binary_search(f).is_ok())
                .cloned()
                .collect();
            if files.is_empty() {
                continue;
            }
            found.push(Overlap {
                agents: [agent_a.clone(), agent_b.clone()],
                tasks: [task_a.clone(), task_b.clone()],
                conflicts: forecast(a, b)?,
                files,
                similar_tasks: None,
            });
        }
    }
    Ok(found)
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 { 0.0 } else { dot / n }
}

/// Adds what the task texts say to the overlaps the files gave: each pair of `agents` (agent,
/// task) whose tasks' vectors are at least `threshold` alike is marked so, and becomes an
/// overlap of its own when their files do not overlap (yet).
pub fn with_similar_tasks(
    mut found: Vec<Overlap>,
    agents: &[(String, String)],
    vectors: &HashMap<String, Vec<f32>>,
    threshold: f32,
) -> Vec<Overlap> {
    for (i, (agent_a, task_a)) in agents.iter().enumerate() {
        for (agent_b, task_b) in &agents[i + 1..] {
            let (Some(va), Some(vb)) = (vectors.get(task_a), vectors.get(task_b)) else {
                continue;
            };
            let similarity = cosine(va, vb);
            if similarity < threshold {
                continue;
            }
            let same_pair = |o: &Overlap| {
                o.agents == [agent_a.clone(), agent_b.clone()]
                    || o.agents == [agent_b.clone(), agent_a.clone()]
            };
            match found.iter_mut().find(|o| same_pair(o)) {
                Some(o) => o.similar_tasks = Some(similarity),
                None => found.push(Overlap {
                    agents: [agent_a.clone(), agent_b.clone()],
                    tasks: [Some(task_a.clone()), Some(task_b.clone())],
                    files: Vec::new(),
                    conflicts: Vec::new(),
                    similar_tasks: Some(similarity),
                }),
            }
        }
    }
    found
}

/// What the conductor's LLM says to do about one overlap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub action: ConductorAction,
    /// Why, in one sentence, for the person reading the log.
    pub reason: String,
    /// What to tell the first agent (with `message_agents`, or alongside `reconcile`).
    #[serde(default)]
    pub message_to_first: Option<String>,
    /// What to tell the second agent.
    #[serde(default)]
    pub message_to_second: Option<String>,
    /// With `reconcile`: the task that brings their work together, for a coding agent.
    #[serde(default)]
    pub reconcile_task: Option<String>,
}

fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|m| m.trim().is_empty())
}

impl Answer for Decision {
    fn check(&self) -> Result<(), String> {
        if self.reason.trim().is_empty() {
            return Err("reason is empty".into());
        }
        match self.action {
            ConductorAction::MessageAgents
                if blank(&self.message_to_first) && blank(&self.message_to_second) =>
            {
                Err("action is message_agents but both messages are empty".into())
            }
            ConductorAction::Reconcile if blank(&self.reconcile_task) => {
                Err("action is reconcile but reconcile_task is empty".into())
            }
            _ => Ok(()),
        }
    }
}

/// One agent of an overlapping pair, as the question shows it.
pub struct Side<'a> {
    pub agent_id: &'a str,
    pub branch: &'a str,
    pub task_id: &'a str,
    pub description: &'a str,
}

/// The question about one overlap.
pub fn question(o: &Overlap, sides: [Side<'_>; 2]) -> Result<String> {
    let [a, b] = sides;
    let short = |id: &str| id[..id.len().min(8)].to_string();
    let merge = if o.files.is_empty() {
        String::new()
    } else if o.conflicts.is_empty() {
        "Their work, as it stands, merges cleanly.".to_string()
    } else {
        format!(
            "Merging their work as it stands would conflict on: {}.",
            o.conflicts.join(", ")
        )
    };
    let values = HashMap::from([
        ("agent_a", short(a.agent_id)),
        ("branch_a", a.branch.to_string()),
        ("task_a", a.task_id.to_string()),
        ("description_a", a.description.to_string()),
        ("agent_b", short(b.agent_id)),
        ("branch_b", b.branch.to_string()),
        ("task_b", b.task_id.to_string()),
        ("description_b", b.description.to_string()),
        ("files", o.files.join(", ")),
        ("merge", merge),
        (
            "similar",
            o.similar_tasks
                .map(|s| format!("{s:.2}"))
                .unwrap_or_default(),
        ),
    ]);
    crate::agents::prompt::render(crate::agents::prompt::CONDUCTOR_QUESTION, &values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(changed: &[&str]) -> Snapshot {
        Snapshot {
            tree: String::new(),
            base_commit: String::new(),
            changed: changed.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn decision(json: &str) -> Result<Decision, String> {
        let d: Decision = serde_json::from_str(json).map_err(|e| e.to_string())?;
        d.check().map(|_| d)
    }

    #[test]
    fn a_decision_must_carry_what_its_action_needs() {
        assert!(decision(r#"{"action":"none","reason":"both add a changelog line"}"#).is_ok());
        let e = decision(r#"{"action":"message_agents","reason":"r","message_to_first":" "}"#)
            .unwrap_err();
        assert!(e.contains("both messages are empty"), "{e}");
        assert!(
            decision(r#"{"action":"message_agents","reason":"r","message_to_second":"m"}"#).is_ok()
        );
        let e = decision(r#"{"action":"reconcile","reason":"r"}"#).unwrap_err();
        assert!(e.contains("reconcile_task is empty"), "{e}");
        let e = decision(r#"{"action":"merge","reason":"r"}"#).unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
        let e = decision(r#"{"action":"none","reason":""}"#).unwrap_err();
        assert!(e.contains("reason is empty"), "{e}");
    }

    #[test]
    fn near_identical_tasks_mark_a_file_overlap_or_make_one_of_their_own() {
        let files = Overlap {
            agents: ["a".into(), "b".into()],
            tasks: [Some("ta".into()), Some("tb".into())],
            files: vec!["x.rs".into()],
            conflicts: vec![],
            similar_tasks: None,
        };
        let agents: Vec<(String, String)> = [("a", "ta"), ("b", "tb"), ("c", "tc"), ("d", "td")]
            .iter()
            .map(|(a, t)| (a.to_string(), t.to_string()))
            .collect();
        let vectors = HashMap::from([
            ("ta".to_string(), vec![1.0, 0.0]),
            ("tb".to_string(), vec![0.99, 0.1]),
            ("tc".to_string(), vec![0.0, 1.0]),
            ("td".to_string(), vec![0.05, 1.0]),
        ]);
        let found = with_similar_tasks(vec![files], &agents, &vectors, 0.9);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].similar_tasks.unwrap() > 0.99);
        assert_eq!(found[1].agents, ["c".to_string(), "d".to_string()]);
        assert!(found[1].files.is_empty());
        assert!(
            found[1]
                .describe()
                .starts_with("agents c and d have near-identical tasks (1.00)"),
            "{}",
            found[1].describe()
        );
        assert!(
            found[0]
                .describe()
                .ends_with("merges cleanly so far; their tasks are near-identical (0.99)"),
            "{}",
            found[0].describe()
        );
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn the_question_gives_both_tasks_and_what_a_merge_would_do() {
        let o = Overlap {
            agents: ["aaaaaaaa-1".into(), "bbbbbbbb-2".into()],
            tasks: [Some("t1".into()), Some("t2".into())],
            files: vec!["src/parser.rs".into()],
            conflicts: vec!["src/parser.rs".into()],
            similar_tasks: None,
        };
        let q = question(
            &o,
            [
                Side {
                    agent_id: "aaaaaaaa-1",
                    branch: "hep/aaaaaaaa",
                    task_id: "t1",
                    description: "Fix escapes",
                },
                Side {
                    agent_id: "bbbbbbbb-2",
                    branch: "hep/bbbbbbbb",
                    task_id: "t2",
                    description: "Rewrite the parser",
                },
            ],
        )
        .unwrap();
        assert!(
            q.contains("The first agent, aaaaaaaa (branch hep/aaaaaaaa), task t1:\nFix escapes"),
            "{q}"
        );
        assert!(q.contains("would conflict on: src/parser.rs."), "{q}");
        assert!(!q.contains("near-identical"), "{q}");
    }

    #[test]
    fn only_pairs_that_share_a_path_are_compared_and_reported() {
        let work = vec![
            (
                "a".to_string(),
                Some("t1".to_string()),
                snap(&["src/cli.rs", "src/lib.rs"]),
            ),
            ("b".to_string(), None, snap(&["README.md"])),
            ("c".to_string(), None, snap(&["src/lib.rs"])),
        ];
        let asked = std::cell::Cell::new(0);
        let found = overlaps(&work, |_, _| {
            asked.set(asked.get() + 1);
            Ok(vec!["src/lib.rs".to_string()])
        })
        .unwrap();
        assert_eq!(
            asked.get(),
            1,
            "a merge is forecast only where paths are shared"
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].agents, ["a".to_string(), "c".to_string()]);
        assert_eq!(found[0].files, ["src/lib.rs"]);
        assert_eq!(
            found[0].describe(),
            "agents a and c both change src/lib.rs; merging their work would conflict on src/lib.rs"
        );
    }
}
