//! How each agent CLI is launched: its command line, how it gets its system prompt and first
//! message, how it is given our MCP server for this agent only, and what it needs to run
//! unattended. Pure: from the agent and a snapshot of the host (`Host`, taken with the config)
//! it builds commands and file contents; the manager writes and runs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CliKind {
    Claude,
    Codex,
    Opencode,
    Gemini,
    /// Factory's Droid CLI.
    Droid,
    /// A command template from config (`agents.custom_command`).
    Custom,
}

impl CliKind {
    pub fn parse(s: &str) -> Result<CliKind> {
        Ok(match s {
            "claude" => CliKind::Claude,
            "codex" => CliKind::Codex,
            "opencode" => CliKind::Opencode,
            "gemini" => CliKind::Gemini,
            "droid" => CliKind::Droid,
            "custom" => CliKind::Custom,
            other => {
                bail!(
                    "unknown agent CLI {other:?}: use claude, codex, opencode, gemini, droid or custom"
                )
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CliKind::Claude => "claude",
            CliKind::Codex => "codex",
            CliKind::Opencode => "opencode",
            CliKind::Gemini => "gemini",
            CliKind::Droid => "droid",
            CliKind::Custom => "custom",
        }
    }
}

/// Everything an adapter needs to know about one agent.
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    pub agent_id: String,
    pub token: String,
    /// The `hephaestus` executable the shim runs from.
    pub exe: PathBuf,
    pub socket: PathBuf,
    pub worktree: PathBuf,
    /// Per-agent directory for generated config files (outside the worktree, so they are never
    /// committed: they hold the agent's token).
    pub agent_dir: PathBuf,
    pub system_prompt: String,
    pub model: Option<String>,
    pub custom_command: Option<String>,
    /// `agents.codex_config`: the Codex settings (model provider, model, ...) every Codex agent
    /// starts from, since a Codex agent does not read the user's own `~/.codex/config.toml`.
    pub codex_config: Option<toml::Table>,
}

/// What to write and run.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    /// A shell command line, run by tmux in the worktree.
    pub command: String,
    pub env: BTreeMap<String, String>,
    /// Files to write before launching.
    pub files: Vec<(PathBuf, String)>,
    /// Symlinks to make before launching, `(link, target)`; skipped while the target is missing.
    pub links: Vec<(PathBuf, PathBuf)>,
    /// True when the first message must carry the system prompt (the CLI has no flag for it).
    pub prompt_in_first_message: bool,
}

/// What the adapters need to know about the machine and the coordinator's environment. The
/// agent CLI runs in tmux with the coordinator's environment (the private tmux server is started
/// by the coordinator, so it inherits it), plus `LaunchSpec::env`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Host {
    pub is_root: bool,
    /// `ANTHROPIC_API_KEY`: Claude Code asks before using a key it has not seen approved.
    pub anthropic_api_key: Option<String>,
    /// The user's own `CLAUDE_CONFIG_DIR`, where their Claude Code login lives when it is set.
    pub claude_config_dir: Option<String>,
    /// The user's own Codex home (`CODEX_HOME`, else `~/.codex`), where their login lives.
    pub codex_home: Option<PathBuf>,
    /// The user's home, whose `.factory/` holds their Droid login and their own models, and
    /// whose `.gemini/` holds their Google login for Gemini CLI.
    pub home: Option<PathBuf>,
    /// How Gemini CLI agents sign in (its `security.auth.selectedType`): Vertex AI when
    /// `GOOGLE_GENAI_USE_VERTEXAI` is true, an API key when `GEMINI_API_KEY` or
    /// `GOOGLE_API_KEY` is set, else the user's Google login.
    pub gemini_auth: GeminiAuth,
}

/// Gemini CLI's sign-in methods, as its settings name them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GeminiAuth {
    /// The user's Google account (`~/.gemini/oauth_creds.json`).
    #[default]
    GoogleLogin,
    ApiKey,
    VertexAi,
}

impl GeminiAuth {
    fn setting(self) -> &'static str {
        match self {
            GeminiAuth::GoogleLogin => "oauth-personal",
            GeminiAuth::ApiKey => "gemini-api-key",
            GeminiAuth::VertexAi => "vertex-ai",
        }
    }
}

impl Host {
    /// The host as the coordinator sees it, from its environment snapshot.
    pub fn from_env(env: &std::collections::HashMap<String, String>) -> Host {
        let var = |name: &str| env.get(name).filter(|v| !v.trim().is_empty()).cloned();
        Host {
            is_root: unsafe { libc::geteuid() } == 0,
            anthropic_api_key: var("ANTHROPIC_API_KEY"),
            claude_config_dir: var("CLAUDE_CONFIG_DIR"),
            codex_home: var("CODEX_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(&h).join(".codex"))),
            home: var("HOME").map(PathBuf::from),
            gemini_auth: if var("GOOGLE_GENAI_USE_VERTEXAI")
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
            {
                GeminiAuth::VertexAi
            } else if var("GEMINI_API_KEY").is_some() || var("GOOGLE_API_KEY").is_some() {
                GeminiAuth::ApiKey
            } else {
                GeminiAuth::GoogleLogin
            },
        }
    }
}

/// Single-quotes `s` for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn shim_env(l: &AgentLaunch) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "HEPHAESTUS_SOCKET".to_string(),
            l.socket.display().to_string(),
        ),
        ("HEPHAESTUS_AGENT_ID".to_string(), l.agent_id.clone()),
        ("HEPHAESTUS_AGENT_TOKEN".to_string(), l.token.clone()),
    ])
}

/// The Claude-style MCP config (`{"mcpServers": …}`), also used by `custom` agents.
fn mcp_servers_json(l: &AgentLaunch) -> String {
    serde_json::to_string_pretty(&json!({
        "mcpServers": {"hephaestus": {
            "command": l.exe, "args": ["shim"], "env": shim_env(l)
        }}
    }))
    .expect("json")
}

#[cfg(test)]
fn launch_spec(kind: CliKind, l: &AgentLaunch) -> Result<LaunchSpec> {
    launch_spec_on(kind, l, &Host::default())
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
            serde_json::to_string_pretty(&json!({"skipDangerousModePermissionPrompt": true}))
                .expect("json"),
        ),
    ]
}

/// Codex's `config.toml` for one agent, which is its `CODEX_HOME`: `agents.codex_config` with
/// our MCP server, the system prompt (as `developer_instructions`, after any of the user's own)
/// and what an unattended run needs on top.
///
/// A private home rather than `-c` overrides: Codex splits `-c` keys at every dot, so no
/// override can name the worktree's path in `projects`, and without a trust entry it stops at a
/// "Trust this folder?" screen.
fn codex_config_toml(l: &AgentLaunch) -> Result<String> {
    use toml::Value;
    let mut config = l.codex_config.clone().unwrap_or_default();
    let table = |pairs: Vec<(&str, Value)>| {
        Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    let env = shim_env(l)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    // Codex passes only whitelisted variables to MCP servers: the agent's identity must be in
    // the server entry itself.
    let server = table(vec![
        ("command", Value::String(l.exe.display().to_string())),
        ("args", Value::Array(vec![Value::String("shim".into())])),
        ("env", Value::Table(env)),
    ]);
    sub_table(&mut config, "mcp_servers")?.insert("hephaestus".into(), server);
    sub_table(&mut config, "projects")?.insert(
        l.worktree.display().to_string(),
        table(vec![("trust_level", Value::String("trusted".into()))]),
    );
    let instructions = match config.get("developer_instructions") {
        Some(Value::String(own)) => format!("{own}\n\n{}", l.system_prompt),
        Some(other) => bail!(
            "agents.codex_config.developer_instructions must be a string, not a {}",
            other.type_str()
        ),
        None => l.system_prompt.clone(),
    };
    config.insert("developer_instructions".into(), Value::String(instructions));
    // Codex may otherwise send the first turn before our server is up.
    config
        .entry("mcp_optional_startup_grace_ms")
        .or_insert(Value::Integer(20_000));
    // By default the interactive CLI copies itself (about 400 MB in 0.169) into
    // `$CODEX_HOME/packages` and starts a background app server there that outlives the
    // session: one copy and one resident daemon (about 250 MB) per agent. In-process it runs
    // the same and ends with the agent's session.
    sub_table(&mut config, "features")?
        .entry("daemon_auto_start")
        .or_insert(Value::Boolean(false));
    // An update prompt would sit in front of the task: updates are the user's business.
    config
        .entry("check_for_update_on_startup")
        .or_insert(Value::Boolean(false));
    let mut out =
        String::from("# Written by Hephaestus for one agent; regenerated at each launch.\n");
    for (key, value) in &config {
        out.push_str(&format!("{} = {}\n", toml_key(key), toml_value(value)));
    }
    Ok(out)
}

fn sub_table<'a>(config: &'a mut toml::Table, key: &str) -> Result<&'a mut toml::Table> {
    match config
        .entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    {
        toml::Value::Table(t) => Ok(t),
        other => bail!(
            "agents.codex_config.{key} must be a table, not a {}",
            other.type_str()
        ),
    }
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        serde_json::to_string(key).expect("json")
    }
}

/// TOML for one value, nested tables inline. The `toml` crate is built without its writer here,
/// and a JSON string is a valid TOML basic string.
fn toml_value(value: &toml::Value) -> String {
    use toml::Value;
    match value {
        Value::String(s) => serde_json::to_string(s).expect("json"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => "nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
        Value::Float(f) => format!("{f:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What a Gemini CLI agent shares with the user's own `~/.gemini`: the Google login.
const GEMINI_SHARED_FILES: &[&str] = &["oauth_creds.json", "google_accounts.json"];

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

/// `launch_spec` for a given host.
pub fn launch_spec_on(kind: CliKind, l: &AgentLaunch, host: &Host) -> Result<LaunchSpec> {
    let system_file = l.agent_dir.join("system_prompt.md");
    let mut files = vec![(system_file.clone(), l.system_prompt.clone())];
    let mut env = BTreeMap::new();
    let model = |flag: &str| {
        l.model
            .as_deref()
            .map(|m| format!(" {flag} {}", shell_quote(m)))
            .unwrap_or_default()
    };
    let spec = match kind {
        CliKind::Claude => {
            let mcp = l.agent_dir.join("mcp.json");
            files.push((mcp.clone(), mcp_servers_json(l)));
            files.extend(claude_state(l, host, &mut env));
            // Without this Claude Code defers MCP tools behind a search tool.
            env.insert("ENABLE_TOOL_SEARCH".into(), "false".into());
            if host.is_root {
                // Claude Code refuses --dangerously-skip-permissions as root outside a sandbox.
                env.insert("IS_SANDBOX".into(), "1".into());
            }
            LaunchSpec {
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
            }
        }
        CliKind::Codex => {
            let config = l.agent_dir.join("config.toml");
            files.push((config, codex_config_toml(l)?));
            env.insert("CODEX_HOME".into(), l.agent_dir.display().to_string());
            let mut links = Vec::new();
            if let Some(home) = &host.codex_home {
                // The user's login (an API key or a ChatGPT sign-in in `auth.json`), shared rather
                // than copied: Codex rewrites the file in place when it refreshes a token, so a
                // link keeps every agent and the user on one refresh token.
                links.push((l.agent_dir.join("auth.json"), home.join("auth.json")));
            }
            LaunchSpec {
                command: format!(
                    "codex --dangerously-bypass-approvals-and-sandbox{}",
                    model("-m")
                ),
                env,
                files,
                links,
                prompt_in_first_message: false,
            }
        }
        CliKind::Opencode => {
            let config = json!({
                "$schema": "https://opencode.ai/config.json",
                "mcp": {"hephaestus": {
                    "type": "local",
                    "command": [l.exe, "shim"],
                    "environment": shim_env(l),
                    "enabled": true
                }}
            });
            env.insert("OPENCODE_CONFIG_CONTENT".into(), config.to_string());
            LaunchSpec {
                command: format!(
                    "opencode {}{}",
                    shell_quote(&l.worktree.display().to_string()),
                    model("--model")
                ),
                env,
                files,
                links: Vec::new(),
                prompt_in_first_message: true,
            }
        }
        CliKind::Gemini => {
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
            let links = match &host.home {
                Some(home) => GEMINI_SHARED_FILES
                    .iter()
                    .map(|f| (dot_gemini.join(f), home.join(".gemini").join(f)))
                    .collect(),
                None => Vec::new(),
            };
            LaunchSpec {
                command: format!("gemini --yolo{}", model("--model")),
                env,
                files,
                links,
                prompt_in_first_message: false,
            }
        }
        CliKind::Droid => {
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
            let links = match &host.home {
                Some(home) => DROID_SHARED_FILES
                    .iter()
                    .map(|f| (factory.join(f), home.join(".factory").join(f)))
                    .collect(),
                None => Vec::new(),
            };
            LaunchSpec {
                command: format!(
                    "droid --auto high --append-system-prompt-file {}",
                    shell_quote(&system_file.display().to_string())
                ),
                env,
                files,
                links,
                prompt_in_first_message: false,
            }
        }
        CliKind::Custom => {
            let Some(template) = &l.custom_command else {
                bail!("agents.cli = \"custom\" needs agents.custom_command in hephaestus.toml");
            };
            let mcp = l.agent_dir.join("mcp.json");
            files.push((mcp.clone(), mcp_servers_json(l)));
            let command = template
                .replace("{mcp_config}", &shell_quote(&mcp.display().to_string()))
                .replace(
                    "{system_prompt_file}",
                    &shell_quote(&system_file.display().to_string()),
                )
                .replace(
                    "{worktree}",
                    &shell_quote(&l.worktree.display().to_string()),
                )
                .replace("{model}", &shell_quote(l.model.as_deref().unwrap_or("")));
            // Custom agents may also start the shim from their environment.
            env.extend(shim_env(l));
            LaunchSpec {
                command,
                env,
                files,
                links: Vec::new(),
                prompt_in_first_message: false,
            }
        }
    };
    Ok(spec)
}

/// The agent's private config directory.
pub fn agent_dir(data_dir: &Path, id8: &str) -> PathBuf {
    data_dir.join("agents").join(id8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> AgentLaunch {
        AgentLaunch {
            agent_id: "a1b2c3d4-0000".into(),
            token: "tok'en".into(),
            exe: "/opt/hephaestus".into(),
            socket: "/p/.hephaestus/coordinator.sock".into(),
            worktree: "/w/agent-a1b2c3d4".into(),
            agent_dir: "/p/.hephaestus/agents/a1b2c3d4".into(),
            system_prompt: "be good".into(),
            model: Some("sonnet".into()),
            custom_command: Some(
                "python3 agent.py --mcp-config {mcp_config} --system {system_prompt_file}".into(),
            ),
            codex_config: None,
        }
    }

    #[test]
    fn claude_gets_a_strict_per_agent_mcp_config() {
        let spec = launch_spec(CliKind::Claude, &launch()).unwrap();
        assert!(spec.command.starts_with(
            "claude --mcp-config '/p/.hephaestus/agents/a1b2c3d4/mcp.json' --strict-mcp-config"
        ));
        assert!(spec.command.contains("--model 'sonnet'"));
        assert_eq!(spec.env["ENABLE_TOOL_SEARCH"], "false");
        let (_, mcp) = spec
            .files
            .iter()
            .find(|(p, _)| p.ends_with("mcp.json"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(mcp).unwrap();
        assert_eq!(
            v["mcpServers"]["hephaestus"]["env"]["HEPHAESTUS_AGENT_TOKEN"],
            "tok'en"
        );
        assert_eq!(v["mcpServers"]["hephaestus"]["args"][0], "shim");
    }

    fn file<'a>(spec: &'a LaunchSpec, name: &str) -> &'a str {
        let (path, text) = spec
            .files
            .iter()
            .find(|(p, _)| p.file_name().is_some_and(|n| n == name))
            .unwrap_or_else(|| panic!("no {name} in {:?}", spec.files));
        assert!(
            path.starts_with("/p/.hephaestus/agents/a1b2c3d4"),
            "agent files stay in the agent dir: {}",
            path.display()
        );
        text
    }

    #[test]
    fn claude_gets_a_private_config_dir_that_skips_every_first_run_screen() {
        let host = Host {
            is_root: true,
            anthropic_api_key: Some("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789".into()),
            claude_config_dir: None,
            codex_home: None,
            home: None,
            gemini_auth: GeminiAuth::GoogleLogin,
        };
        let spec = launch_spec_on(CliKind::Claude, &launch(), &host).unwrap();
        assert_eq!(
            spec.env["CLAUDE_CONFIG_DIR"],
            "/p/.hephaestus/agents/a1b2c3d4"
        );
        assert_eq!(spec.env["IS_SANDBOX"], "1");
        let global: serde_json::Value = serde_json::from_str(file(&spec, ".claude.json")).unwrap();
        assert_eq!(global["hasCompletedOnboarding"], true);
        assert_eq!(
            global["projects"]["/w/agent-a1b2c3d4"]["hasTrustDialogAccepted"],
            true
        );
        assert_eq!(
            global["customApiKeyResponses"]["approved"],
            json!(["qrstuvwxyz0123456789"])
        );
        let settings: serde_json::Value =
            serde_json::from_str(file(&spec, "settings.json")).unwrap();
        assert_eq!(settings["skipDangerousModePermissionPrompt"], true);
    }

    #[test]
    fn claude_agents_share_the_users_login_without_copying_it() {
        let host = Host::default();
        let spec = launch_spec_on(CliKind::Claude, &launch(), &host).unwrap();
        // Empty means the user's default store: ~/.claude/.credentials.json or the keychain.
        assert_eq!(spec.env["CLAUDE_SECURESTORAGE_CONFIG_DIR"], "");
        assert!(!spec.env.contains_key("IS_SANDBOX"), "not root");
        assert!(
            spec.files
                .iter()
                .all(|(p, _)| !p.ends_with(".credentials.json"))
        );
        let global: serde_json::Value = serde_json::from_str(file(&spec, ".claude.json")).unwrap();
        assert!(global.get("customApiKeyResponses").is_none(), "{global}");

        let host = Host {
            claude_config_dir: Some("/home/u/.claude-work".into()),
            anthropic_api_key: Some("short".into()),
            ..Host::default()
        };
        let spec = launch_spec_on(CliKind::Claude, &launch(), &host).unwrap();
        assert_eq!(
            spec.env["CLAUDE_SECURESTORAGE_CONFIG_DIR"],
            "/home/u/.claude-work"
        );
        let global: serde_json::Value = serde_json::from_str(file(&spec, ".claude.json")).unwrap();
        assert_eq!(
            global["customApiKeyResponses"]["approved"],
            json!(["short"])
        );
    }

    #[test]
    fn codex_gets_a_private_home_with_our_server_trust_and_the_users_settings() {
        let mut l = launch();
        // Dots and quotes in the path: Codex's own `-c` keys could not say this.
        l.worktree = "/w/x.y/agent \"a\"".into();
        l.codex_config = Some(
            toml::from_str(
                "model_provider = \"local\"\nmcp_optional_startup_grace_ms = 5000\n\
                 developer_instructions = \"Use British spelling.\"\n\
                 [model_providers.local]\nbase_url = \"http://127.0.0.1:1/v1\"\nwire_api = \"responses\"\n\
                 [projects.\"/elsewhere\"]\ntrust_level = \"untrusted\"\n\
                 [mcp_servers.docs]\ncommand = \"docs-mcp\"\nargs = []\nstartup_timeout_sec = 1.5\n",
            )
            .unwrap(),
        );
        let host = Host {
            codex_home: Some("/home/u/.codex".into()),
            ..Host::default()
        };
        let spec = launch_spec_on(CliKind::Codex, &l, &host).unwrap();
        assert_eq!(
            spec.command,
            "codex --dangerously-bypass-approvals-and-sandbox -m 'sonnet'"
        );
        assert_eq!(spec.env["CODEX_HOME"], "/p/.hephaestus/agents/a1b2c3d4");
        assert!(!spec.prompt_in_first_message);
        assert_eq!(
            spec.links,
            vec![(
                PathBuf::from("/p/.hephaestus/agents/a1b2c3d4/auth.json"),
                PathBuf::from("/home/u/.codex/auth.json")
            )]
        );
        let text = file(&spec, "config.toml");
        let config: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let server = &config["mcp_servers"]["hephaestus"];
        assert_eq!(server["command"].as_str(), Some("/opt/hephaestus"));
        assert_eq!(server["args"][0].as_str(), Some("shim"));
        assert_eq!(
            server["env"]["HEPHAESTUS_AGENT_TOKEN"].as_str(),
            Some("tok'en")
        );
        assert_eq!(
            server["env"]["HEPHAESTUS_AGENT_ID"].as_str(),
            Some("a1b2c3d4-0000")
        );
        assert_eq!(
            config["projects"]["/w/x.y/agent \"a\""]["trust_level"].as_str(),
            Some("trusted")
        );
        // The user's own settings survive, and win where they chose a value.
        assert_eq!(
            config["projects"]["/elsewhere"]["trust_level"].as_str(),
            Some("untrusted")
        );
        assert_eq!(config["model_provider"].as_str(), Some("local"));
        assert_eq!(
            config["model_providers"]["local"]["wire_api"].as_str(),
            Some("responses")
        );
        assert_eq!(
            config["mcp_servers"]["docs"]["startup_timeout_sec"].as_float(),
            Some(1.5)
        );
        assert_eq!(
            config["mcp_optional_startup_grace_ms"].as_integer(),
            Some(5000)
        );
        assert_eq!(config["check_for_update_on_startup"].as_bool(), Some(false));
        assert_eq!(
            config["features"]["daemon_auto_start"].as_bool(),
            Some(false)
        );
        // The system prompt goes after the user's own instructions.
        assert_eq!(
            config["developer_instructions"].as_str(),
            Some("Use British spelling.\n\nbe good")
        );

        // Without settings of its own, the agent still gets the start-up grace.
        let spec = launch_spec(CliKind::Codex, &launch()).unwrap();
        let config: toml::Table = toml::from_str(file(&spec, "config.toml")).unwrap();
        assert_eq!(
            config["mcp_optional_startup_grace_ms"].as_integer(),
            Some(20_000)
        );
        assert!(spec.links.is_empty(), "no codex home known");
    }

    #[test]
    fn codex_refuses_settings_that_are_not_tables_where_tables_go() {
        let mut l = launch();
        l.codex_config = Some(toml::from_str("projects = \"all\"").unwrap());
        let err = launch_spec(CliKind::Codex, &l).unwrap_err().to_string();
        assert_eq!(
            err,
            "agents.codex_config.projects must be a table, not a string"
        );
    }

    #[test]
    fn droid_gets_its_own_factory_home_with_our_server_and_the_users_login() {
        assert_eq!(CliKind::parse("droid").unwrap(), CliKind::Droid);
        let host = Host {
            home: Some("/home/u".into()),
            ..Host::default()
        };
        let spec = launch_spec_on(CliKind::Droid, &launch(), &host).unwrap();
        assert_eq!(
            spec.command,
            "droid --auto high --append-system-prompt-file '/p/.hephaestus/agents/a1b2c3d4/system_prompt.md'"
        );
        assert!(!spec.prompt_in_first_message);
        assert_eq!(
            spec.env["FACTORY_HOME_OVERRIDE"],
            "/p/.hephaestus/agents/a1b2c3d4"
        );
        assert_eq!(spec.env["CI"], "false");
        let (path, _) = spec
            .files
            .iter()
            .find(|(p, _)| p.ends_with("mcp.json"))
            .unwrap();
        assert_eq!(
            path,
            Path::new("/p/.hephaestus/agents/a1b2c3d4/.factory/mcp.json")
        );
        let mcp: serde_json::Value = serde_json::from_str(file(&spec, "mcp.json")).unwrap();
        let server = &mcp["mcpServers"]["hephaestus"];
        assert_eq!(server["type"], "stdio");
        assert_eq!(server["command"], "/opt/hephaestus");
        assert_eq!(server["args"], json!(["shim"]));
        assert_eq!(server["env"]["HEPHAESTUS_AGENT_TOKEN"], "tok'en");
        assert_eq!(server["connectTimeout"], 60_000);
        assert_eq!(
            server["env"]["HEPHAESTUS_SOCKET"],
            "/p/.hephaestus/coordinator.sock"
        );
        let settings: serde_json::Value =
            serde_json::from_str(file(&spec, "settings.json")).unwrap();
        assert_eq!(
            settings["sessionDefaultSettings"],
            json!({"autonomyLevel": "high", "model": "sonnet"})
        );
        assert_eq!(settings["blockOnMcpLoad"], true);
        let links: Vec<_> = spec
            .links
            .iter()
            .map(|(l, t)| (l.display().to_string(), t.display().to_string()))
            .collect();
        assert!(
            links.contains(&(
                "/p/.hephaestus/agents/a1b2c3d4/.factory/auth.v2.file".into(),
                "/home/u/.factory/auth.v2.file".into()
            )),
            "{links:?}"
        );
        assert!(
            links
                .iter()
                .any(|(l, _)| l.ends_with("/.factory/config.json")),
            "{links:?}"
        );

        let mut l = launch();
        l.model = None;
        let spec = launch_spec(CliKind::Droid, &l).unwrap();
        let settings: serde_json::Value =
            serde_json::from_str(file(&spec, "settings.json")).unwrap();
        assert!(settings["sessionDefaultSettings"].get("model").is_none());
        assert!(spec.links.is_empty(), "no home known");
    }

    #[test]
    fn opencode_and_gemini_keep_config_out_of_the_worktree() {
        let oc = launch_spec(CliKind::Opencode, &launch()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&oc.env["OPENCODE_CONFIG_CONTENT"]).unwrap();
        assert_eq!(v["mcp"]["hephaestus"]["type"], "local");
        assert_eq!(
            v["mcp"]["hephaestus"]["environment"]["HEPHAESTUS_AGENT_ID"],
            "a1b2c3d4-0000"
        );
        let host = Host {
            home: Some(PathBuf::from("/home/u")),
            gemini_auth: GeminiAuth::ApiKey,
            ..Default::default()
        };
        let gm = launch_spec_on(CliKind::Gemini, &launch(), &host).unwrap();
        assert!(
            gm.files
                .iter()
                .all(|(p, _)| p.starts_with("/p/.hephaestus/agents"))
        );
        assert_eq!(gm.env["GEMINI_CLI_TRUST_WORKSPACE"], "true");
        assert_eq!(gm.env["CI"], "false");
        assert_eq!(
            gm.env["GEMINI_CLI_HOME"],
            "/p/.hephaestus/agents/a1b2c3d4/gemini-home"
        );
        let settings: serde_json::Value = serde_json::from_str(file(&gm, "settings.json")).unwrap();
        assert_eq!(
            settings["security"]["auth"]["selectedType"],
            "gemini-api-key"
        );
        assert_eq!(
            settings["mcpServers"]["hephaestus"]["env"]["HEPHAESTUS_AGENT_TOKEN"],
            "tok'en"
        );
        assert!(gm.links.contains(&(
            PathBuf::from("/p/.hephaestus/agents/a1b2c3d4/gemini-home/.gemini/oauth_creds.json"),
            PathBuf::from("/home/u/.gemini/oauth_creds.json")
        )));
        let env = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            Host::from_env(&env(&[])).gemini_auth,
            GeminiAuth::GoogleLogin
        );
        assert_eq!(
            Host::from_env(&env(&[("GEMINI_API_KEY", "k")])).gemini_auth,
            GeminiAuth::ApiKey
        );
        assert_eq!(
            Host::from_env(&env(&[
                ("GOOGLE_GENAI_USE_VERTEXAI", "true"),
                ("GOOGLE_API_KEY", "k")
            ]))
            .gemini_auth,
            GeminiAuth::VertexAi
        );
    }

    #[test]
    fn custom_commands_fill_their_placeholders_and_need_a_template() {
        let spec = launch_spec(CliKind::Custom, &launch()).unwrap();
        assert_eq!(
            spec.command,
            "python3 agent.py --mcp-config '/p/.hephaestus/agents/a1b2c3d4/mcp.json' --system '/p/.hephaestus/agents/a1b2c3d4/system_prompt.md'"
        );
        let mut l = launch();
        l.custom_command = None;
        assert!(
            launch_spec(CliKind::Custom, &l)
                .unwrap_err()
                .to_string()
                .contains("custom_command")
        );
        assert!(CliKind::parse("cursor").is_err());
    }
}
