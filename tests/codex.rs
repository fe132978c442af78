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

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agent_cli::{self, TmuxServer};
use common::{Coordinator, git};
use serde_json::{Value, json};

/// Codex offers each MCP server's tools as one namespace, `mcp__<server>`.
const NAMESPACE: &str = "mcp__hephaestus";
const SUMMARY: &str = "codex stand-in finished";
const NOTE_FILE: &str = "CODEX_WAS_HERE.md";
const NOTE_TEXT: &str = "Written by the exec_command tool of Codex, scripted by the stand-in.";
/// The user's login, in the test HOME's `~/.codex/auth.json`: the agent must send it.
const API_KEY: &str = "sk-stand-in-codex-0123456789";

// ---- the stand-in Responses API ------------------------------------------------------------

/// One request Codex made, and what the stand-in answered.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    authorization: Option<String>,
    /// (tool, output text) for each function call output in a scripted conversation.
    tool_results: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, seen: Seen) {
        self.0.lock().unwrap().push(seen);
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn print(&self) {
        eprintln!("--- requests Codex made to the stand-in ---");
        let mut shown = 0;
        for s in self.all() {
            eprintln!("{}", s.line);
            // Each conversation repeats the earlier results: show only the new ones.
            for (name, text) in s.tool_results.iter().skip(shown) {
                let text: String = text.chars().take(300).collect();
                eprintln!("    {name} output: {text}");
            }
            shown = shown.max(s.tool_results.len());
        }
    }
}

struct StandIn {
    url: String,
    log: Log,
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let log = Log::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let l = l.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_connection(stream, &l) {
                        l.push(Seen {
                            line: format!("(connection error: {e})"),
                            authorization: None,
                            tool_results: Vec::new(),
                        });
                    }
                });
            }
        });
        StandIn { url, log }
    }
}

/// One request per connection (answered with `Connection: close`).
fn serve_connection(stream: TcpStream, log: &Log) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let Some(req) = agent_cli::read_request(&mut reader)? else {
        return Ok(());
    };
    let route = req.path.split('?').next().unwrap_or_default();
    let authorization = req.headers.get("authorization").cloned();
    let (status, content_type, body, mut seen) = match (req.method.as_str(), route) {
        ("POST", "/v1/responses") => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let (answer, seen) = respond(&body);
            ("200 OK", "text/event-stream", sse(&body, &answer), seen)
        }
        _ => (
            "404 Not Found",
            "application/json",
            json!({"error": {"message": "not served by the stand-in", "type": "invalid_request_error"}})
                .to_string(),
            Seen {
                line: format!("({} body bytes) -> 404", req.body.len()),
                authorization: None,
                tool_results: Vec::new(),
            },
        ),
    };
    seen.line = format!("{} {} {}", req.method, req.path, seen.line);
    seen.authorization = authorization;
    log.push(seen);
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\nx-request-id: req_standin\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

/// What the model "says": text, then optionally one function call.
struct Answer {
    /// Unique per answer, as the API's ids are.
    id: u64,
    text: String,
    /// (namespace, name, arguments)
    call: Option<(Option<&'static str>, &'static str, Value)>,
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The streamed form of `answer`, event by event as the Responses API sends it.
fn sse(request: &Value, answer: &Answer) -> String {
    let model = request["model"].as_str().unwrap_or("stand-in");
    let response_id = format!("resp_standin_{:04}", answer.id);
    let message_id = format!("msg_standin_{:04}", answer.id);
    let mut out = String::new();
    let mut seq = 0;
    let mut event = |data: Value| {
        let mut data = data;
        data["sequence_number"] = json!(seq);
        seq += 1;
        out.push_str(&format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        ));
    };
    let response = |status: &str, output: Vec<Value>| {
        json!({"id": response_id, "object": "response", "created_at": 1_796_000_000,
               "status": status, "model": model, "output": output})
    };
    event(json!({"type": "response.created", "response": response("in_progress", vec![])}));
    event(json!({"type": "response.in_progress", "response": response("in_progress", vec![])}));
    let message = json!({"id": message_id, "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": answer.text, "annotations": []}]});
    let mut output = vec![message.clone()];
    event(
        json!({"type": "response.output_item.added", "output_index": 0, "item":
        {"id": message_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
    );
    event(
        json!({"type": "response.content_part.added", "item_id": message_id, "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    // Split the text in two deltas, as the API streams it.
    let mid = (answer.text.len() / 2..=answer.text.len())
        .find(|i| answer.text.is_char_boundary(*i))
        .unwrap_or(0);
    for piece in [&answer.text[..mid], &answer.text[mid..]] {
        event(
            json!({"type": "response.output_text.delta", "item_id": message_id, "output_index": 0,
            "content_index": 0, "delta": piece}),
        );
    }
    event(
        json!({"type": "response.output_text.done", "item_id": message_id, "output_index": 0,
        "content_index": 0, "text": answer.text}),
    );
    event(
        json!({"type": "response.content_part.done", "item_id": message_id, "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": answer.text, "annotations": []}}),
    );
    event(json!({"type": "response.output_item.done", "output_index": 0, "item": message}));
    if let Some((namespace, name, args)) = &answer.call {
        let item_id = format!("fc_standin_{:04}", answer.id);
        let arguments = args.to_string();
        let mut item = json!({"id": item_id, "type": "function_call", "status": "completed",
            "call_id": format!("call_standin_{:04}", answer.id), "name": name, "arguments": arguments});
        if let Some(ns) = namespace {
            item["namespace"] = json!(ns);
        }
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        added["arguments"] = json!("");
        event(json!({"type": "response.output_item.added", "output_index": 1, "item": added}));
        // Split the arguments mid-JSON, as the API does.
        let mid = arguments.len() / 2;
        for piece in [&arguments[..mid], &arguments[mid..]] {
            event(
                json!({"type": "response.function_call_arguments.delta", "item_id": item_id,
                "output_index": 1, "delta": piece}),
            );
        }
        event(
            json!({"type": "response.function_call_arguments.done", "item_id": item_id,
            "output_index": 1, "arguments": arguments}),
        );
        event(json!({"type": "response.output_item.done", "output_index": 1, "item": item}));
        output.push(item);
    }
    let mut done = response("completed", output);
    done["usage"] = json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 120});
    event(json!({"type": "response.completed", "response": done}));
    out
}

/// Text of a function call output: a string, or content items.
fn output_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i["text"].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// The script. The conversation itself is the state: the next step follows from the last
/// function the "model" called, so a retried request gets the same answer.
fn respond(body: &Value) -> (Answer, Seen) {
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    let ours: Vec<&str> = tools
        .iter()
        .filter(|t| t["name"] == NAMESPACE)
        .flat_map(|t| t["tools"].as_array().into_iter().flatten())
        .filter_map(|t| t["name"].as_str())
        .collect();
    let has_exec = tools.iter().any(|t| t["name"] == "exec_command");
    let input = body["input"].as_array().cloned().unwrap_or_default();
    let mut calls = std::collections::BTreeMap::new();
    let mut last_call: Option<String> = None;
    let mut tool_results = Vec::new();
    let mut shape = Vec::new();
    for item in &input {
        match item["type"].as_str() {
            Some("function_call") => {
                let name = match item["namespace"].as_str() {
                    Some(ns) => format!("{ns}.{}", item["name"].as_str().unwrap_or_default()),
                    None => item["name"].as_str().unwrap_or_default().to_string(),
                };
                calls.insert(item["call_id"].to_string(), name.clone());
                last_call = Some(name);
                shape.push("call");
            }
            Some("function_call_output") => {
                tool_results.push((
                    calls
                        .get(&item["call_id"].to_string())
                        .cloned()
                        .unwrap_or_default(),
                    output_text(&item["output"]),
                ));
                shape.push("output");
            }
            Some("message") => shape.push(if item["role"] == "assistant" {
                "assistant"
            } else {
                "user"
            }),
            _ => shape.push("other"),
        }
    }
    let summary = format!(
        "model={} stream={} tools={} our_tools={} input=[{}]",
        body["model"],
        body["stream"],
        tools.len(),
        ours.len(),
        shape.join(" ")
    );
    let answer = |text: &str, call| Answer {
        id: next_id(),
        text: text.to_string(),
        call,
    };
    let done = Some((
        Some(NAMESPACE),
        "update_task_status",
        json!({"status": "done", "summary": SUMMARY}),
    ));
    let get_task = format!("{NAMESPACE}.get_task");
    let answer = if !ours.contains(&"get_task") {
        // Our server is not connected: say so, the test's assertions will show it.
        answer("I have no Hephaestus tools.", None)
    } else {
        match last_call.as_deref() {
            None => answer(
                "I will read my task first.",
                Some((Some(NAMESPACE), "get_task", json!({}))),
            ),
            Some(c) if c == get_task && has_exec => answer(
                "Leaving a note in my worktree.",
                Some((
                    None,
                    "exec_command",
                    json!({"cmd": format!("printf '%s\\n' '{NOTE_TEXT}' > {NOTE_FILE}")}),
                )),
            ),
            Some(c) if c == get_task || c == "exec_command" => {
                answer("Reporting the task done.", done)
            }
            Some(_) => answer("The task is done and reported.", None),
        }
    };
    let seen = Seen {
        line: format!(
            "{summary} last_call={last_call:?} -> {}",
            answer
                .call
                .as_ref()
                .map_or("text only".to_string(), |(_, n, _)| format!("call {n}"))
        ),
        authorization: None,
        tool_results,
    };
    (answer, seen)
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
            self.log.print();
            eprintln!("{}", self.tmux.panes());
            agent_cli::print_coordinator_tail(self.coord);
        }
    }
}

#[test]
fn codex_reads_its_task_and_reports_it_done_through_the_shim() {
    let Some(codex) = agent_cli::find_cli("codex") else {
        eprintln!(
            "skipped: Codex CLI is not installed (not on PATH, not in target/agent-clis); .ci/run installs it"
        );
        return;
    };
    let version = Command::new(&codex).arg("--version").output().unwrap();
    assert!(
        version.status.success(),
        "{} --version failed: {}",
        codex.display(),
        String::from_utf8_lossy(&version.stderr)
    );
    eprintln!(
        "using {} ({})",
        codex.display(),
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let started = Instant::now();

    let stand_in = StandIn::start();
    let dir = common::project();
    // A fresh HOME: nothing of the developer's own Codex set-up is read, except the login the
    // agents must share.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".codex")).unwrap();
    std::fs::write(
        home.path().join(".codex/auth.json"),
        json!({"auth_mode": "apikey", "OPENAI_API_KEY": API_KEY}).to_string(),
    )
    .unwrap();
    git(dir.path(), &["checkout", "-q", "-b", "trunk"]);
    std::fs::write(dir.path().join("README.md"), "demo\n").unwrap();
    std::fs::write(
        dir.path().join(".gitignore"),
        ".hephaestus/\nserve.stderr\n",
    )
    .unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "initial"]);
    // The worktrees' path has a dot in it, as real ones (`~/.local/share`) do.
    let worktrees = dir.path().with_extension("worktrees");
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        format!(
            r#"[agents]
cli = "codex"
model = "stand-in-model"
worktrees_dir = "{}"
ready_timeout_secs = 60

[agents.codex_config]
model_provider = "standin"

[agents.codex_config.model_providers.standin]
name = "Responses API stand-in"
base_url = "{}"
wire_api = "responses"
# Send the user's login from auth.json, as the OpenAI provider does.
requires_openai_auth = true
"#,
            worktrees.display(),
            stand_in.url
        ),
    )
    .unwrap();

    let home_dir = home.path().display().to_string();
    let coord = agent_cli::start_coordinator(
        dir.path(),
        codex.parent().unwrap(),
        &["OPENAI_", "CODEX_", "XDG_"],
        &[("HOME", home_dir.as_str())],
    );
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        log: stand_in.log.clone(),
        tmux: &tmux,
        coord: &coord,
    };

    let id = coord.cli(&[
        "task",
        "create",
        "Leave a note for the team in CODEX_WAS_HERE.md",
        "--done",
        "the note is committed",
    ])["task"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(240);
    let task = loop {
        let t = coord.cli(&["task", "show", &id]);
        if t["status"] == "failed" {
            panic!("the task failed: {}", t["failure_reason"]);
        }
        if t["status"] == "done" && t["merge_status"] == "merged" {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the task to be done and merged: {t}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };

    // The summary is the one the stand-in "model" chose, sent by Codex through the shim.
    assert_eq!(task["summary"], SUMMARY, "{task}");
    let seen = stand_in.log.all();
    let results: Vec<_> = seen.iter().flat_map(|s| s.tool_results.clone()).collect();
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
    for s in seen
        .iter()
        .filter(|s| s.line.starts_with("POST /v1/responses"))
    {
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
    let kinds = agent_cli::agent_event_kinds(dir.path());
    for kind in ["created", "prompt_delivered", "terminated", "merged"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} event: {kinds:?}"
        );
    }
    eprintln!(
        "Codex finished its task in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    stand_in.log.print();
}
