//! `hephaestus agents`: list, show, attach to, message, stop, clean up and register agents.

use anyhow::{Result, bail};
use clap::Subcommand;

use super::{Output, or_dash};
use crate::agents::handle::GcReport;
use crate::control::Request;
use crate::control::replies::{AgentDetail, AgentRow, Registered};
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
            for e in &a.events {
                println!(
                    "  {} {:<16} {}",
                    crate::time::rfc3339(e.at_ms),
                    e.kind.as_str(),
                    first_line(&e.message, 80)
                );
            }
        }),
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
        println!(
            "  {} {:<20} {:<10} {:>4} task {} {}",
            a.id,
            a.name,
            a.status.as_str(),
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
