//! The real Claude Code CLI end to end: the agent manager spawns `claude` in tmux (the default
//! `agents.cli`), Claude Code talks to a scripted stand-in for the Anthropic Messages API served
//! by this test, and the model's tool calls go through our shim to the coordinator: `get_task`,
//! a file written with Claude Code's own Write tool, then `update_task_status` done. The work is
//! merged into the base branch.
//!
//! Needs `claude` (npm `@anthropic-ai/claude-code`): `.ci/run` installs the pinned version into
//! `target/agent-clis`. Without it the test prints why and passes.

mod common;

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agent_cli::{self, TmuxServer};
use common::{Coordinator, git};
use serde_json::{Value, json};

const GET_TASK: &str = "mcp__hephaestus__get_task";
const UPDATE_STATUS: &str = "mcp__hephaestus__update_task_status";
const SUMMARY: &str = "claude stand-in finished";
const NOTE_FILE: &str = "CLAUDE_WAS_HERE.md";
const NOTE_TEXT: &str = "Written by Claude Code's Write tool, scripted by the stand-in.\n";

// ---- the stand-in Messages API -------------------------------------------------------------

/// One request the CLI made, and what the stand-in answered.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    /// (tool name, result text, is_error) for each tool_result in a scripted conversation.
    tool_results: Vec<(String, String, bool)>,
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
        eprintln!("--- requests Claude Code made to the stand-in ---");
        let mut shown = 0;
        for s in self.all() {
            eprintln!("{}", s.line);
            // Each conversation repeats the earlier results: show only the new ones.
            for (name, text, is_error) in s.tool_results.iter().skip(shown) {
                let text: String = text.chars().take(300).collect();
                eprintln!("    {name} result (is_error={is_error}): {text}");
            }
            shown = shown.max(s.tool_results.len());
        }
    }
}

/// How the stand-in "model" goes about the task.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Reads the task, writes the note, reports it done.
    Reports,
    /// Thinks for `agent_cli::HOLD` over its first step, writes the note, then ends its turn without
    /// reporting; it reports only once reminded.
    ForgetsToReport,
    /// Reads the task, asks the person which file name to use (Claude Code's AskUserQuestion),
    /// and reports the answer it got as its summary.
    Asks,
    /// Its key is refused: every request with the task's tools is answered 401.
    RejectsKey,
}

/// The opening of the guardian's system prompt (`prompts/guardian_judgement.md`).
const JUDGE_SYSTEM: &str = "You watch one AI coding agent at work for Hephaestus";

/// What the `Asks` model asks.
const QUESTION: &str = "Which file should the note go in?";

struct StandIn {
    url: String,
    log: Log,
    progress: Arc<agent_cli::Forgetful>,
}

impl StandIn {
    fn start(behaviour: Behaviour) -> StandIn {
        let log = Log::default();
        let progress = Arc::new(agent_cli::Forgetful::default());
        let (l, p) = (log.clone(), progress.clone());
        let addr = agent_cli::accept_each(move |stream| {
            if let Err(e) = serve_connection(stream, &l, behaviour, &p) {
                l.push(Seen {
                    line: format!("(connection error: {e})"),
                    tool_results: Vec::new(),
                });
            }
        });
        StandIn {
            url: format!("http://{addr}"),
            log,
            progress,
        }
    }
}

/// One request per connection (answered with `Connection: close`): simple, and every HTTP client
/// copes with it.
fn serve_connection(
    stream: TcpStream,
    log: &Log,
    behaviour: Behaviour,
    progress: &agent_cli::Forgetful,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let Some(req) = agent_cli::read_request(&mut reader)? else {
        return Ok(());
    };
    let route = req.path.split('?').next().unwrap_or_default();
    let (status, content_type, body, seen) = match (req.method.as_str(), route) {
        ("POST", "/v1/messages")
            if behaviour == Behaviour::RejectsKey && req.body.windows(GET_TASK.len()).any(|w| w == GET_TASK.as_bytes()) =>
        {
            (
                "401 Unauthorized",
                "application/json",
                json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
                    .to_string(),
                Seen {
                    line: format!("{} {} -> 401", req.method, req.path),
                    tool_results: Vec::new(),
                },
            )
        }
        ("POST", "/v1/messages") => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let (answer, mut seen) = messages(&body, behaviour, progress);
            seen.line = format!("{} {} {}", req.method, req.path, seen.line);
            if body["stream"] == true {
                let model = body["model"].as_str().unwrap_or("claude-stand-in");
                ("200 OK", "text/event-stream", sse(model, &answer), seen)
            } else {
                let text = answer.to_message(&body).to_string();
                ("200 OK", "application/json", text, seen)
            }
        }
        ("POST", "/v1/messages/count_tokens") => (
            "200 OK",
            "application/json",
            json!({"input_tokens": 1000}).to_string(),
            Seen {
                line: format!("{} {}", req.method, req.path),
                tool_results: Vec::new(),
            },
        ),
        (m, _) => (
            if m == "HEAD" || route == "/" {
                "200 OK"
            } else {
                "404 Not Found"
            },
            "application/json",
            json!({"type": "error", "error": {"type": "not_found_error", "message": "not served by the stand-in"}})
                .to_string(),
            Seen {
                line: format!(
                    "{} {} ({} body bytes) -> a plain answer",
                    req.method,
                    req.path,
                    req.body.len()
                ),
                tool_results: Vec::new(),
            },
        ),
    };
    log.push(seen);
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\nrequest-id: req_standin\r\ncache-control: no-cache\r\nconnection: close\r\n{}\r\n",
        if content_type == "text/event-stream" {
            String::new()
        } else {
            format!("content-length: {}\r\n", body.len())
        }
    );
    out.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}

/// What the model "says": optional text, then optional tool use.
struct Answer {
    /// Unique per answer, as the API's are: Claude Code merges streamed parts by message id.
    id: u64,
    text: String,
    tool: Option<(String, Value)>,
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Answer {
    fn stop_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn message_id(&self) -> String {
        format!("msg_standin_{:04}", self.id)
    }

    fn tool_id(&self) -> String {
        format!("toolu_standin_{:04}", self.id)
    }

    fn to_message(&self, request: &Value) -> Value {
        let mut content = vec![json!({"type": "text", "text": self.text})];
        if let Some((name, input)) = &self.tool {
            content.push(
                json!({"type": "tool_use", "id": self.tool_id(), "name": name, "input": input}),
            );
        }
        json!({
            "id": self.message_id(), "type": "message", "role": "assistant",
            "model": request["model"].as_str().unwrap_or("claude-stand-in"),
            "content": content, "stop_reason": self.stop_reason(), "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 20,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })
    }
}

/// The streamed form of `answer`, event by event as the real API sends it.
fn sse(model: &str, answer: &Answer) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": answer.message_id(), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    );
    event("ping", json!({"type": "ping"}));
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    let mid = answer.text.len() / 2;
    let mid = (mid..=answer.text.len())
        .find(|i| answer.text.is_char_boundary(*i))
        .unwrap_or(0);
    for piece in [&answer.text[..mid], &answer.text[mid..]] {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        );
    }
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    if let Some((name, input)) = &answer.tool {
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": answer.tool_id(), "name": name, "input": {}}}),
        );
        // Split the arguments mid-JSON, as the API does.
        let args = input.to_string();
        let mid = args.len() / 2;
        for piece in [&args[..mid], &args[mid..]] {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            );
        }
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        );
    }
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": answer.stop_reason(), "stop_sequence": null},
               "usage": {"output_tokens": 20}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}

/// The script. The conversation itself is the state: the next step follows from the last tool
/// the "model" used, so a retried request gets the same answer.
fn messages(body: &Value, behaviour: Behaviour, progress: &agent_cli::Forgetful) -> (Answer, Seen) {
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    let model = body["model"].as_str().unwrap_or("?");
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    // One letter per message and block: u/a for the role, then t(ext), U(se), R(esult), o(ther).
    let shape: Vec<String> = msgs
        .iter()
        .map(|m| {
            let role = if m["role"] == "assistant" { "a" } else { "u" };
            let blocks: String = match &m["content"] {
                Value::Array(blocks) => blocks
                    .iter()
                    .map(|b| match b["type"].as_str() {
                        Some("text") => 't',
                        Some("tool_use") => 'U',
                        Some("tool_result") => 'R',
                        _ => 'o',
                    })
                    .collect(),
                _ => "t".to_string(),
            };
            format!("{role}:{blocks}")
        })
        .collect();
    let summary = format!(
        "model={model} stream={} tools={} messages=[{}]",
        body["stream"],
        tools.len(),
        shape.join(" ")
    );
    if agent_cli::content_text(&body["system"]).contains(JUDGE_SYSTEM) {
        // Hephaestus's guardian, asking through `claude -p`: a verdict.
        let answer = Answer {
            id: next_id(),
            text: json!({"alignment_score": 0.8, "aligned": true, "needs_steering": false,
                         "summary": "writing the note"})
            .to_string(),
            tool: None,
        };
        let seen = Seen {
            line: format!("{summary} (guardian judgement) -> verdict"),
            tool_results: Vec::new(),
        };
        return (answer, seen);
    }
    if !tools.contains(&GET_TASK) {
        // Claude Code's side requests (titles, topic checks, quota probes): a short plain answer.
        let answer = Answer {
            id: next_id(),
            text: "Stand-in task".to_string(),
            tool: None,
        };
        let seen = Seen {
            line: format!("{summary} (side request) -> text"),
            tool_results: Vec::new(),
        };
        return (answer, seen);
    }

    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut last_tool: Option<String> = None;
    let mut tool_results = Vec::new();
    for m in &msgs {
        for block in m["content"].as_array().into_iter().flatten() {
            match block["type"].as_str() {
                Some("tool_use") => {
                    let name = block["name"].as_str().unwrap_or_default().to_string();
                    names.insert(
                        block["id"].as_str().unwrap_or_default().to_string(),
                        name.clone(),
                    );
                    last_tool = Some(name);
                }
                Some("tool_result") => {
                    let id = block["tool_use_id"].as_str().unwrap_or_default();
                    tool_results.push((
                        names.get(id).cloned().unwrap_or_default(),
                        agent_cli::content_text(&block["content"]),
                        block["is_error"] == true,
                    ));
                }
                _ => {}
            }
        }
    }
    let system = agent_cli::content_text(&body["system"]);
    let worktree = system
        .split_once("your own git worktree (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(w, _)| w.to_string());
    let write = match (&worktree, tools.contains(&"Write")) {
        (Some(w), true) => Some((
            "Write".to_string(),
            json!({"file_path": format!("{w}/{NOTE_FILE}"), "content": NOTE_TEXT}),
        )),
        _ => None,
    };
    let done = (
        UPDATE_STATUS.to_string(),
        json!({"status": "done", "summary": SUMMARY}),
    );
    let reminded = msgs.iter().any(|m| {
        m["role"] == "user" && agent_cli::content_text(&m["content"]).contains(agent_cli::REMINDER)
    });
    if behaviour == Behaviour::ForgetsToReport && last_tool.is_none() {
        progress.think();
    }
    let answer = match last_tool.as_deref() {
        Some(t) if behaviour == Behaviour::ForgetsToReport && t != UPDATE_STATUS => {
            if reminded {
                progress.reminded.store(true, Ordering::SeqCst);
                Answer {
                    id: next_id(),
                    text: "Right, reporting it now.".into(),
                    tool: Some(done),
                }
            } else if t == GET_TASK {
                Answer {
                    id: next_id(),
                    text: "Leaving a note in my worktree.".into(),
                    tool: write,
                }
            } else {
                progress.ended_turn_unreported.store(true, Ordering::SeqCst);
                Answer {
                    id: next_id(),
                    text: "The note is written.".into(),
                    tool: None,
                }
            }
        }
        Some(GET_TASK) if behaviour == Behaviour::Asks => Answer {
            id: next_id(),
            text: "One question first.".into(),
            tool: Some((
                "AskUserQuestion".to_string(),
                json!({"questions": [{
                "question": QUESTION, "header": "Note file", "multiSelect": false,
                "options": [
                    {"label": NOTE_FILE, "description": "the name the task gives"},
                    {"label": "NOTES.md", "description": "the usual place for notes"},
                ]}]}),
            )),
        },
        Some("AskUserQuestion") => {
            let answer = tool_results
                .iter()
                .rev()
                .find(|(n, _, _)| n == "AskUserQuestion")
                .map(|(_, text, _)| text.clone())
                .unwrap_or_default();
            Answer {
                id: next_id(),
                text: "Reporting what I was told.".into(),
                tool: Some((
                    UPDATE_STATUS.to_string(),
                    json!({"status": "done", "summary": format!("asked, and was told: {answer}")}),
                )),
            }
        }
        None => Answer {
            id: next_id(),
            text: "I will read my task first.".into(),
            tool: Some((GET_TASK.to_string(), json!({}))),
        },
        Some(GET_TASK) => match write {
            Some(w) => Answer {
                id: next_id(),
                text: "Leaving a note in my worktree.".into(),
                tool: Some(w),
            },
            None => Answer {
                id: next_id(),
                text: "Reporting the task done.".into(),
                tool: Some(done),
            },
        },
        Some("Write") => Answer {
            id: next_id(),
            text: "Reporting the task done.".into(),
            tool: Some(done),
        },
        Some(_) => Answer {
            id: next_id(),
            text: "The task is done and reported.".into(),
            tool: None,
        },
    };
    let seen = Seen {
        line: format!(
            "{summary} last_tool={last_tool:?} worktree={worktree:?} -> {}",
            answer
                .tool
                .as_ref()
                .map_or("end_turn".to_string(), |(n, _)| format!("tool_use {n}"))
        ),
        tool_results,
    };
    (answer, seen)
}

// ---- the project and the coordinator ------------------------------------------------------

/// On a failure: what the CLI asked the stand-in, what its terminal shows, what the coordinator
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

/// A project whose agents are Claude Code, and its coordinator, with a fresh HOME (nothing of
/// the developer's own Claude Code set-up is read), the stand-in's URL and a key; `tables` go
/// into `hephaestus.toml`, `env` into the CLI's environment.
fn start(
    claude: &std::path::Path,
    stand_in: &StandIn,
    tables: &str,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, tempfile::TempDir, Coordinator) {
    let dir = agent_cli::agent_project("cli = \"claude\"", tables);
    let home = tempfile::tempdir().unwrap();
    let home_dir = home.path().display().to_string();
    let mut all_env = vec![
        ("HOME", home_dir.as_str()),
        ("ANTHROPIC_BASE_URL", stand_in.url.as_str()),
        (
            "ANTHROPIC_API_KEY",
            "sk-ant-api03-stand-in-key-0123456789abcdefghij",
        ),
        // The pinned install must stay pinned: no self-update from inside a test.
        ("DISABLE_AUTOUPDATER", "1"),
    ];
    all_env.extend_from_slice(env);
    let coord = agent_cli::start_coordinator(
        dir.path(),
        claude.parent().unwrap(),
        &["ANTHROPIC_", "CLAUDE", "XDG_"],
        &all_env,
    );
    (dir, home, coord)
}

#[test]
fn claude_code_reads_its_task_and_reports_it_done_through_the_shim() {
    let Some(claude) = agent_cli::pinned_cli_or_skip("claude", "Claude Code") else {
        return;
    };
    let started = Instant::now();

    let stand_in = StandIn::start(Behaviour::Reports);
    let (dir, _home, coord) = start(&claude, &stand_in, "", &[]);
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        log: stand_in.log.clone(),
        tmux: &tmux,
        coord: &coord,
    };

    let task = agent_cli::run_task(&coord, "Leave a note for the team in CLAUDE_WAS_HERE.md");
    let id = task["id"].as_str().unwrap().to_string();

    // The summary is the one the stand-in "model" chose, sent by Claude Code through the shim.
    assert_eq!(task["summary"], SUMMARY, "{task}");
    let seen = stand_in.log.all();
    let results: Vec<_> = seen.iter().flat_map(|s| s.tool_results.clone()).collect();
    let get_task = results
        .iter()
        .find(|(n, _, _)| n == GET_TASK)
        .unwrap_or_else(|| panic!("no get_task result reached the model: {results:?}"));
    assert!(!get_task.2, "get_task failed: {}", get_task.1);
    assert!(
        get_task.1.contains(&id),
        "get_task did not return this task: {}",
        get_task.1
    );
    let update = results
        .iter()
        .find(|(n, _, _)| n == UPDATE_STATUS)
        .unwrap_or_else(|| panic!("no update_task_status result reached the model: {results:?}"));
    assert!(!update.2, "update_task_status failed: {}", update.1);

    // Claude Code's own Write tool made the work; the manager committed and merged it.
    assert_eq!(
        git(dir.path(), &["show", &format!("trunk:{NOTE_FILE}")]),
        NOTE_TEXT
    );
    let tree = git(dir.path(), &["ls-tree", "-r", "--name-only", "trunk"]);
    assert!(
        !tree.contains(".claude") && !tree.contains("mcp.json"),
        "agent configuration was committed: {tree}"
    );
    // The manager saw the first message delivered (the first tool call) and merged the work.
    agent_cli::assert_events(
        dir.path(),
        &["created", "prompt_delivered", "terminated", "merged"],
    );
    eprintln!(
        "Claude Code finished its task in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    stand_in.log.print();
}

/// The managed agent's id and the state the guardian reads for it.
fn agent_state(coord: &Coordinator) -> Option<(String, String)> {
    let agents = coord.cli(&["agents"]);
    let a = agents.as_array()?.iter().find(|a| a["kind"] == "managed")?;
    Some((
        a["id"].as_str()?.to_string(),
        a["state"]["state"].as_str()?.to_string(),
    ))
}

/// The guardian on the real Claude Code pane: working while the model thinks, idle once the
/// turn ends without a report, then a reminder typed in, which the model acts on: the task is
/// done and merged. With `HEPHAESTUS_CAPTURE_PANES=1` the panes become the guardian's fixtures.
#[test]
fn claude_code_that_ends_its_turn_without_reporting_is_seen_idle_and_reminded() {
    let Some(claude) = agent_cli::pinned_cli_or_skip("claude", "Claude Code") else {
        return;
    };
    let stand_in = StandIn::start(Behaviour::ForgetsToReport);
    let (dir, _home, coord) = start(&claude, &stand_in, "[guardian]\nidle_nudge_secs = 6\n", &[]);
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        log: stand_in.log.clone(),
        tmux: &tmux,
        coord: &coord,
    };
    let mut panes = agent_cli::PaneFixtures::new("claude", &claude, &tmux);
    let id = agent_cli::queue_task(&coord, "Leave a note for the team in CLAUDE_WAS_HERE.md");
    agent_cli::assert_seen_idle_and_reminded(
        &coord,
        dir.path(),
        &id,
        &stand_in.progress,
        &mut panes,
    );
    // Claude Code's own Stop hook said the turn was over, ahead of its screen.
    let changes: Vec<String> = common::scripted::events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "state_changed")
        .map(|(_, _, m)| m)
        .collect();
    assert!(
        changes.iter().any(|m| m.starts_with("idle (Stop hook:")),
        "{changes:?}"
    );
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A question the model asks through Claude Code's own dialog is seen as one (`agents` shows
/// the agent blocked on it), and `agents answer` gets the person's words to the model.
#[test]
fn claude_code_asking_the_person_a_question_is_seen_blocked_and_answered() {
    let Some(claude) = agent_cli::pinned_cli_or_skip("claude", "Claude Code") else {
        return;
    };
    let stand_in = StandIn::start(Behaviour::Asks);
    let (_dir, _home, coord) = start(&claude, &stand_in, "", &[]);
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        log: stand_in.log.clone(),
        tmux: &tmux,
        coord: &coord,
    };
    let mut panes = agent_cli::PaneFixtures::new("claude", &claude, &tmux);
    let id = agent_cli::queue_task(&coord, "Leave a note for the team");
    let states = || agent_state(&coord).map(|(_, s)| s).unwrap_or_default();
    wait_for("the question seen", Duration::from_secs(120), || {
        states() == "blocked_question"
    });
    panes.capture("question", "blocked_question", true);
    let (agent, _) = agent_state(&coord).unwrap();
    let listed = coord.cli_text(&["agents"]);
    assert!(listed.contains("blocked_question"), "{listed}");
    let status = coord.cli_text(&["status"]);
    assert!(
        status.contains(&format!(
            "waiting for you: agent {} is blocked_question",
            &agent[..8]
        )) && status.contains("agents answer"),
        "{status}"
    );

    // A message is not an answer: `agents answer` picks the dialog's free-text option and
    // types the person's words into it, and the model gets them as the tool's result.
    let said = coord.cli(&["agents", "answer", &agent[..8], "put it in TEAM.md"]);
    assert!(
        said.as_str().is_some_and(|s| s.contains("it went on")),
        "{said}"
    );
    wait_for("the task done", Duration::from_secs(60), || {
        coord.cli(&["task", "show", &id])["status"] == "done"
    });
    let summary = coord.cli(&["task", "show", &id])["summary"].clone();
    assert!(
        summary
            .as_str()
            .is_some_and(|s| s.contains("put it in TEAM.md")),
        "{summary}"
    );
    // Answering an agent that asks nothing is refused, with what its screen shows.
    let other = coord.cli_raw(&["agents", "answer", &agent[..8], "again"]);
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        !other.status.success() && err.contains("is not waiting for an answer"),
        "{err}"
    );
}

/// A refused key shows as Claude Code's API error, and the guardian reads `error`.
#[test]
fn claude_code_whose_key_is_refused_is_seen_in_error() {
    let Some(claude) = agent_cli::pinned_cli_or_skip("claude", "Claude Code") else {
        return;
    };
    let stand_in = StandIn::start(Behaviour::RejectsKey);
    // Two retries instead of ten: the retries show, then the error Claude Code gives up with.
    let (dir, _home, coord) = start(&claude, &stand_in, "", &[("CLAUDE_CODE_MAX_RETRIES", "2")]);
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        log: stand_in.log.clone(),
        tmux: &tmux,
        coord: &coord,
    };
    let mut panes = agent_cli::PaneFixtures::new("claude", &claude, &tmux);
    agent_cli::queue_task(&coord, "Leave a note for the team");
    wait_for("the retry on screen", Duration::from_secs(120), || {
        tmux.panes().contains("retrying in")
    });
    panes.capture("api-error-retrying", "error", false);
    wait_for("the turn given up", Duration::from_secs(60), || {
        tmux.panes().contains("Invalid API key")
    });
    std::thread::sleep(Duration::from_secs(3));
    panes.capture("api-error", "error", true);
    let explained = coord.cli(&["agents", "explain", &agent_state(&coord).unwrap().0[..8]]);
    assert_eq!(explained["reading"]["state"], "error", "{explained}");
    // Claude Code's StopFailure hook says so too, once it gives up: either may be the word.
    let rule = explained["reading"]["rule"].as_str().unwrap_or_default();
    assert!(
        rule == "StopFailure hook" || rule == "api error",
        "{explained}"
    );
    // The retries were read as they happened, before it gave up.
    let changes: Vec<String> = common::scripted::events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "state_changed")
        .map(|(_, _, m)| m)
        .collect();
    assert!(
        changes
            .iter()
            .any(|m| m.starts_with("error (api error, retrying:")),
        "{changes:?}"
    );
}

/// The guardian's model can be the user's own Claude Code, run headless (`claude -p`): no API
/// key of its own. Its verdicts are read from the CLI's JSON, and its usage is counted as the
/// CLI reports it.
#[test]
fn the_guardians_model_can_be_claude_code_run_headless() {
    let Some(claude) = agent_cli::pinned_cli_or_skip("claude", "Claude Code") else {
        return;
    };
    let stand_in = StandIn::start(Behaviour::ForgetsToReport);
    let (dir, _home, coord) = start(
        &claude,
        &stand_in,
        "[guardian]\nidle_nudge_secs = 6\njudge_every_secs = 1\n[llm]\nprovider = \"cli\"\ncommand = \"claude\"\n",
        &[],
    );
    let tmux = TmuxServer::of(&coord);
    let _on_failure = OnFailure {
        log: stand_in.log.clone(),
        tmux: &tmux,
        coord: &coord,
    };
    let status = coord.cli_text(&["status"]);
    assert!(status.contains("guardian LLM: claude -p"), "{status}");
    let id = agent_cli::queue_task(&coord, "Leave a note for the team in CLAUDE_WAS_HERE.md");
    wait_for("the task done", Duration::from_secs(180), || {
        coord.cli(&["task", "show", &id])["status"] == "done"
    });
    let judged = stand_in
        .log
        .all()
        .iter()
        .filter(|s| s.line.contains("(guardian judgement)"))
        .count() as u64;
    assert!(judged >= 1, "the guardian never asked");
    let timeline = coord.cli(&["guardian"]);
    let analyses = timeline["analyses"].as_array().unwrap();
    assert!(!analyses.is_empty(), "{timeline}");
    assert_eq!(analyses[0]["summary"], "writing the note");
    // The stand-in reports 100 input and 20 output tokens per request, and the CLI passes them on.
    let by_model = coord.cli(&["usage", "--by", "model"]);
    let cli = by_model
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "cli claude")
        .unwrap_or_else(|| panic!("{by_model}"));
    assert_eq!(
        cli["calls"].as_u64(),
        Some(analyses.len() as u64),
        "{by_model}"
    );
    assert_eq!(
        cli["input_tokens"].as_u64(),
        Some(100 * judged),
        "{by_model}"
    );
    assert_eq!(
        cli["output_tokens"].as_u64(),
        Some(20 * judged),
        "{by_model}"
    );
    let _ = dir;
}
