//! Workflows: starting an execution of a definition.

use std::collections::HashMap;

use crate::events::Event;
use crate::phases::{PhaseDefinition, WorkflowDefinition};
use crate::queue::Priority;
use crate::state::AppState;
use crate::store::{NewTask, NewWorkflow, OpError, OpResult};
use crate::views::{TaskView, WorkflowView};

/// A request to start a workflow, as the front ends receive it.
pub struct StartWorkflow {
    pub definition_id: String,
    pub description: String,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub working_directory: Option<String>,
    /// The agent that starts it; none for a person.
    pub created_by: Option<String>,
}

/// Checks the launch parameters, fills in every `{param}`, and stores the execution, its phases
/// and the first phase's task in one transaction.
pub fn start(state: &AppState, req: StartWorkflow) -> OpResult<(WorkflowView, TaskView)> {
    if req.description.trim().is_empty() {
        return Err(OpError::Invalid(
            "description must not be empty: say what this run is for".into(),
        ));
    }
    let definition = state.store.workflow_definition(&req.definition_id)?;
    let parameters = crate::phases::resolve_parameters(&definition, &req.parameters)
        .map_err(OpError::Invalid)?;
    let phases: Vec<PhaseDefinition> = definition
        .phases
        .iter()
        .map(|p| p.substituted(&parameters))
        .collect();
    let first_task = first_task(&definition, &phases[0], &parameters, &req);
    let (workflow, task) = state.store.start_workflow(NewWorkflow {
        definition: &definition,
        description: &req.description,
        parameters: &parameters,
        phases: &phases,
        working_directory: req.working_directory,
        created_by: req.created_by,
        first_task,
    })?;
    state.events.publish(Event::WorkflowStarted {
        workflow_id: workflow.id.clone(),
        first_task_id: task.id.clone(),
    });
    state.events.publish(Event::TaskCreated {
        task_id: task.id.clone(),
        workflow_id: Some(workflow.id.clone()),
        status: task.status,
    });
    Ok((workflow, task))
}

/// The first phase's task: the definition's launch template when it has one, else the run's
/// description followed by the phase's own.
fn first_task(
    definition: &WorkflowDefinition,
    first: &PhaseDefinition,
    parameters: &HashMap<String, String>,
    req: &StartWorkflow,
) -> NewTask {
    let description = definition
        .config
        .launch_template
        .as_ref()
        .and_then(|t| t.phase_1_task_prompt.as_deref())
        .map(|t| crate::phases::substitute(t, parameters))
        .unwrap_or_else(|| format!("{}\n\n{}", req.description, first.description));
    let done_definition = if first.done_definitions.is_empty() {
        format!("Phase {} ({}) is complete", first.order, first.name)
    } else {
        first
            .done_definitions
            .iter()
            .map(|d| format!("- {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    NewTask {
        description,
        done_definition,
        priority: Some(Priority::High),
        phase: Some(first.order),
        created_by: req.created_by.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::WorkflowStatus;

    fn request(definition_id: &str, parameters: &str) -> StartWorkflow {
        StartWorkflow {
            definition_id: definition_id.into(),
            description: "fix login".into(),
            parameters: serde_json::from_str(parameters).unwrap(),
            working_directory: None,
            created_by: None,
        }
    }

    #[tokio::test]
    async fn starting_a_shipped_workflow_creates_phases_and_the_first_task() {
        let state = crate::state::AppState::for_tests();
        state
            .store
            .sync_definitions(&crate::phases::shipped().unwrap())
            .unwrap();
        let mut events = state.events.subscribe();
        let (wf, task) = start(
            &state,
            request(
                "bug-fix",
                r#"{"bug_description": "login crashes on empty password"}"#,
            ),
        )
        .unwrap();
        assert_eq!(wf.phases.len(), 3);
        assert_eq!(wf.status, WorkflowStatus::Active);
        assert_eq!(task.phase, Some(1));
        assert_eq!(task.priority, Priority::High);
        assert_eq!(task.workflow_id.as_deref(), Some(wf.id.as_str()));
        assert!(
            task.description.contains("login crashes on empty password"),
            "{}",
            task.description
        );
        assert_eq!(wf.task_counts.get("queued"), Some(&1));
        assert_eq!(
            events.recv().await.unwrap(),
            Event::WorkflowStarted {
                workflow_id: wf.id.clone(),
                first_task_id: task.id.clone()
            }
        );

        let missing = start(&state, request("bug-fix", "{}")).unwrap_err();
        assert!(missing.to_string().contains("bug_description"), "{missing}");
        let unknown = start(&state, request("nope", "{}")).unwrap_err();
        assert!(unknown.to_string().contains("known: bug-fix"), "{unknown}");
        assert_eq!(
            state.store.list_workflows(None).unwrap().len(),
            1,
            "a refused start stores nothing"
        );
    }
}
