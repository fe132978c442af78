//! What the tests of real agent CLIs share: finding the pinned CLI, a coordinator whose tmux
//! server gives the CLI a controlled environment, the agents' tmux server, and the plain HTTP/1.1
//! reading that a scripted stand-in for a model API needs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Coordinator;

/// The pinned install from `.ci/run` first (the version the test was verified with), then PATH.
/// `.ci/run` installs into the target dir, so that is looked up both under the checkout and
/// wherever this test binary was built (`CARGO_TARGET_DIR` may point elsewhere).
pub fn find_cli(name: &str) -> Option<PathBuf> {
    let built_in = super::bin()
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("agent-clis/bin").join(name));
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/agent-clis/bin")
        .join(name);
    if let Some(found) = [Some(pinned), built_in]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
    {
        return Some(found);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|c| c.is_file())
}

/// `hephaestus serve` with the environment the agent CLI gets through the tmux server: `env` on
/// top of the test's own, less every variable whose name starts with one of `drop_prefixes`
/// (whatever the developer's shell, or an agent session running these tests, set), and
/// `cli_dir` first on PATH.
pub fn start_coordinator(
    project: &Path,
    cli_dir: &Path,
    drop_prefixes: &[&str],
    env: &[(&str, &str)],
) -> Coordinator {
    let socket = project.join(".hephaestus/coordinator.sock");
    std::fs::create_dir_all(project.join(".hephaestus")).unwrap();
    let stderr_log = project.join("serve.stderr");
    let path = std::env::join_paths(std::iter::once(cli_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = super::command(project);
    for (k, _) in std::env::vars() {
        if drop_prefixes.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args(["serve", "--log-level", "debug"])
        .env("PATH", path)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_log).unwrap())
        .spawn()
        .unwrap();
    let mut coord = Coordinator {
        project: project.to_path_buf(),
        socket: socket.clone(),
        child,
        stderr_log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(status) = coord.child.try_wait().unwrap() {
            panic!("coordinator exited with {status}: {}", coord.stderr());
        }
        assert!(Instant::now() < deadline, "coordinator did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    coord
}

/// The agents' private tmux server, stopped when the test ends.
pub struct TmuxServer(pub String);

impl TmuxServer {
    pub fn of(coord: &Coordinator) -> TmuxServer {
        TmuxServer(
            coord.cli(&["status"])["tmux_socket"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }

    /// Every session's visible text.
    pub fn panes(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.0, "list-sessions", "-F", "#{session_name}"])
            .output()
            .unwrap();
        let mut text = String::new();
        for s in String::from_utf8_lossy(&out.stdout).lines() {
            let pane = Command::new("tmux")
                .args(["-L", &self.0, "capture-pane", "-p", "-t", &format!("={s}:")])
                .output()
                .unwrap();
            text.push_str(&format!(
                "--- tmux session {s} ---\n{}\n",
                String::from_utf8_lossy(&pane.stdout).trim_end()
            ));
        }
        text
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

/// What a failed test prints about the coordinator: the end of its log.
pub fn print_coordinator_tail(coord: &Coordinator) {
    let stderr = coord.stderr();
    let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
    eprintln!("--- coordinator log (last 60 lines) ---");
    for l in tail.iter().rev() {
        eprintln!("{l}");
    }
}

/// (pid, command line) of every process whose command line mentions `path`.
pub fn processes_mentioning(path: &Path) -> Vec<(u32, String)> {
    let needle = path.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(&needle) {
            found.push((pid, line));
        }
    }
    found
}

/// Fails unless the manager logged an event of each of these kinds.
pub fn assert_events(project: &Path, expected: &[&str]) {
    let db = rusqlite::Connection::open_with_flags(
        project.join(".hephaestus/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let kinds: Vec<String> = db
        .prepare("SELECT kind FROM agent_events ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for kind in expected {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} event: {kinds:?}"
        );
    }
}

/// One HTTP request, as a stand-in needs it.
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Reads one request (`Content-Length` or chunked body); `None` when the client closed first.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = headers.get("content-length") {
        body = vec![0; n.parse().unwrap_or(0)];
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

/// The pinned CLI `name` (see `find_cli`), checked to run; `None`, with the reason printed,
/// when it is not installed (the test then passes without running). `label` names it for people.
pub fn pinned_cli_or_skip(name: &str, label: &str) -> Option<PathBuf> {
    let Some(cli) = find_cli(name) else {
        // CI installs every pinned CLI: there, a missing one is a broken install, not a skip.
        assert!(
            std::env::var_os("HEPHAESTUS_REQUIRE_AGENT_CLIS").is_none(),
            "{label} ({name}) is not installed, and HEPHAESTUS_REQUIRE_AGENT_CLIS is set"
        );
        eprintln!(
            "skipped: {label} is not installed (not on PATH, not in target/agent-clis); .ci/run installs it"
        );
        return None;
    };
    let version = Command::new(&cli).arg("--version").output().unwrap();
    assert!(
        version.status.success(),
        "{} --version failed: {}",
        cli.display(),
        String::from_utf8_lossy(&version.stderr)
    );
    eprintln!(
        "using {} ({})",
        cli.display(),
        String::from_utf8_lossy(&version.stdout).trim()
    );
    Some(cli)
}

/// A project on branch `trunk` with one commit, whose `hephaestus.toml` holds `[agents]` with
/// `agents_keys` (the CLI, its model, ...), worktrees beside it (at a path with a dot in it, as
/// real ones under `~/.local/share` have) and a 60 s connect timeout, then `tables`.
pub fn agent_project(agents_keys: &str, tables: &str) -> tempfile::TempDir {
    let dir = super::project();
    super::git(dir.path(), &["checkout", "-q", "-b", "trunk"]);
    std::fs::write(dir.path().join("README.md"), "demo\n").unwrap();
    std::fs::write(
        dir.path().join(".gitignore"),
        ".hephaestus/\nserve.stderr\n",
    )
    .unwrap();
    super::git(dir.path(), &["add", "."]);
    super::git(dir.path(), &["commit", "-q", "-m", "initial"]);
    let worktrees = dir.path().with_extension("worktrees");
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        format!(
            "[agents]\n{agents_keys}\nworktrees_dir = \"{}\"\nready_timeout_secs = 60\n{tables}",
            worktrees.display()
        ),
    )
    .unwrap();
    dir
}

/// Queues a task through the CLI ("the note is committed" when done); its id.
pub fn queue_task(coord: &Coordinator, description: &str) -> String {
    coord.cli(&[
        "task",
        "create",
        description,
        "--done",
        "the note is committed",
    ])["task"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Queues a task through the CLI and waits (up to 240 s) until it is done and merged; a task
/// that fails ends the test with its reason. Returns the task.
pub fn run_task(coord: &Coordinator, description: &str) -> serde_json::Value {
    let id = queue_task(coord, description);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let t = coord.cli(&["task", "show", &id]);
        if t["status"] == "failed" {
            panic!("the task failed: {}", t["failure_reason"]);
        }
        if t["status"] == "done" && t["merge_status"] == "merged" {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the task to be done and merged: {t}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A reply of a stand-in: status code, content type and body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// One server-sent-events stream, whole.
    pub fn events(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "text/event-stream",
            body,
        }
    }

    pub fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body,
        }
    }
}

/// Listens on a free port of 127.0.0.1 and hands each connection to `handle` on a thread of its
/// own. Returns the address.
pub fn accept_each(
    handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::sync::Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || handle(stream));
        }
    });
    addr
}

/// A scripted model API on 127.0.0.1, keep-alive connections included: every request goes to
/// `answer`. Returns `http://<addr>`.
pub fn serve(answer: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> String {
    use std::io::Write;
    let addr = accept_each(move |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        while let Ok(Some(req)) = read_request(&mut reader) {
            let reply = answer(&req);
            let head = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
                reply.status,
                if reply.status == 200 { "OK" } else { "Error" },
                reply.content_type,
                reply.body.len()
            );
            if out.write_all(head.as_bytes()).is_err()
                || out.write_all(reply.body.as_bytes()).is_err()
            {
                return;
            }
        }
    });
    format!("http://{addr}")
}

/// What a stand-in saw: each request's path and credential, and each tool result that came
/// back to the model, (tool, result) once each.
#[derive(Default)]
pub struct Seen {
    pub requests: Vec<(String, Option<String>)>,
    pub results: Vec<(String, String)>,
}

impl Seen {
    /// What `tool` returned to the model (the first time); fails if it never reached it.
    pub fn result_of(&self, tool: &str) -> &str {
        self.results
            .iter()
            .find(|(n, _)| n == tool)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("no {tool} result reached the model: {:?}", self.results))
    }

    pub fn result(&mut self, tool: &str, result: String) {
        if !self.results.iter().any(|r| r.0 == tool && r.1 == result) {
            self.results.push((tool.to_string(), result));
        }
    }
}

/// On a failure: what the CLI asked its stand-in, what its terminal shows, what the coordinator
/// logged.
pub struct OnFailure<'a> {
    pub api: &'static str,
    pub seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    pub tmux: &'a TmuxServer,
    pub coord: &'a Coordinator,
}

impl Drop for OnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test may have panicked holding the lock.
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("--- requests to the {} stand-in ---", self.api);
            for (path, _) in &seen.requests {
                eprintln!("{path}");
            }
            eprintln!("--- tool results ---\n{:?}", seen.results);
            eprintln!("{}", self.tmux.panes());
            print_coordinator_tail(self.coord);
        }
    }
}

/// The text of a model API's content field: a string, or content items with `text`; empty when
/// absent.
pub fn content_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i["text"].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Real panes for the guardian's fixtures (`tests/fixtures/panes/<cli>/`), captured the way the
/// guardian looks at a pane (title, then `capture-pane -p -J`). Written only when
/// `HEPHAESTUS_CAPTURE_PANES=1` (after a pin in `.ci/run` moves), so a normal run never rewrites
/// them; the unit test in `tests/pane_fixtures.rs` then says whether the shipped rules still
/// read them right.
pub struct PaneFixtures {
    cli: String,
    version: String,
    tmux_socket: String,
    saved: Vec<SavedPane>,
}

struct SavedPane {
    name: String,
    state: String,
    still: bool,
    title: String,
    screen: String,
}

impl PaneFixtures {
    pub fn new(cli: &str, path: &Path, tmux: &TmuxServer) -> PaneFixtures {
        let out = Command::new(path).arg("--version").output().unwrap();
        PaneFixtures {
            cli: cli.to_string(),
            version: version_first(String::from_utf8_lossy(&out.stdout).trim()),
            tmux_socket: tmux.0.clone(),
            saved: Vec::new(),
        }
    }

    fn capturing() -> bool {
        std::env::var_os("HEPHAESTUS_CAPTURE_PANES").is_some_and(|v| v == "1")
    }

    /// The agent's pane now, kept as `<name>.txt` with the state it shows (`still`: whether the
    /// screen was unchanged when taken, as the guardian would see it).
    pub fn capture(&mut self, name: &str, state: &str, still: bool) {
        if !Self::capturing() {
            return;
        }
        let sessions = Command::new("tmux")
            .args([
                "-L",
                &self.tmux_socket,
                "list-sessions",
                "-F",
                "#{session_name}",
            ])
            .output()
            .unwrap();
        let sessions = String::from_utf8_lossy(&sessions.stdout).to_string();
        let session = sessions
            .lines()
            .find(|s| s.starts_with("hep-"))
            .expect("an agent session to capture");
        let pane = format!("={session}:");
        let title = Command::new("tmux")
            .args([
                "-L",
                &self.tmux_socket,
                "display-message",
                "-p",
                "-t",
                &pane,
            ])
            .arg("#{pane_title}")
            .output()
            .unwrap();
        let screen = Command::new("tmux")
            .args([
                "-L",
                &self.tmux_socket,
                "capture-pane",
                "-p",
                "-J",
                "-t",
                &pane,
            ])
            .output()
            .unwrap();
        self.saved.push(SavedPane {
            name: name.to_string(),
            state: state.to_string(),
            still,
            title: String::from_utf8_lossy(&title.stdout)
                .trim_end()
                .to_string(),
            screen: format!("{}\n", String::from_utf8_lossy(&screen.stdout).trim_end()),
        });
        let p = self.saved.last().unwrap();
        eprintln!(
            "--- captured pane {name} ({state}), title {:?} ---\n{}",
            p.title, p.screen
        );
    }
}

impl Drop for PaneFixtures {
    fn drop(&mut self) {
        if !Self::capturing() || self.saved.is_empty() || std::thread::panicking() {
            return;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/panes")
            .join(&self.cli);
        std::fs::create_dir_all(&dir).unwrap();
        // Other tests capture other panes of the same CLI: keep theirs.
        let kept: Vec<toml::Value> = std::fs::read_to_string(dir.join("index.toml"))
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|mut t| t.remove("pane"))
            .and_then(|p| p.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                let file = p.get("file").and_then(|f| f.as_str()).unwrap_or_default();
                !self.saved.iter().any(|s| format!("{}.txt", s.name) == file)
            })
            .collect();
        let mut index = format!(
            "# Real panes of {} {}, captured by its test with HEPHAESTUS_CAPTURE_PANES=1.\ncli = {}\nversion = {}\n",
            self.cli,
            self.version,
            toml_string(&self.cli),
            toml_string(&self.version)
        );
        for p in &kept {
            let field = |k: &str| p.get(k).cloned().unwrap_or(toml::Value::Boolean(false));
            index.push_str(&format!(
                "\n[[pane]]\nfile = {}\nstate = {}\nstill = {}\ntitle = {}\n",
                toml_string(field("file").as_str().unwrap_or_default()),
                toml_string(field("state").as_str().unwrap_or_default()),
                field("still").as_bool().unwrap_or_default(),
                toml_string(field("title").as_str().unwrap_or_default()),
            ));
        }
        for p in &self.saved {
            std::fs::write(dir.join(format!("{}.txt", p.name)), &p.screen).unwrap();
            index.push_str(&format!(
                "\n[[pane]]\nfile = \"{}.txt\"\nstate = {}\nstill = {}\ntitle = {}\n",
                p.name,
                toml_string(&p.state),
                p.still,
                toml_string(&p.title)
            ));
        }
        std::fs::write(dir.join("index.toml"), index).unwrap();
        eprintln!("wrote {} panes into {}", self.saved.len(), dir.display());
    }
}

/// A `--version` line with the version number first, as `.ci/run` pins it: `codex-cli 0.169.0`
/// becomes `0.169.0 (codex-cli)`; `2.1.331 (Claude Code)` stays as it is.
fn version_first(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words
        .iter()
        .position(|w| w.starts_with(|c: char| c.is_ascii_digit()))
    {
        Some(i) if i > 0 => {
            let rest: Vec<&str> = words[..i].iter().chain(&words[i + 1..]).copied().collect();
            format!("{} ({})", words[i], rest.join(" "))
        }
        _ => line.to_string(),
    }
}

/// A TOML basic string: JSON's string escapes are all TOML escapes too.
fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Words of the guardian's reminder (`prompts/nudge_report.md`): a scripted model that forgot to
/// report acts on a message with these.
pub const REMINDER: &str = "Hephaestus has not heard how it went";

/// How long a model that forgets to report thinks over its first step: the pane shows the CLI
/// working meanwhile.
pub const HOLD: Duration = Duration::from_secs(8);

/// Where a scripted conversation whose model forgets to report is, for the test to wait on.
#[derive(Default)]
pub struct Forgetful {
    pub thinking: std::sync::atomic::AtomicBool,
    pub ended_turn_unreported: std::sync::atomic::AtomicBool,
    pub reminded: std::sync::atomic::AtomicBool,
}

impl Forgetful {
    /// Holds the first answer for `HOLD`, marked as thinking.
    pub fn think(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.thinking.store(true, SeqCst);
        std::thread::sleep(HOLD);
        self.thinking.store(false, SeqCst);
    }
}

/// The state the guardian reads for the (one) managed agent, as `hephaestus agents` says it.
pub fn managed_agent_state(coord: &Coordinator) -> Option<String> {
    let agents = coord.cli(&["agents"]);
    let a = agents.as_array()?.iter().find(|a| a["kind"] == "managed")?;
    Some(a["state"]["state"].as_str()?.to_string())
}

/// The guardian on a real pane, for a task handed to an agent whose model forgets to report:
/// the CLI seen working while the model thinks, idle once the turn ends unreported, then the
/// reminder typed in, which the model acts on, so the task is done. The panes go to `panes`.
pub fn assert_seen_idle_and_reminded(
    coord: &Coordinator,
    project: &Path,
    task_id: &str,
    model: &Forgetful,
    panes: &mut PaneFixtures,
) {
    use super::scripted::wait_until;
    use std::sync::atomic::Ordering::SeqCst;
    let state = || managed_agent_state(coord).unwrap_or_default();
    let task_status = || coord.cli(&["task", "show", task_id])["status"].clone();

    wait_until("the model thinking", Duration::from_secs(120), || {
        model.thinking.load(SeqCst)
    });
    // Long enough for a poll or two of the guardian, well inside `HOLD`.
    std::thread::sleep(Duration::from_secs(2));
    panes.capture("working", "working", false);
    assert_eq!(state(), "working", "while the model thinks");

    wait_until("the turn ended unreported", Duration::from_secs(60), || {
        model.ended_turn_unreported.load(SeqCst)
    });
    wait_until("the agent seen idle", Duration::from_secs(20), || {
        state() == "idle"
    });
    panes.capture("idle", "idle", true);
    // The model never reported anything: the task is still only assigned.
    assert_eq!(task_status(), "assigned");

    wait_until("the task done", Duration::from_secs(120), || {
        task_status() == "done"
    });
    assert!(model.reminded.load(SeqCst), "done without the reminder");
    let events: Vec<(String, String)> = super::scripted::events_with_detail(project)
        .into_iter()
        .map(|(_, k, m)| (k, m))
        .collect();
    let nudges: Vec<&String> = events
        .iter()
        .filter(|(k, _)| k == "nudged")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(nudges, ["reminded to report its task; it acted on it"]);
    assert!(
        events
            .iter()
            .any(|(k, m)| k == "state_changed" && m.starts_with("idle (")),
        "{events:?}"
    );
}
