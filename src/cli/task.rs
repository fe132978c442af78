//! `hephaestus task`: create, list, show and assign tasks.

use anyhow::Result;
use clap::Subcommand;

use super::Output;
use crate::control::Request;
use crate::control::replies::TaskCreated;
use crate::queue::{Priority, TaskStatus};
use crate::text::first_line;
use crate::views::TaskView;

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

fn parse_priority(s: &str) -> Result<Priority, String> {
    s.parse()
}

fn parse_status(s: &str) -> Result<TaskStatus, String> {
    s.parse()
}

pub(super) fn run(out: &Output, cmd: TaskCommand) -> Result<()> {
    match cmd {
        TaskCommand::Create {
            description,
            done_definition,
            priority,
            phase,
            workflow,
            depends_on,
            key,
            boost,
        } => out.show(
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
            |r: TaskCreated| {
                if !r.created {
                    println!("idempotency key already used; existing task:");
                }
                print_task(&r.task);
            },
        ),
        TaskCommand::List {
            status,
            phase,
            workflow,
            limit,
        } => out.show(
            Request::TaskList {
                statuses: status,
                phase,
                workflow_id: workflow,
                limit,
            },
            |tasks: Vec<TaskView>| print_task_list(&tasks),
        ),
        TaskCommand::Show { id } => {
            out.show(Request::TaskShow { id }, |t: TaskView| print_task(&t))
        }
        TaskCommand::Assign { task_id, agent } => out.show(
            Request::TaskAssign {
                task_id,
                agent_id: agent,
            },
            |t: TaskView| print_task(&t),
        ),
    }
}

fn print_task_list(tasks: &[TaskView]) {
    if tasks.is_empty() {
        println!("(no tasks)");
    }
    for t in tasks {
        println!(
            "{} {:<11} {:<6} {} {}",
            t.id,
            t.status.as_str(),
            t.priority.as_str(),
            t.phase
                .map(|p| format!("p{p}"))
                .unwrap_or_else(|| "--".into()),
            first_line(&t.description, 60)
        );
    }
}

fn print_task(t: &TaskView) {
    println!("task {}", t.id);
    println!("  status:    {}", t.status);
    println!("  priority:  {}", t.priority.as_str());
    if let Some(w) = &t.workflow_id {
        println!(
            "  workflow:  {w} (phase {} {})",
            t.phase.map_or("null".to_string(), |p| p.to_string()),
            t.phase_name.as_deref().unwrap_or("")
        );
    }
    if let Some(a) = &t.assigned_agent_id {
        println!("  agent:     {a}");
    }
    if !t.depends_on.is_empty() {
        println!(
            "  depends:   {} task(s); waiting on: {}",
            t.depends_on.len(),
            if t.waiting_on.is_empty() {
                "none".into()
            } else {
                t.waiting_on.join(", ")
            }
        );
    }
    println!("  created:   {}", t.created_at);
    println!(
        "  description:\n    {}",
        t.description.replace('\n', "\n    ")
    );
    println!(
        "  done when:\n    {}",
        t.done_definition.replace('\n', "\n    ")
    );
    if let Some(sum) = &t.summary {
        println!("  summary:   {sum}");
    }
    if let Some(r) = &t.failure_reason {
        println!("  failure:   {r}");
    }
}
