//! The real Codex CLI end to end: the agent manager spawns `codex` in tmux (`agents.cli =
//! "codex"`), Codex talks to a scripted stand-in for the OpenAI Responses API served by this
//! test (a model provider from `[agents.codex_config]`, streamed as the real API streams), and
//! the model's calls go through our shim to the coordinator: `get_task`, a file written with
//! Codex's own `exec_command` tool, then `update_task_status` done. The work is merged into the
//! base branch.
//!
//! Needs `codex` (npm `@openai/codex`): `.ci/run` installs the pinned version into
//! `target/agent-clis`. Without it the test prints why and passes.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::agent_cli::{self, Forgetful, TmuxServer};
use common::responses_api::{Answer, Log, StandIn, Turn};
use common::{Coordinator, git};
use serde_json::json;

/// Codex offers each MCP server's tools as one namespace, `mcp__<server>`.
const NAMESPACE: &str = "mcp__hephaestus";
const SUMMARY: &str = "codex stand-in finished";
const NOTE_FILE: &str = "CODEX_WAS_HERE.md";
const NOTE_TEXT: &str = "Written by the exec_command tool of Codex, scripted by the stand-in.";
/// The user's login, in the test HOME's `~/.codex/auth.json`: the agent must send it.
const API_KEY: &str = "sk-stand-in-codex-0123456789";

/// How the stand-in "model" goes about the task.
enum Behaviour {
    /// Reads the task, writes the note, reports it done.
    Reports,
    /// Thinks for `agent_cli::HOLD` over its first step, writes the note, then ends its turn
    /// without reporting; it reports only once reminded.
    ForgetsToReport(Arc<Forgetful>),
}

/// The script. The conversation itself is the state: the next step follows from the last
/// function the "model" called, so a retried request gets the same answer.
fn script(turn: &Turn, behaviour: &Behaviour) -> Answer {
    let get_task = format!("{NAMESPACE}.get_task");
    if !turn.offers(&get_task) {
        // Codex's side requests (without tools), or our server is not connected: the
        // assertions on the tool outputs will tell.
        return Answer::text("I have no Hephaestus tools.");
    }
    // The system prompt is Codex's developer instructions; the first message is the task alone.
    const SYSTEM_PROMPT_MARK: &str = "your own git worktree (";
    if !turn.role_text("developer").contains(SYSTEM_PROMPT_MARK)
        || turn.role_text("user").contains(SYSTEM_PROMPT_MARK)
    {
        return Answer::text("My system prompt is not in my developer instructions.");
    }
    let report = || {
        Answer::call(
            "Reporting the task done.",
            Some(NAMESPACE),
            "update_task_status",
            json!({"status": "done", "summary": SUMMARY}),
        )
    };
    if let Behaviour::ForgetsToReport(model) = behaviour {
        let reminded = turn.role_text("user").contains(agent_cli::REMINDER);
        match turn.last_call.as_deref() {
            None => model.think(),
            Some(c) if c.ends_with(".update_task_status") => {}
            Some(_) if reminded => {
                model.reminded.store(true, Ordering::SeqCst);
                return report();
            }
            Some(c) if c == get_task => {}
            Some(_) => {
                model.ended_turn_unreported.store(true, Ordering::SeqCst);
                return Answer::text("The note is written.");
            }
        }
    }
    match turn.last_call.as_deref() {
        None => Answer::call(
            "I will read my task first.",
            Some(NAMESPACE),
            "get_task",
            json!({}),
        ),
        Some(c) if c == get_task && turn.offers("exec_command") => Answer::call(
            "Leaving a note in my worktree.",
            None,
            "exec_command",
            json!({"cmd": format!("printf '%s\\n' '{NOTE_TEXT}' > {NOTE_FILE}")}),
        ),
        Some(c) if c == get_task || c == "exec_command" => report(),
        Some(_) => Answer::text("The task is done and reported."),
    }
}

// ---- the test -------------------------------------------------------------------------------

/// On a failure: what Codex asked the stand-in, what its terminal shows, what the coordinator
/// logged.
struct OnFailure<'a> {
    log: Log,
    tmux: &'a TmuxServer,
    coord: &'a Coordinator,
}

impl Drop for OnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.print("Codex");
            eprintln!("{}", self.tmux.panes());
            agent_cli::print_coordinator_tail(self.coord);
        }
    }
}

/// A project whose agents are Codex with the stand-in as their model provider, and its
/// coordinator; `tables` go into `hephaestus.toml` too.
fn start(
    codex: &std::path::Path,
    stand_in: &StandIn,
    tables: &str,
) -> (tempfile::TempDir, tempfile::TempDir, Coordinator) {
    let dir = agent_cli::agent_project(
        "cli = \"codex\"\nmodel = \"stand-in-model\"",
        &format!(
            r#"
[agents.codex_config]
model_provider = "standin"

[agents.codex_config.model_providers.standin]
name = "Responses API stand-in"
base_url = "{}"
wire_api = "responses"
# Send the user's login from auth.json, as the OpenAI provider does.
requires_openai_auth = true
{tables}"#,
            stand_in.url
        ),
    );
    // A fresh HOME: nothing of the developer's own Codex set-up is read, except the login the
    // agents must share.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".codex")).unwrap();
    std::fs::write(
        home.path().join(".codex/auth.json"),
        json!({"auth_mode": "apikey", "OPENAI_API_KEY": API_KEY}).to_string(),
    )
    .unwrap();

    let home_dir = home.path().display().to_string();
    let coord = agent_cli::start_coordinator(
        dir.path(),
        codex.parent().unwrap(),
        &["OPENAI_", "CODEX_", "XDG_"],
        &[("HOME", home_dir.as_str())],
    );
    (dir, home, coord)
}

#[test]
fn codex_reads_its_task_and_reports_it_done_through_the_shim() {
    let Some(codex) = agent_cli::pinned_cli_or_skip("codex", "Codex CLI") else {
        return;
    };
    let started = Instant::now();

    let stand_in = StandIn::start(|t| script(t, &Behaviour::Reports));
    let (dir, _home, coord) = start(&codex, &stand_in, "");
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        log: stand_in.log.clone(),
        tmux: &tmux,
        coord: &coord,
    };

    let task = agent_cli::run_task(&coord, "Leave a note for the team in CODEX_WAS_HERE.md");
    let id = task["id"].as_str().unwrap().to_string();

    // The summary is the one the stand-in "model" chose, sent by Codex through the shim.
    assert_eq!(task["summary"], SUMMARY, "{task}");
    let results = stand_in.log.results();
    let get_task = results
        .iter()
        .find(|(n, _)| n == &format!("{NAMESPACE}.get_task"))
        .unwrap_or_else(|| panic!("no get_task output reached the model: {results:?}"));
    assert!(
        get_task.1.contains(&id),
        "get_task did not return this task: {}",
        get_task.1
    );
    assert!(
        results
            .iter()
            .any(|(n, _)| n == &format!("{NAMESPACE}.update_task_status")),
        "no update_task_status output reached the model: {results:?}"
    );
    // Every model request carried the user's login, read through the agent's link to it.
    let requests = stand_in.log.model_requests();
    assert!(requests.len() >= 4, "{} model requests", requests.len());
    for s in requests {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {API_KEY}").as_str()),
            "{}",
            s.line
        );
    }

    // Codex's own shell tool made the work; the manager committed and merged it.
    assert_eq!(
        git(dir.path(), &["show", &format!("trunk:{NOTE_FILE}")]),
        format!("{NOTE_TEXT}\n")
    );
    let tree = git(dir.path(), &["ls-tree", "-r", "--name-only", "trunk"]);
    assert!(
        !tree.contains("config.toml") && !tree.contains("auth.json"),
        "agent configuration was committed: {tree}"
    );
    // Nothing of the agent outlives its session: no background app server, no copy of Codex.
    let agent = task["assigned_agent_id"].as_str().unwrap();
    let agent_dir = dir.path().join(".hephaestus/agents").join(&agent[..8]);
    assert!(
        agent_dir.join("config.toml").is_file(),
        "{}",
        agent_dir.display()
    );
    assert!(
        !agent_dir.join("packages").exists(),
        "codex installed its app server into the agent's home"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = agent_cli::processes_mentioning(&agent_dir);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the agent outlived its session: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent_cli::assert_events(
        dir.path(),
        &["created", "prompt_delivered", "terminated", "merged"],
    );
    eprintln!(
        "Codex finished its task in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    stand_in.log.print("Codex");
}

/// The guardian on the real Codex pane: working while the model thinks, idle once the turn ends
/// without a report, then a reminder typed in, which the model acts on: the task is done. With
/// `HEPHAESTUS_CAPTURE_PANES=1` the panes become the guardian's fixtures.
#[test]
fn codex_that_ends_its_turn_without_reporting_is_seen_idle_and_reminded() {
    let Some(codex) = agent_cli::pinned_cli_or_skip("codex", "Codex CLI") else {
        return;
    };
    let model = Arc::new(Forgetful::default());
    let behaviour = Behaviour::ForgetsToReport(model.clone());
    let stand_in = StandIn::start(move |t| script(t, &behaviour));
    let (dir, _home, coord) = start(&codex, &stand_in, "\n[guardian]\nidle_nudge_secs = 6\n");
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        log: stand_in.log.clone(),
        tmux: &tmux,
        coord: &coord,
    };
    let mut panes = agent_cli::PaneFixtures::new("codex", &codex, &tmux);
    let id = agent_cli::queue_task(&coord, "Leave a note for the team in CODEX_WAS_HERE.md");
    agent_cli::assert_seen_idle_and_reminded(&coord, dir.path(), &id, &model, &mut panes);
}
