//! Agents' start-up under races: a client that lists our tools late, a first turn that ran
//! without them, a coordinator killed while agents start and work, and many launches at once.
//! Real tmux, real git, the real binary and shim; the scripted agent stands in for a CLI.

mod common;

use std::path::Path;
use std::time::Duration;

use common::agent_cli::TmuxServer;
use common::scripted::{
    agent_project, agent_project_with, agent_project_with_flags, create, events,
    events_with_detail, task, wait_done_and_merged, wait_for_event, wait_until,
};
use common::{Coordinator, git};

fn count(kinds: &[(String, String)], kind: &str) -> usize {
    kinds.iter().filter(|(_, k)| k == kind).count()
}

/// A client that connects at once but lists our tools 3 s later gets its first message only
/// after the listing: typed at the connect, its first turn would run without Hephaestus.
#[test]
fn the_first_message_waits_until_the_agents_client_has_listed_our_tools() {
    let (dir, _worktrees) = agent_project_with_flags("--list-tools-delay 3");
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "WRITE listed.txt: after the tools", &[]);
    wait_done_and_merged(&coord, &id);
    assert_eq!(
        git(dir.path(), &["show", "trunk:listed.txt"]),
        "after the tools\n"
    );
    let evs = events(dir.path());
    let at = |kind: &str| {
        evs.iter()
            .position(|(_, k)| k == kind)
            .unwrap_or_else(|| panic!("no {kind} event: {evs:?}"))
    };
    assert!(at("connected") < at("tools_listed"), "{evs:?}");
    assert!(at("tools_listed") < at("prompt_sent"), "{evs:?}");
    assert_eq!(count(&evs, "prompt_sent"), 1, "acted on at once: {evs:?}");
}

/// The first turn ran without our tools (the client listed them again only afterwards) and
/// the agent sits at its prompt: the message is typed again, not just confirmed with Enter.
#[test]
fn a_first_message_whose_turn_ran_without_our_tools_is_typed_again() {
    let (dir, _worktrees) = agent_project_with(
        "--relist-tools-on-first-message",
        "delivery_timeout_secs = 2\n",
    );
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "WRITE again.txt: second time lucky", &[]);
    wait_done_and_merged(&coord, &id);
    let sent: Vec<String> = events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "prompt_sent")
        .map(|(_, _, message)| message)
        .collect();
    assert_eq!(
        sent,
        ["attempt 1 (typed)", "attempt 2 (typed again)"],
        "{sent:?}"
    );
}

/// The coordinator is killed twice with SIGKILL (no shutdown at all), first while agents are
/// starting, then while others work or finish, and started again each time. Whatever state
/// each agent was caught in, every task ends done and merged.
#[test]
fn every_task_survives_a_coordinator_killed_while_agents_start_and_work() {
    let (dir, _worktrees) = agent_project_with_flags("--connect-delay 1");
    let cap = ["--max-concurrent-agents", "3"];
    let mut first = Coordinator::start_with(dir.path(), &cap);
    let _tmux = TmuxServer::of(&first);
    let ids: Vec<String> = (0..6)
        .map(|i| {
            create(
                &first,
                &format!("WRITE killed-{i}.txt: task {i}\nSLEEP 1"),
                &[],
            )
        })
        .collect();
    wait_for_event(dir.path(), "created");
    first.signal(libc::SIGKILL);
    let _ = first.child.wait();
    drop(first);

    let mut second = Coordinator::start_with(dir.path(), &cap);
    wait_until("a task done", Duration::from_secs(60), || {
        ids.iter().any(|id| task(&second, id)["status"] == "done")
    });
    second.signal(libc::SIGKILL);
    let _ = second.child.wait();
    drop(second);

    let third = Coordinator::start_with(dir.path(), &cap);
    for id in &ids {
        wait_done_and_merged(&third, id);
    }
    for i in 0..6 {
        assert_eq!(
            git(dir.path(), &["show", &format!("trunk:killed-{i}.txt")]),
            format!("task {i}\n")
        );
    }
}

/// The coordinator dies right after an agent reported its task done, before it committed,
/// ended and merged the agent (here: the report is written into the database of a killed
/// coordinator by hand). The next coordinator finishes that agent: its work is merged.
#[test]
fn an_agent_whose_report_beat_a_crash_is_finished_by_the_next_coordinator() {
    let (dir, worktrees) = agent_project("");
    let mut first = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&first);
    let id = create(
        &first,
        "WRITE late.txt: reported before the crash\nSLEEP 60",
        &[],
    );
    wait_until("the agent wrote its file", Duration::from_secs(30), || {
        written_in_a_worktree(&worktrees, "late.txt")
    });
    first.signal(libc::SIGKILL);
    let _ = first.child.wait();
    drop(first);
    let db = rusqlite::Connection::open(dir.path().join(".hephaestus/state.db")).unwrap();
    // What update_task_status(done) commits.
    db.execute(
        "UPDATE tasks SET status = 'done', summary = 'wrote late.txt', completed_at = 1 WHERE id = ?1",
        [&id],
    )
    .unwrap();
    db.execute(
        "UPDATE agents SET status = 'idle', current_task_id = NULL WHERE current_task_id = ?1",
        [&id],
    )
    .unwrap();
    drop(db);

    let second = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    wait_done_and_merged(&second, &id);
    assert_eq!(
        git(dir.path(), &["show", "trunk:late.txt"]),
        "reported before the crash\n"
    );
    assert_eq!(count(&events(dir.path()), "died"), 0);
}

fn written_in_a_worktree(worktrees: &Path, file: &str) -> bool {
    std::fs::read_dir(worktrees)
        .map(|entries| entries.flatten().any(|e| e.path().join(file).exists()))
        .unwrap_or(false)
}

/// As many agents as tasks start at once: every worktree is made (libgit2 refused some of
/// them when they were made in parallel), and every task is done and merged.
#[test]
fn many_agents_launched_at_once_all_finish_and_merge() {
    const TASKS: usize = 16;
    let (dir, _worktrees) = agent_project("");
    let cap = TASKS.to_string();
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", &cap]);
    let _tmux = TmuxServer::of(&coord);
    let ids: Vec<String> = (0..TASKS)
        .map(|i| create(&coord, &format!("WRITE many-{i}.txt: agent {i}"), &[]))
        .collect();
    for id in &ids {
        wait_done_and_merged(&coord, id);
    }
    let evs = events(dir.path());
    assert_eq!(count(&evs, "launch_failed"), 0, "{evs:?}");
    assert_eq!(count(&evs, "created"), TASKS, "{evs:?}");
}

/// The configured CLI is not installed: the coordinator says so at start (`status`,
/// `health_check`), and a task fails at once with that cause, not after a timeout.
#[test]
fn a_cli_that_is_not_installed_is_named_as_such_at_once() {
    let (dir, _worktrees) = agent_project("");
    let config = dir.path().join("hephaestus.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("cli = \"custom\"", "cli = \"claude\"");
    std::fs::write(&config, text).unwrap();
    // tmux, git and python3, but no claude.
    let coord =
        Coordinator::start_with_env(dir.path(), &[], &[("PATH", "/usr/local/bin:/usr/bin:/bin")]);
    let _tmux = TmuxServer::of(&coord);
    let status = coord.cli_text(&["status"]);
    assert!(
        status.contains("agents cannot start: claude: not found on PATH"),
        "{status}"
    );
    let mut shim = common::RawShim::spawn(&coord, None);
    shim.initialize("person");
    let health = shim.tool_ok("health_check", serde_json::json!({}));
    assert!(
        health["agents_problem"]
            .as_str()
            .is_some_and(|p| p.contains("install it, or set agents.cli")),
        "{health}"
    );
    let started = std::time::Instant::now();
    let id = create(&coord, "anything", &[]);
    wait_until("the task failed", Duration::from_secs(20), || {
        task(&coord, &id)["status"] == "failed"
    });
    let reason = task(&coord, &id)["failure_reason"].to_string();
    assert!(
        reason.contains("the claude CLI cannot start: claude: not found on PATH"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "at once, not after a timeout"
    );
}

/// A CLI whose program exits at once is said to have exited, with its status, and the next
/// attempts come right after (no ready timeout is waited out).
#[test]
fn a_cli_that_exits_at_once_is_said_to_have_exited() {
    let (dir, _worktrees) = agent_project("");
    let config = dir.path().join("hephaestus.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("custom_command") {
                "custom_command = \"echo 'no licence found' && exit 3\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).unwrap();
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "anything", &[]);
    // Three attempts; each would take the 20 s ready timeout if the exit went unseen.
    wait_until("the task failed", Duration::from_secs(30), || {
        task(&coord, &id)["status"] == "failed"
    });
    let reason = task(&coord, &id)["failure_reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("the custom CLI exited with status 3"),
        "{reason}\n{}",
        coord.stderr()
    );
    assert!(reason.contains("no licence found"), "{reason}");
    assert!(reason.contains("the launch failed 3 times"), "{reason}");
}
