//! The command line: the top-level arguments and the dispatch. Each group of commands that
//! talks to the running coordinator has a file with its arguments and what it prints
//! (`task.rs`, `workflow.rs`, `agents.rs`, `memory.rs`, `status.rs`); `serve`, `shim`,
//! `mcp-config` and `bench` run here. Answers are read as the reply types the coordinator
//! sends (`control::replies`); `--json` prints them as they came.

mod agents;
mod memory;
mod status;
mod task;
mod usage;
mod workflow;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use agents::AgentsCommand;
pub use memory::MemoryCommand;
pub use task::TaskCommand;
pub use workflow::WorkflowCommand;

use crate::config::{Config, Overrides};
use crate::control::{Client, Request};
use crate::mcp_config::ClientKind;

#[derive(Debug, Parser)]
#[command(
    name = "hephaestus",
    version,
    about = "Coordinate many AI coding agents on one codebase"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Project root (default: nearest dir with hephaestus.toml, .hephaestus/ or .git)
    #[arg(long, global = true)]
    pub project: Option<PathBuf>,
    /// Config file (default: <project>/hephaestus.toml)
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (default: <project>/.hephaestus)
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Coordinator socket (default: <data-dir>/coordinator.sock)
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator for this project
    Serve {
        /// Most agents working at once
        #[arg(long)]
        max_concurrent_agents: Option<u32>,
        /// Log level: error, warn, info, debug, trace
        #[arg(long)]
        log_level: Option<String>,
        /// Do not spawn agents; queued tasks wait for `task assign`
        #[arg(long)]
        no_agents: bool,
        /// Agent CLI to spawn: claude, codex, opencode, gemini, droid, custom
        #[arg(long)]
        agent_cli: Option<String>,
    },
    /// MCP stdio server for agent CLIs (forwards to the coordinator)
    Shim,
    /// Run by an agent CLI's lifecycle hook: tells the coordinator EVENT happened (input on stdin)
    Hook {
        event: String,
        /// The agent's identity file (else HEPHAESTUS_SOCKET, _AGENT_ID, _AGENT_TOKEN)
        identity: Option<PathBuf>,
    },
    /// Show workflows, tasks by status and agents
    Status,
    /// Create, list, show and assign tasks
    #[command(subcommand)]
    Task(TaskCommand),
    /// List and start workflows
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// List and register agents
    Agents {
        /// With no command: include terminated agents in the list
        #[arg(long)]
        all: bool,
        #[command(subcommand)]
        command: Option<AgentsCommand>,
    },
    /// Search, list and reindex what agents learned
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// What the guardian's LLM judged of the agents, and the steers it typed
    Guardian {
        /// One agent (an id prefix)
        #[arg(long)]
        agent: Option<String>,
    },
    /// What the chat models cost: tokens and USD, per component, workflow, task, agent or model
    Usage {
        /// Group by component, workflow, task, agent or model (one total without it)
        #[arg(long)]
        by: Option<crate::store::UsageBy>,
    },
    /// Print the snippet that registers Hephaestus in an agent CLI
    McpConfig {
        #[arg(long, value_enum)]
        client: ClientKind,
    },
    /// Measure latency and throughput through the real shim and socket
    Bench(crate::bench::BenchArgs),
}

impl GlobalArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            project: self.project.clone(),
            config_file: self.config.clone(),
            data_dir: self.data_dir.clone(),
            socket: self.socket.clone(),
            ..Default::default()
        }
    }
}

/// Runs a parsed command line; the caller prints the error chain.
pub fn run(cli: Cli, env: &HashMap<String, String>) -> Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut overrides = cli.global.overrides();
    if let Command::Serve {
        max_concurrent_agents,
        log_level,
        no_agents,
        agent_cli,
    } = &cli.command
    {
        overrides.max_concurrent_agents = *max_concurrent_agents;
        overrides.log_level = log_level.clone();
        overrides.agents_enabled = no_agents.then_some(false);
        overrides.agent_cli = agent_cli.clone();
    }
    let config = Config::load(&cwd, env, &overrides)?;
    let out = Output {
        config: &config,
        json: cli.global.json,
    };
    match cli.command {
        Command::Serve { .. } => crate::daemon::serve(config.clone())?,
        Command::Shim => {
            return Ok(crate::shim::run(crate::shim::ShimSettings {
                socket: config.socket_path.clone(),
                agent_id: env
                    .get("HEPHAESTUS_AGENT_ID")
                    .filter(|s| !s.is_empty())
                    .cloned(),
                token: env
                    .get("HEPHAESTUS_AGENT_TOKEN")
                    .filter(|s| !s.is_empty())
                    .cloned(),
            }));
        }
        Command::Hook { event, identity } => {
            return Ok(crate::hook::main(&event, identity.as_deref()));
        }
        Command::McpConfig { client } => {
            let exe = std::env::current_exe().context("cannot find the hephaestus executable")?;
            print!(
                "{}",
                crate::mcp_config::snippet(client, &exe, &config.socket_path)
            );
            eprintln!("# put this in {}", crate::mcp_config::destination(client));
        }
        Command::Bench(args) => crate::bench::run(args)?,
        Command::Status => status::run(&out)?,
        Command::Usage { by } => usage::run(&out, by)?,
        Command::Guardian { agent } => usage::guardian(&out, agent)?,
        Command::Task(cmd) => task::run(&out, cmd)?,
        Command::Workflow(cmd) => workflow::run(&out, cmd)?,
        Command::Memory(cmd) => memory::run(&out, cmd)?,
        Command::Agents { all, command } => {
            agents::run(&out, command.unwrap_or(AgentsCommand::List { all }))?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a command's answer goes: the coordinator it asks, and whether it prints JSON.
struct Output<'a> {
    config: &'a Config,
    json: bool,
}

impl Output<'_> {
    /// Asks the coordinator; the answer as it came and as its reply type.
    fn ask<T: DeserializeOwned>(&self, req: Request) -> Result<(Value, T)> {
        Client::connect(&self.config.socket_path)?.ask(&req)
    }

    /// Asks, then prints the answer: as it came with `--json`, else read as its reply type and
    /// printed with `print`.
    fn show<T: DeserializeOwned>(&self, req: Request, print: impl FnOnce(T)) -> Result<()> {
        if self.json {
            print_json(&Client::connect(&self.config.socket_path)?.call(&req)?);
        } else {
            print(self.ask::<T>(req)?.1);
        }
        Ok(())
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// An optional text as the tables show it.
fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}
