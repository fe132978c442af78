//! What the agent-manager tests share: a project whose agent CLI is the scripted agent
//! (tests/fixtures/scripted_agent.py), and reading tasks and agent events back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Coordinator, git, project};

/// A project on branch `trunk` (not "main": the base branch is whatever HEAD is on), set up to
/// spawn the scripted agent. `extra` goes into `[agents]`.
pub fn agent_project(extra: &str) -> (tempfile::TempDir, PathBuf) {
    agent_project_with("", extra)
}

/// `agent_project` whose scripted agent gets extra command-line `flags`.
pub fn agent_project_with_flags(flags: &str) -> (tempfile::TempDir, PathBuf) {
    agent_project_with(flags, "")
}

/// The scripted agent with command-line `flags`, and `extra` keys in `[agents]`.
pub fn agent_project_with(flags: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = project();
    git(dir.path(), &["checkout", "-q", "-b", "trunk"]);
    std::fs::write(dir.path().join("README.md"), "demo\n").unwrap();
    std::fs::write(dir.path().join(".gitignore"), ".hephaestus/\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "initial"]);
    let worktrees = dir.path().with_extension("worktrees");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scripted_agent.py");
    std::fs::write(
        dir.path().join("hephaestus.toml"),
        format!(
            "[agents]\ncli = \"custom\"\ncustom_command = \"python3 {} --mcp-config {{mcp_config}} {flags}\"\nworktrees_dir = \"{}\"\nready_timeout_secs = 20\n{extra}",
            script.display(),
            worktrees.display()
        ),
    )
    .unwrap();
    (dir, worktrees)
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the agent events include one of `kind`.
pub fn wait_for_event(dir: &Path, kind: &str) {
    wait_until(&format!("a {kind} event"), Duration::from_secs(30), || {
        events(dir).iter().any(|(_, k)| k == kind)
    });
}

pub fn wait_done_and_merged(coord: &Coordinator, id: &str) {
    wait_until(
        &format!("task {id} done and merged"),
        Duration::from_secs(60),
        || {
            let t = task(coord, id);
            t["status"] == "done" && t["merge_status"] == "merged"
        },
    );
}

pub fn task(coord: &Coordinator, id: &str) -> Value {
    coord.cli(&["task", "show", id])
}

pub fn create(coord: &Coordinator, description: &str, deps: &[&str]) -> String {
    let mut args = vec![
        "task",
        "create",
        description,
        "--done",
        "the files are written",
    ];
    for d in deps {
        args.extend(["--depends-on", d]);
    }
    coord.cli(&args)["task"]["id"].as_str().unwrap().to_string()
}

/// (agent, kind) for every event, in order.
pub fn events(dir: &Path) -> Vec<(String, String)> {
    events_with_detail(dir)
        .into_iter()
        .map(|(agent, kind, _)| (agent, kind))
        .collect()
}

/// (agent, kind, message) for every event, in order.
pub fn events_with_detail(dir: &Path) -> Vec<(String, String, String)> {
    let db = rusqlite::Connection::open_with_flags(
        dir.join(".hephaestus/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare("SELECT COALESCE(agent_id, ''), kind, message FROM agent_events ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Rules for the scripted agent, as a project keeps them in `screen_rules/custom.toml`.
pub const RULES: &str = r#"
still_after_ms = 800

[[rule]]
name = "working line"
state = "working"
in = "bottom"
lines = 1
any = ["working:"]

[[rule]]
name = "turn-over prompt"
state = "idle"
in = "bottom"
lines = 1
all = ["turn over >"]
"#;

/// Puts [`RULES`] in the project, as `screen_rules/custom.toml`.
pub fn with_rules(dir: &Path) {
    std::fs::create_dir_all(dir.join("screen_rules")).unwrap();
    std::fs::write(dir.join("screen_rules/custom.toml"), RULES).unwrap();
}
