//! The task queue's rules, as pure logic with no IO: priorities and their order, the task state
//! machine, and the dependency graph with cycle rejection.
//!
//! The store applies these rules inside its transactions; its claim query orders rows exactly as
//! [`QueueKey`] does (a test checks the two agree).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl Priority {
    /// Weight used for ordering: high=3, medium=2, low=1.
    pub fn weight(self) -> i64 {
        match self {
            Priority::Low => 1,
            Priority::Medium => 2,
            Priority::High => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Priority::Low),
            "medium" => Ok(Priority::Medium),
            "high" => Ok(Priority::High),
            other => Err(format!(
                "unknown priority {other:?}: use low, medium or high"
            )),
        }
    }
}

/// Where a task is in its life.
///
/// `pending → queued → assigned → in_progress → done | failed`; a task whose dependencies are
/// not all done waits in `blocked` and moves to `queued` when the last one is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Queued,
    Blocked,
    Assigned,
    InProgress,
    Done,
    Failed,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Pending,
        TaskStatus::Queued,
        TaskStatus::Blocked,
        TaskStatus::Assigned,
        TaskStatus::InProgress,
        TaskStatus::Done,
        TaskStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Queued => "queued",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Assigned => "assigned",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Done => "done",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Failed)
    }

    /// Counts against `max_concurrent_agents`.
    pub fn is_active(self) -> bool {
        matches!(self, TaskStatus::Assigned | TaskStatus::InProgress)
    }

    /// The transitions the state machine allows.
    pub fn can_become(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Pending, Queued)
                | (Pending, Blocked)
                | (Blocked, Queued)
                | (Queued, Assigned)
                | (Assigned, InProgress)
                | (Assigned, Done)
                | (Assigned, Failed)
                | (InProgress, Done)
                | (InProgress, Failed)
                // A dead agent's task goes back to the queue.
                | (Assigned, Queued)
                | (InProgress, Queued)
                // A person may cancel work that has not started.
                | (Queued, Failed)
                | (Blocked, Failed)
                | (Pending, Failed)
        )
    }

    /// The status a new task starts in: blocked while any dependency is not done.
    pub fn initial(unmet_dependencies: usize) -> TaskStatus {
        if unmet_dependencies > 0 {
            TaskStatus::Blocked
        } else {
            TaskStatus::Queued
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TaskStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}: use one of {}",
                    TaskStatus::ALL.map(|t| t.as_str()).join(", ")
                )
            })
    }
}

/// What decides which queued task goes first: a manual boost, then priority, then the earlier
/// phase, then the older task, then creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueKey {
    pub boosted: bool,
    pub priority: Priority,
    /// 0 for a task outside any workflow.
    pub phase_order: i64,
    pub queued_at_ms: i64,
    /// Tie-breaker: insertion sequence.
    pub seq: i64,
}

impl Ord for QueueKey {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .boosted
            .cmp(&self.boosted)
            .then(other.priority.weight().cmp(&self.priority.weight()))
            .then(self.phase_order.cmp(&other.phase_order))
            .then(self.queued_at_ms.cmp(&other.queued_at_ms))
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for QueueKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The SQL `ORDER BY` that matches [`QueueKey`]'s order, for the store's claim query.
pub const QUEUE_ORDER_SQL: &str =
    "boosted DESC, priority_weight DESC, phase_order ASC, queued_at ASC, rowid ASC";

/// Why a set of dependencies cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    #[error("task {0} cannot depend on itself")]
    SelfDependency(String),
    #[error("depending on {dependency} would make a cycle: {}", path.join(" -> "))]
    Cycle {
        dependency: String,
        path: Vec<String>,
    },
}

/// Task dependencies: an edge `task → dependency` means the task waits for the dependency.
#[derive(Debug, Default, Clone)]
pub struct DependencyGraph {
    edges: HashMap<String, HashSet<String>>,
}

impl DependencyGraph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn dependencies_of(&self, task: &str) -> impl Iterator<Item = &String> {
        self.edges.get(task).into_iter().flatten()
    }

    /// Adds `task → dependency` unless it would close a cycle.
    pub fn add(&mut self, task: &str, dependency: &str) -> Result<(), DependencyError> {
        if task == dependency {
            return Err(DependencyError::SelfDependency(task.to_string()));
        }
        if let Some(mut path) = self.path(dependency, task) {
            path.push(dependency.to_string());
            return Err(DependencyError::Cycle {
                dependency: dependency.to_string(),
                path,
            });
        }
        self.edges
            .entry(task.to_string())
            .or_default()
            .insert(dependency.to_string());
        Ok(())
    }

    /// A path of dependency edges from `from` to `to`, if one exists (depth-first).
    fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut stack = vec![(from.to_string(), vec![from.to_string()])];
        let mut seen = HashSet::new();
        while let Some((node, path)) = stack.pop() {
            if node == to {
                return Some(path);
            }
            if !seen.insert(node.clone()) {
                continue;
            }
            for next in self.dependencies_of(&node) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
        None
    }

    /// True when the graph has no cycle (an invariant `add` keeps): no task reaches itself.
    pub fn is_acyclic(&self) -> bool {
        self.edges.keys().all(|task| {
            self.dependencies_of(task)
                .all(|dep| self.path(dep, task).is_none())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boost_beats_priority_beats_phase_beats_age() {
        let base = QueueKey {
            boosted: false,
            priority: Priority::Medium,
            phase_order: 2,
            queued_at_ms: 100,
            seq: 5,
        };
        let boosted = QueueKey {
            boosted: true,
            priority: Priority::Low,
            ..base
        };
        let high = QueueKey {
            priority: Priority::High,
            phase_order: 3,
            ..base
        };
        let earlier_phase = QueueKey {
            phase_order: 1,
            queued_at_ms: 900,
            ..base
        };
        let older = QueueKey {
            queued_at_ms: 50,
            ..base
        };
        let mut keys = vec![base, older, earlier_phase, high, boosted];
        keys.sort();
        assert_eq!(keys, vec![boosted, high, earlier_phase, older, base]);
    }

    #[test]
    fn state_machine_follows_the_documented_path() {
        use TaskStatus::*;
        assert!(Pending.can_become(Queued));
        assert!(Queued.can_become(Assigned));
        assert!(Assigned.can_become(InProgress));
        assert!(InProgress.can_become(Done));
        assert!(Blocked.can_become(Queued));
        assert!(!Done.can_become(InProgress));
        assert!(!Failed.can_become(Done));
        assert!(
            !Queued.can_become(Done),
            "an unassigned task cannot be done"
        );
        assert!(
            !Blocked.can_become(Assigned),
            "a blocked task is never claimed"
        );
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), s);
            if s.is_terminal() {
                assert!(TaskStatus::ALL.iter().all(|n| !s.can_become(*n)));
            }
        }
        assert_eq!(TaskStatus::initial(0), Queued);
        assert_eq!(TaskStatus::initial(2), Blocked);
    }

    #[test]
    fn cycles_are_rejected_with_their_path() {
        let mut g = DependencyGraph::new();
        g.add("a", "b").unwrap();
        g.add("b", "c").unwrap();
        let err = g.add("c", "a").unwrap_err();
        assert_eq!(
            err,
            DependencyError::Cycle {
                dependency: "a".into(),
                path: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
        assert_eq!(
            g.add("a", "a").unwrap_err(),
            DependencyError::SelfDependency("a".into())
        );
        assert!(g.is_acyclic());
    }

    proptest! {
        /// Whatever edges are offered, the accepted ones never form a cycle, and every rejected
        /// edge really would have closed one.
        #[test]
        fn accepted_edges_stay_acyclic(edges in proptest::collection::vec((0u8..12, 0u8..12), 0..60)) {
            let mut g = DependencyGraph::new();
            for (a, b) in edges {
                let (a, b) = (a.to_string(), b.to_string());
                match g.add(&a, &b) {
                    Ok(()) => prop_assert!(g.is_acyclic()),
                    Err(DependencyError::SelfDependency(_)) => prop_assert_eq!(&a, &b),
                    Err(DependencyError::Cycle { .. }) => {
                        let mut with = g.clone();
                        with.edges.entry(a.clone()).or_default().insert(b.clone());
                        prop_assert!(!with.is_acyclic());
                    }
                }
            }
        }

        /// The queue order is a total order: sorting is stable under any input permutation.
        #[test]
        fn queue_order_is_total(keys in proptest::collection::vec(
            (any::<bool>(), 0u8..3, 0i64..4, 0i64..50), 1..40)) {
            let keys: Vec<QueueKey> = keys.into_iter().enumerate().map(|(i, (b, p, ph, t))| QueueKey {
                boosted: b,
                priority: [Priority::Low, Priority::Medium, Priority::High][p as usize],
                phase_order: ph,
                queued_at_ms: t,
                seq: i as i64,
            }).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            let mut reversed = keys.clone();
            reversed.reverse();
            reversed.sort();
            prop_assert_eq!(&sorted, &reversed);
            for w in sorted.windows(2) {
                prop_assert!(w[0] <= w[1]);
                prop_assert!(!w[1].boosted || w[0].boosted);
            }
        }
    }
}
