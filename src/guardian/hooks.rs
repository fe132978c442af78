//! A CLI's own lifecycle hooks as a source of an agent's state, trusted above its screen:
//! Claude Code runs `hephaestus hook EVENT` at each turn's start, tool use, notification and
//! end (the adapter writes them into the agent's private settings), and the coordinator keeps
//! the last one per agent (`seen.rs`). Pure: what an event says, and how it is weighed against
//! what the screen shows.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::screen::Reading;
use crate::states::AgentState;

/// The last hook an agent's CLI ran, as the state it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSignal {
    pub state: AgentState,
    /// The hook's event (`Stop`, `Notification`, ...).
    pub event: String,
    pub why: String,
    /// When it ran (ms since the epoch).
    pub at_ms: i64,
}

/// The hook events Claude Code runs our command for (the adapter's settings list these).
pub const CLAUDE_EVENTS: &[&str] = &[
    "UserPromptSubmit",
    "PreToolUse",
    "Notification",
    "Stop",
    "StopFailure",
];

/// What a hook event says of the agent's state, with why; none for events that say nothing
/// about it (a notification of another kind).
pub fn state_of(event: &str, payload: &Value) -> Option<(AgentState, String)> {
    let text = |key: &str| payload[key].as_str().unwrap_or_default().to_string();
    Some(match event {
        "UserPromptSubmit" => (AgentState::Working, "it took a message".into()),
        "PreToolUse" | "PostToolUse" => (
            AgentState::Working,
            format!(
                "it is using {}",
                payload["tool_name"].as_str().unwrap_or("a tool")
            ),
        ),
        "Stop" => (AgentState::Idle, "its turn ended".into()),
        "StopFailure" => (
            AgentState::Error,
            format!("its turn failed: {}", text("error")),
        ),
        "Notification" => match payload["notification_type"].as_str()? {
            "permission_prompt" => (
                AgentState::BlockedPermission,
                format!("it asks for permission: {}", text("message")),
            ),
            "idle_prompt" => (AgentState::Idle, "it waits for input".into()),
            _ => return None,
        },
        _ => return None,
    })
}

/// How long after a hook a screen that disagrees with it is doubted rather than believed.
const HOOK_STANDS_MS: i64 = 2000;

/// The agent's state from its screen's reading and its last hook. The hook decides when the
/// screen says nothing a rule recognised, or agrees; a dialog or error on the screen is more
/// specific than a hook's "working" or "turn over" and wins; when both are sure and disagree,
/// the newer wins once the screen has changed well after the hook, and until then it is
/// `unknown` (never a guess).
pub fn merge(screen: Reading, hook: Option<&HookSignal>, screen_changed_ms: i64) -> Reading {
    let Some(hook) = hook else {
        return screen;
    };
    let from_hook = || Reading {
        state: hook.state,
        rule: format!("{} hook", hook.event),
        why: hook.why.clone(),
    };
    let screen_is_specific = matches!(
        screen.state,
        AgentState::BlockedPermission
            | AgentState::BlockedQuestion
            | AgentState::BlockedScreen
            | AgentState::Error
            | AgentState::Exited
    );
    let screen_is_vague = screen.rule == "stability" || screen.state == AgentState::Unknown;
    if screen_is_specific && screen.state != hook.state {
        return screen;
    }
    if screen.state == hook.state && !screen_is_vague {
        // Both say so: the screen's rule keeps its name (it says how to answer a dialog).
        return Reading {
            why: format!("{}; the {} hook agrees", screen.why, hook.event),
            ..screen
        };
    }
    if screen_is_vague {
        return from_hook();
    }
    if screen_changed_ms > hook.at_ms + HOOK_STANDS_MS {
        return screen;
    }
    Reading {
        state: AgentState::Unknown,
        rule: format!("{} hook", hook.event),
        why: format!(
            "the {} hook says {} ({}), but the screen reads {} ({})",
            hook.event, hook.state, hook.why, screen.state, screen.rule
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn screen(state: AgentState, rule: &str) -> Reading {
        Reading {
            state,
            rule: rule.into(),
            why: String::new(),
        }
    }

    fn hook(event: &str, payload: Value, at_ms: i64) -> HookSignal {
        let (state, why) = state_of(event, &payload).unwrap();
        HookSignal {
            state,
            event: event.into(),
            why,
            at_ms,
        }
    }

    #[test]
    fn each_event_says_its_state() {
        let said = |e: &str, p: Value| state_of(e, &p).map(|(s, _)| s);
        assert_eq!(said("Stop", json!({})), Some(AgentState::Idle));
        assert_eq!(
            said("UserPromptSubmit", json!({})),
            Some(AgentState::Working)
        );
        assert_eq!(
            said("PreToolUse", json!({"tool_name": "Write"})),
            Some(AgentState::Working)
        );
        assert_eq!(
            said(
                "Notification",
                json!({"notification_type": "permission_prompt"})
            ),
            Some(AgentState::BlockedPermission)
        );
        assert_eq!(
            said("StopFailure", json!({"error": "rate_limit"})),
            Some(AgentState::Error)
        );
        assert_eq!(
            said("Notification", json!({"notification_type": "auth_success"})),
            None
        );
        assert_eq!(said("Notification", json!({})), None);
        assert_eq!(said("SessionEnd", json!({})), None);
    }

    #[test]
    fn the_hook_decides_where_the_screen_is_vague_or_agrees() {
        let stop = hook("Stop", json!({}), 10_000);
        // The prompt is back but the screen still moves: the rules alone would say unknown.
        let r = merge(
            screen(AgentState::Unknown, "prompt box"),
            Some(&stop),
            10_100,
        );
        assert_eq!((r.state, r.rule.as_str()), (AgentState::Idle, "Stop hook"));
        let r = merge(
            screen(AgentState::Working, "stability"),
            Some(&stop),
            10_100,
        );
        assert_eq!(r.state, AgentState::Idle);
        let r = merge(screen(AgentState::Idle, "prompt box"), Some(&stop), 10_100);
        assert_eq!((r.state, r.rule.as_str()), (AgentState::Idle, "prompt box"));
        assert!(r.why.contains("the Stop hook agrees"), "{}", r.why);
        assert_eq!(merge(screen(AgentState::Idle, "p"), None, 0).rule, "p");
    }

    #[test]
    fn a_dialog_on_screen_wins_and_a_disagreement_is_never_guessed() {
        let stop = hook("Stop", json!({}), 10_000);
        let r = merge(
            screen(AgentState::BlockedQuestion, "dialog"),
            Some(&stop),
            10_100,
        );
        assert_eq!(r.state, AgentState::BlockedQuestion);
        // The screen shows a turn running right after the hook said it ended: unknown...
        let r = merge(screen(AgentState::Working, "spinner"), Some(&stop), 10_500);
        assert_eq!(r.state, AgentState::Unknown);
        assert!(r.why.contains("the Stop hook says idle"), "{}", r.why);
        // ... and the screen once it has moved on well after the hook.
        let r = merge(screen(AgentState::Working, "spinner"), Some(&stop), 13_000);
        assert_eq!((r.state, r.rule.as_str()), (AgentState::Working, "spinner"));
    }
}
