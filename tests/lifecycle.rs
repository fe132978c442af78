//! The coordinator's process lifecycle and the shim's connection handling.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Coordinator, RawShim, command, project};
use serde_json::json;

#[test]
fn a_second_coordinator_on_the_same_data_dir_is_refused() {
    let dir = project();
    let _first = Coordinator::start(dir.path());
    let out = command(dir.path()).arg("serve").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running"), "{err}");
}

#[test]
fn socket_is_private_stale_sockets_are_replaced_and_sigterm_cleans_up() {
    let dir = project();
    let data = dir.path().join(".hephaestus");
    std::fs::create_dir_all(&data).unwrap();
    // Left behind by a crash: a socket file with nobody listening.
    let stale = std::os::unix::net::UnixListener::bind(data.join("coordinator.sock")).unwrap();
    drop(stale);
    let mut coord = Coordinator::start(dir.path());
    let mode = std::fs::metadata(&coord.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let pid_text = std::fs::read_to_string(data.join("coordinator.pid")).unwrap();
    assert_eq!(pid_text.trim(), coord.pid().to_string());

    let status = coord.stop();
    assert!(
        status.success(),
        "orderly exit: {status}: {}",
        coord.stderr()
    );
    assert!(!coord.socket.exists(), "socket removed on shutdown");
    let log = std::fs::read_to_string(data.join("logs/coordinator.log")).unwrap();
    assert!(log.contains("SIGTERM"), "{log}");
    // The database is intact and reopens.
    let again = Coordinator::start(dir.path());
    assert_eq!(again.cli(&["status"])["tasks"], json!({}));
}

#[test]
fn the_shim_says_when_no_coordinator_runs() {
    let dir = project();
    let socket = dir.path().join(".hephaestus/coordinator.sock");
    let started = std::time::Instant::now();
    let out = command(dir.path())
        .arg("shim")
        .env("HEPHAESTUS_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a person's shim (no agent id) does not wait for a coordinator"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("hephaestus serve"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: it belongs to the protocol"
    );
}

/// A managed agent's CLI can start its shim while the coordinator is restarting. That shim
/// waits for the coordinator instead of exiting (after which the CLI would run on without its
/// tools), and the client's `initialize`, sent meanwhile, is answered once it is up.
#[test]
fn a_managed_agents_shim_waits_for_a_coordinator_that_is_not_up_yet() {
    let dir = project();
    let mut first = Coordinator::start(dir.path());
    let (id, token) = first.register_agent("early-bird");
    let task = first.create_task("wait for the coordinator");
    first.cli(&["task", "assign", &task, "--agent", &id]);
    assert!(first.stop().success());
    let socket = first.socket.clone();
    drop(first);

    let mut shim = RawShim::spawn_at(&socket, dir.path(), Some((&id, &token)));
    shim.send(
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "early", "version": "1"}}}),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        shim.child.try_wait().unwrap().is_none(),
        "the shim of a managed agent must not give up: {}",
        shim.stderr_text()
    );
    let _second = Coordinator::start(dir.path());
    let init = shim.response_to(&json!(0));
    assert_eq!(init["result"]["serverInfo"]["name"], "hephaestus", "{init}");
    shim.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    assert_eq!(shim.tool_ok("get_task", json!({}))["id"], json!(task));
}

#[test]
fn wrong_token_and_unknown_agent_are_refused_with_a_clear_message() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let (id, _token) = coord.register_agent("worker");
    for (agent, token, expect) in [
        (id.as_str(), "wrong-token", "wrong or missing token"),
        (
            "00000000-0000-0000-0000-000000000000",
            "x",
            "unknown agent id",
        ),
    ] {
        let mut shim = RawShim::spawn(&coord, Some((agent, token)));
        let status = shim
            .wait_exit(Duration::from_secs(5))
            .expect("refused shim exits");
        assert_eq!(status.code(), Some(2));
        let err = shim.stderr_text();
        assert!(err.contains(expect), "{err}");
    }
}

#[test]
fn the_shim_finds_the_socket_from_the_project_config() {
    let dir = project();
    let coord = Coordinator::start(dir.path());
    // No HEPHAESTUS_SOCKET: run from a subdirectory of the project, as an agent CLI would.
    let sub = dir.path().join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let mut cmd = command(&sub);
    cmd.arg("shim");
    let mut shim = RawShim::spawn_command(cmd);
    let init = shim.initialize("discovery-test");
    assert_eq!(init["result"]["serverInfo"]["name"], "hephaestus", "{init}");
    drop(coord);
}

#[test]
fn a_data_dir_too_long_for_a_socket_path_moves_the_socket_and_says_so() {
    let base = project();
    let long = base.path().join("p".repeat(60)).join("q".repeat(60));
    std::fs::create_dir_all(long.join(".hephaestus")).unwrap();
    let runtime = tempfile::tempdir().unwrap();
    // The shim and the coordinator compute the same fallback path independently.
    let mut serve = command(&long);
    serve
        .env("XDG_RUNTIME_DIR", runtime.path())
        .args(["serve", "--no-agents"]);
    let child = serve.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let socket = loop {
        let found = std::fs::read_dir(runtime.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".sock"));
        if let Some(e) = found
            && std::os::unix::net::UnixStream::connect(e.path()).is_ok()
        {
            break e.path();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no socket in the runtime dir"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(socket.as_os_str().len() <= 107);
    let mut cmd = command(&long);
    cmd.env("XDG_RUNTIME_DIR", runtime.path()).arg("shim");
    let mut shim = RawShim::spawn_command(cmd);
    assert_eq!(
        shim.initialize("long-path")["result"]["serverInfo"]["name"],
        "hephaestus"
    );
    drop(shim);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("107-byte"), "the move is reported: {err}");
}

#[test]
fn coordinator_restart_under_a_live_shim_is_invisible_except_for_in_flight_requests() {
    let dir = project();
    let mut coord = Coordinator::start(dir.path());
    let task = coord.create_task("survive a restart");
    let mut shim = RawShim::spawn(&coord, None);
    shim.initialize("restart-test");
    assert_eq!(
        shim.tool_ok("get_task", json!({"task_id": task}))["id"],
        json!(task)
    );

    // Freeze the coordinator so a request is surely in flight, then kill it.
    coord.signal(libc::SIGSTOP);
    // Signal delivery is asynchronous: wait until the kernel reports the process stopped.
    let status_file = format!("/proc/{}/status", coord.pid());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&status_file)
        .unwrap_or_default()
        .contains("(stopped)")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "coordinator did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    shim.send(
        &json!({"jsonrpc": "2.0", "id": "lost-1", "method": "tools/call",
        "params": {"name": "get_task", "arguments": {"task_id": task}}}),
    );
    std::thread::sleep(Duration::from_millis(200));
    coord.signal(libc::SIGKILL);
    let _ = coord.child.wait();
    let lost = shim.response_to(&json!("lost-1"));
    assert_eq!(lost["error"]["code"], -32000, "{lost}");
    assert!(
        lost["error"]["message"].as_str().unwrap().contains("retry"),
        "{lost}"
    );

    // A new coordinator on the same data dir (the socket file is stale now).
    let _coord2 = Coordinator::start(dir.path());
    // The shim reconnects by itself; the client simply goes on, and never sees a second
    // initialize answer.
    let again = shim.tool_ok("get_task", json!({"task_id": task}));
    assert_eq!(again["description"], "survive a restart");
    assert!(
        shim.recv_within(Duration::from_millis(300)).is_none(),
        "no stray messages"
    );
}

/// The socket is 0600, and behind it the coordinator checks the peer's uid: even if the file's
/// mode is loosened, another user is refused. Needs root to act as another user.
#[test]
fn another_user_is_refused_even_through_a_loosened_socket() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to connect as another user");
        return;
    }
    let dir = project();
    let coord = Coordinator::start(dir.path());
    for p in [dir.path().to_path_buf(), dir.path().join(".hephaestus")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&coord.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Our own CLI as the other user's client.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::bin())
        .arg("--socket")
        .arg(&coord.socket)
        .arg("status")
        .current_dir("/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "another user must be refused");
    assert!(err.contains("only accepts its own user"), "{err}");
    // The same request from our own uid is accepted.
    assert!(coord.cli(&["status"])["pid"].is_number());
}

#[test]
fn an_old_or_foreign_client_gets_a_clear_handshake_refusal() {
    use std::io::{BufRead, BufReader, Write};
    let dir = project();
    let coord = Coordinator::start(dir.path());
    let answer = |line: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(&coord.socket).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        serde_json::from_str::<serde_json::Value>(&reply).unwrap()
    };
    let old = answer("{\"hephaestus\":99,\"role\":\"mcp\",\"pid\":1}\n");
    assert_eq!(old["ok"], false);
    assert!(
        old["error"]
            .as_str()
            .unwrap()
            .contains("protocol version 99"),
        "{old}"
    );
    // An MCP client pointed straight at the socket instead of through the shim.
    let raw = answer("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\"}\n");
    assert!(
        raw["error"].as_str().unwrap().contains("hephaestus shim"),
        "{raw}"
    );
}
