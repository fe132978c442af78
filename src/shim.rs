//! `hephaestus shim`: the MCP stdio server every agent CLI launches. It connects to the
//! coordinator's socket, sends one handshake line, and then copies bytes both ways.
//!
//! Deliberately small and synchronous: two std threads doing blocking copies, no async runtime,
//! no database, no state beyond what reconnection needs. When the coordinator restarts under a
//! live agent, the shim reconnects (bounded), replays the client's `initialize` and
//! `notifications/initialized`, swallows the duplicate `initialize` answer, and answers each
//! request that was in flight with an error that says to retry. stdout carries only protocol
//! bytes; diagnostics go to stderr.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::protocol::{Hello, PROTOCOL_VERSION, Role, Welcome};

/// Reconnection attempts after the coordinator goes away, and the pause between them (growing
/// to `MAX_BACKOFF`): about half a minute in all, enough for a restart.
const RECONNECT_ATTEMPTS: u32 = 60;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(1000);
/// JSON-RPC server error code for "coordinator restarted, retry".
const RETRY_CODE: i64 = -32000;

/// What the shim needs from its environment.
#[derive(Debug, Clone)]
pub struct ShimSettings {
    pub socket: PathBuf,
    pub agent_id: Option<String>,
    pub token: Option<String>,
}

enum Link {
    Up(UnixStream),
    Reconnecting,
}

struct Shared {
    settings: ShimSettings,
    link: Mutex<Link>,
    link_changed: Condvar,
    /// Ids (as JSON text) of client requests sent and not yet answered.
    in_flight: Mutex<HashSet<String>>,
    /// The client's `initialize` request and `initialized` notification, replayed on reconnect.
    initialize: Mutex<Option<Vec<u8>>>,
    initialized: Mutex<Option<Vec<u8>>>,
    stdout: Mutex<std::io::Stdout>,
    stdin_closed: std::sync::atomic::AtomicBool,
}

/// The parts of a JSON-RPC message the shim looks at.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
}

fn peek(line: &[u8]) -> Option<Peek> {
    serde_json::from_slice(line).ok()
}

fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "hephaestus shim: {msg}");
}

/// Why a connection attempt failed.
enum ConnectError {
    /// Nobody listens (yet): worth retrying.
    Unreachable(String),
    /// The coordinator answered and said no: retrying will not help.
    Refused(String),
}

fn connect(settings: &ShimSettings) -> Result<(UnixStream, BufReader<UnixStream>), ConnectError> {
    let stream = UnixStream::connect(&settings.socket).map_err(|e| {
        ConnectError::Unreachable(format!(
            "no Hephaestus coordinator is listening on {} ({e}); start one with `hephaestus serve` in the project",
            settings.socket.display()
        ))
    })?;
    let mut write = stream
        .try_clone()
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let hello = Hello {
        hephaestus: PROTOCOL_VERSION,
        role: Role::Mcp,
        agent_id: settings.agent_id.clone(),
        token: settings.token.clone(),
        pid: std::process::id(),
    };
    write.write_all(&hello.line()).map_err(|e| {
        ConnectError::Unreachable(format!(
            "handshake with {} failed: {e}",
            settings.socket.display()
        ))
    })?;
    let mut read = BufReader::new(stream);
    let mut line = Vec::new();
    match read.read_until(b'\n', &mut line) {
        Ok(n) if n > 0 => {}
        _ => {
            return Err(ConnectError::Unreachable(format!(
                "the coordinator at {} closed the connection during the handshake",
                settings.socket.display()
            )));
        }
    }
    let welcome: Welcome = serde_json::from_slice(&line)
        .map_err(|e| ConnectError::Refused(format!("unreadable handshake answer: {e}")))?;
    if !welcome.ok {
        return Err(ConnectError::Refused(format!(
            "the coordinator refused this agent: {}",
            welcome.error.unwrap_or_default()
        )));
    }
    Ok((write, read))
}

/// Entry point for `hephaestus shim`: settings from the environment, the socket from
/// `HEPHAESTUS_SOCKET` or else from the configuration of the current directory.
pub fn main() -> ExitCode {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let socket = match var("HEPHAESTUS_SOCKET") {
        Some(s) => PathBuf::from(s),
        None => {
            let cwd = match std::env::current_dir() {
                Ok(d) => d,
                Err(e) => {
                    say(&format!("cannot read the current directory: {e}"));
                    return ExitCode::from(1);
                }
            };
            let env = crate::config::env_snapshot();
            match crate::config::Config::load(&cwd, &env, &Default::default()) {
                Ok(c) => c.socket_path,
                Err(e) => {
                    say(&format!("{e:#}"));
                    return ExitCode::from(1);
                }
            }
        }
    };
    run(ShimSettings {
        socket,
        agent_id: var("HEPHAESTUS_AGENT_ID"),
        token: var("HEPHAESTUS_AGENT_TOKEN"),
    })
}

/// Runs the shim until the client closes stdin (exit 0) or the coordinator cannot be reached.
///
/// A managed agent's shim (one with an agent id) that finds no coordinator waits for one as it
/// does after a disconnect: the agent manager started this CLI, so a coordinator is restarting,
/// and an agent whose shim gave up would run on without its tools. A person's own shim says at
/// once that nothing is listening.
pub fn run(settings: ShimSettings) -> ExitCode {
    let first = if settings.agent_id.is_some() {
        connect_patiently(&settings, "no coordinator is listening yet")
    } else {
        connect(&settings)
    };
    let (writer, reader) = match first {
        Ok(c) => c,
        Err(ConnectError::Unreachable(msg)) => {
            say(&msg);
            return ExitCode::from(1);
        }
        Err(ConnectError::Refused(msg)) => {
            say(&msg);
            return ExitCode::from(2);
        }
    };
    let shared = Arc::new(Shared {
        settings,
        link: Mutex::new(Link::Up(writer)),
        link_changed: Condvar::new(),
        in_flight: Mutex::new(HashSet::new()),
        initialize: Mutex::new(None),
        initialized: Mutex::new(None),
        stdout: Mutex::new(std::io::stdout()),
        stdin_closed: std::sync::atomic::AtomicBool::new(false),
    });
    let from_coordinator = {
        let shared = shared.clone();
        std::thread::spawn(move || coordinator_to_stdout(shared, reader))
    };
    stdin_to_coordinator(&shared);
    // The client is done. Let the answers already on their way drain, then stop.
    shared
        .stdin_closed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    if let Link::Up(w) = &*shared.link.lock().unwrap_or_else(|e| e.into_inner()) {
        let _ = w.shutdown(std::net::Shutdown::Write);
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = from_coordinator.join();
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    ExitCode::SUCCESS
}

fn stdin_to_coordinator(shared: &Shared) {
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut line = Vec::with_capacity(8 * 1024);
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        let peeked = peek(&line);
        let request_id = match &peeked {
            Some(Peek {
                id: Some(id),
                method: Some(method),
            }) => {
                if method == "initialize" {
                    *shared.initialize.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(line.clone());
                }
                Some(id.to_string())
            }
            Some(Peek {
                id: None,
                method: Some(method),
            }) if method == "notifications/initialized" => {
                *shared.initialized.lock().unwrap_or_else(|e| e.into_inner()) = Some(line.clone());
                None
            }
            _ => None,
        };
        let mut link = shared.link.lock().unwrap_or_else(|e| e.into_inner());
        while matches!(*link, Link::Reconnecting) {
            link = shared
                .link_changed
                .wait(link)
                .unwrap_or_else(|e| e.into_inner());
        }
        if let Some(id) = request_id {
            // Under the link lock: a disconnect either sees this id and answers it, or happens
            // after the write and is answered when the reader notices.
            shared
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id);
        }
        if let Link::Up(w) = &mut *link {
            // A failed write is noticed by the reader thread, which answers in-flight requests.
            let _ = w.write_all(&line);
        }
    }
}

fn write_stdout(shared: &Shared, bytes: &[u8]) {
    let mut out = shared.stdout.lock().unwrap_or_else(|e| e.into_inner());
    if out.write_all(bytes).and_then(|_| out.flush()).is_err() {
        // The client is gone; nothing more to do.
        std::process::exit(0);
    }
}

fn coordinator_to_stdout(shared: Arc<Shared>, mut reader: BufReader<UnixStream>) {
    let mut line = Vec::with_capacity(8 * 1024);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).unwrap_or(0);
        if n == 0 || !line.ends_with(b"\n") {
            if shared
                .stdin_closed
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return;
            }
            reader = match reconnect(&shared) {
                Some(r) => r,
                None => std::process::exit(1),
            };
            continue;
        }
        if let Some(Peek {
            id: Some(id),
            method: None,
        }) = peek(&line)
        {
            shared
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id.to_string());
        }
        write_stdout(&shared, &line);
    }
}

/// Replaces a lost connection; `None` when the coordinator did not come back.
fn reconnect(shared: &Shared) -> Option<BufReader<UnixStream>> {
    {
        let mut link = shared.link.lock().unwrap_or_else(|e| e.into_inner());
        *link = Link::Reconnecting;
        let lost: Vec<String> = shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for id in lost {
            let answer = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{RETRY_CODE},\"message\":\"the Hephaestus coordinator restarted while this request was in flight; retry the request\"}}}}\n"
            );
            write_stdout(shared, answer.as_bytes());
        }
    }
    let mut replays = 0;
    let (writer, reader) = loop {
        match connect_patiently(&shared.settings, "lost the coordinator") {
            Ok((mut writer, mut reader)) => {
                if replay_session(shared, &mut writer, &mut reader).is_ok() {
                    break (writer, reader);
                }
                // The new coordinator went away during the replay: wait for the next one.
                replays += 1;
                if replays == 5 {
                    say(
                        "the coordinator keeps closing the connection during the replay; giving up",
                    );
                    return None;
                }
                std::thread::sleep(MAX_BACKOFF);
            }
            Err(ConnectError::Unreachable(msg) | ConnectError::Refused(msg)) => {
                say(&msg);
                return None;
            }
        }
    };
    let mut link = shared.link.lock().unwrap_or_else(|e| e.into_inner());
    *link = Link::Up(writer);
    shared.link_changed.notify_all();
    say("reconnected");
    Some(reader)
}

/// Connects, retrying with backoff for about half a minute while nobody listens (a coordinator
/// restarting). A refusal is final.
fn connect_patiently(
    settings: &ShimSettings,
    why: &str,
) -> Result<(UnixStream, BufReader<UnixStream>), ConnectError> {
    let mut last = match connect(settings) {
        Err(ConnectError::Unreachable(msg)) => msg,
        done => return done,
    };
    say(&format!(
        "{why} at {}; waiting for it",
        settings.socket.display()
    ));
    let mut backoff = FIRST_BACKOFF;
    for _ in 0..RECONNECT_ATTEMPTS {
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match connect(settings) {
            Err(ConnectError::Unreachable(msg)) => last = msg,
            done => return done,
        }
    }
    Err(ConnectError::Unreachable(format!(
        "the coordinator did not come up after {RECONNECT_ATTEMPTS} attempts; giving up: {last}"
    )))
}

/// Re-opens the MCP session on a new connection as the client opened it, without the client
/// seeing a second `initialize` answer.
fn replay_session(
    shared: &Shared,
    writer: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
) -> std::io::Result<()> {
    let init = shared
        .initialize
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(init) = init else { return Ok(()) };
    let init_id = peek(&init).and_then(|p| p.id).map(|id| id.to_string());
    writer.write_all(&init)?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        match peek(&line) {
            Some(Peek {
                id: Some(id),
                method: None,
            }) if Some(id.to_string()) == init_id => break,
            _ => write_stdout(shared, &line),
        }
    }
    if let Some(initialized) = shared
        .initialized
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        writer.write_all(&initialized)?;
    }
    Ok(())
}
