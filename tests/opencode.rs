//! The real OpenCode end to end: the agent manager spawns `opencode` in tmux (`agents.cli =
//! "opencode"`), OpenCode talks to a scripted stand-in for an OpenAI-compatible Chat Completions
//! API served by this test (a provider in the user's own `opencode.json`, streamed as
//! server-sent `chat.completion.chunk` events ending in `[DONE]`), and the model's calls go
//! through our shim to the coordinator: `get_task`, a file written with OpenCode's own `bash`
//! tool, then `update_task_status` done. The work is merged into the base branch.
//!
//! Needs `opencode` (npm `opencode-ai`): `.ci/run` installs the pinned version into
//! `target/agent-clis`. Without it the test prints why and passes.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use common::agent_cli::{self, Forgetful, OnFailure, Reply, Seen, TmuxServer};
use common::{Coordinator, git};
use serde_json::{Value, json};

/// OpenCode names an MCP server's tools `<server>_<tool>`.
const GET_TASK: &str = "hephaestus_get_task";
const UPDATE_STATUS: &str = "hephaestus_update_task_status";
const SHELL: &str = "bash";
const SUMMARY: &str = "opencode stand-in finished";
const NOTE_FILE: &str = "OPENCODE_WAS_HERE.md";
const NOTE_TEXT: &str = "Written by the bash tool of OpenCode, scripted by the stand-in.";
const API_KEY: &str = "sk-stand-in-opencode-0123456789";

/// How the stand-in "model" goes about the task.
enum Behaviour {
    /// Reads the task, writes the note, reports it done.
    Reports,
    /// Thinks for `agent_cli::HOLD` over its first step, writes the note, then ends its turn
    /// without reporting; it reports only once reminded.
    ForgetsToReport(Arc<Forgetful>),
}

/// The script. The conversation is the state: the next step follows from the last tool the
/// "model" called, so a retried request gets the same answer.
fn script(request: &Value, behaviour: &Behaviour) -> Value {
    let offered: Vec<&str> = request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    if !offered.contains(&GET_TASK) {
        // OpenCode's side requests (the session title) offer no tools.
        return json!({"content": "A note for the team"});
    }
    let last_call = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["tool_calls"].as_array().into_iter().flatten())
        .filter_map(|c| c["function"]["name"].as_str())
        .next_back();
    let report = || call(UPDATE_STATUS, json!({"status": "done", "summary": SUMMARY}));
    if let Behaviour::ForgetsToReport(model) = behaviour {
        let reminded = request["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "user")
            .any(|m| agent_cli::content_text(&m["content"]).contains(agent_cli::REMINDER));
        match last_call {
            None => model.think(),
            Some(GET_TASK | UPDATE_STATUS) => {}
            Some(_) if reminded => {
                model.reminded.store(true, Ordering::SeqCst);
                return report();
            }
            Some(_) => {
                model.ended_turn_unreported.store(true, Ordering::SeqCst);
                return json!({"content": "The note is written."});
            }
        }
    }
    match last_call {
        None => call(GET_TASK, json!({})),
        Some(GET_TASK) => call(
            SHELL,
            json!({
                "command": format!("printf '%s\\n' '{NOTE_TEXT}' > {NOTE_FILE}"),
                "description": "Leave a note for the team"
            }),
        ),
        Some(SHELL) => report(),
        Some(_) => json!({"content": "The task is done and reported."}),
    }
}

fn call(name: &str, args: Value) -> Value {
    json!({"tool_calls": [{"index": 0, "id": format!("call_{name}"), "type": "function",
        "function": {"name": name, "arguments": args.to_string()}}]})
}

/// The streamed answer: the delta, then the finish reason and usage, then `[DONE]`.
fn stream(delta: Value) -> String {
    let finish = if delta.get("tool_calls").is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    let mut delta = delta;
    delta["role"] = json!("assistant");
    let chunk = |choice: Value, usage: Value| {
        json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 1,
               "model": "stand-in", "choices": [choice], "usage": usage})
    };
    format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(
            json!({"index": 0, "delta": delta, "finish_reason": null}),
            Value::Null
        ),
        chunk(
            json!({"index": 0, "delta": {}, "finish_reason": finish}),
            json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110})
        )
    )
}

/// Serves `POST /v1/chat/completions` with the script; returns the API's base URL.
fn stand_in(seen: Arc<Mutex<Seen>>, behaviour: Behaviour) -> String {
    let url = agent_cli::serve(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        {
            let mut seen = seen.lock().unwrap();
            seen.requests
                .push((req.path.clone(), req.headers.get("authorization").cloned()));
            for m in body["messages"].as_array().into_iter().flatten() {
                if m["role"] == "tool" {
                    // The result's tool is named by the call it answers.
                    let id = m["tool_call_id"].as_str().unwrap_or_default();
                    seen.result(
                        id.strip_prefix("call_").unwrap_or(id),
                        m["content"].to_string(),
                    );
                }
            }
        }
        if req.path.ends_with("/chat/completions") {
            Reply::events(stream(script(&body, &behaviour)))
        } else {
            Reply::json(
                404,
                r#"{"error": {"message": "not in the stand-in"}}"#.to_string(),
            )
        }
    });
    format!("{url}/v1")
}

/// A project whose agents are OpenCode with the stand-in at `url` as the user's own provider,
/// and its coordinator; `tables` go into `hephaestus.toml`.
fn start(
    opencode: &std::path::Path,
    url: &str,
    tables: &str,
) -> (tempfile::TempDir, tempfile::TempDir, Coordinator) {
    let dir = agent_cli::agent_project(
        "cli = \"opencode\"\nmodel = \"standin/stand-in-model\"",
        tables,
    );
    // A fresh HOME whose global OpenCode config has what a user of their own endpoint has: a
    // provider. The agents' config adds only our server to it.
    let home = tempfile::tempdir().unwrap();
    let config_dir = home.path().join(".config/opencode");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("opencode.json"),
        json!({"$schema": "https://opencode.ai/config.json", "provider": {"standin": {
            "npm": "@ai-sdk/openai-compatible", "name": "stand-in",
            "options": {"baseURL": url, "apiKey": API_KEY},
            "models": {"stand-in-model": {"name": "stand-in model"}}
        }}})
        .to_string(),
    )
    .unwrap();

    let home_dir = home.path().display().to_string();
    let coord = agent_cli::start_coordinator(
        dir.path(),
        opencode.parent().unwrap(),
        &["OPENCODE", "OPENAI_", "XDG_"],
        &[("HOME", home_dir.as_str())],
    );
    (dir, home, coord)
}

#[test]
fn opencode_reads_its_task_and_reports_it_done_through_the_shim() {
    let Some(opencode) = agent_cli::pinned_cli_or_skip("opencode", "OpenCode") else {
        return;
    };

    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = stand_in(seen.clone(), Behaviour::Reports);
    let (dir, _home, coord) = start(&opencode, &url, "");
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        api: "Chat Completions",
        seen: seen.clone(),
        tmux: &tmux,
        coord: &coord,
    };

    let task = agent_cli::run_task(&coord, "Leave a note for the team in OPENCODE_WAS_HERE.md");
    let id = task["id"].as_str().unwrap().to_string();

    // The summary is the one the stand-in "model" chose, sent by OpenCode through the shim.
    assert_eq!(task["summary"], SUMMARY, "{task}");
    let seen = seen.lock().unwrap();
    let get_task = seen.result_of(GET_TASK);
    assert!(
        get_task.contains(&id),
        "get_task did not return this task: {get_task}"
    );
    // (The result of update_task_status may never reach the model: the session ends as soon as
    // the task is done, and the summary above already came through that call.)
    // Every model request carried the key from the user's own provider config.
    assert!(!seen.requests.is_empty());
    for (path, key) in &seen.requests {
        assert_eq!(
            key.as_deref(),
            Some(format!("Bearer {API_KEY}").as_str()),
            "{path}"
        );
    }
    // OpenCode's own shell tool made the work; the manager committed and merged it.
    assert_eq!(
        git(dir.path(), &["show", &format!("trunk:{NOTE_FILE}")]),
        format!("{NOTE_TEXT}\n")
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

/// The guardian on the real OpenCode pane: working while the model thinks, idle once the turn
/// ends without a report, then a reminder typed in, which the model acts on: the task is done.
/// With `HEPHAESTUS_CAPTURE_PANES=1` the panes become the guardian's fixtures.
#[test]
fn opencode_that_ends_its_turn_without_reporting_is_seen_idle_and_reminded() {
    let Some(opencode) = agent_cli::pinned_cli_or_skip("opencode", "OpenCode") else {
        return;
    };
    let model = Arc::new(Forgetful::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = stand_in(seen.clone(), Behaviour::ForgetsToReport(model.clone()));
    let (dir, _home, coord) = start(&opencode, &url, "[guardian]\nidle_nudge_secs = 6\n");
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        api: "Chat Completions",
        seen: seen.clone(),
        tmux: &tmux,
        coord: &coord,
    };
    let mut panes = agent_cli::PaneFixtures::new("opencode", &opencode, &tmux);
    let id = agent_cli::queue_task(&coord, "Leave a note for the team in OPENCODE_WAS_HERE.md");
    agent_cli::assert_seen_idle_and_reminded(&coord, dir.path(), &id, &model, &mut panes);
}
