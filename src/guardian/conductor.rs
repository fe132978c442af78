//! The conductor's facts, without an LLM: where two agents' work, as it stands in their
//! worktrees (committed or not), changes the same files, and whether merging the two would
//! conflict (a merge of their trees in memory). The agent manager reads the worktrees
//! (`agents/worktree.rs`); this module pairs them up and words what it found. The guardian
//! logs each new overlap on both agents and `status` lists the current ones.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::agents::worktree::Snapshot;

/// Two agents whose work touches the same files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    pub agents: [String; 2],
    pub tasks: [Option<String>; 2],
    /// Paths both change, sorted.
    pub files: Vec<String>,
    /// Of those, the ones a merge of the two would conflict on.
    pub conflicts: Vec<String>,
}

impl Overlap {
    /// What the overlap means, for the log and `status`.
    pub fn describe(&self) -> String {
        let short = |id: &str| id[..id.len().min(8)].to_string();
        let files = list(&self.files);
        let mut text = format!(
            "agents {} and {} both change {files}",
            short(&self.agents[0]),
            short(&self.agents[1])
        );
        if self.conflicts.is_empty() {
            text.push_str("; their work merges cleanly so far");
        } else {
            text.push_str(&format!(
                "; merging their work would conflict on {}",
                list(&self.conflicts)
            ));
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
            });
        }
    }
    Ok(found)
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
