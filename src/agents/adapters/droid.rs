//! Droid (Factory's CLI): `droid --auto high` with a private Factory home
//! (`FACTORY_HOME_OVERRIDE`) holding our server and the session's model; the user's login and
//! own models linked.

use anyhow::Result;
use serde_json::json;

use super::{AgentLaunch, Base, Host, LaunchSpec, shell_quote, shim_env};

/// What a Droid agent shares with the user's own `~/.factory`: the login in each of the forms
/// Droid 0.225 keeps it (`auth.v2.*`, `auth.encrypted`, the older `auth.json`), and `config.json`
/// with the user's own models.
const DROID_SHARED_FILES: &[&str] = &[
    "auth.v2.file",
    "auth.v2.key",
    "auth.v2.keyring",
    "auth.encrypted",
    "auth.json",
    "config.json",
];

pub(super) fn spec(l: &AgentLaunch, host: &Host, base: Base) -> Result<LaunchSpec> {
    let Base {
        system_file,
        mut files,
        mut env,
    } = base;
    // Droid reads its MCP servers only from `~/.factory/mcp.json` and the project's
    // `.factory/mcp.json` (which would be committed with the token), so the agent gets
    // its own Factory home: `FACTORY_HOME_OVERRIDE` moves `~/.factory` and nothing else,
    // the agent's shell commands keep the user's real HOME.
    let factory = l.agent_dir.join(".factory");
    files.push((
        factory.join("mcp.json"),
        serde_json::to_string_pretty(&json!({
            "mcpServers": {"hephaestus": {
                "type": "stdio", "command": l.exe, "args": ["shim"],
                "env": shim_env(l), "disabled": false,
                // Droid gives up on a stdio server after 30 s; our shim waits up to
                // about a minute for a coordinator that is restarting.
                "connectTimeout": 60_000
            }}
        }))?,
    ));
    // The interactive CLI has no model flag: the model is a session default.
    let mut session = json!({"autonomyLevel": "high"});
    if let Some(m) = &l.model {
        session["model"] = json!(m);
    }
    // Droid starts its MCP servers in the background and sends its first model request
    // without waiting (about half a second after start), so the first turn lacked our
    // tools; `blockOnMcpLoad` (a top-level key) makes each turn wait for them.
    files.push((
        factory.join("settings.json"),
        serde_json::to_string_pretty(
            &json!({"sessionDefaultSettings": session, "blockOnMcpLoad": true}),
        )?,
    ));
    env.insert(
        "FACTORY_HOME_OVERRIDE".into(),
        l.agent_dir.display().to_string(),
    );
    // Droid's terminal UI draws nothing while `CI` is set (its renderer then prints only
    // the last frame, at exit), so an agent of a coordinator started by a CI job would
    // sit on a blank screen. With `CI=false` it draws (seen with Droid 0.225.2).
    env.insert("CI".into(), "false".into());
    // The user's login and own models (`custom_models`, bring-your-own-key) are shared,
    // not copied, so a token refresh reaches every agent and the user alike.
    let links = super::shared_from_home(host, ".factory", &factory, DROID_SHARED_FILES);
    Ok(LaunchSpec {
        command: format!(
            "droid --auto high --append-system-prompt-file {}",
            shell_quote(&system_file.display().to_string())
        ),
        env,
        files,
        links,
        prompt_in_first_message: false,
    })
}
