//! How each agent CLI is launched: its command line, how it gets its system prompt and first
//! message, and how it is given our MCP server for this agent only. Pure: builds commands and
//! file contents; the manager writes and runs them.

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
            "custom" => CliKind::Custom,
            other => {
                bail!("unknown agent CLI {other:?}: use claude, codex, opencode, gemini or custom")
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CliKind::Claude => "claude",
            CliKind::Codex => "codex",
            CliKind::Opencode => "opencode",
            CliKind::Gemini => "gemini",
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
}

/// What to write and run.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    /// A shell command line, run by tmux in the worktree.
    pub command: String,
    pub env: BTreeMap<String, String>,
    /// Files to write before launching.
    pub files: Vec<(PathBuf, String)>,
    /// True when the first message must carry the system prompt (the CLI has no flag for it).
    pub prompt_in_first_message: bool,
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

pub fn launch_spec(kind: CliKind, l: &AgentLaunch) -> Result<LaunchSpec> {
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
            // Without this Claude Code defers MCP tools behind a search tool.
            env.insert("ENABLE_TOOL_SEARCH".into(), "false".into());
            if unsafe { libc::geteuid() } == 0 {
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
                prompt_in_first_message: false,
            }
        }
        CliKind::Codex => {
            // Codex passes only whitelisted variables to MCP servers: the agent's identity must
            // be in the server entry itself.
            let env_table: Vec<String> = shim_env(l)
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).expect("json")))
                .collect();
            let settings = [
                format!(
                    "mcp_servers.hephaestus.command={}",
                    serde_json::to_string(&l.exe.display().to_string())?
                ),
                "mcp_servers.hephaestus.args=[\"shim\"]".to_string(),
                format!("mcp_servers.hephaestus.env={{{}}}", env_table.join(",")),
                // Codex may otherwise start its first turn before our server is up.
                "mcp_optional_startup_grace_ms=20000".to_string(),
                format!(
                    "projects.{}.trust_level=\"trusted\"",
                    serde_json::to_string(&l.worktree.display().to_string())?
                ),
            ];
            let args: Vec<String> = settings
                .iter()
                .map(|s| format!("-c {}", shell_quote(s)))
                .collect();
            LaunchSpec {
                command: format!(
                    "codex --dangerously-bypass-approvals-and-sandbox {}{}",
                    args.join(" "),
                    model("-m")
                ),
                env,
                files,
                prompt_in_first_message: true,
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
                prompt_in_first_message: true,
            }
        }
        CliKind::Gemini => {
            // System-level settings from our own file: nothing is written into the worktree,
            // where it would be committed with the agent's token.
            let settings = l.agent_dir.join("gemini-settings.json");
            files.push((
                settings.clone(),
                serde_json::to_string_pretty(&json!({
                    "mcpServers": {"hephaestus": {
                        "command": l.exe, "args": ["shim"], "env": shim_env(l), "trust": true
                    }}
                }))?,
            ));
            env.insert(
                "GEMINI_CLI_SYSTEM_SETTINGS_PATH".into(),
                settings.display().to_string(),
            );
            env.insert("GEMINI_CLI_TRUST_WORKSPACE".into(), "true".into());
            env.insert("GEMINI_SYSTEM_MD".into(), system_file.display().to_string());
            LaunchSpec {
                command: format!("gemini --yolo{}", model("--model")),
                env,
                files,
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

    #[test]
    fn codex_carries_the_identity_in_the_server_entry() {
        let spec = launch_spec(CliKind::Codex, &launch()).unwrap();
        assert!(
            spec.command
                .contains("mcp_servers.hephaestus.env={HEPHAESTUS_AGENT_ID=\"a1b2c3d4-0000\""),
            "{}",
            spec.command
        );
        assert!(spec.command.contains("mcp_optional_startup_grace_ms=20000"));
        assert!(spec.prompt_in_first_message);
        // The whole line survives sh quoting: run it through sh with `printf` standing in.
        let probe = spec.command.replacen("codex", "printf '%s\\n'", 1);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&probe)
            .output()
            .unwrap();
        let args = String::from_utf8(out.stdout).unwrap();
        assert!(
            args.lines()
                .any(|l| l == "mcp_servers.hephaestus.args=[\"shim\"]"),
            "{args}"
        );
        assert!(args.contains("HEPHAESTUS_AGENT_TOKEN=\"tok'en\""), "{args}");
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
        let gm = launch_spec(CliKind::Gemini, &launch()).unwrap();
        assert!(
            gm.files
                .iter()
                .all(|(p, _)| p.starts_with("/p/.hephaestus/agents"))
        );
        assert_eq!(gm.env["GEMINI_CLI_TRUST_WORKSPACE"], "true");
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
        assert!(CliKind::parse("droid").is_err());
    }
}
