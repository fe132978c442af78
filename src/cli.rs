//! The command line: argument definitions and what each command prints. Commands other than
//! `serve`, `shim`, `mcp-config` and `bench` talk to the running coordinator over its socket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::config::{Config, Overrides};
use crate::control::{Client, Request};
use crate::mcp_config::ClientKind;
use crate::queue::{Priority, TaskStatus};
use crate::text::first_line;

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
        #[command(subcommand)]
        command: Option<AgentsCommand>,
    },
    /// Search, list and reindex what agents learned
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Print the snippet that registers Hephaestus in an agent CLI
    McpConfig {
        #[arg(long, value_enum)]
        client: ClientKind,
    },
    /// Measure latency and throughput through the real shim and socket
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Queue a task
    Create {
        /// What to do
        description: String,
        /// How to tell it is finished
        #[arg(long = "done")]
        done_definition: String,
        #[arg(long, default_value = "medium", value_parser = parse_priority)]
        priority: Priority,
        /// Phase number (needs --workflow)
        #[arg(long)]
        phase: Option<i64>,
        #[arg(long)]
        workflow: Option<String>,
        /// Task that must be done first (repeatable)
        #[arg(long = "depends-on")]
        depends_on: Vec<String>,
        /// Idempotency key: a repeated key returns the first task
        #[arg(long)]
        key: Option<String>,
        /// Put it ahead of everything else in the queue
        #[arg(long)]
        boost: bool,
    },
    /// List tasks
    List {
        /// Only these statuses (repeatable)
        #[arg(long, value_parser = parse_status)]
        status: Vec<TaskStatus>,
        #[arg(long)]
        phase: Option<i64>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one task in full
    Show { id: String },
    /// Give a queued task to an agent
    Assign {
        task_id: String,
        #[arg(long)]
        agent: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// List workflow definitions and executions
    List,
    /// Start a workflow execution
    Start {
        /// Definition id, e.g. bug-fix
        definition: String,
        /// What this run is for
        #[arg(long)]
        description: String,
        /// Launch parameter NAME=VALUE (repeatable)
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[arg(long)]
        working_dir: Option<String>,
    },
    /// Show one execution
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Find memories by meaning
    Search {
        query: String,
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// Only this type (repeatable): error_fix, discovery, decision, learning, warning, codebase_knowledge
        #[arg(long = "type")]
        types: Vec<String>,
    },
    /// The newest memories
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Embed memories that lack a vector (or token vectors) from the current embedder and rebuild
    /// the index
    Reindex,
    /// Delete a memory that is wrong or out of date
    Delete { id: i64 },
    /// Write every memory as JSON lines, oldest first (to move them to another project)
    Export {
        /// Write here instead of to standard output
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Save the memories of an export; near-duplicates of stored ones are skipped
    Import { file: std::path::PathBuf },
    /// Save what agents should know, as a person (agents use the save_memory tool)
    Save {
        content: String,
        /// error_fix, discovery, decision, learning, warning or codebase_knowledge
        #[arg(long = "type")]
        memory_type: String,
        /// A tag (repeatable)
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// A file it concerns (repeatable)
        #[arg(long = "file")]
        related_files: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents
    List {
        /// Include terminated agents
        #[arg(long)]
        all: bool,
    },
    /// Show one agent: where it works and what happened to it
    Show { id: String },
    /// Watch an agent's terminal (tmux attach; detach with C-b d)
    Attach { id: String },
    /// Type a message into an agent's terminal
    Send { id: String, text: String },
    /// Stop an agent: its task fails, its work stays on its branch
    Kill { id: String },
    /// Remove tmux sessions and worktrees that no live agent owns
    Gc,
    /// Register an agent you run yourself; prints its id and token
    Register {
        #[arg(long)]
        name: String,
        /// Which CLI it runs (claude, codex, opencode, gemini, droid)
        #[arg(long)]
        cli: Option<String>,
    },
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    s.parse()
}

fn parse_status(s: &str) -> Result<TaskStatus, String> {
    s.parse()
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
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
    let json = cli.global.json;
    match cli.command {
        Command::Serve { .. } => {
            crate::daemon::serve(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Shim => Ok(crate::shim::run(crate::shim::ShimSettings {
            socket: config.socket_path,
            agent_id: env
                .get("HEPHAESTUS_AGENT_ID")
                .filter(|s| !s.is_empty())
                .cloned(),
            token: env
                .get("HEPHAESTUS_AGENT_TOKEN")
                .filter(|s| !s.is_empty())
                .cloned(),
        })),
        Command::McpConfig { client } => {
            let exe = std::env::current_exe().context("cannot find the hephaestus executable")?;
            print!(
                "{}",
                crate::mcp_config::snippet(client, &exe, &config.socket_path)
            );
            eprintln!("# put this in {}", crate::mcp_config::destination(client));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            crate::bench::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let v = call(&config, Request::Status)?;
            if json {
                print_json(&v)
            } else {
                print_status(&v)
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Task(cmd) => {
            let (req, kind) = match cmd {
                TaskCommand::Create {
                    description,
                    done_definition,
                    priority,
                    phase,
                    workflow,
                    depends_on,
                    key,
                    boost,
                } => (
                    Request::TaskCreate {
                        description,
                        done_definition,
                        priority: Some(priority),
                        phase,
                        workflow_id: workflow,
                        depends_on,
                        idempotency_key: key,
                        boost,
                    },
                    Shape::Created,
                ),
                TaskCommand::List {
                    status,
                    phase,
                    workflow,
                    limit,
                } => (
                    Request::TaskList {
                        statuses: status,
                        phase,
                        workflow_id: workflow,
                        limit,
                    },
                    Shape::TaskList,
                ),
                TaskCommand::Show { id } => (Request::TaskShow { id }, Shape::Task),
                TaskCommand::Assign { task_id, agent } => (
                    Request::TaskAssign {
                        task_id,
                        agent_id: agent,
                    },
                    Shape::Task,
                ),
            };
            let v = call(&config, req)?;
            if json {
                print_json(&v);
            } else {
                match kind {
                    Shape::Created => {
                        if v["created"] == Value::Bool(false) {
                            println!("idempotency key already used; existing task:");
                        }
                        print_task(&v["task"]);
                    }
                    Shape::TaskList => print_task_list(&v),
                    Shape::Task => print_task(&v),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Workflow(cmd) => {
            match cmd {
                WorkflowCommand::List => {
                    let defs = call(&config, Request::WorkflowDefinitions)?;
                    let runs = call(&config, Request::WorkflowList { status: None })?;
                    if json {
                        print_json(&serde_json::json!({"definitions": defs, "executions": runs}));
                    } else {
                        println!("Definitions:");
                        for d in defs.as_array().into_iter().flatten() {
                            let params: Vec<String> = d["parameters"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|p| {
                                    format!(
                                        "{}{}",
                                        s(&p["name"]),
                                        if p["required"] == true { "*" } else { "" }
                                    )
                                })
                                .collect();
                            println!(
                                "  {:<18} {} — {}",
                                s(&d["id"]),
                                s(&d["name"]),
                                params.join(" ")
                            );
                        }
                        println!("Executions:");
                        print_workflows(&runs);
                    }
                }
                WorkflowCommand::Start {
                    definition,
                    description,
                    params,
                    working_dir,
                } => {
                    let parameters = params
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect();
                    let v = call(
                        &config,
                        Request::WorkflowStart {
                            definition_id: definition,
                            description,
                            parameters,
                            working_directory: working_dir,
                        },
                    )?;
                    if json {
                        print_json(&v);
                    } else {
                        println!(
                            "started workflow {} ({})",
                            s(&v["workflow"]["id"]),
                            s(&v["workflow"]["definition_id"])
                        );
                        println!("first task {} queued in phase 1", s(&v["first_task"]["id"]));
                    }
                }
                WorkflowCommand::Show { id } => {
                    let v = call(&config, Request::WorkflowShow { id })?;
                    if json {
                        print_json(&v);
                    } else {
                        print_workflows(&Value::Array(vec![v.clone()]));
                        for p in v["phases"].as_array().into_iter().flatten() {
                            println!(
                                "  phase {} {} [{}]",
                                p["order"],
                                s(&p["name"]),
                                s(&p["status"])
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Memory(cmd) => {
            let now = crate::time::now_ms();
            match cmd {
                MemoryCommand::Search {
                    query,
                    limit,
                    types,
                } => {
                    let v = call(
                        &config,
                        Request::MemorySearch {
                            query,
                            limit: Some(limit),
                            memory_types: types,
                        },
                    )?;
                    if json {
                        print_json(&v);
                    } else if v.as_array().is_none_or(|a| a.is_empty()) {
                        println!("no memory matches");
                    } else {
                        for f in v.as_array().into_iter().flatten() {
                            let m = &f["memory"];
                            println!(
                                "{:>5} {:.2} {:<18} {:>4} {}",
                                m["id"],
                                f["similarity"].as_f64().unwrap_or(0.0),
                                s(&m["memory_type"]),
                                crate::time::age(m["created_at_ms"].as_i64().unwrap_or(now), now),
                                first_line(s(&m["content"]), 90)
                            );
                        }
                    }
                }
                MemoryCommand::List { limit } => {
                    let v = call(&config, Request::MemoryList { limit: Some(limit) })?;
                    if json {
                        print_json(&v);
                    } else if v.as_array().is_none_or(|a| a.is_empty()) {
                        println!("no memories yet");
                    } else {
                        for m in v.as_array().into_iter().flatten() {
                            println!(
                                "{:>5} {:<18} {:>4} {}",
                                m["id"],
                                s(&m["memory_type"]),
                                crate::time::age(m["created_at_ms"].as_i64().unwrap_or(now), now),
                                first_line(s(&m["content"]), 90)
                            );
                        }
                    }
                }
                MemoryCommand::Export { out } => {
                    let v = call(&config, Request::MemoryExport)?;
                    let mut text = String::new();
                    for m in v.as_array().into_iter().flatten() {
                        text.push_str(&serde_json::to_string(m)?);
                        text.push('\n');
                    }
                    let n = v.as_array().map_or(0, Vec::len);
                    match out {
                        Some(path) => {
                            std::fs::write(&path, text)
                                .with_context(|| format!("cannot write {}", path.display()))?;
                            eprintln!("exported {n} memories to {}", path.display());
                        }
                        None => print!("{text}"),
                    }
                }
                MemoryCommand::Import { file } => {
                    let memories = read_export(&file)?;
                    let total = memories.len();
                    let (mut stored, mut duplicates, mut pending, mut done) = (0, 0, 0, 0);
                    for batch in import_batches(memories) {
                        done += batch.len();
                        let r = call(&config, Request::MemoryImport { memories: batch })?;
                        let n = |k: &str| r[k].as_u64().unwrap_or(0);
                        (stored, duplicates, pending) = (
                            stored + n("stored"),
                            duplicates + n("duplicates"),
                            pending + n("pending"),
                        );
                        if total > 100 {
                            eprintln!("imported {done}/{total}");
                        }
                    }
                    if json {
                        print_json(&serde_json::json!({
                            "stored": stored, "duplicates": duplicates, "pending": pending
                        }));
                    } else {
                        println!(
                            "imported {total} memories: {stored} stored, {duplicates} already known, {pending} pending"
                        );
                    }
                }
                MemoryCommand::Delete { id } => {
                    let v = call(&config, Request::MemoryDelete { id })?;
                    if json {
                        print_json(&v);
                    } else {
                        println!("deleted memory {id}");
                    }
                }
                MemoryCommand::Save {
                    content,
                    memory_type,
                    tags,
                    related_files,
                } => {
                    let v = call(
                        &config,
                        Request::MemorySave {
                            content,
                            memory_type,
                            tags,
                            related_files,
                        },
                    )?;
                    if json {
                        print_json(&v);
                    } else {
                        match s(&v["outcome"]) {
                            "duplicate" => println!(
                                "not stored: memory {} already says this (similarity {:.2})",
                                v["id"],
                                v["similarity"].as_f64().unwrap_or(0.0)
                            ),
                            "pending" => println!(
                                "saved memory {}; it becomes searchable once the embedder answers",
                                v["id"]
                            ),
                            _ => println!("saved memory {}", v["id"]),
                        }
                    }
                }
                MemoryCommand::Reindex => {
                    // One request does the whole job; say up front what it will take.
                    if !json
                        && let Ok(status) = call(&config, Request::Status)
                        && let Some(pending) = status["memory"]["pending"].as_u64()
                        && pending > 0
                    {
                        eprintln!(
                            "embedding {pending} memories with {}, then rebuilding the index…",
                            s(&status["memory"]["embedder"])
                        );
                    }
                    let started = std::time::Instant::now();
                    let v = call(&config, Request::MemoryReindex)?;
                    if json {
                        print_json(&v);
                    } else {
                        println!(
                            "embedded {} memories; {} indexed with {} in {:.1} s",
                            v["embedded"],
                            v["indexed"],
                            s(&v["embedder"]),
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agents { command } => {
            match command.unwrap_or(AgentsCommand::List { all: false }) {
                AgentsCommand::List { all } => {
                    let v = call(&config, Request::AgentList { all })?;
                    if json {
                        print_json(&v)
                    } else {
                        print_agents(&v)
                    }
                }
                AgentsCommand::Show { id } => {
                    let v = call(&config, Request::AgentShow { id })?;
                    if json {
                        print_json(&v);
                    } else {
                        println!("agent {} [{}]", s(&v["id"]), s(&v["status"]));
                        println!("  task:     {}", v["task_id"].as_str().unwrap_or("-"));
                        println!("  worktree: {}", v["worktree"].as_str().unwrap_or("-"));
                        println!("  branch:   {}", v["branch"].as_str().unwrap_or("-"));
                        println!(
                            "  terminal: tmux -L {} attach -t {}",
                            s(&v["tmux_socket"]),
                            s(&v["tmux_session"])
                        );
                        for e in v["events"].as_array().into_iter().flatten() {
                            let at = e["at_ms"]
                                .as_i64()
                                .map(crate::time::rfc3339)
                                .unwrap_or_default();
                            println!(
                                "  {at} {:<16} {}",
                                s(&e["kind"]),
                                first_line(s(&e["message"]), 80)
                            );
                        }
                    }
                }
                AgentsCommand::Attach { id } => {
                    let v = call(&config, Request::AgentShow { id })?;
                    let (Some(socket), Some(session)) =
                        (v["tmux_socket"].as_str(), v["tmux_session"].as_str())
                    else {
                        anyhow::bail!("agent {} has no terminal", s(&v["id"]));
                    };
                    if v["status"] == "terminated" {
                        anyhow::bail!(
                            "agent {} has ended; `hephaestus agents --all` shows its last output",
                            s(&v["id"])
                        );
                    }
                    let err = crate::agents::tmux::Tmux::new(socket).attach(session);
                    anyhow::bail!("cannot run tmux attach: {err}");
                }
                AgentsCommand::Send { id, text } => {
                    let v = call(&config, Request::AgentSend { id, text })?;
                    if json {
                        print_json(&v)
                    } else {
                        println!("{}", s(&v))
                    }
                }
                AgentsCommand::Kill { id } => {
                    let v = call(&config, Request::AgentKill { id })?;
                    if json {
                        print_json(&v)
                    } else {
                        println!("{}", s(&v))
                    }
                }
                AgentsCommand::Gc => {
                    let v = call(&config, Request::AgentGc)?;
                    if json {
                        print_json(&v);
                    } else {
                        let count = |k: &str| v[k].as_array().map(|a| a.len()).unwrap_or(0);
                        println!(
                            "removed {} session(s), {} worktree(s) and {} agent dir(s)",
                            count("sessions_killed"),
                            count("worktrees_removed"),
                            count("agent_dirs_removed")
                        );
                    }
                }
                AgentsCommand::Register { name, cli } => {
                    let v = call(
                        &config,
                        Request::AgentRegister {
                            name,
                            cli_type: cli,
                        },
                    )?;
                    if json {
                        print_json(&v);
                    } else {
                        println!("HEPHAESTUS_AGENT_ID={}", s(&v["agent"]["id"]));
                        println!("HEPHAESTUS_AGENT_TOKEN={}", s(&v["token"]));
                        println!("HEPHAESTUS_SOCKET={}", config.socket_path.display());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

enum Shape {
    Created,
    TaskList,
    Task,
}

fn call(config: &Config, req: Request) -> Result<Value> {
    Client::connect(&config.socket_path)?.call(&req)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_status(v: &Value) {
    println!(
        "coordinator pid {} · up {}s · socket {}",
        v["pid"],
        v["uptime_seconds"],
        s(&v["socket"])
    );
    let tasks: Vec<String> = v["tasks"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!(
        "tasks: {}",
        if tasks.is_empty() {
            "none".to_string()
        } else {
            tasks.join(", ")
        }
    );
    println!("active workflows:");
    print_workflows(&v["workflows"]);
    let agents = v["agents"].as_array().map(|a| a.len()).unwrap_or(0);
    println!(
        "agents ({agents} active, max {} working):",
        v["max_concurrent_agents"]
    );
    print_agents(&v["agents"]);
    let m = &v["memory"];
    println!(
        "memory: {} indexed, {} pending · embedder {}{} · {}",
        m["indexed"],
        m["pending"],
        s(&m["embedder"]),
        if m["token_rerank"] == Value::Bool(true) {
            " with token re-ranking"
        } else {
            ""
        },
        s(&m["backend"])
    );
    if let Some(note) = m["note"].as_str() {
        println!("memory: {note}");
    } else if m["degraded"] == Value::Bool(true) {
        println!(
            "memory quality is degraded: the hashing embedder matches words, not meaning (set memory.embedder)"
        );
    }
}

fn print_workflows(v: &Value) {
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("  (none)");
    }
    for w in list {
        let counts: Vec<String> = w["task_counts"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "  {} {:<16} [{}] {} — {}",
            s(&w["id"]),
            s(&w["definition_id"]),
            s(&w["status"]),
            first_line(s(&w["description"]), 40),
            counts.join(", ")
        );
    }
}

fn print_agents(v: &Value) {
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("  (none)");
    }
    for a in list {
        println!(
            "  {} {:<20} {:<10} {:>4} task {} {}",
            s(&a["id"]),
            s(&a["name"]),
            s(&a["status"]),
            a["age"].as_str().unwrap_or(""),
            a["current_task_id"]
                .as_str()
                .map(|t| &t[..t.len().min(8)])
                .unwrap_or("-"),
            a["last_output"]
                .as_str()
                .map(|l| format!("| {}", first_line(l, 60)))
                .unwrap_or_default()
        );
    }
}

fn print_task_list(v: &Value) {
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("(no tasks)");
    }
    for t in list {
        println!(
            "{} {:<11} {:<6} {} {}",
            s(&t["id"]),
            s(&t["status"]),
            s(&t["priority"]),
            t["phase"]
                .as_i64()
                .map(|p| format!("p{p}"))
                .unwrap_or_else(|| "--".into()),
            first_line(s(&t["description"]), 60)
        );
    }
}

fn print_task(t: &Value) {
    println!("task {}", s(&t["id"]));
    println!("  status:    {}", s(&t["status"]));
    println!("  priority:  {}", s(&t["priority"]));
    if let Some(w) = t["workflow_id"].as_str() {
        println!(
            "  workflow:  {w} (phase {} {})",
            t["phase"],
            t["phase_name"].as_str().unwrap_or("")
        );
    }
    if let Some(a) = t["assigned_agent_id"].as_str() {
        println!("  agent:     {a}");
    }
    let deps = t["depends_on"].as_array().map(|d| d.len()).unwrap_or(0);
    if deps > 0 {
        let waiting: Vec<&str> = t["waiting_on"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        println!(
            "  depends:   {deps} task(s); waiting on: {}",
            if waiting.is_empty() {
                "none".into()
            } else {
                waiting.join(", ")
            }
        );
    }
    println!("  created:   {}", s(&t["created_at"]));
    println!(
        "  description:\n    {}",
        s(&t["description"]).replace('\n', "\n    ")
    );
    println!(
        "  done when:\n    {}",
        s(&t["done_definition"]).replace('\n', "\n    ")
    );
    if let Some(sum) = t["summary"].as_str() {
        println!("  summary:   {sum}");
    }
    if let Some(r) = t["failure_reason"].as_str() {
        println!("  failure:   {r}");
    }
}

/// The memories of an export file, each checked, or an error naming the first bad line.
fn read_export(path: &std::path::Path) -> Result<Vec<crate::control::ImportedMemory>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let m: crate::control::ImportedMemory = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a memory (expected one JSON object per line, as `memory export` writes)",
                path.display(),
                i + 1
            )
        })?;
        m.check()
            .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), i + 1))?;
        out.push(m);
    }
    Ok(out)
}

/// Splits an import into requests the coordinator takes: at most 100 memories and about 256 KiB
/// of text each (a control request may be 1 MiB); a bigger memory goes alone.
fn import_batches(
    memories: Vec<crate::control::ImportedMemory>,
) -> Vec<Vec<crate::control::ImportedMemory>> {
    let mut batches: Vec<Vec<crate::control::ImportedMemory>> = Vec::new();
    let mut bytes = 0;
    for m in memories {
        let size = m.content.len()
            + m.tags
                .iter()
                .chain(&m.related_files)
                .map(String::len)
                .sum::<usize>()
            + 100;
        match batches.last_mut() {
            Some(batch) if batch.len() < 100 && bytes + size <= 256 * 1024 => {
                bytes += size;
                batch.push(m);
            }
            _ => {
                bytes = size;
                batches.push(vec![m]);
            }
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(bytes: usize) -> crate::control::ImportedMemory {
        crate::control::ImportedMemory {
            content: "x".repeat(bytes),
            memory_type: "learning".into(),
            tags: Vec::new(),
            related_files: Vec::new(),
            created_at_ms: None,
        }
    }

    #[test]
    fn imports_go_in_requests_the_coordinator_accepts() {
        let sizes = |b: Vec<Vec<crate::control::ImportedMemory>>| -> Vec<usize> {
            b.iter().map(Vec::len).collect()
        };
        assert_eq!(
            sizes(import_batches((0..250).map(|_| memory(10)).collect())),
            vec![100, 100, 50]
        );
        // 100 KiB each: two fit in 256 KiB, the third starts a new request.
        assert_eq!(
            sizes(import_batches((0..5).map(|_| memory(100 * 1024)).collect())),
            vec![2, 2, 1]
        );
        assert_eq!(
            sizes(import_batches(vec![
                memory(10),
                memory(600 * 1024),
                memory(10)
            ])),
            vec![1, 1, 1],
            "a big memory goes alone"
        );
        assert!(import_batches(Vec::new()).is_empty());
    }
}
