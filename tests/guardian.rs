//! The guardian reads each agent's state from its real terminal with screen rules, without an
//! LLM: a project's own rules for its CLI replace the shipped ones, every change is in the
//! agent's log with the rule that decided it, and `agents explain` says why. Real tmux, the
//! real binary, the scripted agent as the CLI.

mod common;

use std::time::Duration;

use common::Coordinator;
use common::agent_cli::TmuxServer;
use common::scripted::{agent_project_with_flags, create, events_with_detail, wait_until};

/// Rules for the scripted agent, as a project keeps them in `screen_rules/custom.toml`.
const RULES: &str = r#"
still_after_ms = 800

[[rule]]
name = "working line"
state = "working"
in = "bottom"
lines = 1
any = ["working:"]

[[rule]]
name = "turn-over prompt"
state = "idle"
in = "bottom"
lines = 1
all = ["turn over >"]
"#;

fn state_of(coord: &Coordinator, agent: &str) -> Option<String> {
    let agents = coord.cli(&["agents", "--all"]);
    agents
        .as_array()?
        .iter()
        .find(|a| a["id"] == agent)
        .and_then(|a| a["state"]["state"].as_str().map(String::from))
}

#[test]
fn an_agent_that_ends_its_turn_without_reporting_is_seen_idle_by_its_rules() {
    let (dir, _worktrees) = agent_project_with_flags("--forget-to-report");
    std::fs::create_dir_all(dir.path().join("screen_rules")).unwrap();
    std::fs::write(dir.path().join("screen_rules/custom.toml"), RULES).unwrap();
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "SLEEP 4\nWRITE forgot.txt: done, not said", &[]);
    let mut agent = String::new();
    wait_until("the agent at work", Duration::from_secs(30), || {
        let t = coord.cli(&["task", "show", &id]);
        agent = t["assigned_agent_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !agent.is_empty() && state_of(&coord, &agent).as_deref() == Some("working")
    });
    wait_until("the agent idle", Duration::from_secs(30), || {
        state_of(&coord, &agent).as_deref() == Some("idle")
    });
    // It never reported: the task is still its, in progress.
    assert_eq!(coord.cli(&["task", "show", &id])["status"], "in_progress");

    let changes: Vec<String> = events_with_detail(dir.path())
        .into_iter()
        .filter(|(a, k, _)| a == &agent && k == "state_changed")
        .map(|(_, _, m)| m)
        .collect();
    let said = |state: &str, rule: &str| {
        changes
            .iter()
            .any(|m| m.starts_with(&format!("{state} ({rule}:")))
    };
    assert!(said("working", "working line"), "{changes:?}");
    assert!(said("idle", "turn-over prompt"), "{changes:?}");

    let explained = coord.cli(&["agents", "explain", &agent[..8]]);
    assert_eq!(explained["reading"]["state"], "idle", "{explained}");
    assert_eq!(explained["reading"]["rule"], "turn-over prompt");
    let screen = explained["screen"].as_str().unwrap().to_string();
    assert!(screen.contains("turn over >"), "{screen}");

    // The same screen, saved, read without the coordinator.
    let saved = dir.path().join("pane.txt");
    std::fs::write(&saved, &screen).unwrap();
    let text = coord.cli_text(&[
        "agents",
        "explain",
        "--file",
        saved.to_str().unwrap(),
        "--cli",
        "custom",
    ]);
    assert!(
        text.contains("state: idle") && text.contains("rule:  turn-over prompt"),
        "{text}"
    );
    let listed = coord.cli_text(&["agents"]);
    assert!(listed.contains(" idle "), "{listed}");
}

#[test]
fn a_bad_rules_file_is_refused_with_its_path() {
    let (dir, _worktrees) = agent_project_with_flags("");
    std::fs::create_dir_all(dir.path().join("screen_rules")).unwrap();
    let bad = dir.path().join("screen_rules/custom.toml");
    std::fs::write(&bad, "[[rule]]\nname = \"everything\"\nstate = \"idle\"\n").unwrap();
    let coord = Coordinator::start(dir.path());
    let saved = dir.path().join("pane.txt");
    std::fs::write(&saved, "> ").unwrap();
    let out = coord.cli_raw(&[
        "agents",
        "explain",
        "--file",
        saved.to_str().unwrap(),
        "--cli",
        "custom",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("matches everything"),
        "{err}"
    );
}
