//! `hephaestus hook EVENT [IDENTITY_FILE]`: the command an agent CLI's lifecycle hook runs
//! (Claude Code's `Stop`, `Notification`, ...). It reads the hook's JSON from stdin, works out
//! what it says of the agent's state (`guardian/hooks.rs`), and tells the coordinator only
//! that, as the agent its identity file names (the adapter writes one in the agent's private
//! dir: a command line is visible to every local user), or else its environment
//! (`HEPHAESTUS_SOCKET`, `HEPHAESTUS_AGENT_ID`, `HEPHAESTUS_AGENT_TOKEN`).
//!
//! A hook sits on the agent's path: it never fails the CLI and never waits long. Whatever goes
//! wrong is said on stderr and it exits 0; the guardian's screen rules still see the agent.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use crate::control::{Client, Request};

/// The most of a hook's input read (a `PreToolUse` carries the tool's whole input).
const MAX_INPUT: u64 = 1 << 20;

pub fn main(event: &str, identity: Option<&std::path::Path>) -> ExitCode {
    if let Err(e) = tell(event, identity) {
        eprintln!("hephaestus hook {event}: {e:#}");
    }
    ExitCode::SUCCESS
}

fn tell(event: &str, identity: Option<&std::path::Path>) -> Result<()> {
    let from_file: std::collections::HashMap<String, String> = match identity {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not an identity file", path.display()))?,
        None => Default::default(),
    };
    let var = |k: &str| {
        from_file
            .get(k)
            .cloned()
            .or_else(|| std::env::var(k).ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| anyhow!("{k} is not set: this command is run by an agent's CLI hook"))
    };
    let (socket, agent_id, token) = (
        PathBuf::from(var("HEPHAESTUS_SOCKET")?),
        var("HEPHAESTUS_AGENT_ID")?,
        var("HEPHAESTUS_AGENT_TOKEN")?,
    );
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_end(&mut input)
        .context("cannot read the hook's input")?;
    // A hook's input that is not JSON still says which event ran. Only what the state needs
    // goes on: a PreToolUse input carries the tool's whole input.
    let input: Value = serde_json::from_slice(&input).unwrap_or(Value::Null);
    let mut payload = serde_json::Map::new();
    for key in ["notification_type", "tool_name", "error", "message"] {
        if let Some(v) = input[key].as_str() {
            payload.insert(key.into(), Value::String(v.chars().take(300).collect()));
        }
    }
    let payload = Value::Object(payload);
    let mut client = Client::connect_within(&socket, Duration::from_secs(2))?;
    client.call(&Request::AgentHook {
        agent_id,
        token,
        event: event.to_string(),
        payload,
    })?;
    Ok(())
}
