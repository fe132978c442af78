//! `[agents]` in `hephaestus.toml`, with `HEPHAESTUS_AGENTS_ENABLED`, `HEPHAESTUS_AGENT_CLI`
//! and the flags: how the agent manager spawns agents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Deserialize;

use super::{Overrides, absolute, fnv1a};

/// How the agent manager spawns agents (`[agents]` in `hephaestus.toml`).
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Spawn agents for queued tasks. Off, tasks wait for `hephaestus task assign`.
    pub enabled: bool,
    /// claude | codex | opencode | gemini | droid | custom
    pub cli: String,
    pub model: Option<String>,
    /// Command template for `cli = "custom"`: `{mcp_config}`, `{system_prompt_file}`,
    /// `{worktree}`, `{model}` are filled in.
    pub custom_command: Option<String>,
    /// `[agents.codex_config]`: the `config.toml` settings every Codex agent starts from.
    pub codex_config: Option<toml::Table>,
    /// Branch agents start from and merge into; default: the repository's current branch.
    pub base_branch: Option<String>,
    pub worktrees_dir: PathBuf,
    /// Untracked files copied from the repository into each new worktree.
    pub copy_untracked: Vec<String>,
    /// Name of the private tmux server (`tmux -L`).
    pub tmux_socket: String,
    pub session_prefix: String,
    /// How long a CLI may take to start, connect its MCP server and list our tools.
    pub ready_timeout_secs: u64,
    /// How long after its first message an agent has to make its first tool call before the
    /// message is sent again (the wait grows with each try).
    pub delivery_timeout_secs: u64,
    /// Attempts per task before a task whose agent keeps dying or failing to start is failed.
    pub max_attempts: u32,
    /// What the CLI adapters need from the coordinator's environment.
    pub host: crate::agents::adapters::Host,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentsFile {
    enabled: Option<bool>,
    cli: Option<String>,
    model: Option<String>,
    custom_command: Option<String>,
    codex_config: Option<toml::Table>,
    base_branch: Option<String>,
    worktrees_dir: Option<PathBuf>,
    copy_untracked: Option<Vec<String>>,
    session_prefix: Option<String>,
    ready_timeout_secs: Option<u64>,
    delivery_timeout_secs: Option<u64>,
    max_attempts: Option<u32>,
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name} must be true or false, got {v:?}"),
    }
}

pub(super) fn resolve(
    file: AgentsFile,
    env: &HashMap<String, String>,
    flags: &Overrides,
    project_root: &Path,
    data_dir: &Path,
) -> Result<AgentSettings> {
    let enabled = match (flags.agents_enabled, env.get("HEPHAESTUS_AGENTS_ENABLED")) {
        (Some(b), _) => b,
        (None, Some(v)) => parse_bool("HEPHAESTUS_AGENTS_ENABLED", v)?,
        (None, None) => file.enabled.unwrap_or(true),
    };
    let cli = flags
        .agent_cli
        .clone()
        .or_else(|| env.get("HEPHAESTUS_AGENT_CLI").cloned())
        .or(file.cli)
        .unwrap_or_else(|| "claude".to_string());
    let hash = format!(
        "{:08x}",
        fnv1a(data_dir.as_os_str().as_encoded_bytes()) as u32
    );
    let worktrees_dir = match file.worktrees_dir {
        Some(p) => absolute(project_root, &p),
        None => {
            // Outside the repository, so tools run in the repo never walk into agents' copies.
            let name = project_root
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let share = env
                .get("XDG_DATA_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    env.get("HOME")
                        .filter(|v| !v.is_empty())
                        .map(|h| Path::new(h).join(".local/share"))
                });
            match share {
                Some(dir) => dir
                    .join("hephaestus/worktrees")
                    .join(format!("{name}-{hash}")),
                None => data_dir.join("worktrees"),
            }
        }
    };
    Ok(AgentSettings {
        enabled,
        cli,
        model: file.model,
        custom_command: file.custom_command,
        codex_config: file.codex_config,
        base_branch: file.base_branch,
        worktrees_dir,
        copy_untracked: file
            .copy_untracked
            .unwrap_or_else(|| vec![".env".to_string()]),
        tmux_socket: format!("hephaestus-{hash}"),
        session_prefix: file.session_prefix.unwrap_or_else(|| "hep".to_string()),
        ready_timeout_secs: file.ready_timeout_secs.unwrap_or(90),
        delivery_timeout_secs: file.delivery_timeout_secs.unwrap_or(20).max(1),
        max_attempts: file.max_attempts.unwrap_or(3).max(1),
        host: crate::agents::adapters::Host::from_env(env),
    })
}
