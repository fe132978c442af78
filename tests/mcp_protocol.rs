//! JSON-RPC behaviour through the real shim and socket: what real MCP clients send.

mod common;

use common::{Coordinator, RawShim, project};
use serde_json::json;

#[test]
fn probes_and_bad_input_get_answers_and_the_connection_keeps_working() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let mut shim = RawShim::spawn(&coord, None);

    // Claude Code probes with a string id before initialize; silence would cost it seconds.
    shim.send(
        &json!({"jsonrpc": "2.0", "id": "server-discover-probe-1", "method": "server/discover"}),
    );
    let probe = shim.response_to(&json!("server-discover-probe-1"));
    assert!(
        probe.get("error").is_some() || probe.get("result").is_some(),
        "{probe}"
    );

    // A method nobody knows, before initialize.
    shim.send(&json!({"jsonrpc": "2.0", "id": "early", "method": "vendor/unknown"}));
    assert_eq!(shim.response_to(&json!("early"))["error"]["code"], -32601);

    let init = shim.initialize("protocol-test");
    assert_eq!(
        init["result"]["protocolVersion"], "2025-06-18",
        "requested version is accepted: {init}"
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "hephaestus");
    let instructions = init["result"]["instructions"].as_str().unwrap();
    assert_eq!(instructions, include_str!("../prompts/mcp_instructions.md"));

    // ping, with a numeric and a string id.
    assert_eq!(shim.request("ping", json!({}))["result"], json!({}));
    shim.send(&json!({"jsonrpc": "2.0", "id": "p-1", "method": "ping"}));
    assert_eq!(shim.response_to(&json!("p-1"))["result"], json!({}));

    // Malformed JSON: a parse error, then business as usual.
    shim.send_raw(b"{\"jsonrpc\": \"2.0\", \"id\": 5, \"method\": \n");
    let parse_error = shim.recv();
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");
    assert!(parse_error["id"].is_null());
    assert_eq!(shim.request("ping", json!({}))["result"], json!({}));

    // Unknown method after initialize.
    let unknown = shim.request("tasks/teleport", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tasks/teleport")
    );

    // Missing and mistyped arguments: -32602 naming the field.
    let missing = shim.request(
        "tools/call",
        json!({"name": "create_task", "arguments": {"description": "x"}}),
    );
    assert_eq!(missing["error"]["code"], -32602, "{missing}");
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("done_definition"),
        "{missing}"
    );
    let bad_enum = shim.request(
        "tools/call",
        json!({"name": "create_task", "arguments": {"description": "x", "done_definition": "y", "priority": "urgent"}}),
    );
    assert_eq!(bad_enum["error"]["code"], -32602, "{bad_enum}");
    assert!(
        bad_enum["error"]["message"]
            .as_str()
            .unwrap()
            .contains("urgent"),
        "{bad_enum}"
    );
    let unknown_tool = shim.request(
        "tools/call",
        json!({"name": "make_coffee", "arguments": {}}),
    );
    assert_eq!(unknown_tool["error"]["code"], -32602, "{unknown_tool}");

    // Lenient parsing of what real clients add: _meta with a progress token, absent params.
    let listed = shim.request("tools/list", json!({"_meta": {"progressToken": "0b1c"}}));
    assert!(listed["result"]["tools"].as_array().unwrap().len() >= 10);
    let health = shim.request(
        "tools/call",
        json!({"name": "health_check", "arguments": {}, "_meta": {"progressToken": 7, "claudecode/toolUseId": "toolu_1"}}),
    );
    assert_eq!(
        health["result"]["structuredContent"]["status"], "ok",
        "{health}"
    );
}

#[test]
fn an_oversize_message_is_rejected_and_the_next_one_served() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("oversize-test");

    // 5 MiB of arguments against the default 4 MiB limit.
    let big = "x".repeat(5 * 1024 * 1024);
    shim.send(&json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
        "params": {"name": "create_task", "arguments": {"description": big, "done_definition": "y"}}}));
    let rejected = shim.recv();
    assert_eq!(rejected["error"]["code"], -32600, "{rejected}");
    assert!(
        rejected["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{rejected}"
    );
    assert_eq!(shim.request("ping", json!({}))["result"], json!({}));

    // Nothing from the oversize call was stored.
    let tasks = shim.call_tool("get_tasks", json!({}));
    assert_eq!(tasks["structuredContent"]["count"], 0);
}

#[test]
fn stdin_eof_ends_the_shim_cleanly() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("eof-test");
    shim.close_stdin();
    let status = shim
        .wait_exit(std::time::Duration::from_secs(5))
        .expect("shim exits on stdin EOF");
    assert!(status.success(), "{status}");
}

/// Claude Code 2.1 speaks the 2026-07-28 lifecycle: `server/discover`, then requests that carry
/// the client's details in `_meta`, and never `initialize`. Such a client still gets an identity.
#[test]
fn a_client_that_never_initializes_is_served_and_named() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let mut shim = RawShim::spawn(&coord, None);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "claude-code", "version": "2.1.331"}
    });
    let discovered = shim.request("server/discover", json!({"_meta": meta}));
    assert!(discovered.get("result").is_some(), "{discovered}");
    let listed = shim.request("tools/list", json!({"_meta": meta}));
    assert!(
        listed["result"]["tools"].as_array().unwrap().len() >= 10,
        "{listed}"
    );
    let status = shim.request(
        "tools/call",
        json!({"name": "get_agent_status", "arguments": {}, "_meta": meta}),
    );
    assert_eq!(
        status["result"]["structuredContent"]["you"]["name"], "external:claude-code",
        "{status}"
    );
}
