//! `hephaestus agents`: list, show, attach to, message, stop, clean up and register agents.

use anyhow::{Result, bail};
use clap::Subcommand;

use super::{Output, or_dash};
use crate::agents::handle::GcReport;
use crate::control::Request;
use crate::control::replies::{AgentDetail, AgentRow, Explained, Registered};
use crate::guardian::screen::{self, Look, Reading, Rules};
use crate::states::AgentStatus;
use crate::text::first_line;

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
    /// Say how the guardian reads an agent's screen, and which rule says so
    Explain {
        /// The agent (4 characters of its id or more); not with --file
        id: Option<String>,
        /// Read this saved screen instead of a live agent's
        #[arg(long, requires = "cli")]
        file: Option<std::path::PathBuf>,
        /// With --file: the CLI whose rules to use (claude, codex, gemini, opencode, droid, custom)
        #[arg(long)]
        cli: Option<String>,
    },
    /// Watch an agent's terminal (tmux attach; detach with C-b d)
    Attach { id: String },
    /// Type a message into an agent's terminal
    Send { id: String, text: String },
    /// Answer the question (or permission) dialog an agent waits at; `agents` shows which do
    Answer { id: String, text: String },
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

pub(super) fn run(out: &Output, cmd: AgentsCommand) -> Result<()> {
    match cmd {
        AgentsCommand::List { all } => out
            .show(Request::AgentList { all }, |rows: Vec<AgentRow>| {
                print_agents(&rows)
            }),
        AgentsCommand::Show { id } => out.show(Request::AgentShow { id }, |a: AgentDetail| {
            println!("agent {} [{}]", a.id, a.status);
            println!("  task:     {}", or_dash(a.task_id.as_deref()));
            println!("  worktree: {}", or_dash(a.worktree.as_deref()));
            println!("  branch:   {}", or_dash(a.branch.as_deref()));
            println!(
                "  terminal: tmux -L {} attach -t {}",
                a.tmux_socket,
                or_dash(a.tmux_session.as_deref())
            );
            if let Some(s) = &a.state {
                println!(
                    "  state:    {} for {} ({}: {})",
                    s.reading.state,
                    crate::time::age(s.since_ms, crate::time::now_ms()),
                    s.reading.rule,
                    s.reading.why
                );
            }
            for e in &a.events {
                println!(
                    "  {} {:<16} {}",
                    crate::time::rfc3339(e.at_ms),
                    e.kind.as_str(),
                    first_line(&e.message, 80)
                );
            }
        }),
        AgentsCommand::Explain { id, file, cli } => match (id, file, cli) {
            (None, Some(file), Some(cli)) => explain_file(out, &file, &cli),
            (Some(id), None, _) => out.show(Request::AgentExplain { id }, |e: Explained| {
                println!("agent {} ({})", e.agent_id, e.cli);
                if let Some(ms) = e.unchanged_ms {
                    println!("  screen unchanged for {:.1}s", ms as f64 / 1000.0);
                }
                print_reading(&e.reading);
            }),
            _ => bail!("give an agent id, or --file PANE with --cli NAME"),
        },
        AgentsCommand::Attach { id } => {
            let (_, a) = out.ask::<AgentDetail>(Request::AgentShow { id })?;
            let Some(session) = a.tmux_session else {
                bail!("agent {} has no terminal", a.id);
            };
            if a.status == AgentStatus::Terminated {
                bail!(
                    "agent {} has ended; `hephaestus agents --all` shows its last output",
                    a.id
                );
            }
            let err = crate::agents::tmux::Tmux::new(a.tmux_socket).attach(&session);
            bail!("cannot run tmux attach: {err}");
        }
        AgentsCommand::Send { id, text } => out
            .show(Request::AgentSend { id, text }, |said: String| {
                println!("{said}")
            }),
        AgentsCommand::Answer { id, text } => out
            .show(Request::AgentAnswer { id, text }, |said: String| {
                println!("{said}")
            }),
        AgentsCommand::Kill { id } => {
            out.show(Request::AgentKill { id }, |said: String| println!("{said}"))
        }
        AgentsCommand::Gc => out.show(Request::AgentGc, |r: GcReport| {
            println!(
                "removed {} session(s), {} worktree(s) and {} agent dir(s)",
                r.sessions_killed.len(),
                r.worktrees_removed.len(),
                r.agent_dirs_removed.len()
            );
        }),
        AgentsCommand::Register { name, cli } => out.show(
            Request::AgentRegister {
                name,
                cli_type: cli,
            },
            |r: Registered| {
                println!("HEPHAESTUS_AGENT_ID={}", r.agent.id);
                println!("HEPHAESTUS_AGENT_TOKEN={}", r.token);
                println!("HEPHAESTUS_SOCKET={}", out.config.socket_path.display());
            },
        ),
    }
}

pub(super) fn print_agents(rows: &[AgentRow]) {
    if rows.is_empty() {
        println!("  (none)");
    }
    for r in rows {
        let a = &r.agent;
        let state = r
            .state
            .as_ref()
            .map(|s| {
                format!(
                    "{} {}",
                    s.reading.state,
                    crate::time::age(s.since_ms, crate::time::now_ms())
                )
            })
            .unwrap_or_default();
        println!(
            "  {} {:<20} {:<10} {:<22} {:>4} task {} {}",
            a.id,
            a.name,
            a.status.as_str(),
            state,
            r.age.as_deref().unwrap_or(""),
            a.current_task_id
                .as_deref()
                .map(|t| &t[..t.len().min(8)])
                .unwrap_or("-"),
            r.last_output
                .as_deref()
                .map(|l| format!("| {}", first_line(l, 60)))
                .unwrap_or_default()
        );
    }
}

fn print_reading(r: &Reading) {
    println!("  state: {}", r.state);
    println!("  rule:  {}", r.rule);
    println!("  why:   {}", r.why);
}

/// Reads a saved screen with a CLI's rules (the project's own when it has them), as a still
/// screen of an agent that has its task: no coordinator needed.
fn explain_file(out: &Output, file: &std::path::Path, cli: &str) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let rules = Rules::load(cli, Some(&out.config.guardian.rules_dir))?;
    let reading = screen::read(
        &rules,
        &Look {
            screen: &text,
            title: "",
            alive: true,
            unchanged_for: std::time::Duration::from_secs(3600),
            delivered: true,
        },
    );
    if out.json {
        super::print_json(&serde_json::to_value(&reading)?);
    } else {
        println!("{} with the {cli} rules", file.display());
        print_reading(&reading);
    }
    Ok(())
}
