//! A scripted stand-in for the OpenAI Responses API (`POST /v1/responses`), streamed event by
//! event as the real API streams it. Codex and Droid (with its own models) both speak it; each
//! test brings its script, a function from the conversation so far to the model's next answer.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::agent_cli;

/// A function call the model makes. `namespace` is how Codex groups an MCP server's tools.
pub struct Call {
    pub namespace: Option<&'static str>,
    pub name: String,
    pub arguments: Value,
}

/// What the model "says": text, then optionally one function call.
pub struct Answer {
    pub text: String,
    pub call: Option<Call>,
}

impl Answer {
    pub fn text(text: &str) -> Answer {
        Answer {
            text: text.to_string(),
            call: None,
        }
    }

    pub fn call(
        text: &str,
        namespace: Option<&'static str>,
        name: &str,
        arguments: Value,
    ) -> Answer {
        Answer {
            text: text.to_string(),
            call: Some(Call {
                namespace,
                name: name.to_string(),
                arguments,
            }),
        }
    }
}

/// The conversation a request carries, as a script needs it.
pub struct Turn<'a> {
    pub body: &'a Value,
    /// Every tool offered, namespaced ones as `namespace.name`.
    pub tools: Vec<String>,
    /// The last function the model called (`namespace.name` when namespaced).
    pub last_call: Option<String>,
    /// (function, output text) for each function call output so far.
    pub results: Vec<(String, String)>,
    /// One word per input item, for the log.
    pub shape: Vec<&'static str>,
}

impl Turn<'_> {
    pub fn offers(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t == tool)
    }

    /// The text of the input messages with this role (`developer`, `user`, ...).
    pub fn role_text(&self, role: &str) -> String {
        self.body["input"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["role"] == role)
            .map(|item| agent_cli::content_text(&item["content"]))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything the model was told, instructions and input messages, as one text.
    pub fn all_text(&self) -> String {
        let mut text = self.body["instructions"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for item in self.body["input"].as_array().into_iter().flatten() {
            text.push('\n');
            text.push_str(&agent_cli::content_text(&item["content"]));
        }
        text
    }
}

fn qualified(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}.{name}"),
        None => name.to_string(),
    }
}

pub fn read_turn(body: &Value) -> Turn<'_> {
    let mut tools = Vec::new();
    for t in body["tools"].as_array().into_iter().flatten() {
        match t["tools"].as_array() {
            Some(inner) => tools.extend(
                inner
                    .iter()
                    .map(|i| qualified(t["name"].as_str(), i["name"].as_str().unwrap_or_default())),
            ),
            None => tools.push(t["name"].as_str().unwrap_or_default().to_string()),
        }
    }
    let mut calls = BTreeMap::new();
    let mut last_call = None;
    let mut results = Vec::new();
    let mut shape = Vec::new();
    for item in body["input"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("function_call") => {
                let name = qualified(
                    item["namespace"].as_str(),
                    item["name"].as_str().unwrap_or_default(),
                );
                calls.insert(item["call_id"].to_string(), name.clone());
                last_call = Some(name);
                shape.push("call");
            }
            Some("function_call_output") => {
                let name = calls
                    .get(&item["call_id"].to_string())
                    .cloned()
                    .unwrap_or_default();
                results.push((name, agent_cli::content_text(&item["output"])));
                shape.push("output");
            }
            _ => shape.push(match item["role"].as_str() {
                Some("assistant") => "assistant",
                Some("developer") => "developer",
                Some("system") => "system",
                Some("user") => "user",
                _ => "other",
            }),
        }
    }
    Turn {
        body,
        tools,
        last_call,
        results,
        shape,
    }
}

/// One request the CLI made, and what the stand-in answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub authorization: Option<String>,
    pub tool_results: Vec<(String, String)>,
}

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, seen: Seen) {
        self.0.lock().unwrap().push(seen);
    }

    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// Model requests only (not probes of other routes).
    pub fn model_requests(&self) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.line.starts_with("POST /v1/responses"))
            .collect()
    }

    pub fn results(&self) -> Vec<(String, String)> {
        self.all()
            .into_iter()
            .flat_map(|s| s.tool_results)
            .collect()
    }

    pub fn print(&self, cli: &str) {
        eprintln!("--- requests {cli} made to the stand-in ---");
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

/// The model's next answer to a conversation.
pub type Script = dyn Fn(&Turn) -> Answer + Send + Sync;

pub struct StandIn {
    /// The API's base URL, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    pub log: Log,
}

impl StandIn {
    pub fn start(script: impl Fn(&Turn) -> Answer + Send + Sync + 'static) -> StandIn {
        let log = Log::default();
        let l = log.clone();
        let addr = agent_cli::accept_each(move |stream| {
            if let Err(e) = serve_connection(stream, &l, &script) {
                l.push(Seen {
                    line: format!("(connection error: {e})"),
                    authorization: None,
                    tool_results: Vec::new(),
                });
            }
        });
        StandIn {
            url: format!("http://{addr}/v1"),
            log,
        }
    }
}

/// One request per connection (answered with `Connection: close`).
fn serve_connection(stream: TcpStream, log: &Log, script: &Script) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let Some(req) = agent_cli::read_request(&mut reader)? else {
        return Ok(());
    };
    let route = req.path.split('?').next().unwrap_or_default();
    let (status, content_type, body, line, tool_results) = match (req.method.as_str(), route) {
        ("POST", "/v1/responses") => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let turn = read_turn(&body);
            let answer = script(&turn);
            let line = format!(
                "model={} stream={} tools={} input=[{}] last_call={:?} -> {}",
                body["model"],
                body["stream"],
                turn.tools.len(),
                turn.shape.join(" "),
                turn.last_call,
                answer
                    .call
                    .as_ref()
                    .map_or("text only".to_string(), |c| format!("call {}", c.name))
            );
            let results = turn.results.clone();
            ("200 OK", "text/event-stream", sse(&body, &answer), line, results)
        }
        _ => (
            "404 Not Found",
            "application/json",
            json!({"error": {"message": "not served by the stand-in", "type": "invalid_request_error"}})
                .to_string(),
            format!("({} body bytes) -> 404", req.body.len()),
            Vec::new(),
        ),
    };
    log.push(Seen {
        line: format!("{} {} {line}", req.method, req.path),
        authorization: req.headers.get("authorization").cloned(),
        tool_results,
    });
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\nx-request-id: req_standin\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The streamed form of `answer`, event by event as the Responses API sends it.
fn sse(request: &Value, answer: &Answer) -> String {
    // Unique per answer, as the API's ids are.
    let id = next_id();
    let model = request["model"].as_str().unwrap_or("stand-in");
    let response_id = format!("resp_standin_{id:04}");
    let message_id = format!("msg_standin_{id:04}");
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
    if let Some(call) = &answer.call {
        let item_id = format!("fc_standin_{id:04}");
        let arguments = call.arguments.to_string();
        let mut item = json!({"id": item_id, "type": "function_call", "status": "completed",
            "call_id": format!("call_standin_{id:04}"), "name": call.name, "arguments": arguments});
        if let Some(ns) = call.namespace {
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
