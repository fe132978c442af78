//! The guardian's LLM judgement through the real coordinator: a scripted agent in tmux, and a
//! stand-in on 127.0.0.1 for each chat wire format (OpenAI-compatible Chat Completions,
//! Anthropic Messages) answering scripted verdicts with fixed token counts. What the stand-in
//! served is what the usage rows must add up to, exactly.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Coordinator;
use common::agent_cli::{self, Reply, TmuxServer};
use common::scripted::{agent_project_with, create, events_with_detail, wait_until, with_rules};
use serde_json::{Value, json};

const STEER: &str = "Write the tests first.";

/// What a stand-in was asked: each request's headers and body.
#[derive(Default)]
struct Asked(Vec<(std::collections::BTreeMap<String, String>, Value)>);

fn project(flags: &str, llm: &str) -> tempfile::TempDir {
    let (dir, _) = agent_project_with(
        flags,
        &format!(
            "delivery_timeout_secs = 5\n[guardian]\nidle_nudge_secs = 4\njudge_every_secs = 1\nsteer_every_secs = 0\n[llm]\n{llm}"
        ),
    );
    with_rules(dir.path());
    dir
}

fn usage(coord: &Coordinator) -> Value {
    coord.cli(&["usage"])[0].clone()
}

/// The OpenAI-compatible format: every judgement says the agent drifts and gives the same
/// steer. It is typed once, when the agent is between turns, and the agent acts on it; the
/// judgements after it ask for the same steer again and it is not typed again; the reminder
/// then gets the report. Every call is in the usage, priced from the table.
#[test]
fn a_drifting_agent_is_steered_once_and_every_call_is_counted() {
    let asked = Arc::new(Mutex::new(Asked::default()));
    let a = asked.clone();
    let url = agent_cli::serve(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        a.lock().unwrap().0.push((req.headers.clone(), body));
        let verdict = json!({
            "alignment_score": 0.3, "aligned": false, "needs_steering": true,
            "steering_type": "drifting", "message": STEER,
            "summary": "refactoring the logger instead of adding the flag"
        });
        Reply::json(
            200,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4.1-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": verdict.to_string()}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}
            })
            .to_string(),
        )
    });
    let dir = project(
        "--await-guidance",
        &format!(
            "provider = \"openai\"\nmodel = \"gpt-4.1-mini\"\nbase_url = \"{url}/v1\"\napi_key_env = \"GUARDIAN_TEST_KEY\"\n"
        ),
    );
    let coord = Coordinator::start_with_env(
        dir.path(),
        &["--max-concurrent-agents", "1"],
        &[("GUARDIAN_TEST_KEY", "sk-guardian-test")],
    );
    let _tmux = TmuxServer::of(&coord);
    let status = coord.cli_text(&["status"]);
    assert!(
        status.contains(&format!(
            "guardian LLM: openai-compatible gpt-4.1-mini at {url}/v1"
        )),
        "{status}"
    );
    let id = create(&coord, "Add a --json flag\nSLEEP 4\nWRITE flag.txt: x", &[]);
    wait_until("the task done", Duration::from_secs(60), || {
        coord.cli(&["task", "show", &id])["status"] == "done"
    });
    let task = coord.cli(&["task", "show", &id]);
    assert_eq!(
        task["summary"],
        format!("followed the guidance: [Hephaestus guardian: drifting] {STEER}"),
        "{task}"
    );

    // A judgement may still be on its way when the task turns done.
    wait_until("every call counted", Duration::from_secs(30), || {
        usage(&coord)["calls"].as_u64() == Some(asked.lock().unwrap().0.len() as u64)
    });
    let asked = asked.lock().unwrap();
    let calls = asked.0.len() as u64;
    assert!(calls >= 1);
    let (headers, first) = &asked.0[0];
    assert_eq!(headers["authorization"], "Bearer sk-guardian-test");
    let question = first["messages"][1]["content"].as_str().unwrap();
    assert!(
        question.contains("Add a --json flag") && question.contains("working: sleeping 4 s"),
        "{question}"
    );
    assert!(
        first["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("\"alignment_score\""),
        "the schema is in the system prompt"
    );

    // One steer, however many judgements asked for the same one.
    let evs = events_with_detail(dir.path());
    let steered: Vec<&String> = evs
        .iter()
        .filter(|(_, k, _)| k == "steered")
        .map(|(_, _, m)| m)
        .collect();
    assert_eq!(steered.len(), 1, "{evs:?}");
    assert!(steered[0].ends_with("(it acted on it)"), "{steered:?}");
    let timeline = coord.cli(&["guardian"]);
    assert_eq!(
        (timeline["steers"].as_u64(), timeline["followed"].as_u64()),
        (Some(1), Some(1)),
        "{timeline}"
    );
    assert_eq!(timeline["analyses"].as_array().unwrap().len() as u64, calls);

    // Every call the stand-in served, counted: 1000 in and 50 out at gpt-4.1-mini's
    // $0.40 / $1.60 per million tokens.
    let u = usage(&coord);
    assert_eq!(u["calls"].as_u64(), Some(calls), "{u}");
    assert_eq!(u["input_tokens"].as_u64(), Some(1000 * calls), "{u}");
    assert_eq!(u["output_tokens"].as_u64(), Some(50 * calls), "{u}");
    let cost = u["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.00048 * calls as f64).abs() < 1e-12, "{u}");
    let text = coord.cli_text(&["guardian"]);
    assert!(
        text.contains("steers: 1 typed, 1 followed (100%)")
            && text.contains("steer (drifting, followed): Write the tests first."),
        "{text}"
    );
}

/// The Anthropic format, and a reply that is not JSON: it is repaired once (the model sees its
/// reply and why it was refused), and both calls are counted with their cached tokens.
#[test]
fn an_invalid_verdict_is_repaired_once_and_both_calls_are_counted() {
    let asked = Arc::new(Mutex::new(Asked::default()));
    let a = asked.clone();
    let url = agent_cli::serve(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let mut asked = a.lock().unwrap();
        asked.0.push((req.headers.clone(), body.clone()));
        // Every first question gets prose; a repair (three turns) gets the verdict.
        let text = if body["messages"].as_array().map_or(0, Vec::len) >= 3 {
            json!({"alignment_score": 0.9, "aligned": true, "needs_steering": false,
                   "summary": "doing the task"})
            .to_string()
        } else {
            "It looks fine to me.".to_string()
        };
        Reply::json(
            200,
            json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 200, "cache_read_input_tokens": 800,
                          "cache_creation_input_tokens": 0, "output_tokens": 40}
            })
            .to_string(),
        )
    });
    let dir = project(
        "--forget-to-report",
        &format!(
            "provider = \"anthropic\"\nmodel = \"claude-haiku-4-5\"\nbase_url = \"{url}\"\napi_key_env = \"GUARDIAN_TEST_KEY\"\n"
        ),
    );
    let coord = Coordinator::start_with_env(
        dir.path(),
        &["--max-concurrent-agents", "1"],
        &[("GUARDIAN_TEST_KEY", "sk-ant-guardian-test")],
    );
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "SLEEP 3\nWRITE fine.txt: x", &[]);
    // Aligned: no steer; the reminder still gets the report.
    wait_until("the task done", Duration::from_secs(60), || {
        coord.cli(&["task", "show", &id])["status"] == "done"
    });
    wait_until("every call counted", Duration::from_secs(30), || {
        let served = asked.lock().unwrap().0.len() as u64;
        served.is_multiple_of(2) && usage(&coord)["calls"].as_u64() == Some(served)
    });
    let asked = asked.lock().unwrap();
    let calls = asked.0.len() as u64;
    assert!(
        calls >= 2 && calls.is_multiple_of(2),
        "each question and its repair: {calls}"
    );
    let (headers, repair) = &asked.0[1];
    assert_eq!(headers["x-api-key"], "sk-ant-guardian-test");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(repair["messages"][1]["content"], "It looks fine to me.");
    assert!(
        repair["messages"][2]["content"]
            .as_str()
            .unwrap()
            .starts_with("That reply is not valid: it holds no JSON object"),
        "{repair}"
    );
    let evs = events_with_detail(dir.path());
    assert!(!evs.iter().any(|(_, k, _)| k == "steered"), "{evs:?}");
    assert!(
        evs.iter()
            .any(|(_, k, m)| k == "analysed" && m == "alignment 0.90: doing the task"),
        "{evs:?}"
    );
    // 200 fresh at $1, 800 cached at $0.10 and 40 out at $5 per million: $0.00048 a call.
    let u = usage(&coord);
    assert_eq!(u["calls"].as_u64(), Some(calls), "{u}");
    assert_eq!(u["input_tokens"].as_u64(), Some(1000 * calls), "{u}");
    assert_eq!(u["cached_tokens"].as_u64(), Some(800 * calls), "{u}");
    let cost = u["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.00048 * calls as f64).abs() < 1e-12, "{u}");
}

/// A provider that is down: each judgement is retried and given up, nothing is counted, and
/// the coordinator goes on: the reminder still gets the task reported.
#[test]
fn a_provider_outage_never_stops_the_coordinator() {
    let asked = Arc::new(Mutex::new(0u32));
    let a = asked.clone();
    let url = agent_cli::serve(move |_| {
        *a.lock().unwrap() += 1;
        Reply::json(
            503,
            json!({"error": {"message": "overloaded, try later"}}).to_string(),
        )
    });
    let dir = project(
        "--forget-to-report",
        &format!(
            "provider = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}/v1\"\nmax_retries = 1\n"
        ),
    );
    let coord = Coordinator::start_with(dir.path(), &["--max-concurrent-agents", "1"]);
    let _tmux = TmuxServer::of(&coord);
    let id = create(&coord, "SLEEP 2\nWRITE down.txt: x", &[]);
    wait_until("the task done", Duration::from_secs(60), || {
        coord.cli(&["task", "show", &id])["status"] == "done"
    });
    assert!(*asked.lock().unwrap() >= 2, "a judgement and its retry");
    assert_eq!(coord.cli(&["usage"]), json!([]));
    let log = coord.stderr();
    assert!(
        log.contains("the guardian's judgement failed")
            && log.contains(
                "answered 503 Service Unavailable: overloaded, try later (after 2 attempts)"
            ),
        "{log}"
    );
}

/// Two agents change the same file at once. The conductor's model (a stand-in; the guardian's
/// own judgement is off) is asked about the pair with both tasks and the conflict a merge of
/// their work would have. It says to reconcile: each agent gets its message through its inbox
/// and acts on it, and a task queued after both of theirs runs once both are done. The
/// decision is stored, shown by `hephaestus guardian`, and every call is in the usage.
#[test]
fn the_conductor_messages_both_overlapping_agents_and_queues_a_reconcile_task() {
    let asked = Arc::new(Mutex::new(Vec::<Value>::new()));
    let a = asked.clone();
    let url = agent_cli::serve(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        a.lock().unwrap().push(body);
        let decision = json!({
            "action": "reconcile", "reason": "both write shared.txt their own way",
            "message_to_first": "Leave shared.txt as it is now.",
            "message_to_second": "Keep your shared.txt; it will be reconciled.",
            "reconcile_task": "WRITE reconciled.txt: one version of shared.txt"
        });
        Reply::json(
            200,
            json!({
                "id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-4.1-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": decision.to_string()}}],
                "usage": {"prompt_tokens": 700, "completion_tokens": 40, "total_tokens": 740}
            })
            .to_string(),
        )
    });
    let (dir, _worktrees) = agent_project_with(
        "--await-guidance",
        &format!(
            "delivery_timeout_secs = 5\n[guardian]\nconductor_every_secs = 1\nidle_nudge_secs = 10\n\
             [llm.conductor]\nprovider = \"openai\"\nmodel = \"gpt-4.1-mini\"\nbase_url = \"{url}/v1\"\n\
             api_key_env = \"CONDUCTOR_TEST_KEY\"\n"
        ),
    );
    with_rules(dir.path());
    let coord = Coordinator::start_with_env(
        dir.path(),
        &["--max-concurrent-agents", "2"],
        &[("CONDUCTOR_TEST_KEY", "sk-conductor-test")],
    );
    let _tmux = TmuxServer::of(&coord);
    let first = create(&coord, "WRITE shared.txt: from the first\nSLEEP 2", &[]);
    let second = create(&coord, "WRITE shared.txt: from the second\nSLEEP 2", &[]);
    let done = |id: &str| coord.cli(&["task", "show", id])["status"] == "done";
    wait_until("both tasks done", Duration::from_secs(90), || {
        done(&first) && done(&second)
    });

    // Each agent got its own message, from the conductor, and acted on it.
    let summaries: Vec<String> = [&first, &second]
        .iter()
        .map(|id| coord.cli(&["task", "show", id])["summary"].to_string())
        .collect();
    let got = |text: &str| {
        summaries
            .iter()
            .filter(|s| s.contains(&format!("- from conductor: {text}")))
            .count()
    };
    assert_eq!(got("Leave shared.txt as it is now."), 1, "{summaries:?}");
    assert_eq!(
        got("Keep your shared.txt; it will be reconciled."),
        1,
        "{summaries:?}"
    );

    // The question named both tasks and the conflict.
    let question = asked.lock().unwrap()[0]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        question.contains("WRITE shared.txt: from the first")
            && question.contains("WRITE shared.txt: from the second")
            && question.contains("would conflict on: shared.txt."),
        "{question}"
    );

    // The reconcile task waited for both, then ran.
    let reconcile = coord
        .cli(&["task", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["description"] == "WRITE reconciled.txt: one version of shared.txt")
        .cloned()
        .expect("a reconcile task");
    let mut after: Vec<String> = reconcile["depends_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    after.sort();
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(after, both);
    let reconcile_id = reconcile["id"].as_str().unwrap().to_string();
    wait_until("the reconcile task done", Duration::from_secs(90), || {
        done(&reconcile_id)
    });

    // Stored, shown, and counted.
    let timeline = coord.cli_text(&["guardian"]);
    assert!(
        timeline.contains("conductor LLM: openai-compatible gpt-4.1-mini")
            && timeline.contains(&format!(
                "conductor: reconcile: both write shared.txt their own way (task {} queued after both)",
                &reconcile_id[..8]
            )),
        "{timeline}"
    );
    let conducted = events_with_detail(dir.path())
        .into_iter()
        .filter(|(_, k, _)| k == "conducted")
        .count();
    assert!(conducted >= 2, "logged on both agents");
    let calls = asked.lock().unwrap().len() as u64;
    let usage = usage(&coord);
    assert_eq!(usage["calls"].as_u64(), Some(calls), "{usage}");
    assert_eq!(usage["input_tokens"].as_u64(), Some(700 * calls), "{usage}");
}
