//! The chat wire formats, pure: a request body for OpenAI-compatible Chat Completions and for
//! Anthropic Messages, and the reply's text and token counts read back from each (and from the
//! JSON Claude Code prints with `-p --output-format json`).

use serde_json::{Value, json};

/// One turn of the conversation sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// What came back: the text, and the tokens as the provider counted them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's cache (already counted in `input_tokens`).
    pub cached_tokens: u64,
    /// What the provider said the call cost, when it says (OpenRouter, the Claude Code CLI).
    pub cost_usd: Option<f64>,
}

/// The most the model may answer: a verdict is a few hundred tokens.
pub const MAX_OUTPUT_TOKENS: u32 = 1024;

pub fn openai_request(model: &str, system: &str, turns: &[Turn]) -> Value {
    let mut messages = vec![json!({"role": "system", "content": system})];
    messages.extend(
        turns
            .iter()
            .map(|t| json!({"role": t.role.as_str(), "content": t.text})),
    );
    json!({
        "model": model,
        "messages": messages,
        "max_tokens": MAX_OUTPUT_TOKENS,
        "temperature": 0,
        // Most OpenAI-compatible servers honour it; the prompt asks for JSON either way.
        "response_format": {"type": "json_object"},
    })
}

pub fn openai_completion(body: &Value) -> Result<Completion, String> {
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| format!("no choices[0].message.content in {}", brief(body)))?;
    let usage = &body["usage"];
    Ok(Completion {
        text: text.to_string(),
        input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
        cached_tokens: usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        // OpenRouter reports the charge.
        cost_usd: usage["cost"].as_f64(),
    })
}

pub fn anthropic_request(model: &str, system: &str, turns: &[Turn]) -> Value {
    json!({
        "model": model,
        "system": system,
        "max_tokens": MAX_OUTPUT_TOKENS,
        "temperature": 0,
        "messages": turns
            .iter()
            .map(|t| json!({"role": t.role.as_str(), "content": t.text}))
            .collect::<Vec<_>>(),
    })
}

pub fn anthropic_completion(body: &Value) -> Result<Completion, String> {
    let blocks = body["content"]
        .as_array()
        .ok_or_else(|| format!("no content in {}", brief(body)))?;
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let usage = &body["usage"];
    let cache_read = usage["cache_read_input_tokens"].as_u64().unwrap_or(0);
    let cache_write = usage["cache_creation_input_tokens"].as_u64().unwrap_or(0);
    Ok(Completion {
        text,
        // Anthropic counts cached input apart from `input_tokens`: the total is their sum.
        input_tokens: usage["input_tokens"].as_u64().unwrap_or(0) + cache_read + cache_write,
        output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
        cached_tokens: cache_read,
        cost_usd: None,
    })
}

/// The JSON `claude -p --output-format json` prints when it is done.
pub fn claude_cli_completion(stdout: &str) -> Result<Completion, String> {
    // It prints one JSON object; anything before it (a warning) is skipped.
    let start = stdout
        .find('{')
        .ok_or_else(|| format!("no JSON in its output: {}", cut(stdout)))?;
    let body: Value = serde_json::from_str(stdout[start..].trim())
        .map_err(|e| format!("unreadable JSON ({e}): {}", cut(stdout)))?;
    if body["is_error"] == true {
        return Err(format!(
            "it reported an error: {}",
            body["result"].as_str().unwrap_or("(no message)")
        ));
    }
    let text = body["result"]
        .as_str()
        .ok_or_else(|| format!("no result in {}", brief(&body)))?;
    let usage = &body["usage"];
    let cache_read = usage["cache_read_input_tokens"].as_u64().unwrap_or(0);
    let cache_write = usage["cache_creation_input_tokens"].as_u64().unwrap_or(0);
    Ok(Completion {
        text: text.to_string(),
        input_tokens: usage["input_tokens"].as_u64().unwrap_or(0) + cache_read + cache_write,
        output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
        cached_tokens: cache_read,
        cost_usd: body["total_cost_usd"].as_f64(),
    })
}

/// The provider's own words for a failed call: `error.message` in both formats.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or_else(|| cut(body))
}

/// The JSON object in a model's reply: the reply itself, or the first `{ ... }` in it (models
/// wrap JSON in prose or a fenced block).
pub fn json_in(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(t)
        && v.is_object()
    {
        return Some(v);
    }
    let start = t.find('{')?;
    let end = t.rfind('}')?;
    (end > start)
        .then(|| serde_json::from_str::<Value>(&t[start..=end]).ok())
        .flatten()
        .filter(Value::is_object)
}

fn brief(v: &Value) -> String {
    cut(&v.to_string())
}

fn cut(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_carry_the_system_prompt_and_turns_in_order() {
        let turns = [
            Turn {
                role: Role::User,
                text: "q".into(),
            },
            Turn {
                role: Role::Assistant,
                text: "a".into(),
            },
        ];
        let o = openai_request("m", "sys", &turns);
        assert_eq!(
            o["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(o["messages"][2]["role"], "assistant");
        let a = anthropic_request("m", "sys", &turns);
        assert_eq!(a["system"], "sys");
        assert_eq!(a["messages"][0], json!({"role": "user", "content": "q"}));
    }

    #[test]
    fn token_counts_are_read_as_each_provider_counts_them() {
        let o = openai_completion(&json!({
            "choices": [{"message": {"role": "assistant", "content": "{\"x\":1}"}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30,
                      "prompt_tokens_details": {"cached_tokens": 100}, "cost": 0.0021}
        }))
        .unwrap();
        assert_eq!(
            (o.input_tokens, o.output_tokens, o.cached_tokens, o.cost_usd),
            (120, 30, 100, Some(0.0021))
        );
        let a = anthropic_completion(&json!({
            "content": [{"type": "text", "text": "{\"x\""}, {"type": "text", "text": ":1}"}],
            "usage": {"input_tokens": 20, "output_tokens": 7,
                      "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5}
        }))
        .unwrap();
        assert_eq!(a.text, "{\"x\":1}");
        assert_eq!((a.input_tokens, a.cached_tokens), (125, 100));
        let c = claude_cli_completion(
            "note\n{\"type\":\"result\",\"is_error\":false,\"result\":\"{}\",\"total_cost_usd\":0.01,\"usage\":{\"input_tokens\":3,\"output_tokens\":4,\"cache_read_input_tokens\":10}}",
        )
        .unwrap();
        assert_eq!(
            (c.input_tokens, c.output_tokens, c.cost_usd),
            (13, 4, Some(0.01))
        );
        assert!(
            claude_cli_completion("{\"is_error\":true,\"result\":\"Invalid API key\"}")
                .unwrap_err()
                .contains("Invalid API key")
        );
        assert!(openai_completion(&json!({"error": {}})).is_err());
    }

    #[test]
    fn the_json_is_found_in_prose_and_fences() {
        assert_eq!(json_in("{\"a\":1}"), Some(json!({"a": 1})));
        assert_eq!(
            json_in("Here:\n```json\n{\"a\": {\"b\": 2}}\n```\nDone."),
            Some(json!({"a": {"b": 2}}))
        );
        assert_eq!(json_in("no json"), None);
        assert_eq!(json_in("[1, 2]"), None);
        assert_eq!(
            error_message("{\"error\":{\"message\":\"bad key\"}}"),
            "bad key"
        );
    }
}
