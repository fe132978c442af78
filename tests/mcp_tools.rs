//! Every MCP tool through the real shim, socket and SQLite file; authorization between agents;
//! the `tools/list` contract as a snapshot read by an rmcp client.

mod common;

use std::path::PathBuf;

use common::{Coordinator, RawShim, command, project};
use serde_json::{Value, json};

#[test]
fn a_person_starts_a_workflow_and_agents_work_it_through_the_tools() {
    let dir = project();
    let coord = Coordinator::start(dir.path());

    // A person's own Claude session: no agent id, so an external agent is registered for it.
    let mut person = RawShim::spawn(&coord, None);
    person.initialize("claude-code");
    let me = person.tool_ok("get_agent_status", json!({}));
    assert_eq!(me["you"]["kind"], "external");
    assert_eq!(me["you"]["name"], "external:claude-code");

    let defs = person.tool_ok("list_workflow_definitions", json!({}));
    let ids: Vec<&str> = defs["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bug-fix", "feature-dev", "prd-to-software"]);

    let refused = person.tool_refused(
        "start_workflow_execution",
        json!({"definition_id": "bug-fix", "description": "fix login"}),
    );
    assert!(
        refused.contains("bug_description"),
        "missing required parameter is named: {refused}"
    );
    let started = person.tool_ok(
        "start_workflow_execution",
        json!({"definition_id": "bug-fix", "description": "fix login",
               "parameters": {"bug_description": "login crashes on an empty password"}}),
    );
    let wf = started["workflow"]["id"].as_str().unwrap().to_string();
    let first = started["first_task"]["id"].as_str().unwrap().to_string();
    assert_eq!(started["first_task"]["phase"], 1);
    assert!(
        started["first_task"]["description"]
            .as_str()
            .unwrap()
            .contains("empty password")
    );

    let runs = person.tool_ok("list_workflow_executions", json!({"status": "active"}));
    assert_eq!(runs["workflows"][0]["id"], json!(wf));
    assert_eq!(
        person.tool_ok("list_workflow_executions", json!({"status": "completed"}))["workflows"],
        json!([])
    );
    let run = person.tool_ok("get_workflow_execution", json!({"workflow_id": wf}));
    assert_eq!(run["phases"].as_array().unwrap().len(), 3);
    assert_eq!(run["task_counts"]["queued"], 1);

    // Phase 2 work that waits for the first task, created by the person.
    let fix = person.tool_ok(
        "create_task",
        json!({"description": "implement the fix", "done_definition": "tests pass", "phase": 2,
               "priority": "high", "depends_on": [first], "workflow_id": wf}),
    );
    assert_eq!(fix["task"]["status"], "blocked");
    let fix_id = fix["task"]["id"].as_str().unwrap().to_string();

    // get_tasks honours every filter.
    assert_eq!(
        person.tool_ok("get_tasks", json!({"status": "blocked"}))["count"],
        1
    );
    assert_eq!(
        person.tool_ok("get_tasks", json!({"status": "queued"}))["tasks"][0]["id"],
        json!(first)
    );
    assert_eq!(
        person.tool_ok("get_tasks", json!({"phase": 2}))["tasks"][0]["id"],
        json!(fix_id)
    );
    assert_eq!(
        person.tool_ok("get_tasks", json!({"workflow_id": wf}))["count"],
        2
    );
    assert_eq!(
        person.tool_ok("get_tasks", json!({"workflow_id": "other"}))["count"],
        0
    );
    assert_eq!(
        person.tool_ok("get_tasks", json!({"status": "open", "phase": 1}))["count"],
        1
    );

    // An agent gets the first task (the agent manager's claim, through the CLI here).
    let (agent, token) = coord.register_agent("investigator");
    coord.cli(&["task", "assign", &first, "--agent", &agent]);
    let mut worker = RawShim::spawn(&coord, Some((&agent, &token)));
    worker.initialize("claude-code");
    let mine = worker.tool_ok("get_task", json!({}));
    assert_eq!(
        mine["id"],
        json!(first),
        "get_task defaults to the caller's task"
    );
    assert_eq!(
        worker.tool_ok("update_task_status", json!({"status": "in_progress"}))["status"],
        "in_progress"
    );

    // Follow-up work created by the agent lands in its workflow and phase by default.
    let follow = worker.tool_ok(
        "create_task",
        json!({"description": "add a regression test", "done_definition": "test fails before the fix",
               "idempotency_key": "regression-test"}),
    );
    assert_eq!(follow["task"]["workflow_id"], json!(wf));
    assert_eq!(follow["task"]["phase"], 1);
    assert_eq!(follow["task"]["parent_task_id"], json!(first));
    assert_eq!(follow["task"]["created_by_agent_id"], json!(agent));
    let again = worker.tool_ok(
        "create_task",
        json!({"description": "add a regression test", "done_definition": "x", "idempotency_key": "regression-test"}),
    );
    assert_eq!(again["created"], false);
    assert_eq!(again["task"]["id"], follow["task"]["id"]);

    let refused = worker.tool_refused("update_task_status", json!({"status": "done"}));
    assert!(refused.contains("summary is required"), "{refused}");
    let done = worker.tool_ok(
        "update_task_status",
        json!({"status": "done", "summary": "reproduced; root cause in auth.rs",
               "key_learnings": ["empty passwords bypass the length check"]}),
    );
    assert_eq!(done["status"], "done");
    assert_eq!(
        done["key_learnings"],
        json!(["empty passwords bypass the length check"])
    );

    // Its dependent is released into the queue.
    let fix_now = person.tool_ok("get_task", json!({"task_id": fix_id}));
    assert_eq!(fix_now["status"], "queued");
    assert_eq!(fix_now["waiting_on"], json!([]));

    let health = worker.tool_ok("health_check", json!({}));
    assert_eq!(health["status"], "ok");
    assert_eq!(health["tasks"]["done"], 1);
    let status = worker.tool_ok("get_agent_status", json!({}));
    assert_eq!(status["you"]["id"], json!(agent));
    assert_eq!(status["you"]["current_task_id"], Value::Null);

    // One debug line per tool call in the coordinator's log: agent, tool, duration, outcome.
    // The log is written by a background thread: give it a moment.
    let log_path = dir.path().join(".hephaestus/logs/coordinator.log");
    let refused_update = |l: &&str| {
        l.contains("tool call")
            && l.contains("tool=update_task_status")
            && l.contains("outcome=\"tool_error\"")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if log.lines().any(|l| refused_update(&l)) || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let line = log
        .lines()
        .find(refused_update)
        .unwrap_or_else(|| panic!("no tool-call line for the refused update in:\n{log}"));
    assert!(
        line.contains(&format!("agent={agent}")) && line.contains("micros="),
        "{line}"
    );

    // The writes are in the real SQLite file, readable by any SQLite client.
    let db = rusqlite::Connection::open_with_flags(
        dir.path().join(".hephaestus/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let stored: String = db
        .query_row("SELECT status FROM tasks WHERE id = ?1", [&first], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "done");
}

#[test]
fn an_agent_may_update_only_its_own_tasks() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let (alice, alice_token) = coord.register_agent("alice");
    let (bob, bob_token) = coord.register_agent("bob");
    let alices = coord.create_task("alice's task");
    let unassigned = coord.create_task("nobody's task");
    coord.cli(&["task", "assign", &alices, "--agent", &alice]);

    let mut b = RawShim::spawn(&coord, Some((&bob, &bob_token)));
    b.initialize("codex");
    let refused = b.tool_refused(
        "update_task_status",
        json!({"task_id": alices, "status": "done", "summary": "stolen"}),
    );
    assert!(
        refused.contains(&format!("assigned to agent {alice}")),
        "{refused}"
    );
    assert!(
        refused.contains("only update tasks assigned to you"),
        "{refused}"
    );
    let refused = b.tool_refused(
        "update_task_status",
        json!({"task_id": unassigned, "status": "failed", "failure_reason": "x"}),
    );
    assert!(refused.contains("not assigned"), "{refused}");
    let refused = b.tool_refused(
        "update_task_status",
        json!({"status": "done", "summary": "x"}),
    );
    assert!(refused.contains("no current task"), "{refused}");
    let refused = b.tool_refused("get_task", json!({"task_id": "no-such-task"}));
    assert!(
        refused.contains("no task with id no-such-task: use get_tasks"),
        "{refused}"
    );

    let mut a = RawShim::spawn(&coord, Some((&alice, &alice_token)));
    a.initialize("claude-code");
    let failed = a.tool_ok(
        "update_task_status",
        json!({"status": "failed", "failure_reason": "the API is down"}),
    );
    assert_eq!(failed["status"], "failed");
    let refused = a.tool_refused(
        "update_task_status",
        json!({"task_id": alices, "status": "done", "summary": "late"}),
    );
    assert!(refused.contains("already failed"), "{refused}");
    assert_eq!(
        coord.cli(&["task", "show", &alices])["failure_reason"],
        "the API is down"
    );
}

#[test]
fn two_concurrent_claims_of_one_task_have_exactly_one_winner() {
    let dir = project();
    // Every round leaves one task assigned; keep the cap out of the way.
    let coord = Coordinator::start_with(
        dir.path(),
        &["--no-agents", "--max-concurrent-agents", "100"],
    );
    for round in 0..5 {
        let task = coord.create_task(&format!("contested {round}"));
        let agents: Vec<String> = (0..2)
            .map(|i| coord.register_agent(&format!("r{round}a{i}")).0)
            .collect();
        let children: Vec<_> = agents
            .iter()
            .map(|a| {
                command(dir.path())
                    .args(["--json", "task", "assign", &task, "--agent", a])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outcomes: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let winners = outcomes.iter().filter(|o| o.status.success()).count();
        assert_eq!(winners, 1, "round {round}: exactly one claim wins");
        let loser = outcomes.iter().find(|o| !o.status.success()).unwrap();
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(err.contains("not queued"), "{err}");
        let shown = coord.cli(&["task", "show", &task]);
        assert_eq!(shown["status"], "assigned");
        let winner = &agents[outcomes.iter().position(|o| o.status.success()).unwrap()];
        assert_eq!(shown["assigned_agent_id"], json!(winner));
    }
}

#[test]
fn the_concurrency_cap_is_enforced_on_claims() {
    let dir = project();
    let coord =
        Coordinator::start_with(dir.path(), &["--no-agents", "--max-concurrent-agents", "1"]);
    let t1 = coord.create_task("one");
    let t2 = coord.create_task("two");
    let (a, _) = coord.register_agent("a");
    let (b, _) = coord.register_agent("b");
    coord.cli(&["task", "assign", &t1, "--agent", &a]);
    let out = coord.cli_raw(&["task", "assign", &t2, "--agent", &b]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at capacity"));
}

/// `tools/list` as an rmcp client sees it through the real shim: names, input schemas and
/// output schemas. The snapshot is the agents' contract; set UPDATE_SNAPSHOTS=1 to accept a
/// deliberate change.
#[tokio::test]
async fn tools_list_matches_the_snapshot() {
    use rmcp::ServiceExt;
    use rmcp::transport::TokioChildProcess;

    let dir = project();
    let coord = Coordinator::start(dir.path());
    let mut cmd = tokio::process::Command::new(common::bin());
    cmd.arg("shim")
        .env("HEPHAESTUS_SOCKET", &coord.socket)
        .current_dir(dir.path());
    let client =
        ().serve(TokioChildProcess::new(cmd).unwrap())
            .await
            .expect("rmcp client initializes");
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("hephaestus")
    );
    let tools = client.list_all_tools().await.unwrap();
    let snapshot: Vec<Value> = tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema, "outputSchema": t.output_schema}))
        .collect();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "broadcast_message",
            "create_task",
            "get_agent_status",
            "get_messages",
            "get_task",
            "get_tasks",
            "get_workflow_execution",
            "health_check",
            "list_workflow_definitions",
            "list_workflow_executions",
            "save_memory",
            "search_memories",
            "send_message",
            "start_workflow_execution",
            "update_task_status"
        ]
    );
    for t in &tools {
        assert!(t.output_schema.is_some(), "{} has an output schema", t.name);
        let props = t.input_schema.get("properties").and_then(|p| p.as_object());
        assert!(
            props.is_none_or(|p| !p.contains_key("agent_id")),
            "{}: identity is implicit",
            t.name
        );
    }
    // A structured result really matches: call one tool through the rmcp client.
    let health = client
        .call_tool(rmcp::model::CallToolRequestParams::new("health_check"))
        .await
        .unwrap();
    assert_eq!(health.structured_content.unwrap()["status"], "ok");

    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/tools_list.json");
    let actual = serde_json::to_string_pretty(&snapshot).unwrap() + "\n";
    // Formats JSON Schema validators do not know are warned about by clients (OpenCode prints
    // them over its own screen): none may reach them.
    assert!(
        !actual.contains("\"format\": \"uint"),
        "a uint format reached tools/list"
    );
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        actual, expected,
        "tools/list changed; review it and rerun with UPDATE_SNAPSHOTS=1"
    );
    client.cancel().await.unwrap();
}

#[test]
fn agents_message_each_other_through_inboxes() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let (a, a_token) = coord.register_agent("a");
    let (b, b_token) = coord.register_agent("b");
    let mut sa = RawShim::spawn(&coord, Some((&a, &a_token)));
    sa.initialize("codex");
    let mut sb = RawShim::spawn(&coord, Some((&b, &b_token)));
    sb.initialize("gemini-cli");

    sa.tool_ok(
        "send_message",
        json!({"recipient_agent_id": b, "message": "schema is in db/schema.sql"}),
    );
    let refused = sa.tool_refused(
        "send_message",
        json!({"recipient_agent_id": "nobody", "message": "x"}),
    );
    assert!(refused.contains("no agent with id nobody"), "{refused}");
    let inbox = sb.tool_ok("get_messages", json!({}));
    assert_eq!(inbox["messages"][0]["body"], "schema is in db/schema.sql");
    assert_eq!(inbox["messages"][0]["from_agent_id"], json!(a));
    assert_eq!(sb.tool_ok("get_messages", json!({}))["messages"], json!([]));

    let sent = sb.tool_ok(
        "broadcast_message",
        json!({"message": "tests are red on trunk"}),
    );
    assert_eq!(sent["recipients"], json!([a]));
    let limited = sb.tool_refused("broadcast_message", json!({"message": "again"}));
    assert!(limited.contains("wait"), "{limited}");
    let inbox = sa.tool_ok("get_messages", json!({}));
    assert_eq!(inbox["messages"][0]["broadcast"], true);
}
