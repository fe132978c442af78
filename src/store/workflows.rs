//! Workflow definitions (synced from the phase folders) and workflow executions with their phases.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Entity, OpError, OpResult, Store, json_list, new_id, tasks::NewTask};
use crate::phases::{PhaseDefinition, WorkflowDefinition};
use crate::states::WorkflowStatus;
use crate::time::{now_ms, rfc3339};
use crate::views::{PhaseView, WorkflowDefinitionView, WorkflowView};

pub struct NewWorkflow<'a> {
    pub definition: &'a WorkflowDefinition,
    pub description: &'a str,
    /// The launch parameters, checked and complete.
    pub parameters: &'a HashMap<String, String>,
    /// The definition's phases with the parameters filled in.
    pub phases: &'a [PhaseDefinition],
    pub working_directory: Option<String>,
    pub created_by: Option<String>,
    /// The first phase's task.
    pub first_task: NewTask,
}

impl Store {
    /// Replaces the stored definitions with `defs` (executions keep the copy they started with).
    pub fn sync_definitions(&self, defs: &[WorkflowDefinition]) -> OpResult<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let now = now_ms();
        for d in defs {
            tx.execute(
                "INSERT INTO workflow_definitions (id, name, description, source, definition, loaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, description = ?3, source = ?4, definition = ?5, loaded_at = ?6",
                params![d.id, d.name, d.description, d.source, serde_json::to_string(d)?, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn workflow_definition(&self, id: &str) -> OpResult<WorkflowDefinition> {
        let text: Option<String> = self
            .lock()
            .query_row(
                "SELECT definition FROM workflow_definitions WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        match text {
            Some(t) => Ok(serde_json::from_str(&t)?),
            None => {
                let known: Vec<String> =
                    self.list_definitions()?.into_iter().map(|d| d.id).collect();
                Err(OpError::NotFound(format!(
                    "no workflow definition {id:?}; known: {}",
                    known.join(", ")
                )))
            }
        }
    }

    pub fn list_definitions(&self) -> OpResult<Vec<WorkflowDefinitionView>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT definition FROM workflow_definitions ORDER BY id")?;
        let defs = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        defs.iter()
            .map(|t| {
                let d: WorkflowDefinition = serde_json::from_str(t)?;
                Ok(WorkflowDefinitionView {
                    phases: d.phases.iter().map(|p| p.name.clone()).collect(),
                    has_result: d.config.has_result,
                    parameters: d
                        .config
                        .launch_template
                        .map(|t| t.parameters)
                        .unwrap_or_default(),
                    id: d.id,
                    name: d.name,
                    description: d.description,
                    source: d.source,
                })
            })
            .collect()
    }

    /// Starts an execution of a definition: the workflow row, one row per phase and the first
    /// phase's task, in one transaction.
    pub fn start_workflow(
        &self,
        new: NewWorkflow<'_>,
    ) -> OpResult<(WorkflowView, crate::views::TaskView)> {
        let id = new_id();
        let now = now_ms();
        let task = {
            let mut conn = self.lock();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored_params: BTreeMap<&String, &String> = new.parameters.iter().collect();
            tx.execute(
                "INSERT INTO workflows (id, definition_id, name, description, status, working_directory,
                    launch_params, config, created_by_agent_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    new.definition.id,
                    new.definition.name,
                    new.description,
                    new.working_directory,
                    serde_json::to_string(&stored_params)?,
                    serde_json::to_string(&new.definition.config)?,
                    new.created_by,
                    now
                ],
            )?;
            for p in new.phases {
                tx.execute(
                    "INSERT INTO phases (id, workflow_id, phase_order, name, description, done_definitions,
                        additional_notes, outputs, next_steps, working_directory, cli_tool, cli_model, validation)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        new_id(),
                        id,
                        p.order,
                        p.name,
                        p.description,
                        serde_json::to_string(&p.done_definitions)?,
                        p.additional_notes,
                        serde_json::to_string(&p.outputs)?,
                        serde_json::to_string(&p.next_steps)?,
                        p.working_directory
                            .clone()
                            .or_else(|| new.working_directory.clone()),
                        p.cli_tool,
                        p.cli_model,
                        p.validation.as_ref().map(|v| v.to_string()),
                    ],
                )?;
            }
            let first_task = NewTask {
                workflow_id: Some(id.clone()),
                ..new.first_task
            };
            let (task, _) = super::tasks::insert_task(&tx, first_task)?;
            tx.commit()?;
            task
        };
        Ok((self.get_workflow(&id)?, task))
    }

    pub fn get_workflow(&self, id: &str) -> OpResult<WorkflowView> {
        let conn = self.lock();
        let row = conn
            .query_row(
                "SELECT id, definition_id, name, description, status, working_directory, launch_params,
                        created_by_agent_id, created_at FROM workflows WHERE id = ?1",
                params![id],
                |r| {
                    Ok(WorkflowView {
                        id: r.get(0)?,
                        definition_id: r.get(1)?,
                        name: r.get(2)?,
                        description: r.get(3)?,
                        status: r.get(4)?,
                        working_directory: r.get(5)?,
                        launch_parameters: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                        created_by_agent_id: r.get(7)?,
                        created_at: rfc3339(r.get(8)?),
                        phases: Vec::new(),
                        task_counts: BTreeMap::new(),
                    })
                },
            )
            .optional()?;
        let mut wf = row.ok_or_else(|| OpError::Missing {
            entity: Entity::Workflow,
            id: id.to_string(),
        })?;
        let mut stmt = conn.prepare_cached(
            "SELECT phase_order, name, description, done_definitions, status FROM phases
             WHERE workflow_id = ?1 ORDER BY phase_order",
        )?;
        wf.phases = stmt
            .query_map(params![id], |r| {
                Ok(PhaseView {
                    order: r.get(0)?,
                    name: r.get(1)?,
                    description: r.get(2)?,
                    done_definitions: json_list(&r.get::<_, String>(3)?),
                    status: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        wf.task_counts = self.task_counts(Some(id))?;
        Ok(wf)
    }

    /// Executions, newest first; `status` filters when given.
    pub fn list_workflows(&self, status: Option<WorkflowStatus>) -> OpResult<Vec<WorkflowView>> {
        let ids: Vec<String> = {
            let conn = self.lock();
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM workflows WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, rowid DESC",
            )?;
            stmt.query_map(params![status], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?
        };
        ids.iter().map(|id| self.get_workflow(id)).collect()
    }
}
