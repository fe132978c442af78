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
