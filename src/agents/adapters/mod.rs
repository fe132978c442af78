//! How each agent CLI is launched: its command line, how it gets its system prompt and first
//! message, how it is given our MCP server for this agent only, and what it needs to run
//! unattended. Pure: from the agent and a snapshot of the host (`Host`, taken with the config)
//! it builds commands and file contents; the manager writes and runs them.

mod claude;
mod codex;
mod droid;
mod gemini;

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

    /// The program the launch command runs; none for a custom command (the user's own).
    pub fn program(self) -> Option<&'static str> {
        match self {
            CliKind::Custom => None,
            other => Some(other.as_str()),
        }
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
    /// The coordinator's `PATH`, which the agents' sessions inherit.
    pub path: Option<String>,
}

impl Host {
    /// Why `kind`'s program cannot start here, when it cannot: not found on `PATH`, or not
    /// executable. Reads the file system (a few `stat` calls).
    pub fn missing_cli(&self, kind: CliKind) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let program = kind.program()?;
        let path = self.path.as_deref().unwrap_or("");
        let found = path.split(':').filter(|d| !d.is_empty()).any(|dir| {
            std::fs::metadata(Path::new(dir).join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
        (!found).then(|| {
            format!(
                "{program}: not found on PATH ({path}); install it, or set agents.cli in hephaestus.toml"
            )
        })
    }
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
            path: var("PATH"),
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

/// What every CLI's launch starts from: the system prompt's file, and that file among the
/// files to write.
struct Base {
    system_file: PathBuf,
    files: Vec<(PathBuf, String)>,
    env: BTreeMap<String, String>,
}

/// Links in the agent's `dir` to the same files in the user's `~/<dot_dir>` (their login and
/// own settings), when the user's home is known.
fn shared_from_home(
    host: &Host,
    dot_dir: &str,
    dir: &Path,
    files: &[&str],
) -> Vec<(PathBuf, PathBuf)> {
    match &host.home {
        Some(home) => files
            .iter()
            .map(|f| (dir.join(f), home.join(dot_dir).join(f)))
            .collect(),
        None => Vec::new(),
    }
}

/// ` <flag> <model>` when a model is set.
fn model_flag(l: &AgentLaunch, flag: &str) -> String {
    l.model
        .as_deref()
        .map(|m| format!(" {flag} {}", shell_quote(m)))
        .unwrap_or_default()
}

/// `launch_spec` for a given host.
pub fn launch_spec_on(kind: CliKind, l: &AgentLaunch, host: &Host) -> Result<LaunchSpec> {
    let system_file = l.agent_dir.join("system_prompt.md");
    let base = Base {
        files: vec![(system_file.clone(), l.system_prompt.clone())],
        system_file,
        env: BTreeMap::new(),
    };
    match kind {
        CliKind::Claude => claude::spec(l, host, base),
        CliKind::Codex => codex::spec(l, host, base),
        CliKind::Gemini => gemini::spec(l, host, base),
        CliKind::Droid => droid::spec(l, host, base),
        CliKind::Opencode => opencode(l, base),
        CliKind::Custom => custom(l, base),
    }
}

/// OpenCode: our server in `OPENCODE_CONFIG_CONTENT`, which it merges with the user's config;
/// the system prompt goes in the first message.
fn opencode(l: &AgentLaunch, base: Base) -> Result<LaunchSpec> {
    let Base { files, mut env, .. } = base;
    let model = |flag: &str| model_flag(l, flag);
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
    Ok(LaunchSpec {
        command: format!(
            "opencode {}{}",
            shell_quote(&l.worktree.display().to_string()),
            model("--model")
        ),
        env,
        files,
        links: Vec::new(),
        prompt_in_first_message: true,
    })
}

/// `cli = "custom"`: the user's command template with the MCP config, the system prompt's
/// file, the worktree and the model filled in.
fn custom(l: &AgentLaunch, base: Base) -> Result<LaunchSpec> {
    let Base {
        system_file,
        mut files,
        mut env,
    } = base;
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
    Ok(LaunchSpec {
        command,
        env,
        files,
        links: Vec::new(),
        prompt_in_first_message: false,
    })
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
    fn a_cli_is_found_only_as_an_executable_file_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let host = |path: &str| Host {
            path: Some(path.to_string()),
            ..Host::default()
        };
        let bin = dir.path().join("codex");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        let on_path = format!("/nonexistent:{}", dir.path().display());
        let missing = host(&on_path).missing_cli(CliKind::Codex).unwrap();
        assert!(
            missing.starts_with("codex: not found on PATH"),
            "not executable: {missing}"
        );
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(host(&on_path).missing_cli(CliKind::Codex), None);
        assert!(host("/nonexistent").missing_cli(CliKind::Codex).is_some());
        assert!(
            Host::default().missing_cli(CliKind::Claude).is_some(),
            "no PATH at all"
        );
        assert_eq!(
            Host::default().missing_cli(CliKind::Custom),
            None,
            "the user's own command"
        );
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
            path: None,
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
        // Each lifecycle hook tells the coordinator, as this agent.
        let stop = settings["hooks"]["Stop"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap();
        // Nothing secret on a command line other users can read: the identity is in a file.
        assert!(
            !stop.contains("tok'")
                && stop.contains(" hook Stop '")
                && stop.ends_with("hook-identity.json'"),
            "{stop}"
        );
        let identity: serde_json::Value =
            serde_json::from_str(file(&spec, "hook-identity.json")).unwrap();
        assert_eq!(identity["HEPHAESTUS_AGENT_TOKEN"], "tok'en");
        assert_eq!(settings["hooks"]["PreToolUse"][0]["matcher"], "*");
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
