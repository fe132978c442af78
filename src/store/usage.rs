//! Chat-model usage: one row per call (`llm/` writes them), and the totals `hephaestus usage`
//! and `status` show.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{OpResult, Store};
use crate::states::{CostSource, LlmComponent};

/// One call's usage, as `llm/` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub component: LlmComponent,
    pub workflow_id: Option<String>,
    pub task_id: Option<String>,
    pub agent_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: Option<f64>,
    pub cost_source: CostSource,
}

/// How usage is grouped in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageBy {
    Component,
    Workflow,
    Task,
    Agent,
    Model,
}

impl std::str::FromStr for UsageBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!("cannot group usage by {s:?}: use component, workflow, task, agent or model")
        })
    }
}

/// The totals of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotal {
    /// The group's key (a component, a workflow id, ...); `-` for calls without one.
    pub key: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// The known costs summed.
    pub cost_usd: f64,
    /// Calls whose cost is unknown (the model is not in the price table).
    pub calls_without_cost: u64,
}

impl Store {
    pub fn record_usage(&self, row: &UsageRow) -> OpResult<()> {
        self.lock().execute(
            "INSERT INTO llm_usage (at, component, workflow_id, task_id, agent_id, provider, model,
                                    input_tokens, output_tokens, cached_tokens, cost_usd, cost_source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                crate::time::now_ms(),
                row.component,
                row.workflow_id,
                row.task_id,
                row.agent_id,
                row.provider,
                row.model,
                row.input_tokens as i64,
                row.output_tokens as i64,
                row.cached_tokens as i64,
                row.cost_usd,
                row.cost_source,
            ],
        )?;
        Ok(())
    }

    /// Totals per group, the costliest first; with `by = None`, one total of everything.
    pub fn usage_totals(&self, by: Option<UsageBy>) -> OpResult<Vec<UsageTotal>> {
        let key = match by {
            None => "'all'",
            Some(UsageBy::Component) => "component",
            Some(UsageBy::Workflow) => "workflow_id",
            Some(UsageBy::Task) => "task_id",
            Some(UsageBy::Agent) => "agent_id",
            Some(UsageBy::Model) => "provider || ' ' || model",
        };
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT COALESCE({key}, '-'), COUNT(*), SUM(input_tokens), SUM(output_tokens),
                    SUM(cached_tokens), COALESCE(SUM(cost_usd), 0),
                    SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)
             FROM llm_usage GROUP BY 1 ORDER BY 6 DESC, 3 DESC"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(UsageTotal {
                key: r.get(0)?,
                calls: r.get::<_, i64>(1)? as u64,
                input_tokens: r.get::<_, i64>(2)? as u64,
                output_tokens: r.get::<_, i64>(3)? as u64,
                cached_tokens: r.get::<_, i64>(4)? as u64,
                cost_usd: r.get(5)?,
                calls_without_cost: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(component: LlmComponent, agent: &str, input: u64, cost: Option<f64>) -> UsageRow {
        UsageRow {
            component,
            workflow_id: None,
            task_id: None,
            agent_id: Some(agent.into()),
            provider: "openai".into(),
            model: "m".into(),
            input_tokens: input,
            output_tokens: 10,
            cached_tokens: 0,
            cost_usd: cost,
            cost_source: if cost.is_some() {
                CostSource::PriceTable
            } else {
                CostSource::Unknown
            },
        }
    }

    #[test]
    fn totals_add_up_per_group_and_unknown_costs_are_counted_not_guessed() {
        let store = Store::open_in_memory().unwrap();
        assert!(store.usage_totals(None).unwrap().is_empty());
        store
            .record_usage(&row(LlmComponent::Guardian, "a", 100, Some(0.5)))
            .unwrap();
        store
            .record_usage(&row(LlmComponent::Guardian, "b", 200, None))
            .unwrap();
        store
            .record_usage(&row(LlmComponent::Conductor, "a", 50, Some(0.25)))
            .unwrap();
        let all = store.usage_totals(None).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].calls, all[0].input_tokens, all[0].output_tokens),
            (3, 350, 30)
        );
        assert_eq!(all[0].cost_usd, 0.75);
        assert_eq!(all[0].calls_without_cost, 1);
        let by_agent = store.usage_totals(Some(UsageBy::Agent)).unwrap();
        let a = by_agent.iter().find(|t| t.key == "a").unwrap();
        assert_eq!((a.calls, a.input_tokens, a.cost_usd), (2, 150, 0.75));
        let by_workflow = store.usage_totals(Some(UsageBy::Workflow)).unwrap();
        assert_eq!(by_workflow[0].key, "-");
    }
}
