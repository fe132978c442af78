//! Gemini CLI: `gemini --yolo` with a private `GEMINI_CLI_HOME` whose settings hold our server
//! and the sign-in method; the user's Google login linked.

use anyhow::Result;
use serde_json::json;

use super::{AgentLaunch, Base, Host, LaunchSpec, shim_env};

/// What a Gemini CLI agent shares with the user's own `~/.gemini`: the Google login.
const GEMINI_SHARED_FILES: &[&str] = &["oauth_creds.json", "google_accounts.json"];

pub(super) fn spec(l: &AgentLaunch, host: &Host, base: Base) -> Result<LaunchSpec> {
    let Base {
        system_file,
        mut files,
        mut env,
    } = base;
    let model = |flag: &str| super::model_flag(l, flag);
    // A private Gemini home (`GEMINI_CLI_HOME` moves `~/.gemini` and nothing else) whose
    // settings hold our server: the worktree's `.gemini/` would be committed with the
    // token, and Gemini CLI 0.61 ignores a system settings file unless root owns it and
    // every directory above it.
    let gemini_home = l.agent_dir.join("gemini-home");
    let dot_gemini = gemini_home.join(".gemini");
    files.push((
        dot_gemini.join("settings.json"),
        serde_json::to_string_pretty(&json!({
            "mcpServers": {"hephaestus": {
                "command": l.exe, "args": ["shim"], "env": shim_env(l), "trust": true
            }},
            "security": {"auth": {"selectedType": host.gemini_auth.setting()}}
        }))?,
    ));
    env.insert("GEMINI_CLI_HOME".into(), gemini_home.display().to_string());
    env.insert("GEMINI_CLI_TRUST_WORKSPACE".into(), "true".into());
    env.insert("GEMINI_SYSTEM_MD".into(), system_file.display().to_string());
    // With `CI` set (a coordinator started by a CI job) Gemini CLI 0.61 skips its
    // terminal UI, finds no prompt on stdin and exits 42.
    env.insert("CI".into(), "false".into());
    // The user's Google login is shared, not copied, so a token refresh reaches every
    // agent and the user alike.
    let links = super::shared_from_home(host, ".gemini", &dot_gemini, GEMINI_SHARED_FILES);
    Ok(LaunchSpec {
        command: format!("gemini --yolo{}", model("--model")),
        env,
        files,
        links,
        prompt_in_first_message: false,
    })
}
