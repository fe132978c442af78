//! The `cli` provider: the user's own agent CLI run headless, so a subscription login needs no
//! API key. Claude Code: `claude -p --output-format json`, with our system prompt, no tools, no
//! MCP server and no saved session, in an empty private directory outside the project (so no
//! project `CLAUDE.md` is read); the question goes in on stdin. The process is killed when the
//! call times out.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::wire::{self, Completion, Role, Turn};
use crate::config::llm::LlmTarget;

pub async fn complete(
    target: &LlmTarget,
    system: &str,
    turns: &[Turn],
    cwd: &std::path::Path,
) -> Result<Completion, String> {
    let program = &target.command;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(["-p", "--output-format", "json", "--no-session-persistence"])
        .args(["--tools", "", "--strict-mcp-config"])
        .arg("--system-prompt")
        .arg(system);
    if !target.model.is_empty() {
        cmd.args(["--model", &target.model]);
    }
    std::fs::create_dir_all(cwd).map_err(|e| format!("cannot make {}: {e}", cwd.display()))?;
    cmd.current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e} (is it installed and on PATH?)"))?;
    // A headless call takes one prompt: the turns so far, as a transcript.
    let prompt = transcript(turns);
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(prompt.as_bytes())
            .await
            .map_err(|e| format!("cannot write to {program}: {e}"))?;
    }
    let out = tokio::time::timeout(
        Duration::from_secs(target.timeout_secs),
        child.wait_with_output(),
    )
    .await
    .map_err(|_| format!("{program} gave no answer within {}s", target.timeout_secs))?
    .map_err(|e| format!("{program} failed: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match wire::claude_cli_completion(&stdout) {
        Ok(c) => Ok(c),
        Err(e) if !out.status.success() => Err(format!(
            "{program} exited with {}: {e}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{program}: {e}")),
    }
}

fn transcript(turns: &[Turn]) -> String {
    if let [only] = turns {
        return only.text.clone();
    }
    turns
        .iter()
        .map(|t| match t.role {
            Role::User => format!("[request]\n{}", t.text),
            Role::Assistant => format!("[your earlier reply]\n{}", t.text),
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}
