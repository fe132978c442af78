//! `hephaestus hook EVENT`: the command an agent CLI's lifecycle hook runs (Claude Code's
//! `Stop`, `Notification`, ...). It reads the hook's JSON from stdin and tells the coordinator,
//! as the agent its environment names (`HEPHAESTUS_SOCKET`, `HEPHAESTUS_AGENT_ID`,
//! `HEPHAESTUS_AGENT_TOKEN`, written into the hook's command by the adapter).
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

pub fn main(event: &str) -> ExitCode {
    if let Err(e) = tell(event) {
        eprintln!("hephaestus hook {event}: {e:#}");
    }
    ExitCode::SUCCESS
}

fn tell(event: &str) -> Result<()> {
    let var = |k: &str| {
        std::env::var(k)
            .ok()
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
    // A hook's input that is not JSON still says which event ran.
    let payload: Value = serde_json::from_slice(&input).unwrap_or(Value::Null);
    let mut client = Client::connect_within(&socket, Duration::from_secs(2))?;
    client.call(&Request::AgentHook {
        agent_id,
        token,
        event: event.to_string(),
        payload,
    })?;
    Ok(())
}
