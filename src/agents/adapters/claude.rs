//! Claude Code: `--mcp-config … --strict-mcp-config` with our server only, a private
//! `CLAUDE_CONFIG_DIR` holding the onboarding and trust answers, the user's login shared.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use super::{AgentLaunch, Base, Host, LaunchSpec, mcp_servers_json, shell_quote};

pub(super) fn spec(l: &AgentLaunch, host: &Host, base: Base) -> Result<LaunchSpec> {
    let Base {
        system_file,
        mut files,
        mut env,
    } = base;
    let model = |flag: &str| super::model_flag(l, flag);
    let mcp = l.agent_dir.join("mcp.json");
    files.push((mcp.clone(), mcp_servers_json(l)));
    files.extend(claude_state(l, host, &mut env));
    files.push((l.agent_dir.join(HOOK_IDENTITY), hook_identity(l)));
    // Without this Claude Code defers MCP tools behind a search tool.
    env.insert("ENABLE_TOOL_SEARCH".into(), "false".into());
    if host.is_root {
        // Claude Code refuses --dangerously-skip-permissions as root outside a sandbox.
        env.insert("IS_SANDBOX".into(), "1".into());
    }
    Ok(LaunchSpec {
        command: format!(
            "claude --mcp-config {} --strict-mcp-config --dangerously-skip-permissions --append-system-prompt \"$(cat {})\"{}",
            shell_quote(&mcp.display().to_string()),
            shell_quote(&system_file.display().to_string()),
            model("--model")
        ),
        env,
        files,
        links: Vec::new(),
        prompt_in_first_message: false,
    })
}

/// Claude Code's state for one agent: `CLAUDE_CONFIG_DIR` is the agent's own directory, which
/// already exists and is private (0700, outside the worktree), so both files sit directly in it.
/// A config dir rather than a per-agent `HOME`: the agent's shell commands keep the user's real
/// home (git identity, ssh keys, package caches), and nothing but Claude Code's own state moves.
///
/// Login: an API key in the environment reaches the CLI as it is and is pre-approved here. A
/// subscription login (`.credentials.json`, or the keychain on macOS) is not copied: a copy would
/// fork the OAuth refresh token, and Claude Code refuses a symlinked credentials file.
/// `CLAUDE_SECURESTORAGE_CONFIG_DIR` points its credential store back at the user's own (empty
/// means the default: `~/.claude`, and the unsuffixed keychain item), so every agent shares the
/// user's login and its refreshes, as the user's own parallel sessions do.
fn claude_state(
    l: &AgentLaunch,
    host: &Host,
    env: &mut BTreeMap<String, String>,
) -> Vec<(PathBuf, String)> {
    let mut global = json!({
        "hasCompletedOnboarding": true,
        "projects": {l.worktree.display().to_string(): {"hasTrustDialogAccepted": true}},
    });
    if let Some(key) = &host.anthropic_api_key {
        // Claude Code remembers approved keys by their last 20 characters.
        let key = key.trim();
        let tail = key
            .char_indices()
            .rev()
            .nth(19)
            .map_or(key, |(i, _)| &key[i..]);
        global["customApiKeyResponses"] = json!({"approved": [tail], "rejected": []});
    }
    env.insert(
        "CLAUDE_CONFIG_DIR".into(),
        l.agent_dir.display().to_string(),
    );
    env.insert(
        "CLAUDE_SECURESTORAGE_CONFIG_DIR".into(),
        host.claude_config_dir.clone().unwrap_or_default(),
    );
    vec![
        (
            l.agent_dir.join(".claude.json"),
            serde_json::to_string_pretty(&global).expect("json"),
        ),
        (
            l.agent_dir.join("settings.json"),
            serde_json::to_string_pretty(&json!({
                "skipDangerousModePermissionPrompt": true,
                "hooks": hooks(l),
            }))
            .expect("json"),
        ),
    ]
}

/// Where a hook finds who it runs for, in the agent's private dir.
const HOOK_IDENTITY: &str = "hook-identity.json";

/// The agent's identity for `hephaestus hook`: in a file of the agent's private dir (like its
/// `mcp.json`), because a command line is visible to every local user.
fn hook_identity(l: &AgentLaunch) -> String {
    serde_json::to_string_pretty(&super::shim_env(l)).expect("json")
}

/// Claude Code's lifecycle hooks, each running `hephaestus hook EVENT IDENTITY_FILE` as this
/// agent: the guardian's most trusted word on whether a turn runs, ended or waits for a
/// permission. Nothing secret is on the command line.
fn hooks(l: &AgentLaunch) -> serde_json::Value {
    let exe = shell_quote(&l.exe.display().to_string());
    let identity = shell_quote(&l.agent_dir.join(HOOK_IDENTITY).display().to_string());
    let mut hooks = serde_json::Map::new();
    for event in crate::guardian::hooks::CLAUDE_EVENTS {
        let command = format!("{exe} hook {event} {identity}");
        let entry = json!({"hooks": [{"type": "command", "command": command, "timeout": 5}]});
        let entry = if *event == "PreToolUse" {
            json!({"matcher": "*", "hooks": entry["hooks"]})
        } else {
            entry
        };
        hooks.insert(event.to_string(), json!([entry]));
    }
    serde_json::Value::Object(hooks)
}
