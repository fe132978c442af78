//! The real Gemini CLI end to end: the agent manager spawns `gemini` in tmux (`agents.cli =
//! "gemini"`), Gemini CLI talks to a scripted stand-in for the Gemini API served by this test
//! (`GOOGLE_GEMINI_BASE_URL`; `streamGenerateContent` streamed as server-sent events, as the real
//! API streams them), and the model's calls go through our shim to the coordinator: `get_task`,
//! a file written with Gemini CLI's own `run_shell_command` tool, then `update_task_status` done.
//! The work is merged into the base branch.
//!
//! Needs `gemini` (npm `@google/gemini-cli`): `.ci/run` installs the pinned version into
//! `target/agent-clis`. Without it the test prints why and passes.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use common::agent_cli::{self, Forgetful, OnFailure, Reply, Seen, TmuxServer};
use common::{Coordinator, git};
use serde_json::{Value, json};

/// Gemini CLI names an MCP server's tools `mcp_<server>_<tool>`.
const GET_TASK: &str = "mcp_hephaestus_get_task";
const UPDATE_STATUS: &str = "mcp_hephaestus_update_task_status";
const SHELL: &str = "run_shell_command";
const SUMMARY: &str = "gemini stand-in finished";
const NOTE_FILE: &str = "GEMINI_WAS_HERE.md";
const NOTE_TEXT: &str =
    "Written by the run_shell_command tool of Gemini CLI, scripted by the stand-in.";
const MODEL: &str = "gemini-stand-in-pro";
const API_KEY: &str = "stand-in-gemini-key-0123456789";

/// How the stand-in "model" goes about the task.
enum Behaviour {
    /// Reads the task, writes the note, reports it done.
    Reports,
    /// Thinks for `agent_cli::HOLD` over its first step, writes the note, then ends its turn
    /// without reporting; it reports only once reminded.
    ForgetsToReport(Arc<Forgetful>),
}

/// The script. The conversation is the state: the next step follows from the last function the
/// "model" called, so a retried request gets the same answer.
fn script(request: &Value, behaviour: &Behaviour) -> Value {
    let offered: Vec<&str> = request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["functionDeclarations"].as_array().into_iter().flatten())
        .filter_map(|f| f["name"].as_str())
        .collect();
    if !offered.contains(&GET_TASK) {
        return text("I have no Hephaestus tools.");
    }
    let last_call = request["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["parts"].as_array().into_iter().flatten())
        .filter_map(|p| p["functionCall"]["name"].as_str())
        .next_back();
    let report = || call(UPDATE_STATUS, json!({"status": "done", "summary": SUMMARY}));
    if let Behaviour::ForgetsToReport(model) = behaviour {
        let reminded = request["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["role"] == "user")
            .flat_map(|c| c["parts"].as_array().into_iter().flatten())
            .filter_map(|p| p["text"].as_str())
            .any(|t| t.contains(agent_cli::REMINDER));
        match last_call {
            None => model.think(),
            Some(GET_TASK | UPDATE_STATUS) => {}
            Some(_) if reminded => {
                model.reminded.store(true, Ordering::SeqCst);
                return report();
            }
            Some(_) => {
                model.ended_turn_unreported.store(true, Ordering::SeqCst);
                return text("The note is written.");
            }
        }
    }
    match last_call {
        None => call(GET_TASK, json!({})),
        Some(GET_TASK) => call(
            SHELL,
            json!({
                "command": format!("printf '%s\\n' '{NOTE_TEXT}' > {NOTE_FILE}"),
                "description": "leave a note for the team"
            }),
        ),
        Some(SHELL) => report(),
        Some(_) => text("The task is done and reported."),
    }
}

fn candidate(parts: Value) -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 10, "totalTokenCount": 110},
        "modelVersion": MODEL
    })
}

fn call(name: &str, args: Value) -> Value {
    candidate(json!([{"functionCall": {"name": name, "args": args}}]))
}

fn text(t: &str) -> Value {
    candidate(json!([{"text": t}]))
}

/// Serves `/v1beta/models/<model>:streamGenerateContent?alt=sse` with the script, and
/// `:generateContent` (Gemini CLI's side questions, such as who speaks next) with a plain
/// "the user".
fn stand_in(seen: Arc<Mutex<Seen>>, behaviour: Behaviour) -> String {
    agent_cli::serve(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        {
            let mut seen = seen.lock().unwrap();
            seen.requests
                .push((req.path.clone(), req.headers.get("x-goog-api-key").cloned()));
            for part in body["contents"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["parts"].as_array().into_iter().flatten())
            {
                if let Some(name) = part["functionResponse"]["name"].as_str() {
                    seen.result(name, part["functionResponse"]["response"].to_string());
                }
            }
        }
        if req.path.contains(":streamGenerateContent") {
            Reply::events(format!("data: {}\r\n\r\n", script(&body, &behaviour)))
        } else if req.path.contains(":generateContent") {
            let who = r#"{"reasoning": "the model answered", "next_speaker": "user"}"#;
            Reply::json(200, text(who).to_string())
        } else {
            let e = r#"{"error": {"code": 404, "message": "not in the stand-in"}}"#;
            Reply::json(404, e.to_string())
        }
    })
}

/// A project whose agents are Gemini CLI talking to the stand-in at `url`, and its
/// coordinator; `tables` go into `hephaestus.toml`.
fn start(
    gemini: &std::path::Path,
    url: &str,
    tables: &str,
) -> (tempfile::TempDir, tempfile::TempDir, Coordinator) {
    let dir = agent_cli::agent_project(&format!("cli = \"gemini\"\nmodel = \"{MODEL}\""), tables);
    // A fresh HOME: nothing of the developer's own Gemini CLI set-up is read. The API key in
    // the environment is all an API user has, and makes the agents sign in with it.
    let home = tempfile::tempdir().unwrap();

    let home_dir = home.path().display().to_string();
    // Node needs `node` on PATH too: the pinned install puts both in one dir.
    let coord = agent_cli::start_coordinator(
        dir.path(),
        gemini.parent().unwrap(),
        &["GEMINI_", "GOOGLE_", "XDG_"],
        &[
            ("HOME", home_dir.as_str()),
            ("GEMINI_API_KEY", API_KEY),
            ("GOOGLE_GEMINI_BASE_URL", url),
        ],
    );
    (dir, home, coord)
}

#[test]
fn gemini_reads_its_task_and_reports_it_done_through_the_shim() {
    let Some(gemini) = agent_cli::pinned_cli_or_skip("gemini", "Gemini CLI") else {
        return;
    };

    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = stand_in(seen.clone(), Behaviour::Reports);
    let (dir, _home, coord) = start(&gemini, &url, "");
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        api: "Gemini API",
        seen: seen.clone(),
        tmux: &tmux,
        coord: &coord,
    };

    let task = agent_cli::run_task(&coord, "Leave a note for the team in GEMINI_WAS_HERE.md");
    let id = task["id"].as_str().unwrap().to_string();

    // The summary is the one the stand-in "model" chose, sent by Gemini CLI through the shim.
    assert_eq!(task["summary"], SUMMARY, "{task}");
    let seen = seen.lock().unwrap();
    let get_task = seen.result_of(GET_TASK);
    assert!(
        get_task.contains(&id),
        "get_task did not return this task: {get_task}"
    );
    seen.result_of(UPDATE_STATUS);
    // Every model request carried the user's key.
    assert!(!seen.requests.is_empty());
    for (path, key) in &seen.requests {
        assert_eq!(key.as_deref(), Some(API_KEY), "{path}");
    }
    // Gemini CLI's own shell tool made the work; the manager committed and merged it.
    assert_eq!(
        git(dir.path(), &["show", &format!("trunk:{NOTE_FILE}")]),
        format!("{NOTE_TEXT}\n")
    );
    let tree = git(dir.path(), &["ls-tree", "-r", "--name-only", "trunk"]);
    assert!(
        !tree.contains("settings.json"),
        "agent configuration was committed: {tree}"
    );
    agent_cli::assert_events(
        dir.path(),
        &[
            "created",
            "connected",
            "prompt_sent",
            "prompt_delivered",
            "terminated",
            "merged",
        ],
    );
}

/// The guardian on the real Gemini CLI pane: working while the model thinks, idle once the turn
/// ends without a report, then a reminder typed in, which the model acts on: the task is done.
/// With `HEPHAESTUS_CAPTURE_PANES=1` the panes become the guardian's fixtures.
#[test]
fn gemini_that_ends_its_turn_without_reporting_is_seen_idle_and_reminded() {
    let Some(gemini) = agent_cli::pinned_cli_or_skip("gemini", "Gemini CLI") else {
        return;
    };
    let model = Arc::new(Forgetful::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = stand_in(seen.clone(), Behaviour::ForgetsToReport(model.clone()));
    let (dir, _home, coord) = start(&gemini, &url, "[guardian]\nidle_nudge_secs = 6\n");
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        api: "Gemini API",
        seen: seen.clone(),
        tmux: &tmux,
        coord: &coord,
    };
    let mut panes = agent_cli::PaneFixtures::new("gemini", &gemini, &tmux);
    let id = agent_cli::queue_task(&coord, "Leave a note for the team in GEMINI_WAS_HERE.md");
    agent_cli::assert_seen_idle_and_reminded(&coord, dir.path(), &id, &model, &mut panes);
}
