//! The people-facing CLI against a running coordinator, and `mcp-config` for each agent CLI.

mod common;

use common::{Coordinator, command, project};
use serde_json::Value;

fn text(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tasks_and_workflows_from_the_command_line() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let run = |args: &[&str]| text(command(dir.path()).args(args).output().unwrap());

    let created = coord.cli(&[
        "task",
        "create",
        "write the changelog",
        "--done",
        "CHANGELOG.md updated",
        "--priority",
        "high",
        "--key",
        "changelog",
    ]);
    let id = created["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["created"], true);
    let repeat = run(&[
        "task",
        "create",
        "write the changelog",
        "--done",
        "x",
        "--key",
        "changelog",
    ]);
    assert!(
        repeat.contains("idempotency key already used") && repeat.contains(&id),
        "{repeat}"
    );

    let listed = run(&["task", "list"]);
    assert!(
        listed.contains(&id) && listed.contains("queued") && listed.contains("high"),
        "{listed}"
    );
    let shown = run(&["task", "show", &id]);
    assert!(
        shown.contains("CHANGELOG.md updated") && shown.contains("status:    queued"),
        "{shown}"
    );
    assert_eq!(
        coord.cli(&["task", "list", "--status", "done"]),
        Value::Array(vec![])
    );

    let bad = command(dir.path())
        .args(["task", "create", "x", "--done", "y", "--priority", "urgent"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("use low, medium or high"));

    let workflows = run(&["workflow", "list"]);
    assert!(
        workflows.contains("bug-fix") && workflows.contains("bug_description*"),
        "{workflows}"
    );
    let started = run(&[
        "workflow",
        "start",
        "feature-dev",
        "--description",
        "dark mode",
        "--param",
        "feature_description=add a dark theme",
    ]);
    assert!(started.contains("started workflow"), "{started}");
    let missing = command(dir.path())
        .args(["workflow", "start", "feature-dev", "--description", "x"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("feature_description"));

    let status = run(&["status"]);
    assert!(
        status.contains("feature-dev") && status.contains("2 queued"),
        "{status}"
    );
    let agents = run(&["agents"]);
    assert!(agents.contains("(none)"), "{agents}");
    // A wrong id says how to find the right one, in the CLI's own terms.
    let missing = coord.cli_raw(&["task", "show", "no-such-task"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no task with id no-such-task: see `hephaestus task list`"),
        "{err}"
    );
}

#[test]
fn commands_say_when_no_coordinator_runs() {
    let dir = project();
    let out = command(dir.path()).args(["status"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the coordinator") && err.contains("hephaestus serve"),
        "{err}"
    );
}

#[test]
fn mcp_config_prints_each_clients_own_format() {
    let dir = project();
    let socket = dir
        .path()
        .join(".hephaestus/coordinator.sock")
        .display()
        .to_string();
    let snippet = |client: &str| {
        text(
            command(dir.path())
                .args(["mcp-config", "--client", client])
                .output()
                .unwrap(),
        )
    };

    let claude: Value = serde_json::from_str(&snippet("claude")).unwrap();
    assert_eq!(claude["mcpServers"]["hephaestus"]["args"][0], "shim");
    assert_eq!(
        claude["mcpServers"]["hephaestus"]["env"]["HEPHAESTUS_SOCKET"],
        socket.as_str()
    );
    let gemini: Value = serde_json::from_str(&snippet("gemini")).unwrap();
    assert_eq!(gemini["mcpServers"]["hephaestus"]["trust"], true);
    let droid: Value = serde_json::from_str(&snippet("droid")).unwrap();
    assert_eq!(droid["mcpServers"]["hephaestus"]["type"], "stdio");
    let opencode: Value = serde_json::from_str(&snippet("opencode")).unwrap();
    assert_eq!(opencode["mcp"]["hephaestus"]["type"], "local");
    let codex: toml::Table = toml::from_str(&snippet("codex")).unwrap();
    assert_eq!(
        codex["mcp_servers"]["hephaestus"]["env"]["HEPHAESTUS_SOCKET"].as_str(),
        Some(socket.as_str())
    );
    let command_path = claude["mcpServers"]["hephaestus"]["command"]
        .as_str()
        .unwrap();
    assert!(
        std::path::Path::new(command_path).is_file(),
        "the command is the real binary: {command_path}"
    );
}

#[test]
fn config_file_and_environment_reach_the_coordinator() {
    let dir = project();
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        "max_concurrent_agents = 2\n",
    )
    .unwrap();
    let coord = Coordinator::start(dir.path());
    assert_eq!(coord.cli(&["status"])["max_concurrent_agents"], 2);
    drop(coord);

    std::fs::write(dir.path().join("hephaestus.toml"), "max_agents = 2\n").unwrap();
    let out = command(dir.path()).arg("serve").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hephaestus.toml") && err.contains("max_agents"),
        "{err}"
    );
}

#[test]
fn memory_commands_say_when_there_is_nothing_and_logs_to_a_file_are_plain_text() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    assert_eq!(coord.cli_text(&["memory", "list"]), "no memories yet\n");
    assert_eq!(
        coord.cli_text(&["memory", "search", "anything"]),
        "no memory matches\n"
    );
    let status = coord.cli_text(&["status"]);
    assert!(
        status.contains("memory: 0 indexed, 0 pending · embedder hashing-v1-384 · embedded"),
        "{status}"
    );
    assert!(status.contains("memory quality is degraded"), "{status}");
    // The coordinator's stderr goes to a file here: no terminal colour codes in it.
    let log = coord.stderr();
    assert!(log.contains("coordinator listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}

/// A person seeds what agents should know: saved with no agent, refused when malformed,
/// deduplicated, and found by agents through the shim; and deletes a wrong memory.
#[test]
fn people_save_memories_that_agents_find_and_delete_wrong_ones() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let save = |args: &[&str]| {
        command(dir.path())
            .args(["memory", "save"])
            .args(args)
            .output()
            .unwrap()
    };
    let saved = text(save(&[
        "The staging database is wiped every night at 02:00 UTC",
        "--type",
        "warning",
        "--tag",
        "staging",
        "--file",
        "deploy/staging.toml",
    ]));
    assert_eq!(saved, "saved memory 1\n");
    let again = text(save(&[
        "The staging database is wiped every night at 02:00 UTC",
        "--type",
        "warning",
    ]));
    assert!(
        again.starts_with("not stored: memory 1 already says this"),
        "{again}"
    );
    for (args, says) in [
        (&["text", "--type", "gossip"][..], "use one of error_fix"),
        (&["  ", "--type", "warning"][..], "must not be empty"),
    ] {
        let out = save(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(coord.cli(&["memory", "list"]).as_array().unwrap().len(), 1);

    let mut agent = common::RawShim::spawn(&coord, None);
    agent.initialize("claude-code");
    let found = agent.tool_ok(
        "search_memories",
        serde_json::json!({"query": "staging database wiped"}),
    );
    let top = &found["memories"][0];
    assert_eq!(top["memory_type"], "warning", "{found}");
    assert_eq!(top["agent_id"], Value::Null, "{found}");
    assert_eq!(top["tags"], serde_json::json!(["staging"]), "{found}");
    assert_eq!(
        top["related_files"],
        serde_json::json!(["deploy/staging.toml"]),
        "{found}"
    );

    // A wrong memory is deleted: gone from search, list and the index; a second delete says so.
    text(save(&["Deploys go out on Fridays", "--type", "decision"]));
    assert_eq!(coord.cli(&["status"])["memory"]["indexed"], 2);
    assert_eq!(
        text(
            command(dir.path())
                .args(["memory", "delete", "2"])
                .output()
                .unwrap()
        ),
        "deleted memory 2\n"
    );
    let again = command(dir.path())
        .args(["memory", "delete", "2"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no memory 2"),
        "{again:?}"
    );
    let status = coord.cli(&["status"]);
    assert_eq!(status["memory"]["indexed"], 1, "{status}");
    let found = agent.tool_ok(
        "search_memories",
        serde_json::json!({"query": "when do deploys go out", "limit": 10}),
    );
    assert!(
        found["memories"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != 2),
        "{found}"
    );
    assert_eq!(coord.cli(&["memory", "list"]).as_array().unwrap().len(), 1);
}

/// Memories move between projects: `memory export` writes JSON lines, `memory import` saves them
/// in another project with their age, skips what it already knows, and refuses a bad file whole.
#[test]
fn memories_are_exported_and_imported_into_another_project() {
    let from = project();
    let source = Coordinator::start(from.path());
    for (content, kind) in [
        (
            "Never run the migrations against production by hand",
            "warning",
        ),
        ("The API moved to v2 in March", "discovery"),
    ] {
        text(
            command(from.path())
                .args(["memory", "save", content, "--type", kind])
                .output()
                .unwrap(),
        );
    }
    let mut agent = common::RawShim::spawn(&source, None);
    agent.initialize("claude-code");
    agent.tool_ok(
        "save_memory",
        serde_json::json!({"content": "cargo test needs tmux", "memory_type": "learning", "tags": ["ci"]}),
    );
    let file = from.path().join("memories.jsonl");
    let out = command(from.path())
        .args(["memory", "export", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 3 memories"));
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(exported.lines().count(), 3, "{exported}");
    assert_eq!(
        text(
            command(from.path())
                .args(["memory", "export"])
                .output()
                .unwrap()
        ),
        exported
    );
    let original = source.cli(&["memory", "list"]);

    let to = project();
    let target = Coordinator::start(to.path());
    let import = || {
        command(to.path())
            .args(["memory", "import"])
            .arg(&file)
            .output()
            .unwrap()
    };
    assert_eq!(
        text(import()),
        "imported 3 memories: 3 stored, 0 already known, 0 pending\n"
    );
    assert_eq!(
        text(import()),
        "imported 3 memories: 0 stored, 3 already known, 0 pending\n"
    );
    let imported = target.cli(&["memory", "list"]);
    let by_content = |list: &Value, content: &str| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|m| m["content"] == content)
            .cloned()
            .unwrap()
    };
    let learned = by_content(&imported, "cargo test needs tmux");
    assert_eq!(learned["agent_id"], Value::Null, "{learned}");
    assert_eq!(learned["tags"], serde_json::json!(["ci"]));
    assert_eq!(
        learned["created_at_ms"],
        by_content(&original, "cargo test needs tmux")["created_at_ms"],
        "an imported memory keeps its age"
    );

    // One bad line and nothing is stored.
    let bad = to.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"content\": \"fine\", \"memory_type\": \"decision\"}\n{\"content\": \"x\", \"memory_type\": \"gossip\"}\n",
    )
    .unwrap();
    let out = command(to.path())
        .args(["memory", "import"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("gossip"), "{err}");
    assert_eq!(target.cli(&["memory", "list"]).as_array().unwrap().len(), 3);
}
