//! The LLM layer: the only code that calls a chat model. A component (the guardian, later the
//! conductor and the validator) asks for an answer of a type; the reply is parsed and checked
//! against that type's schema, repaired once if it is not valid, and every call, repaired or
//! not, writes one usage row (tokens as the provider counted them, and the cost with where it
//! came from).
//!
//! `wire.rs` (the formats) and `prices.rs` are pure; `http.rs` and `cli.rs` are the side
//! effects: a request over HTTP with retries, or the user's agent CLI run headless.

mod cli;
mod http;
pub mod prices;
pub mod wire;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::config::llm::{LlmSettings, LlmTarget, ProviderKind};
use crate::states::LlmComponent;
use crate::store::{Store, UsageRow};
use prices::Prices;
use wire::{Completion, Role, Turn};

/// An answer a component asks for: its JSON schema is shown to the model, and `check` says
/// what serde cannot (ranges, non-empty fields).
pub trait Answer: DeserializeOwned + JsonSchema {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// What a call is for, as its usage row records it.
#[derive(Debug, Clone, Default)]
pub struct CallFor {
    pub workflow_id: Option<String>,
    pub task_id: Option<String>,
    pub agent_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// No model is configured for this component (the reason says how to turn it on).
    #[error("{0}")]
    Off(String),
    /// The provider could not be reached, refused, or never gave a valid answer.
    #[error("{0}")]
    Failed(String),
}

pub struct Llm {
    settings: LlmSettings,
    prices: Prices,
    /// Built at the first HTTP call: a coordinator whose components are all off needs none.
    http: std::sync::OnceLock<reqwest::Client>,
    store: Store,
    /// Where a headless CLI runs: an empty dir outside the project, so that the CLI reads no
    /// project instructions.
    cli_dir: PathBuf,
}

impl Llm {
    pub fn new(settings: LlmSettings, store: Store, cli_dir: PathBuf) -> Llm {
        Llm {
            prices: Prices::with(&settings.prices),
            settings,
            http: std::sync::OnceLock::new(),
            store,
            cli_dir,
        }
    }

    /// What `component` asks ("openai gpt-4.1-mini at https://..."), or why it is off.
    pub fn describe(&self, component: LlmComponent) -> Result<String, String> {
        self.settings.target(component).map(|t| match t.provider {
            ProviderKind::Cli => format!(
                "{} -p{}",
                t.command,
                if t.model.is_empty() {
                    String::new()
                } else {
                    format!(" --model {}", t.model)
                }
            ),
            ProviderKind::Openai => format!("openai-compatible {} at {}", t.model, t.base_url),
            ProviderKind::Anthropic => format!("anthropic {} at {}", t.model, t.base_url),
        })
    }

    /// Asks `component`'s model for a `T`: one call, and one repair call when the reply is
    /// not a valid `T`.
    pub async fn ask<T: Answer>(
        &self,
        component: LlmComponent,
        call_for: &CallFor,
        system: &str,
        question: &str,
    ) -> Result<T, LlmError> {
        let target = self.settings.target(component).map_err(LlmError::Off)?;
        let schema = serde_json::to_string(&schemars::schema_for!(T)).expect("schema json");
        let system = format!(
            "{system}\n\nReply with one JSON object and nothing else. It must match this JSON schema:\n{schema}"
        );
        let mut turns = vec![Turn {
            role: Role::User,
            text: question.to_string(),
        }];
        let mut problem = String::new();
        for attempt in 0..2 {
            let completion = self
                .complete(target, &system, &turns)
                .await
                .map_err(|e| LlmError::Failed(format!("the {component} LLM: {e}")))?;
            self.record(component, call_for, target, &completion);
            match parse::<T>(&completion.text) {
                Ok(answer) => return Ok(answer),
                Err(e) if attempt == 0 => {
                    problem = e.clone();
                    turns.push(Turn {
                        role: Role::Assistant,
                        text: completion.text,
                    });
                    turns.push(Turn {
                        role: Role::User,
                        text: format!(
                            "That reply is not valid: {e}. Reply again with only the JSON object, matching the schema."
                        ),
                    });
                }
                Err(e) => problem = e,
            }
        }
        Err(LlmError::Failed(format!(
            "the {component} LLM gave no valid answer after one repair: {problem}"
        )))
    }

    async fn complete(
        &self,
        target: &LlmTarget,
        system: &str,
        turns: &[Turn],
    ) -> Result<Completion, String> {
        match target.provider {
            ProviderKind::Cli => cli::complete(target, system, turns, &self.cli_dir).await,
            _ => {
                let client = self.http.get_or_init(|| {
                    // The process's TLS provider (the binary installs it at start; a test may not).
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    reqwest::Client::new()
                });
                http::complete(client, target, system, turns).await
            }
        }
    }

    fn record(
        &self,
        component: LlmComponent,
        call_for: &CallFor,
        target: &LlmTarget,
        c: &Completion,
    ) {
        let model = if target.model.is_empty() {
            target.command.clone()
        } else {
            target.model.clone()
        };
        let (cost_usd, cost_source) = self.prices.cost(&model, c);
        let row = UsageRow {
            component,
            workflow_id: call_for.workflow_id.clone(),
            task_id: call_for.task_id.clone(),
            agent_id: call_for.agent_id.clone(),
            provider: format!("{:?}", target.provider).to_lowercase(),
            model,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cached_tokens: c.cached_tokens,
            cost_usd,
            cost_source,
        };
        if let Err(e) = self.store.record_usage(&row) {
            tracing::error!("cannot record LLM usage: {e}");
        }
    }
}

/// A reply read as a `T`: its JSON object, deserialized, then checked.
fn parse<T: Answer>(text: &str) -> Result<T, String> {
    let value = wire::json_in(text).ok_or_else(|| "it holds no JSON object".to_string())?;
    let answer: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
    answer.check()?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, JsonSchema)]
    struct Score {
        score: f64,
    }

    impl Answer for Score {
        fn check(&self) -> Result<(), String> {
            (0.0..=1.0)
                .contains(&self.score)
                .then_some(())
                .ok_or_else(|| format!("score {} is not between 0 and 1", self.score))
        }
    }

    #[test]
    fn a_reply_is_read_deserialized_and_checked() {
        assert_eq!(
            parse::<Score>("```json\n{\"score\": 0.5}\n```")
                .unwrap()
                .score,
            0.5
        );
        assert!(
            parse::<Score>("{\"score\": 3}")
                .unwrap_err()
                .contains("not between 0 and 1")
        );
        assert!(
            parse::<Score>("{\"points\": 1}")
                .unwrap_err()
                .contains("missing field")
        );
        assert!(
            parse::<Score>("I think 0.5")
                .unwrap_err()
                .contains("no JSON object")
        );
    }
}
