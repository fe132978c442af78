//! The guardian reads each agent's state from its real terminal with screen rules, without an
//! LLM: a project's own rules for its CLI replace the shipped ones, every change is in the
//! agent's log with the rule that decided it, and `agents explain` says why. Real tmux, the
//! real binary, the scripted agent as the CLI.

mod common;

use std::time::Duration;

use common::Coordinator;
use common::agent_cli::TmuxServer;
use common::scripted::{
    RULES, agent_project_with, agent_project_with_flags, create, events_with_detail,
    wait_done_and_merged, wait_until, with_rules,
};

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

/// An agent idle at its prompt without reporting is reminded; it reports, and its task is
/// done and merged.
#[test]
fn an_agent_reminded_to_report_reports_and_its_work_is_merged() {
    let (dir, _worktrees) =
        agent_project_with("--forget-to-report", "\n[guardian]\nidle_nudge_secs = 2\n");
    with_rules(dir.path());
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "WRITE reminded.txt: reported late", &[]);
    wait_done_and_merged(&coord, &id);
    let t = coord.cli(&["task", "show", &id]);
    assert!(
        t["summary"]
            .as_str()
            .is_some_and(|s| s.contains("reported after a reminder")),
        "{t}"
    );
    let nudges: Vec<String> = events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "nudged")
        .map(|(_, _, m)| m)
        .collect();
    assert_eq!(nudges, ["reminded to report its task; it acted on it"]);
}

/// Reminders that do not help: the agent is marked stuck, and with `on_stuck = "fail"` ended,
/// its work kept on its branch and its task failed with the reason.
#[test]
fn an_agent_that_ignores_its_reminders_is_stuck_and_ended_as_configured() {
    let (dir, _worktrees) = agent_project_with(
        "--forget-to-report --ignore-reminders",
        "delivery_timeout_secs = 2\n[guardian]\nidle_nudge_secs = 2\nmax_nudges = 1\non_stuck = \"fail\"\n",
    );
    with_rules(dir.path());
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "WRITE ignored.txt: never reported", &[]);
    wait_until("the task failed", Duration::from_secs(60), || {
        coord.cli(&["task", "show", &id])["status"] == "failed"
    });
    let t = coord.cli(&["task", "show", &id]);
    assert!(
        t["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("stopped working without reporting the task")),
        "{t}"
    );
    let kinds: Vec<(String, String)> = events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "nudged" || k == "stuck")
        .map(|(_, k, m)| (k, m))
        .collect();
    assert_eq!(
        kinds.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["nudged", "stuck", "stuck"],
        "one reminder, marked stuck, ended: {kinds:?}"
    );
    assert_eq!(
        kinds[0].1,
        "reminded to report its task; it did not act on it"
    );
    // The work is kept on the agent's branch.
    let agent = t["assigned_agent_id"].as_str().unwrap();
    let branch = format!("hephaestus/agent-{}", &agent[..8]);
    assert_eq!(
        common::git(dir.path(), &["show", &format!("{branch}:ignored.txt")]),
        "never reported\n"
    );
}

/// `hephaestus hook EVENT`, as a CLI's hook runs it: it never fails the CLI (exit 0 whatever
/// happens) but says on stderr why the coordinator did not hear it; a hook from an agent with
/// a wrong token is refused.
#[test]
fn a_hook_never_fails_its_cli_and_says_why_it_was_not_heard() {
    let (dir, _worktrees) = agent_project_with_flags("");
    let coord = Coordinator::start(dir.path());
    let run = |env: &[(&str, &str)]| {
        let mut cmd = common::command(dir.path());
        cmd.args(["hook", "Stop"])
            .env_remove("HEPHAESTUS_SOCKET")
            .env_remove("HEPHAESTUS_AGENT_ID")
            .env_remove("HEPHAESTUS_AGENT_TOKEN")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        // A hook that cannot tell the coordinator exits without reading its input: the write
        // may then meet a closed pipe, as the CLI's own would.
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"hook_event_name":"Stop"}"#);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a hook must not fail its CLI");
        assert!(out.stdout.is_empty(), "a hook's stdout is read by its CLI");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&[]);
    assert!(err.contains("HEPHAESTUS_SOCKET is not set"), "{err}");
    let (agent, _token) = {
        let r = coord.cli(&["agents", "register", "--name", "mine"]);
        (
            r["agent"]["id"].as_str().unwrap().to_string(),
            r["token"].as_str().unwrap().to_string(),
        )
    };
    let socket = coord.socket.display().to_string();
    let err = run(&[
        ("HEPHAESTUS_SOCKET", socket.as_str()),
        ("HEPHAESTUS_AGENT_ID", agent.as_str()),
        ("HEPHAESTUS_AGENT_TOKEN", "not-its-token"),
    ]);
    assert!(err.contains("wrong or missing token"), "{err}");
    let gone = dir.path().join("no.sock").display().to_string();
    let err = run(&[
        ("HEPHAESTUS_SOCKET", gone.as_str()),
        ("HEPHAESTUS_AGENT_ID", agent.as_str()),
        ("HEPHAESTUS_AGENT_TOKEN", "x"),
    ]);
    assert!(err.contains("cannot reach the coordinator"), "{err}");
}

/// Two agents at work on the same file: the conductor compares their work as it stands (not
/// yet committed), logs the overlap on both with the conflict a merge of the two would have,
/// and `status` lists it.
#[test]
fn two_agents_changing_the_same_file_are_seen_to_overlap_before_either_merges() {
    let (dir, _worktrees) = agent_project_with(
        "--forget-to-report",
        "\n[guardian]\nconductor_every_secs = 1\nidle_nudge_secs = 600\n",
    );
    with_rules(dir.path());
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "2"]);
    let _tmux = TmuxServer::of(&coord);
    create(&coord, "WRITE shared.txt: from the first\nSLEEP 2", &[]);
    create(&coord, "WRITE shared.txt: from the second\nSLEEP 2", &[]);
    wait_until("the overlap logged", Duration::from_secs(60), || {
        events_with_detail(dir.path())
            .iter()
            .filter(|(_, k, _)| k == "overlap")
            .count()
            >= 2
    });
    let overlaps: Vec<(String, String)> = events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "overlap")
        .map(|(a, _, m)| (a, m))
        .collect();
    assert_ne!(overlaps[0].0, overlaps[1].0, "logged on both agents");
    assert!(
        overlaps[0]
            .1
            .ends_with("both change shared.txt; merging their work would conflict on shared.txt"),
        "{overlaps:?}"
    );
    let status = coord.cli_text(&["status"]);
    assert!(
        status.contains("overlap: agents ") && status.contains("conflict on shared.txt"),
        "{status}"
    );
    // Logged once, not at every comparison.
    std::thread::sleep(Duration::from_secs(3));
    let again = events_with_detail(dir.path())
        .iter()
        .filter(|(_, k, _)| k == "overlap")
        .count();
    assert_eq!(again, 2);
}

/// Two agents given near-identical tasks overlap before either has changed a file the other
/// has: their tasks' vectors (the memory embedder's; the hashing one here) are alike.
#[test]
fn two_agents_with_near_identical_tasks_are_seen_to_overlap() {
    let (dir, _worktrees) = agent_project_with(
        "--forget-to-report",
        "\n[guardian]\nconductor_every_secs = 1\nidle_nudge_secs = 600\nsimilar_tasks = 0.6\n",
    );
    with_rules(dir.path());
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "3"]);
    let _tmux = TmuxServer::of(&coord);
    let task = "Add a --json flag to the list command that prints the tasks as JSON";
    create(&coord, &format!("{task}\nWRITE first.txt: one"), &[]);
    create(&coord, &format!("{task}\nWRITE second.txt: two"), &[]);
    create(
        &coord,
        "Document the deployment steps in docs/deploy.md\nWRITE third.txt: three",
        &[],
    );
    wait_until("the overlap logged", Duration::from_secs(60), || {
        events_with_detail(dir.path())
            .iter()
            .filter(|(_, k, m)| k == "overlap" && m.contains("have near-identical tasks"))
            .count()
            >= 2
    });
    // Compared again meanwhile: no other pair, and this one not logged again.
    std::thread::sleep(Duration::from_secs(2));
    let overlaps: Vec<String> = events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "overlap")
        .map(|(_, _, m)| m)
        .collect();
    assert_eq!(overlaps.len(), 2, "one pair, logged on both: {overlaps:?}");
    let status = coord.cli_text(&["status"]);
    assert!(status.contains("have near-identical tasks"), "{status}");
}

/// A dialog a project's rule marks as safe to answer (`press`) is answered by the guardian:
/// the CLI waiting at "trust this folder?" goes on, does its task, and the answer is logged.
#[test]
fn a_dialog_safe_to_answer_is_answered_by_its_rule_and_the_agent_goes_on() {
    let (dir, _worktrees) = agent_project_with_flags("--trust-dialog");
    std::fs::create_dir_all(dir.path().join("screen_rules")).unwrap();
    std::fs::write(
        dir.path().join("screen_rules/custom.toml"),
        format!(
            "{RULES}\n[[rule]]\nname = \"trust dialog\"\nstate = \"blocked_screen\"\nall = [\"Do you trust the files in this folder?\"]\nnone = [\"trusted\"]\npress = [\"Enter\"]\n"
        ),
    )
    .unwrap();
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "WRITE trusted.txt: yes", &[]);
    wait_done_and_merged(&coord, &id);
    let answered: Vec<String> = events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "screen_answered")
        .map(|(_, _, m)| m)
        .collect();
    assert_eq!(answered, ["pressed Enter at the trust dialog"]);
}
