//! The agent manager's decisions that need no tmux, git or database: how many agents may start,
//! what becomes of a task whose agent did not finish it, how an interrupted launch resumes, how
//! a silent first message is retried, when waiting merges are tried again. Pure, unit-tested.

use std::time::{Duration, Instant};

/// How many more agents may start now: the cap counts agents until they are fully ended (so the
/// next one starts after the previous session is closed and its work merged), and tasks held by
/// any agent (a person's `task assign` included).
pub fn free_slots(cap: u32, agents_in_slots: usize, active_tasks: i64) -> usize {
    let by_agents = (cap as usize).saturating_sub(agents_in_slots);
    let by_tasks = usize::try_from(i64::from(cap).saturating_sub(active_tasks)).unwrap_or(0);
    by_agents.min(by_tasks)
}

/// What becomes of a task whose agent did not finish it (the agent died, or its launch failed
/// for a cause outside the task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFate {
    /// Another agent tries: this is attempt `attempt` of `max` that ended.
    Requeue { attempt: u32, max: u32 },
    /// That was the last attempt.
    Fail { attempts: u32 },
}

/// `previous` attempts already ended before this one, of `max_attempts` in all.
pub fn after_unfinished(previous: u32, max_attempts: u32) -> TaskFate {
    let attempt = previous + 1;
    if attempt < max_attempts {
        TaskFate::Requeue {
            attempt,
            max: max_attempts,
        }
    } else {
        TaskFate::Fail { attempts: attempt }
    }
}

/// How far an interrupted launch had come, from its agent's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LaunchProgress {
    /// The agent's session was recorded (so it was started).
    pub session: bool,
    pub connected: bool,
    pub tools_listed: bool,
    /// The first message was typed in.
    pub typed: bool,
    /// The agent acted on it.
    pub delivered: bool,
}

/// What the next coordinator does with a launch a restart interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The agent is working: adopt it as it is.
    Adopt,
    /// Its session never started: give the task to a new agent.
    Requeue,
    /// Go on from where it stopped.
    Continue {
        /// Wait for the shim (unless it had connected) and the tool list first.
        wait_ready: bool,
        /// The shim had connected: wait only for the tool list.
        connected: bool,
        /// Type the first message; when false it was typed and only Enter is pressed.
        paste: bool,
    },
}

pub fn resume(progress: LaunchProgress) -> Resume {
    if progress.delivered {
        Resume::Adopt
    } else if !progress.session {
        Resume::Requeue
    } else {
        Resume::Continue {
            wait_ready: !progress.typed && !progress.tools_listed,
            connected: progress.connected,
            paste: !progress.typed,
        }
    }
}

/// What to do when the first message got no tool call in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Type the message again: the client listed our tools only after it went in, and the
    /// agent sits at its prompt, so its turn ran without them.
    Retype,
    /// Press Enter again: the message may still sit in the input box.
    Enter,
}

pub fn after_silent_message(lists_now: u64, lists_at_send: u64, idle: bool) -> Retry {
    if lists_now > lists_at_send && idle {
        Retry::Retype
    } else {
        Retry::Enter
    }
}

/// Waiting merges read the user's checkout each try, so they are tried at most every `every`.
pub fn merge_retry_due(last_try: Option<Instant>, now: Instant, every: Duration) -> bool {
    last_try.is_none_or(|t| now.duration_since(t) >= every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_by_live_agents_and_by_held_tasks() {
        assert_eq!(free_slots(4, 0, 0), 4);
        assert_eq!(free_slots(4, 3, 0), 1);
        // A person assigned two tasks by hand: they count too.
        assert_eq!(free_slots(4, 1, 3), 1);
        assert_eq!(free_slots(4, 5, 0), 0);
        assert_eq!(free_slots(2, 0, 7), 0);
        assert_eq!(free_slots(0, 0, 0), 0);
    }

    #[test]
    fn a_task_is_requeued_until_its_last_attempt() {
        assert_eq!(
            after_unfinished(0, 3),
            TaskFate::Requeue { attempt: 1, max: 3 }
        );
        assert_eq!(
            after_unfinished(1, 3),
            TaskFate::Requeue { attempt: 2, max: 3 }
        );
        assert_eq!(after_unfinished(2, 3), TaskFate::Fail { attempts: 3 });
        // One attempt in all: the first failure is final.
        assert_eq!(after_unfinished(0, 1), TaskFate::Fail { attempts: 1 });
    }

    #[test]
    fn an_interrupted_launch_resumes_where_it_stopped() {
        let p = |session, connected, tools_listed, typed, delivered| LaunchProgress {
            session,
            connected,
            tools_listed,
            typed,
            delivered,
        };
        assert_eq!(resume(p(true, true, true, true, true)), Resume::Adopt);
        assert_eq!(
            resume(p(false, false, false, false, false)),
            Resume::Requeue
        );
        assert_eq!(
            resume(p(true, false, false, false, false)),
            Resume::Continue {
                wait_ready: true,
                connected: false,
                paste: true
            }
        );
        assert_eq!(
            resume(p(true, true, false, false, false)),
            Resume::Continue {
                wait_ready: true,
                connected: true,
                paste: true
            }
        );
        assert_eq!(
            resume(p(true, true, true, false, false)),
            Resume::Continue {
                wait_ready: false,
                connected: true,
                paste: true
            }
        );
        // Typed before the restart: confirm with Enter only.
        assert_eq!(
            resume(p(true, true, true, true, false)),
            Resume::Continue {
                wait_ready: false,
                connected: true,
                paste: false
            }
        );
    }

    #[test]
    fn a_silent_first_message_is_typed_again_only_after_a_late_tool_list_at_the_prompt() {
        assert_eq!(after_silent_message(2, 1, true), Retry::Retype);
        assert_eq!(after_silent_message(2, 1, false), Retry::Enter);
        assert_eq!(after_silent_message(1, 1, true), Retry::Enter);
    }

    #[test]
    fn waiting_merges_are_retried_at_most_every_interval() {
        let now = Instant::now();
        let every = Duration::from_secs(4);
        assert!(merge_retry_due(None, now, every));
        assert!(!merge_retry_due(
            Some(now),
            now + Duration::from_secs(3),
            every
        ));
        assert!(merge_retry_due(Some(now), now + every, every));
    }
}
