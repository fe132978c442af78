//! `hephaestus workflow`: list definitions and executions, start and show executions.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::{Output, print_json};
use crate::control::Request;
use crate::control::replies::WorkflowStarted;
use crate::text::first_line;
use crate::views::{WorkflowDefinitionView, WorkflowView};

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

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

pub(super) fn run(out: &Output, cmd: WorkflowCommand) -> Result<()> {
    match cmd {
        WorkflowCommand::List => {
            let (raw_defs, defs) =
                out.ask::<Vec<WorkflowDefinitionView>>(Request::WorkflowDefinitions)?;
            let (raw_runs, runs) =
                out.ask::<Vec<WorkflowView>>(Request::WorkflowList { status: None })?;
            if out.json {
                print_json(&serde_json::json!({"definitions": raw_defs, "executions": raw_runs}));
                return Ok(());
            }
            println!("Definitions:");
            for d in &defs {
                let params: Vec<String> = d
                    .parameters
                    .iter()
                    .map(|p| format!("{}{}", p.name, if p.required { "*" } else { "" }))
                    .collect();
                println!("  {:<18} {} — {}", d.id, d.name, params.join(" "));
            }
            println!("Executions:");
            print_workflows(&runs);
            Ok(())
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
            out.show(
                Request::WorkflowStart {
                    definition_id: definition,
                    description,
                    parameters,
                    working_directory: working_dir,
                },
                |r: WorkflowStarted| {
                    println!(
                        "started workflow {} ({})",
                        r.workflow.id, r.workflow.definition_id
                    );
                    println!("first task {} queued in phase 1", r.first_task.id);
                },
            )
        }
        WorkflowCommand::Show { id } => {
            out.show(Request::WorkflowShow { id }, |w: WorkflowView| {
                print_workflows(std::slice::from_ref(&w));
                for p in &w.phases {
                    println!("  phase {} {} [{}]", p.order, p.name, p.status);
                }
            })
        }
    }
}

pub(super) fn print_workflows(list: &[WorkflowView]) {
    if list.is_empty() {
        println!("  (none)");
    }
    for w in list {
        let counts: Vec<String> = w
            .task_counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "  {} {:<16} [{}] {} — {}",
            w.id,
            w.definition_id,
            w.status,
            first_line(&w.description, 40),
            counts.join(", ")
        );
    }
}
