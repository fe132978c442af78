//! Test harness: a real coordinator process in a temp dir, real shims, the real CLI.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod agent_cli;
pub mod responses_api;
pub mod scripted;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hephaestus"))
}

/// A command for the binary with no HEPHAESTUS_* leaking in from the developer's shell.
pub fn command(project: &Path) -> Command {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("HEPHAESTUS_") {
            cmd.env_remove(k);
        }
    }
    // The hashing embedder keeps coordinators fast to start and needs no model download; the
    // tests that are about an embedder choose theirs with this same variable.
    cmd.current_dir(project)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HEPHAESTUS_EMBEDDER", "hashing");
    cmd
}

/// A running `hephaestus serve`, stopped with SIGTERM on drop.
pub struct Coordinator {
    pub project: PathBuf,
    pub socket: PathBuf,
    pub child: Child,
    pub stderr_log: PathBuf,
}

impl Coordinator {
    /// A coordinator that does not spawn agents: tasks wait for `task assign`.
    pub fn start(project: &Path) -> Coordinator {
        Self::start_with(project, &["--no-agents"])
    }

    pub fn start_with(project: &Path, args: &[&str]) -> Coordinator {
        let socket = project.join(".hephaestus/coordinator.sock");
        Self::start_at(project, args, &socket)
    }

    /// Starts with extra environment variables for the coordinator.
    pub fn start_with_env(project: &Path, args: &[&str], env: &[(&str, &str)]) -> Coordinator {
        let socket = project.join(".hephaestus/coordinator.sock");
        Self::spawn(project, args, &socket, env)
    }

    pub fn start_at(project: &Path, args: &[&str], socket: &Path) -> Coordinator {
        Self::spawn(project, args, socket, &[])
    }

    fn spawn(project: &Path, args: &[&str], socket: &Path, env: &[(&str, &str)]) -> Coordinator {
        std::fs::create_dir_all(project.join(".hephaestus")).unwrap();
        let stderr_log = project.join(format!(
            "serve-{}.stderr",
            std::process::id() ^ rand_suffix()
        ));
        let child = command(project)
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--log-level")
            .arg("debug")
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_log).unwrap())
            .spawn()
            .expect("spawn serve");
        let mut c = Coordinator {
            project: project.to_path_buf(),
            socket: socket.to_path_buf(),
            child,
            stderr_log,
        };
        c.wait_ready();
        c
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("coordinator exited with {status}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "coordinator did not listen on {}: {}",
            self.socket.display(),
            self.stderr()
        );
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The end of the coordinator's log, for a failed call's message: a refused connection
    /// means it stopped, and its log says why.
    pub fn log_tail(&self) -> String {
        let log = self.stderr();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "coordinator log (last 40 lines):\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM and wait for an orderly exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.child.wait().unwrap()
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Runs a CLI command against this coordinator with `--json` and returns its parsed output.
    pub fn cli(&self, args: &[&str]) -> Value {
        let out = self.cli_raw(args);
        assert!(
            out.status.success(),
            "hephaestus {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "hephaestus {args:?} printed non-JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs a CLI command against this coordinator and returns what it printed for people.
    pub fn cli_text(&self, args: &[&str]) -> String {
        let out = command(&self.project).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "hephaestus {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cli_raw(&self, args: &[&str]) -> Output {
        command(&self.project)
            .arg("--json")
            .args(args)
            .output()
            .unwrap()
    }

    /// Registers a managed agent; returns (id, token).
    pub fn register_agent(&self, name: &str) -> (String, String) {
        let v = self.cli(&["agents", "register", "--name", name]);
        (
            v["agent"]["id"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    }

    pub fn create_task(&self, description: &str) -> String {
        let v = self.cli(&["task", "create", description, "--done", "it is done"]);
        v["task"]["id"].as_str().unwrap().to_string()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe { libc::kill(self.pid(), libc::SIGCONT) };
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::SeqCst) << 20
}

/// A `hephaestus shim` process driven with raw JSON-RPC lines, as an agent CLI would.
pub struct RawShim {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: i64,
}

impl RawShim {
    pub fn spawn(coord: &Coordinator, agent: Option<(&str, &str)>) -> RawShim {
        Self::spawn_at(&coord.socket, &coord.project, agent)
    }

    /// A shim for the socket at `socket`, whether or not a coordinator listens there.
    pub fn spawn_at(socket: &Path, project: &Path, agent: Option<(&str, &str)>) -> RawShim {
        let mut cmd = command(project);
        cmd.arg("shim").env("HEPHAESTUS_SOCKET", socket);
        if let Some((id, token)) = agent {
            cmd.env("HEPHAESTUS_AGENT_ID", id)
                .env("HEPHAESTUS_AGENT_TOKEN", token);
        }
        Self::spawn_command(cmd)
    }

    pub fn spawn_command(mut cmd: Command) -> RawShim {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        RawShim {
            child,
            stdin,
            lines,
            next_id: 100,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, msg: &Value) {
        let mut line = serde_json::to_vec(msg).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
    }

    pub fn recv(&mut self) -> Value {
        self.recv_within(Duration::from_secs(10))
            .expect("no message from the shim within 10 s")
    }

    pub fn recv_within(&mut self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("shim printed non-JSON ({e}): {line}")),
            ),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Sends a request and returns the response with the same id (other messages are skipped).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.response_to(&json!(id))
    }

    pub fn response_to(&mut self, id: &Value) -> Value {
        loop {
            let msg = self.recv();
            if &msg["id"] == id && msg.get("method").is_none() {
                return msg;
            }
        }
    }

    pub fn initialize(&mut self, client_name: &str) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": client_name, "version": "1.0"}}}));
        let init = self.response_to(&json!(0));
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        init
    }

    /// Calls a tool and returns the `result` (panics on a JSON-RPC error).
    pub fn call_tool(&mut self, name: &str, args: Value) -> Value {
        let resp = self.request("tools/call", json!({"name": name, "arguments": args}));
        assert!(
            resp.get("error").is_none(),
            "{name} returned a JSON-RPC error: {resp}"
        );
        resp["result"].clone()
    }

    /// Calls a tool that must succeed and returns its structured content.
    pub fn tool_ok(&mut self, name: &str, args: Value) -> Value {
        let result = self.call_tool(name, args);
        assert_eq!(result["isError"], json!(false), "{name} failed: {result}");
        result["structuredContent"].clone()
    }

    /// Calls a tool that must be refused and returns the refusal text.
    pub fn tool_refused(&mut self, name: &str, args: Value) -> String {
        let result = self.call_tool(name, args);
        assert_eq!(
            result["isError"],
            json!(true),
            "{name} should have been refused: {result}"
        );
        result["content"][0]["text"].as_str().unwrap().to_string()
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stderr_text(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for RawShim {
    fn drop(&mut self) {
        self.stdin.take();
        if self.wait_exit(Duration::from_secs(3)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs git in `dir`, hermetic (no global config), and returns its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fresh project directory (a git repo, as users run it).
pub fn project() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("heph")
        .tempdir_in("/tmp")
        .unwrap();
    let status = Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success());
    dir
}
