//! `hephaestus mcp-config`: the snippet that registers the shim in each agent CLI's own format.

use std::path::Path;

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// Claude Code: `.mcp.json` (or `--mcp-config`), key `mcpServers`.
    Claude,
    /// Codex CLI: `~/.codex/config.toml`, table `[mcp_servers.hephaestus]`.
    Codex,
    /// OpenCode: `opencode.json`, key `mcp` with `type = "local"`.
    Opencode,
    /// Gemini CLI: `.gemini/settings.json`, key `mcpServers`.
    Gemini,
    /// Droid: `~/.factory/mcp.json`, key `mcpServers` with `type = "stdio"`.
    Droid,
}

/// The snippet for `client`, launching `exe shim` with the socket in an explicit env entry
/// (Codex passes only a whitelist of variables, Gemini drops names that look like secrets, so an
/// explicit entry is the one form every client honours).
pub fn snippet(client: ClientKind, exe: &Path, socket: &Path) -> String {
    let exe = exe.display().to_string();
    let socket = socket.display().to_string();
    match client {
        ClientKind::Claude => pretty(json!({
            "mcpServers": {"hephaestus": {"command": exe, "args": ["shim"], "env": {"HEPHAESTUS_SOCKET": socket}}}
        })),
        ClientKind::Gemini => pretty(json!({
            "mcpServers": {"hephaestus": {"command": exe, "args": ["shim"], "env": {"HEPHAESTUS_SOCKET": socket}, "trust": true}}
        })),
        ClientKind::Droid => pretty(json!({
            "mcpServers": {"hephaestus": {"type": "stdio", "command": exe, "args": ["shim"], "env": {"HEPHAESTUS_SOCKET": socket}}}
        })),
        ClientKind::Opencode => pretty(json!({
            "$schema": "https://opencode.ai/config.json",
            "mcp": {"hephaestus": {"type": "local", "command": [exe, "shim"], "environment": {"HEPHAESTUS_SOCKET": socket}, "enabled": true}}
        })),
        ClientKind::Codex => format!(
            "[mcp_servers.hephaestus]\ncommand = {}\nargs = [\"shim\"]\nenv = {{ HEPHAESTUS_SOCKET = {} }}\n",
            toml_string(&exe),
            toml_string(&socket)
        ),
    }
}

/// Where the snippet goes, for the hint printed on stderr.
pub fn destination(client: ClientKind) -> &'static str {
    match client {
        ClientKind::Claude => ".mcp.json in the project (or pass it with claude --mcp-config FILE)",
        ClientKind::Codex => "~/.codex/config.toml",
        ClientKind::Opencode => "opencode.json in the project",
        ClientKind::Gemini => ".gemini/settings.json in the project",
        // The project's .factory/mcp.json works too, but it would be committed.
        ClientKind::Droid => "~/.factory/mcp.json (or run droid mcp add)",
    }
}

fn pretty(v: serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(&v).expect("json");
    s.push('\n');
    s
}

fn toml_string(s: &str) -> String {
    // A TOML basic string uses JSON's escapes for quotes, backslashes and control characters.
    serde_json::to_string(s).expect("json string")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_parses_in_its_own_syntax() {
        let exe = Path::new("/opt/bin/hephaestus");
        let sock = Path::new("/p/.hephaestus/coordinator.sock");
        for c in [
            ClientKind::Claude,
            ClientKind::Gemini,
            ClientKind::Opencode,
            ClientKind::Droid,
        ] {
            let v: serde_json::Value = serde_json::from_str(&snippet(c, exe, sock)).unwrap();
            let text = v.to_string();
            assert!(
                text.contains("/opt/bin/hephaestus") && text.contains("coordinator.sock"),
                "{text}"
            );
        }
        let opencode: serde_json::Value =
            serde_json::from_str(&snippet(ClientKind::Opencode, exe, sock)).unwrap();
        assert_eq!(opencode["mcp"]["hephaestus"]["type"], "local");
        assert_eq!(opencode["mcp"]["hephaestus"]["command"][1], "shim");
        let droid: serde_json::Value =
            serde_json::from_str(&snippet(ClientKind::Droid, exe, sock)).unwrap();
        assert_eq!(droid["mcpServers"]["hephaestus"]["type"], "stdio");
        let codex: toml::Table = toml::from_str(&snippet(ClientKind::Codex, exe, sock)).unwrap();
        let server = &codex["mcp_servers"]["hephaestus"];
        assert_eq!(server["command"].as_str(), Some("/opt/bin/hephaestus"));
        assert_eq!(
            server["env"]["HEPHAESTUS_SOCKET"].as_str(),
            Some("/p/.hephaestus/coordinator.sock")
        );
    }
}
