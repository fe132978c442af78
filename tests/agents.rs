//! The agent manager end to end: real tmux, real git repositories, the real binary and shim, and
//! a scripted agent program (tests/fixtures/scripted_agent.py) standing in for an agent CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::agent_cli::TmuxServer;
use common::scripted::{
    agent_project, agent_project_with_flags, create, events, task, wait_done_and_merged,
    wait_for_event, wait_until,
};
use common::{Coordinator, git, project};
use serde_json::Value;

/// A tmux session and a worktree that no agent in the database owns, as a crash leaves them.
fn make_orphans(dir: &Path, tmux: &TmuxServer, worktrees: &Path, id8: &str) -> PathBuf {
    let session = format!("hep-{id8}");
    let out = Command::new("tmux")
        .args([
            "-L",
            &tmux.0,
            "new-session",
            "-d",
            "-s",
            &session,
            "sleep 300",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::create_dir_all(worktrees).unwrap();
    let orphan = worktrees.join(format!("agent-{id8}"));
    git(
        dir,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("hephaestus/agent-{id8}"),
            orphan.to_str().unwrap(),
        ],
    );
    orphan
}

#[test]
fn dependent_tasks_run_to_completion_under_the_cap_and_merge_into_the_base_branch() {
    let (dir, worktrees) = agent_project("");
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    // A file of the user's own, uncommitted, in their checkout: merges must not touch it.
    std::fs::write(dir.path().join("notes.txt"), "my uncommitted notes\n").unwrap();

    // What an earlier agent learned reaches the agent whose task it is about.
    let mut person = common::RawShim::spawn(&coord, None);
    person.initialize("claude-code");
    person.tool_ok(
        "save_memory",
        serde_json::json!({"content": "a.txt must hold alpha, written in lower case", "memory_type": "decision"}),
    );
    let a = create(&coord, "WRITE a.txt: alpha", &[]);
    let b = create(&coord, "WRITE b.txt: beta", &[&a]);
    let c = create(&coord, "WRITE c.txt: gamma", &[]);
    for id in [&a, &b, &c] {
        wait_until(
            "all three tasks done and merged",
            Duration::from_secs(90),
            || {
                let t = task(&coord, id);
                t["status"] == "done" && t["merge_status"] == "merged"
            },
        );
    }
    assert_eq!(git(dir.path(), &["show", "trunk:a.txt"]), "alpha\n");
    assert_eq!(git(dir.path(), &["show", "trunk:b.txt"]), "beta\n");
    assert_eq!(git(dir.path(), &["show", "trunk:c.txt"]), "gamma\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "my uncommitted notes\n"
    );
    // trunk is checked out: the merged files are in the user's checkout too, and `git status`
    // shows no tracked change, so none of the agents' work as a reversal.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        git(
            dir.path(),
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        ""
    );
    assert_eq!(task(&coord, &b)["summary"], "wrote b.txt");
    let first_agent = task(&coord, &a)["assigned_agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let first_message = std::fs::read_to_string(
        dir.path()
            .join(".hephaestus/agents")
            .join(&first_agent[..8])
            .join("first_message.md"),
    )
    .unwrap();
    assert!(
        first_message.contains("a.txt must hold alpha, written in lower case"),
        "{first_message}"
    );
    assert!(
        first_message.contains("WRITE a.txt: alpha"),
        "{first_message}"
    );

    // With a cap of one, each agent ended before the next was created.
    let evs = events(dir.path());
    let mut running: Option<String> = None;
    let mut created = 0;
    for (agent, kind) in &evs {
        match kind.as_str() {
            "created" => {
                assert!(
                    running.is_none(),
                    "agent {agent} started while {running:?} ran: {evs:?}"
                );
                running = Some(agent.clone());
                created += 1;
            }
            "terminated" if running.as_deref() == Some(agent.as_str()) => running = None,
            _ => {}
        }
    }
    assert_eq!(created, 3, "{evs:?}");
    // The first message was delivered, and confirmed, for every agent.
    assert_eq!(
        evs.iter().filter(|(_, k)| k == "prompt_delivered").count(),
        3,
        "{evs:?}"
    );

    // Merged agents leave no worktree and no branch behind; their sessions are gone.
    wait_until("worktrees removed", Duration::from_secs(10), || {
        std::fs::read_dir(&worktrees)
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    });
    assert!(
        git(dir.path(), &["branch", "--list", "hephaestus/*"])
            .trim()
            .is_empty()
    );
    let agents = coord.cli(&["agents", "list", "--all"]);
    let managed: Vec<&Value> = agents
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "managed")
        .collect();
    assert_eq!(managed.len(), 3);
    assert!(
        managed.iter().all(|a| a["status"] == "terminated"),
        "{agents}"
    );
}

/// The user has the base branch checked out and is editing the very file an agent changed: the
/// merge waits (the user's edit is never overwritten) and goes through once the edit is gone.
#[test]
fn a_merge_waits_while_the_user_edits_a_file_it_changes() {
    let (dir, _worktrees) = agent_project("");
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    std::fs::write(dir.path().join("README.md"), "the user's draft\n").unwrap();
    let id = create(&coord, "WRITE README.md: written by the agent", &[]);
    wait_until("the merge waiting", Duration::from_secs(60), || {
        task(&coord, &id)["merge_status"] == "waiting"
    });
    let t = task(&coord, &id);
    assert_eq!(t["status"], "done");
    assert_eq!(
        t["merge_conflict_files"],
        serde_json::json!(["README.md"]),
        "{t}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("README.md")).unwrap(),
        "the user's draft\n"
    );
    assert_eq!(git(dir.path(), &["show", "trunk:README.md"]), "demo\n");
    let evs = events(dir.path());
    assert_eq!(
        evs.iter().filter(|(_, k)| k == "merge_waiting").count(),
        1,
        "{evs:?}"
    );

    // The user drops the draft; the next try merges.
    git(dir.path(), &["checkout", "--", "README.md"]);
    wait_until("the merge done", Duration::from_secs(30), || {
        task(&coord, &id)["merge_status"] == "merged"
    });
    assert_eq!(
        git(dir.path(), &["show", "trunk:README.md"]),
        "written by the agent\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("README.md")).unwrap(),
        "written by the agent\n"
    );
    assert_eq!(
        git(
            dir.path(),
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        ""
    );
    assert!(
        git(dir.path(), &["branch", "--list", "hephaestus/*"])
            .trim()
            .is_empty(),
        "a merged branch is deleted"
    );
}

#[test]
fn a_conflicting_merge_is_left_undone_and_a_follow_up_resolves_it() {
    let (dir, _worktrees) = agent_project("");
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "2"]);
    let _tmux = TmuxServer::of(&coord);
    let first = create(&coord, "WRITE same.txt: from the first agent", &[]);
    let second = create(
        &coord,
        "SLEEP 2\nWRITE same.txt: from the second agent",
        &[],
    );

    wait_until("both tasks done", Duration::from_secs(90), || {
        task(&coord, &first)["status"] == "done" && task(&coord, &second)["status"] == "done"
    });
    wait_until(
        "the second merge to conflict",
        Duration::from_secs(30),
        || task(&coord, &second)["merge_status"] == "conflict",
    );
    assert_eq!(task(&coord, &first)["merge_status"], "merged");
    assert_eq!(
        task(&coord, &second)["merge_conflict_files"],
        serde_json::json!(["same.txt"])
    );

    // The follow-up starts from the conflicting work, merges trunk into it, and then merges back.
    let follow_up = || {
        coord
            .cli(&["task", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|t| {
                t["description"]
                    .as_str()
                    .unwrap()
                    .starts_with("Resolve the merge conflict")
            })
            .cloned()
    };
    wait_until("a follow-up task", Duration::from_secs(10), || {
        follow_up().is_some()
    });
    let fid = follow_up().unwrap()["id"].as_str().unwrap().to_string();
    wait_until("the follow-up merged", Duration::from_secs(90), || {
        let t = task(&coord, &fid);
        t["status"] == "done" && t["merge_status"] == "merged"
    });
    assert_eq!(
        git(dir.path(), &["show", "trunk:same.txt"]),
        "from the second agent\n"
    );
    let log = git(dir.path(), &["log", "--format=%s", "trunk"]);
    assert!(log.lines().any(|l| l.starts_with("Merge ")), "{log}");
}

#[test]
fn an_agent_that_dies_has_its_task_requeued_and_continued() {
    let (dir, _worktrees) = agent_project("");
    let marker = dir.path().with_extension("crash-marker");
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(
        &coord,
        &format!("CRASH_ONCE {}\nWRITE k.txt: survived", marker.display()),
        &[],
    );
    wait_until(
        "the task done after a retry",
        Duration::from_secs(90),
        || {
            let t = task(&coord, &id);
            t["status"] == "done" && t["merge_status"] == "merged"
        },
    );
    assert_eq!(git(dir.path(), &["show", "trunk:k.txt"]), "survived\n");
    let evs = events(dir.path());
    assert_eq!(
        evs.iter().filter(|(_, k)| k == "died").count(),
        1,
        "{evs:?}"
    );
    assert_eq!(
        evs.iter().filter(|(_, k)| k == "created").count(),
        2,
        "{evs:?}"
    );
}

/// The coordinator restarts while an agent is still starting (its CLI has not connected yet). The
/// new coordinator adopts the half-launched agent: it waits for the agent's shim, delivers the
/// first message once, and the task completes, with no second agent spawned for it.
#[test]
fn a_launch_interrupted_by_a_restart_is_resumed_by_the_next_coordinator() {
    let (dir, _worktrees) = agent_project_with_flags("--connect-delay 4");
    let mut first = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let tmux = TmuxServer::of(&first);
    let id = create(&first, "WRITE resumed.txt: after a restart", &[]);
    wait_for_event(dir.path(), "created");
    let stopped = Instant::now();
    assert!(first.stop().success(), "{}", first.stderr());
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "a launch waiting for its agent does not hold up shutdown"
    );
    drop(first);
    let db = rusqlite::Connection::open(dir.path().join(".hephaestus/state.db")).unwrap();
    let status: String = db
        .query_row("SELECT status FROM tasks WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "assigned", "an interrupted launch is not a failure");
    drop(db);

    let second = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    wait_done_and_merged(&second, &id);
    assert_eq!(
        git(dir.path(), &["show", "trunk:resumed.txt"]),
        "after a restart\n"
    );
    let evs = events(dir.path());
    let count = |kind: &str| evs.iter().filter(|(_, k)| k == kind).count();
    assert_eq!(count("created"), 1, "{evs:?}");
    assert_eq!(count("launch_resumed"), 1, "{evs:?}");
    assert_eq!(count("prompt_sent"), 1, "typed once: {evs:?}");
    assert_eq!(count("prompt_delivered"), 1, "{evs:?}");
    drop(tmux);
}

/// The coordinator stops after typing the first message and pressing Enter, but before the agent
/// acted on it (it is still thinking). The next coordinator only confirms with Enter: the message
/// is not typed a second time, and the agent's late first tool call counts as the delivery.
#[test]
fn a_message_typed_before_a_restart_is_not_typed_again() {
    let (dir, _worktrees) = agent_project_with_flags("--think-delay 8");
    let mut first = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let tmux = TmuxServer::of(&first);
    let id = create(&first, "WRITE typed.txt: once", &[]);
    wait_for_event(dir.path(), "prompt_sent");
    assert!(first.stop().success(), "{}", first.stderr());
    drop(first);
    let evs = events(dir.path());
    assert!(
        !evs.iter().any(|(_, k)| k == "prompt_delivered"),
        "stopped before the agent acted: {evs:?}"
    );

    let second = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    wait_done_and_merged(&second, &id);
    assert_eq!(
        task(&second, &id)["summary"],
        "wrote typed.txt; the task was typed in 1 time(s)"
    );
    let evs = events(dir.path());
    let count = |kind: &str| evs.iter().filter(|(_, k)| k == kind).count();
    assert_eq!(count("created"), 1, "{evs:?}");
    assert_eq!(count("launch_resumed"), 1, "{evs:?}");
    assert_eq!(count("prompt_delivered"), 1, "{evs:?}");
    assert!(count("prompt_sent") >= 2, "Enter pressed again: {evs:?}");
    drop(tmux);
}

/// The coordinator stopped after it had claimed a task for an agent but before the agent's
/// session started (here: the session is gone and the database never recorded it). The next
/// coordinator does not wait for an agent that will never connect: it requeues the task, ends the
/// half-made agent and removes its worktree, and a new agent does the task.
#[test]
fn a_launch_interrupted_before_its_session_started_is_requeued() {
    let (dir, _worktrees) = agent_project_with_flags("--connect-delay 4");
    let mut first = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let tmux = TmuxServer::of(&first);
    let id = create(&first, "WRITE requeued.txt: by the second agent", &[]);
    wait_for_event(dir.path(), "created");
    assert!(first.stop().success(), "{}", first.stderr());
    drop(first);
    let db = rusqlite::Connection::open(dir.path().join(".hephaestus/state.db")).unwrap();
    let (agent, session, worktree): (String, String, String) = db
        .query_row(
            "SELECT id, tmux_session, worktree_path FROM agents WHERE kind = 'managed'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let killed = Command::new("tmux")
        .args(["-L", &tmux.0, "kill-session", "-t", &format!("={session}")])
        .status()
        .unwrap();
    assert!(killed.success());
    db.execute(
        "UPDATE agents SET tmux_session = NULL WHERE id = ?1",
        [&agent],
    )
    .unwrap();
    drop(db);

    let second = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    wait_done_and_merged(&second, &id);
    assert_eq!(
        git(dir.path(), &["show", "trunk:requeued.txt"]),
        "by the second agent\n"
    );
    let evs = events(dir.path());
    let of_first = |kind: &str| evs.iter().filter(|(a, k)| a == &agent && k == kind).count();
    assert_eq!(of_first("launch_interrupted"), 1, "{evs:?}");
    assert_eq!(of_first("launch_resumed"), 0, "{evs:?}");
    assert_eq!(of_first("prompt_sent"), 0, "{evs:?}");
    let done_by = task(&second, &id)["assigned_agent_id"].clone();
    assert!(
        done_by.is_string() && done_by != serde_json::json!(agent),
        "a new agent did the task: {done_by}"
    );
    assert!(
        !Path::new(&worktree).exists(),
        "the first agent's worktree is removed"
    );
    let status: String = rusqlite::Connection::open(dir.path().join(".hephaestus/state.db"))
        .unwrap()
        .query_row("SELECT status FROM agents WHERE id = ?1", [&agent], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "terminated");
}

#[test]
fn a_cli_that_never_connects_fails_its_task_with_what_the_terminal_showed() {
    let dir = project();
    git(dir.path(), &["checkout", "-q", "-b", "trunk"]);
    git(
        dir.path(),
        &["commit", "-q", "--allow-empty", "-m", "initial"],
    );
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        format!(
            "[agents]\ncli = \"custom\"\ncustom_command = \"echo 'please log in first'; sleep 600\"\nworktrees_dir = \"{}\"\nready_timeout_secs = 2\n",
            dir.path().with_extension("wt").display()
        ),
    )
    .unwrap();
    let coord = Coordinator::start_with(dir.path(), &[]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "anything", &[]);
    wait_until("the task failed", Duration::from_secs(30), || {
        task(&coord, &id)["status"] == "failed"
    });
    let reason = task(&coord, &id)["failure_reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("custom CLI did not connect"), "{reason}");
    assert!(reason.contains("please log in first"), "{reason}");
    // Not connecting is the CLI's failure, not the task's: each of the default 3 attempts got
    // a new agent before the task failed.
    assert!(reason.contains("the launch failed 3 times"), "{reason}");
    let evs = events(dir.path());
    assert_eq!(
        evs.iter().filter(|(_, k)| k == "launch_failed").count(),
        3,
        "{evs:?}"
    );
}

#[test]
fn people_can_watch_message_stop_and_clean_up_agents() {
    let (dir, worktrees) = agent_project("");
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let tmux = TmuxServer::of(&coord);
    let id = create(&coord, "SLEEP 60\nWRITE never.txt: x", &[]);
    wait_until("the agent at work", Duration::from_secs(60), || {
        events(dir.path())
            .iter()
            .any(|(_, k)| k == "prompt_delivered")
    });
    let listed = coord.cli(&["agents"]);
    let agent = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "managed")
        .unwrap()
        .clone();
    let agent_id = agent["id"].as_str().unwrap().to_string();
    assert_eq!(agent["current_task_id"], serde_json::json!(id));
    assert_eq!(agent["status"], "working");
    // The pane's last line: the agent may already have moved on from the message to the work.
    let last = agent["last_output"].as_str().unwrap();
    assert!(
        last.starts_with("received a first message of") || last == "working: sleeping 60 s",
        "{agent}"
    );

    // Another agent's message (here: a person's own MCP session) waits until the agent is
    // between turns, then is typed into its terminal.
    let mut person = common::RawShim::spawn(&coord, None);
    person.initialize("claude-code");
    let sent = person.tool_ok(
        "send_message",
        serde_json::json!({"recipient_agent_id": agent_id, "message": "the API moved to v2"}),
    );
    assert_eq!(sent["recipients"], serde_json::json!([agent_id]));
    wait_until(
        "the message typed into the pane",
        Duration::from_secs(20),
        || {
            events(dir.path())
                .iter()
                .any(|(_, k)| k == "messages_typed")
        },
    );
    wait_until("the message visible", Duration::from_secs(10), || {
        coord.cli(&["agents"]).as_array().unwrap().iter().any(|a| {
            a["last_output"]
                .as_str()
                .is_some_and(|l| l.contains("the API moved to v2"))
        })
    });

    // A person's message is typed into the agent's terminal (the tty echoes it).
    coord.cli(&["agents", "send", &agent_id[..8], "please hurry"]);
    wait_until("the message in the pane", Duration::from_secs(10), || {
        coord.cli(&["agents"])[0]["last_output"]
            .as_str()
            .is_some_and(|l| l.contains("please hurry"))
    });

    // Stopping it fails the task (no retry) and keeps its branch.
    let stopped = coord.cli(&["agents", "kill", &agent_id[..8]]);
    assert!(
        stopped.as_str().unwrap().contains("stopped agent"),
        "{stopped}"
    );
    let t = task(&coord, &id);
    assert_eq!(t["status"], "failed");
    assert!(
        t["failure_reason"]
            .as_str()
            .unwrap()
            .contains("stopped by a person")
    );
    let branch = format!("hephaestus/agent-{}", &agent_id[..8]);
    assert!(git(dir.path(), &["branch", "--list", &branch]).contains(&branch));
    std::thread::sleep(Duration::from_secs(3));
    let managed = |v: Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "managed")
            .cloned()
            .collect()
    };
    assert_eq!(
        managed(coord.cli(&["agents", "list", "--all"]))[0]["status"],
        "terminated"
    );
    assert!(
        managed(coord.cli(&["agents"])).is_empty(),
        "no agent was started for a killed task"
    );

    // Leftovers no agent owns: a session on our tmux server and a worktree; and the dir of the
    // agent that was stopped (its CLI config and token), once it is a minute old.
    let agent_dir = dir.path().join(".hephaestus/agents").join(&agent_id[..8]);
    assert!(agent_dir.is_dir());
    let young = coord.cli(&["agents", "gc"]);
    assert_eq!(
        young["agent_dirs_removed"],
        serde_json::json!([]),
        "{young}"
    );
    assert!(agent_dir.is_dir());
    let aged = Command::new("touch")
        .args(["-d", "2 minutes ago"])
        .arg(&agent_dir)
        .status()
        .unwrap();
    assert!(aged.success());
    let orphan = make_orphans(dir.path(), &tmux, &worktrees, "cafebabe");
    let report = coord.cli(&["agents", "gc"]);
    assert_eq!(
        report["agent_dirs_removed"],
        serde_json::json!([agent_dir.display().to_string()]),
        "{report}"
    );
    assert!(!agent_dir.exists());
    assert_eq!(
        report["sessions_killed"],
        serde_json::json!(["hep-cafebabe"]),
        "{report}"
    );
    assert_eq!(
        report["worktrees_removed"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert!(!orphan.exists());
    let again = coord.cli(&["agents", "gc"]);
    assert_eq!(again["sessions_killed"], serde_json::json!([]));
}

#[test]
fn leftovers_of_a_previous_run_are_swept_at_start() {
    let (dir, worktrees) = agent_project("");
    let first = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let tmux = TmuxServer::of(&first);
    drop(first);
    let orphan = make_orphans(dir.path(), &tmux, &worktrees, "0badf00d");
    let _coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    wait_until("the orphans swept", Duration::from_secs(10), || {
        !orphan.exists()
            && !Command::new("tmux")
                .args(["-L", &tmux.0, "has-session", "-t", "=hep-0badf00d"])
                .status()
                .unwrap()
                .success()
    });
    assert!(
        git(
            dir.path(),
            &["branch", "--list", "hephaestus/agent-0badf00d"]
        )
        .contains("0badf00d"),
        "unmerged work is kept"
    );
}
