//! Agent memory through the real shim, socket and SQLite file.

mod common;

use common::{Coordinator, RawShim, project};
use serde_json::json;

#[test]
fn agents_save_find_and_keep_memories_across_restarts() {
    let dir = project();
    let mut coord = Coordinator::start(dir.path());
    let (agent, token) = coord.register_agent("worker");
    let mut person = RawShim::spawn(&coord, None);
    person.initialize("claude-code");
    let started = person.tool_ok(
        "start_workflow_execution",
        json!({"definition_id": "bug-fix", "description": "fix login", "parameters": {"bug_description": "crash"}}),
    );
    let first = started["first_task"]["id"].as_str().unwrap().to_string();
    let workflow = started["workflow"]["id"].as_str().unwrap().to_string();
    coord.cli(&["task", "assign", &first, "--agent", &agent]);
    let mut worker = RawShim::spawn(&coord, Some((&agent, &token)));
    worker.initialize("codex");

    let saved = worker.tool_ok(
        "save_memory",
        json!({"content": "the session cookie is signed with the key in config/secret.toml", "memory_type": "codebase_knowledge",
               "tags": ["auth"], "related_files": ["config/secret.toml"]}),
    );
    assert_eq!(saved["outcome"], "stored");
    let again = worker.tool_ok(
        "save_memory",
        json!({"content": "the session cookie is signed with the key in config/secret.toml", "memory_type": "codebase_knowledge"}),
    );
    assert_eq!(again["outcome"], "duplicate");
    assert_eq!(again["id"], saved["id"]);
    person.tool_ok("save_memory", json!({"content": "run the migrations before the integration tests", "memory_type": "warning"}));
    let bad = person.request(
        "tools/call",
        json!({"name": "save_memory", "arguments": {"content": "x", "memory_type": "gossip"}}),
    );
    assert_eq!(bad["error"]["code"], -32602, "{bad}");

    let found = person.tool_ok(
        "search_memories",
        json!({"query": "how is the session cookie signed", "limit": 3}),
    );
    let top = &found["memories"][0];
    assert_eq!(
        top["content"],
        "the session cookie is signed with the key in config/secret.toml"
    );
    assert_eq!(top["agent_id"], json!(agent));
    assert_eq!(top["related_files"], json!(["config/secret.toml"]));
    assert!(top["similarity"].as_f64().unwrap() > 0.3);
    let warnings = person.tool_ok(
        "search_memories",
        json!({"query": "session cookie", "memory_types": ["warning"]}),
    );
    assert!(
        warnings["memories"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["memory_type"] == "warning")
    );
    let strict = person.tool_ok(
        "search_memories",
        json!({"query": "session cookie", "min_score": 0.99}),
    );
    assert_eq!(strict["memories"], json!([]));
    // Scope: the worker's own workflow holds only what was saved within it.
    let scoped = worker.tool_ok(
        "search_memories",
        json!({"query": "migrations integration tests", "scope": "workflow"}),
    );
    assert!(
        scoped["memories"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["memory_type"] != "warning"),
        "{scoped}"
    );
    let refused = person.tool_refused(
        "search_memories",
        json!({"query": "x", "scope": "workflow"}),
    );
    assert!(refused.contains("not working in a workflow"), "{refused}");

    // Key learnings become memories of type learning.
    worker.tool_ok(
        "update_task_status",
        json!({"status": "done", "summary": "reproduced", "key_learnings": ["the crash needs an empty password field"]}),
    );
    let learned = person.tool_ok(
        "search_memories",
        json!({"query": "empty password field crash", "memory_types": ["learning"]}),
    );
    assert_eq!(
        learned["memories"][0]["content"],
        "the crash needs an empty password field"
    );
    let listed = coord.cli(&["memory", "list"]);
    let learning = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["memory_type"] == "learning")
        .unwrap();
    assert_eq!(learning["task_id"], json!(first));
    assert_eq!(learning["workflow_id"], json!(workflow));

    // SQLite is the truth: a restarted coordinator finds everything again.
    drop(worker);
    drop(person);
    coord.stop();
    let coord = Coordinator::start(dir.path());
    let found = coord.cli(&["memory", "search", "session cookie signing key"]);
    assert_eq!(
        found[0]["memory"]["content"],
        "the session cookie is signed with the key in config/secret.toml"
    );
    let reindexed = coord.cli(&["memory", "reindex"]);
    assert_eq!(reindexed["indexed"], 3);
    assert_eq!(reindexed["embedded"], 0, "nothing needed a new vector");
    let status = coord.cli(&["status"]);
    assert_eq!(status["memory"]["degraded"], true);
    assert_eq!(status["memory"]["indexed"], 3);
}

/// A stand-in for an OpenAI-compatible `/v1/embeddings` endpoint, on 127.0.0.1: the real wire
/// format, a 429 on the first request, and an outage (answers slower than the client's timeout)
/// that the test switches on and off.
struct EmbeddingServer {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<(u16, String)>>>,
    outage: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn toy_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; 8];
    for w in text.split_whitespace() {
        let h = w.bytes().fold(2166136261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16777619)
        });
        v[(h % 8) as usize] += 1.0;
    }
    v
}

fn embedding_server() -> EmbeddingServer {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let outage = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (log, down) = (requests.clone(), outage.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(500) {
            let Ok(stream) = stream else { continue };
            let (log, down) = (log.clone(), down.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let (mut length, mut auth) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if lower.starts_with("authorization:") {
                        auth = line.trim().to_string();
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let first = log.lock().unwrap().is_empty();
                let (status, reply) = if down.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_secs(3));
                    (503, String::from("{\"error\":{\"message\":\"down\"}}"))
                } else if first {
                    (
                        429,
                        String::from("{\"error\":{\"message\":\"rate limited\"}}"),
                    )
                } else {
                    let data: Vec<serde_json::Value> = request["input"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": toy_embedding(t.as_str().unwrap())}))
                        .collect();
                    (200, json!({"object": "list", "data": data, "model": request["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}).to_string())
                };
                log.lock().unwrap().push((status, auth));
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nretry-after: 0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            });
        }
    });
    EmbeddingServer {
        url,
        requests,
        outage,
    }
}

#[test]
fn an_openai_compatible_endpoint_embeds_memories_with_retries_and_outages() {
    use std::sync::atomic::Ordering;
    let server = embedding_server();
    let dir = project();
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        format!(
            "[memory]\nembedder = \"openai\"\nbase_url = \"{}\"\nmodel = \"toy-embed\"\napi_key_env = \"TOY_KEY\"\ndimensions = 8\ntimeout_secs = 1\nmax_retries = 1\npending_retry_secs = 1\n",
            server.url
        ),
    )
    .unwrap();
    let coord = Coordinator::start_with_env(
        dir.path(),
        &["--no-agents"],
        &[("TOY_KEY", "sk-toy"), ("HEPHAESTUS_EMBEDDER", "openai")],
    );
    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("claude-code");

    // The first request is rate limited; the retry goes through.
    let saved = shim.tool_ok(
        "save_memory",
        json!({"content": "alpha beta gamma", "memory_type": "discovery"}),
    );
    assert_eq!(saved["outcome"], "stored");
    {
        let log = server.requests.lock().unwrap();
        assert_eq!(log[0].0, 429, "{log:?}");
        assert!(log.iter().any(|(s, _)| *s == 200));
        assert!(
            log.iter()
                .all(|(_, auth)| auth == "authorization: Bearer sk-toy"
                    || auth == "Authorization: Bearer sk-toy"),
            "{log:?}"
        );
    }
    let found = shim.tool_ok("search_memories", json!({"query": "alpha beta gamma"}));
    assert_eq!(found["memories"][0]["content"], "alpha beta gamma");
    assert!(found["memories"][0]["similarity"].as_f64().unwrap() > 0.99);
    assert_eq!(
        coord.cli(&["status"])["memory"]["embedder"],
        "openai:toy-embed:8"
    );

    // During an outage a memory is still saved, as pending, and indexed once the endpoint is back.
    server.outage.store(true, Ordering::SeqCst);
    let pending = shim.tool_ok(
        "save_memory",
        json!({"content": "delta epsilon zeta", "memory_type": "warning"}),
    );
    assert_eq!(pending["outcome"], "pending");
    assert_eq!(coord.cli(&["status"])["memory"]["pending"], 1);
    server.outage.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while coord.cli(&["status"])["memory"]["pending"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pending memory was never indexed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let found = shim.tool_ok("search_memories", json!({"query": "delta epsilon zeta"}));
    assert_eq!(found["memories"][0]["content"], "delta epsilon zeta");
}
