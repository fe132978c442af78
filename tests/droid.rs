//! The real Droid CLI (Factory's `droid`) with the Factory home our droid adapter builds: its
//! `.factory/mcp.json` must start our shim with the agent's identity, its `settings.json` must
//! choose the model and make Droid wait for our MCP server (here slow to start on purpose) before
//! its first model request, and the user's own models (`config.json`, bring-your-own-key) must reach it
//! through the adapter's link. The scripted model, a stand-in for the Responses API, loads our
//! deferred tools with Droid's ToolSearch, calls `get_task`, writes a file with Droid's Create
//! tool and reports the task done.
//!
//! This runs `droid exec`, not the interactive CLI the agent manager types into: interactive
//! Droid 0.225 needs a Factory login even for your own models ("Please login with your Factory
//! account to continue."), and `exec` does not. The adapter's own flags are kept; only `exec`
//! and the prompt are added.
//!
//! Needs `droid` (npm `@factory/cli`): `.ci/run` installs the pinned version into
//! `target/agent-clis`. Without it the test prints why and passes.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Coordinator;
use common::agent_cli;
use common::responses_api::{Answer, StandIn, Turn};
use hephaestus::agents::adapters::{self, AgentLaunch, CliKind, Host};
use serde_json::json;

const SUMMARY: &str = "droid stand-in finished";
const NOTE_FILE: &str = "DROID_WAS_HERE.md";
const NOTE_TEXT: &str = "Written by the Create tool of Droid, scripted by the stand-in.\n";
/// In the user's own `~/.factory/config.json`: the model requests must carry it.
const API_KEY: &str = "sk-stand-in-droid-0123456789";
/// Droid names an MCP server's tools `<server>___<tool>`.
const GET_TASK: &str = "hephaestus___get_task";
const UPDATE_STATUS: &str = "hephaestus___update_task_status";

/// The script. The conversation itself is the state: the next step follows from the last
/// function the "model" called.
fn script(turn: &Turn) -> Answer {
    let text = turn.all_text();
    // The system prompt from the adapter's --append-system-prompt-file names the worktree.
    let worktree = text
        .split_once("your own git worktree (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(w, _)| w.to_string());
    match turn.last_call.as_deref() {
        None if turn.offers(GET_TASK) => {
            Answer::call("I will read my task first.", None, GET_TASK, json!({}))
        }
        None if text.contains(GET_TASK) && turn.offers("ToolSearch") => Answer::call(
            "Loading the Hephaestus tools.",
            None,
            "ToolSearch",
            json!({"query": format!("select:{GET_TASK},{UPDATE_STATUS}")}),
        ),
        None => Answer::text("I have no Hephaestus tools."),
        Some("ToolSearch") => Answer::call("I will read my task first.", None, GET_TASK, json!({})),
        Some(GET_TASK) => match worktree {
            Some(w) => Answer::call(
                "Leaving a note in my worktree.",
                None,
                "Create",
                json!({"file_path": format!("{w}/{NOTE_FILE}"), "content": NOTE_TEXT}),
            ),
            None => Answer::text("My system prompt does not say where I work."),
        },
        Some("Create") => Answer::call(
            "Reporting the task done.",
            None,
            UPDATE_STATUS,
            json!({"status": "done", "summary": SUMMARY}),
        ),
        Some(_) => Answer::text("The task is done and reported."),
    }
}

/// What the agent manager does with a launch spec before it starts the CLI.
fn write_spec(spec: &adapters::LaunchSpec) {
    for (path, text) in &spec.files {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for (link, target) in &spec.links {
        if target.exists() {
            std::os::unix::fs::symlink(target, link).unwrap();
        }
    }
}

#[test]
fn droid_runs_our_factory_home_and_reports_its_task_done_through_the_shim() {
    let Some(droid) = agent_cli::find_cli("droid") else {
        eprintln!(
            "skipped: Droid is not installed (not on PATH, not in target/agent-clis); .ci/run installs it"
        );
        return;
    };
    let version = Command::new(&droid).arg("--version").output().unwrap();
    assert!(
        version.status.success(),
        "{} --version failed: {}{}",
        droid.display(),
        String::from_utf8_lossy(&version.stdout),
        String::from_utf8_lossy(&version.stderr)
    );
    eprintln!(
        "using {} ({})",
        droid.display(),
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let started = Instant::now();

    let stand_in = StandIn::start(script);
    let dir = common::project();
    let coord = Coordinator::start(dir.path());
    let (agent_id, token) = coord.register_agent("droid-agent");
    let task_id = coord.create_task("Leave a note for the team in DROID_WAS_HERE.md");
    coord.cli(&["task", "assign", &task_id, "--agent", &agent_id]);

    // The user's own models, as `droid` itself keeps them: reachable only through the link.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".factory")).unwrap();
    std::fs::write(
        home.path().join(".factory/config.json"),
        json!({"custom_models": [{
            "model_display_name": "Responses API stand-in", "model": "stand-in-model",
            "base_url": stand_in.url, "api_key": API_KEY, "provider": "openai", "max_tokens": 4096
        }]})
        .to_string(),
    )
    .unwrap();
    let worktree = tempfile::tempdir().unwrap();
    // Our MCP server takes 3 s to come up, as on a loaded machine: Droid sends its first model
    // request about half a second after start, so only the adapter's `blockOnMcpLoad` gets our
    // tools into that request.
    let slow_shim = home.path().join("slow-hephaestus");
    std::fs::write(
        &slow_shim,
        format!(
            "#!/bin/sh\nsleep 3\nexec {} \"$@\"\n",
            adapters::shell_quote(&common::bin().display().to_string())
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &slow_shim,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let launch = AgentLaunch {
        agent_id: agent_id.clone(),
        token,
        exe: slow_shim,
        socket: coord.socket.clone(),
        worktree: worktree.path().to_path_buf(),
        agent_dir: adapters::agent_dir(&dir.path().join(".hephaestus"), &agent_id[..8]),
        system_prompt: format!(
            "You are a Hephaestus agent. You work in your own git worktree ({}).",
            worktree.path().display()
        ),
        model: Some("custom:stand-in-model".into()),
        custom_command: None,
        codex_config: None,
    };
    let host = Host {
        home: Some(home.path().to_path_buf()),
        ..Host::default()
    };
    let spec = adapters::launch_spec_on(CliKind::Droid, &launch, &host).unwrap();
    write_spec(&spec);
    let command = format!(
        "{} '{}'",
        spec.command.replacen(
            "droid ",
            &format!(
                "{} exec ",
                adapters::shell_quote(&droid.display().to_string())
            ),
            1
        ),
        "Read your task with get_task, do it, then report it done."
    );

    let mut cmd = Command::new("sh");
    for (k, _) in std::env::vars() {
        // Whatever the developer's shell, or a Droid session running these tests, set.
        if k.starts_with("FACTORY_") || k.starts_with("DROID_") || k.starts_with("HEPHAESTUS_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("-c")
        .arg(&command)
        .current_dir(worktree.path())
        .envs(&spec.env)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let printed = format!(
        "{command}\nexited with {status}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let on_failure = |what: &str| {
        stand_in.log.print("Droid");
        agent_cli::print_coordinator_tail(&coord);
        format!("{what}\n{printed}")
    };

    let task = coord.cli(&["task", "show", &task_id]);
    if task["status"] != "done" {
        panic!("{}", on_failure(&format!("the task is not done: {task}")));
    }
    assert_eq!(task["summary"], SUMMARY, "{}", on_failure("wrong summary"));
    let results = stand_in.log.results();
    let get_task = results
        .iter()
        .find(|(n, _)| n == GET_TASK)
        .unwrap_or_else(|| panic!("{}", on_failure("no get_task output reached the model")));
    assert!(
        get_task.1.contains(&task_id),
        "{}",
        on_failure(&format!(
            "get_task did not return this task: {}",
            get_task.1
        ))
    );
    assert_eq!(
        std::fs::read_to_string(worktree.path().join(NOTE_FILE))
            .ok()
            .as_deref(),
        Some(NOTE_TEXT),
        "{}",
        on_failure("the Create tool did not write the note")
    );
    // The model was the one `settings.json` chose, from the user's linked `config.json`.
    let requests = stand_in.log.model_requests();
    assert!(
        requests.len() >= 4,
        "{}",
        on_failure("too few model requests")
    );
    for s in &requests {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {API_KEY}").as_str()),
            "{}",
            on_failure(&s.line)
        );
    }
    assert!(
        !Path::new(&worktree.path().join(".factory")).exists(),
        "droid wrote its config into the worktree"
    );
    eprintln!(
        "Droid finished its task in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    stand_in.log.print("Droid");
}

/// `hephaestus mcp-config --client droid` as a user registers it, in their own `~/.factory`:
/// `droid mcp list` starts the server and reports it connected (no Factory login needed).
#[test]
fn droid_connects_to_the_mcp_config_snippet_in_the_users_factory_home() {
    let Some(droid) = agent_cli::find_cli("droid") else {
        eprintln!("skipped: Droid is not installed; .ci/run installs it");
        return;
    };
    let dir = common::project();
    let coord = Coordinator::start(dir.path());
    let snippet = common::command(dir.path())
        .args(["mcp-config", "--client", "droid"])
        .output()
        .unwrap();
    assert!(snippet.status.success(), "{snippet:?}");
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".factory")).unwrap();
    std::fs::write(home.path().join(".factory/mcp.json"), &snippet.stdout).unwrap();

    let mut cmd = Command::new(&droid);
    for (k, _) in std::env::vars() {
        if k.starts_with("FACTORY_") || k.starts_with("DROID_") || k.starts_with("HEPHAESTUS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["mcp", "list"])
        .current_dir(dir.path())
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        // `  hephaestus  stdio  connected  [user]`
        text.lines().any(|l| l
            .split_whitespace()
            .take(3)
            .eq(["hephaestus", "stdio", "connected"])),
        "droid mcp list did not report our server connected:\n{text}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        coord.stderr()
    );
}

/// The agent manager with `cli = "droid"`, no Factory login: the real CLI, started in tmux with
/// the adapter's command line, stops at its login screen, which the guardian reads as a blocked
/// screen, and the task fails with what the terminal showed. When this stops failing that way,
/// Droid runs without a login and the manager can drive it end to end like Claude Code and
/// Codex. With `HEPHAESTUS_CAPTURE_PANES=1` the login pane becomes the guardian's fixture.
#[test]
fn droid_without_a_factory_login_is_seen_blocked_and_fails_its_task_with_the_login_screen() {
    let Some(droid) = agent_cli::find_cli("droid") else {
        eprintln!("skipped: Droid is not installed; .ci/run installs it");
        return;
    };
    let dir = common::project();
    common::git(dir.path(), &["checkout", "-q", "-b", "trunk"]);
    std::fs::write(
        dir.path().join(".gitignore"),
        ".hephaestus/\nserve.stderr\n",
    )
    .unwrap();
    common::git(dir.path(), &["add", "."]);
    common::git(dir.path(), &["commit", "-q", "-m", "initial"]);
    let worktrees = dir.path().with_extension("worktrees");
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        format!(
            "[agents]\nmax_attempts = 1\ncli = \"droid\"\nworktrees_dir = \"{}\"\nready_timeout_secs = 20\n",
            worktrees.display()
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let home_dir = home.path().display().to_string();
    let coord = agent_cli::start_coordinator(
        dir.path(),
        droid.parent().unwrap(),
        &["FACTORY_", "DROID_", "XDG_"],
        &[("HOME", home_dir.as_str())],
    );
    let tmux = agent_cli::TmuxServer::of(&coord);
    let mut panes = agent_cli::PaneFixtures::new("droid", &droid, &tmux);
    let id = coord.create_task("Leave a note for the team");
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen_blocked = false;
    let task = loop {
        let t = coord.cli(&["task", "show", &id]);
        if t["status"] == "failed" {
            break t;
        }
        if !seen_blocked
            && agent_cli::managed_agent_state(&coord).is_some_and(|s| s == "blocked_screen")
        {
            seen_blocked = true;
            panes.capture("login", "blocked_screen", false);
        }
        assert!(
            Instant::now() < deadline,
            "the task neither ran nor failed: {t}\n{}",
            tmux.panes()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        seen_blocked,
        "the guardian never read the login screen as blocked_screen"
    );
    let reason = task["failure_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Please login with your Factory account to continue."),
        "{reason}"
    );
    eprintln!("the task failed as expected: {reason}");
}
