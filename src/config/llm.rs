//! `[llm]`: the chat model the guardian (and later the conductor and validator) may ask, with
//! per-component overrides (`[llm.guardian]`, `[llm.conductor]`) and the price table. Keys come
//! only from environment variables: a key in a file would end up committed.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::states::LlmComponent;

/// Which wire format, or the user's own agent CLI run headless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI-compatible Chat Completions: OpenAI, OpenRouter, Ollama, vLLM, LM Studio.
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// The user's agent CLI, headless (`claude -p --output-format json`): a subscription login
    /// needs no API key.
    Cli,
}

/// What one component asks, resolved: where, which model, with which key.
#[derive(Clone)]
pub struct LlmTarget {
    pub provider: ProviderKind,
    /// For `openai` and `anthropic`; the provider's own when not set.
    pub base_url: String,
    pub model: String,
    /// The key, read from `api_key_env` at start (never printed).
    pub api_key: Option<String>,
    /// For `cli`: the program (`claude`).
    pub command: String,
    pub timeout_secs: u64,
    pub max_retries: u32,
}

/// The key is never printed, not even in a debug dump of the configuration.
impl std::fmt::Debug for LlmTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmTarget")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Input tokens read from the provider's cache; `input` when not given.
    #[serde(default)]
    pub cached: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct LlmSettings {
    /// Per component: what it asks, or why it is off.
    pub components: HashMap<LlmComponent, Result<LlmTarget, String>>,
    /// The project's prices, by model, over the shipped table.
    pub prices: BTreeMap<String, Price>,
}

impl LlmSettings {
    pub fn target(&self, component: LlmComponent) -> Result<&LlmTarget, String> {
        match self.components.get(&component) {
            Some(Ok(t)) => Ok(t),
            Some(Err(why)) => Err(why.clone()),
            None => Err(OFF.to_string()),
        }
    }
}

const OFF: &str = "no [llm] provider is configured: set [llm] provider (openai, anthropic or cli) and model in hephaestus.toml";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    provider: Option<ProviderKind>,
    base_url: Option<String>,
    model: Option<String>,
    api_key_env: Option<String>,
    command: Option<String>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
}

impl TargetFile {
    /// `self` with `over`'s keys on top.
    fn with(&self, over: &TargetFile) -> TargetFile {
        TargetFile {
            provider: over.provider.or(self.provider),
            base_url: over.base_url.clone().or_else(|| self.base_url.clone()),
            model: over.model.clone().or_else(|| self.model.clone()),
            api_key_env: over
                .api_key_env
                .clone()
                .or_else(|| self.api_key_env.clone()),
            command: over.command.clone().or_else(|| self.command.clone()),
            timeout_secs: over.timeout_secs.or(self.timeout_secs),
            max_retries: over.max_retries.or(self.max_retries),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LlmFile {
    #[serde(flatten)]
    base: TargetFile,
    guardian: Option<TargetFile>,
    conductor: Option<TargetFile>,
    validator: Option<TargetFile>,
    #[serde(default)]
    prices: BTreeMap<String, Price>,
}

pub(super) fn resolve(file: LlmFile, env: &HashMap<String, String>) -> Result<LlmSettings> {
    for (model, p) in &file.prices {
        if [Some(p.input), Some(p.output), p.cached]
            .into_iter()
            .flatten()
            .any(|v| !v.is_finite() || v < 0.0)
        {
            bail!("llm.prices.{model:?}: prices are USD per million tokens, zero or more");
        }
    }
    let mut components = HashMap::new();
    for (component, over) in [
        (LlmComponent::Guardian, &file.guardian),
        (LlmComponent::Conductor, &file.conductor),
        (LlmComponent::Validator, &file.validator),
    ] {
        let merged = file.base.with(&over.clone().unwrap_or_default());
        components.insert(component, target(component, &merged, env)?);
    }
    Ok(LlmSettings {
        components,
        prices: file.prices,
    })
}

/// A component's target, or why it is off; an error for a configuration that cannot work.
fn target(
    component: LlmComponent,
    f: &TargetFile,
    env: &HashMap<String, String>,
) -> Result<Result<LlmTarget, String>> {
    let Some(provider) = f.provider else {
        return Ok(Err(OFF.to_string()));
    };
    let section = format!("[llm.{component}] (or [llm])");
    let model = match (&f.model, provider) {
        (Some(m), _) if !m.trim().is_empty() => m.clone(),
        // The CLI's own default model.
        (_, ProviderKind::Cli) => String::new(),
        _ => bail!("{section}: set model, the model the provider should run"),
    };
    let (default_url, default_key) = match provider {
        ProviderKind::Openai => ("https://api.openai.com/v1", Some("OPENAI_API_KEY")),
        ProviderKind::Anthropic => ("https://api.anthropic.com", Some("ANTHROPIC_API_KEY")),
        ProviderKind::Cli => ("", None),
    };
    let base_url = f
        .base_url
        .clone()
        .unwrap_or_else(|| default_url.to_string())
        .trim_end_matches('/')
        .to_string();
    if provider != ProviderKind::Cli
        && !(base_url.starts_with("http://") || base_url.starts_with("https://"))
    {
        bail!("{section}: base_url {base_url:?} is not an http(s) URL");
    }
    // The provider's own key variable is read only for the provider's own URL: a key for
    // OpenAI must not go to whatever else base_url names. Elsewhere a key is named by
    // api_key_env, or there is none (a local Ollama or vLLM needs none).
    let own_url = base_url == default_url;
    let key_env = f
        .api_key_env
        .clone()
        .or(default_key.filter(|_| own_url).map(String::from));
    let api_key = key_env
        .as_ref()
        .and_then(|k| env.get(k))
        .filter(|v| !v.trim().is_empty())
        .cloned();
    if api_key.is_none()
        && let Some(k) = &key_env
    {
        return Ok(Err(format!("the {component} LLM is off: {k} is not set")));
    }
    if api_key.is_some() && base_url.starts_with("http://") && !loopback(&base_url) {
        bail!(
            "{section}: base_url {base_url} is plain http to another host: the key would travel in clear; use https"
        );
    }
    Ok(Ok(LlmTarget {
        provider,
        base_url,
        model,
        api_key,
        command: f.command.clone().unwrap_or_else(|| "claude".to_string()),
        timeout_secs: f.timeout_secs.unwrap_or(60).clamp(1, 600),
        max_retries: f.max_retries.unwrap_or(3).min(10),
    }))
}

/// `http://localhost…`, `http://127.…` or `http://[::1]…`: the key stays on this machine.
fn loopback(url: &str) -> bool {
    let host = url
        .trim_start_matches("http://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let name = if host.starts_with('[') {
        host.split(']').next().map(|h| h.trim_start_matches('['))
    } else {
        host.split(':').next()
    }
    .unwrap_or_default();
    name == "localhost" || name.starts_with("127.") || name == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<LlmSettings> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(toml::from_str(text).unwrap(), &env)
    }

    #[test]
    fn no_provider_means_off_with_how_to_turn_it_on() {
        let s = parse("", &[]).unwrap();
        let why = s.target(LlmComponent::Guardian).unwrap_err();
        assert!(why.contains("set [llm] provider"), "{why}");
    }

    #[test]
    fn a_component_overrides_the_base_and_keys_come_from_the_environment() {
        let s = parse(
            "provider = \"openai\"\nmodel = \"small\"\n[guardian]\nmodel = \"big\"\n[conductor]\nprovider = \"anthropic\"\nmodel = \"claude-x\"\n",
            &[("OPENAI_API_KEY", "sk-1")],
        )
        .unwrap();
        let g = s.target(LlmComponent::Guardian).unwrap();
        assert_eq!(
            (g.model.as_str(), g.api_key.as_deref()),
            ("big", Some("sk-1"))
        );
        assert_eq!(g.base_url, "https://api.openai.com/v1");
        let c = s.target(LlmComponent::Conductor).unwrap_err();
        assert!(c.contains("ANTHROPIC_API_KEY is not set"), "{c}");
        assert_eq!(s.target(LlmComponent::Validator).unwrap().model, "small");
    }

    #[test]
    fn a_named_key_that_is_missing_turns_the_component_off_and_bad_values_are_refused() {
        let s = parse(
            "provider = \"openai\"\nmodel = \"m\"\napi_key_env = \"MY_KEY\"\n",
            &[],
        )
        .unwrap();
        assert!(
            s.target(LlmComponent::Guardian)
                .unwrap_err()
                .contains("MY_KEY is not set")
        );
        // The hosted default with no key is off, not a stream of 401s.
        let s = parse("provider = \"openai\"\nmodel = \"m\"\n", &[]).unwrap();
        assert!(
            s.target(LlmComponent::Guardian)
                .unwrap_err()
                .contains("OPENAI_API_KEY is not set")
        );
        // OpenAI's key does not go to another server unless named for it.
        let s = parse(
            "provider = \"openai\"\nmodel = \"m\"\nbase_url = \"https://openrouter.ai/api/v1\"\n",
            &[("OPENAI_API_KEY", "sk-1")],
        )
        .unwrap();
        assert_eq!(s.target(LlmComponent::Guardian).unwrap().api_key, None);
        let err = parse(
            "provider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://10.0.0.5:8000/v1\"\napi_key_env = \"K\"\n",
            &[("K", "secret")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("in clear"), "{err}");
        assert!(
            parse(
                "provider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:8000/v1\"\napi_key_env = \"K\"\n",
                &[("K", "secret")],
            )
            .is_ok()
        );
        let err = parse("provider = \"openai\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("set model"), "{err}");
        let err = parse(
            "provider = \"openai\"\nmodel = \"m\"\nbase_url = \"localhost:1\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not an http(s) URL"), "{err}");
        let err = parse("[prices.m]\ninput = -1.0\noutput = 1.0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("zero or more"), "{err}");
    }
}
