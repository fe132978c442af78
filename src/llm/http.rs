//! Calls over HTTP (OpenAI-compatible Chat Completions, Anthropic Messages) with a timeout per
//! attempt and bounded retries: a connection failure, a timeout, 429 and 5xx are retried with
//! backoff (the provider's `Retry-After` when it gives one); any other refusal is final, in the
//! provider's own words.

use std::time::Duration;

use serde_json::Value;

use super::wire::{self, Completion, Turn};
use crate::config::llm::{LlmTarget, ProviderKind};

/// The longest wait a `Retry-After` may ask for before the call gives up instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

pub async fn complete(
    client: &reqwest::Client,
    target: &LlmTarget,
    system: &str,
    turns: &[Turn],
) -> Result<Completion, String> {
    let (url, body) = match target.provider {
        ProviderKind::Openai => (
            format!("{}/chat/completions", target.base_url),
            wire::openai_request(&target.model, system, turns),
        ),
        ProviderKind::Anthropic => (
            format!("{}/v1/messages", target.base_url),
            wire::anthropic_request(&target.model, system, turns),
        ),
        ProviderKind::Cli => unreachable!("the cli provider does not call over HTTP"),
    };
    let mut last = String::new();
    for attempt in 0..=target.max_retries {
        let mut req = client
            .post(&url)
            .timeout(Duration::from_secs(target.timeout_secs))
            .json(&body);
        req = match (target.provider, &target.api_key) {
            (ProviderKind::Anthropic, Some(key)) => req
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01"),
            (ProviderKind::Anthropic, None) => req.header("anthropic-version", "2023-06-01"),
            (_, Some(key)) => req.bearer_auth(key),
            (_, None) => req,
        };
        let wait = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = match resp.text().await {
                    Ok(text) => text,
                    // The answer broke off (a timeout, a dropped connection): retried like a
                    // request that got none, and said as what it was.
                    Err(e) => {
                        last =
                            format!("{url} answered {status}, but its body could not be read: {e}");
                        if attempt < target.max_retries {
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                        continue;
                    }
                };
                if status.is_success() {
                    let body: Value = serde_json::from_str(&text)
                        .map_err(|e| format!("{url} answered with unreadable JSON: {e}"))?;
                    return match target.provider {
                        ProviderKind::Openai => wire::openai_completion(&body),
                        _ => wire::anthropic_completion(&body),
                    }
                    .map_err(|e| format!("{url}: {e}"));
                }
                let said = wire::error_message(&text);
                last = format!("{url} answered {status}: {said}");
                let retryable = status.as_u16() == 429 || status.is_server_error();
                if !retryable {
                    return Err(last);
                }
                match retry_after {
                    Some(d) if d > MAX_RETRY_AFTER => {
                        return Err(format!("{last} (it asks to wait {}s)", d.as_secs()));
                    }
                    Some(d) => d,
                    None => backoff(attempt),
                }
            }
            Err(e) => {
                last = format!(
                    "cannot reach {url}: {}",
                    if e.is_timeout() {
                        format!("no answer within {}s", target.timeout_secs)
                    } else {
                        e.to_string()
                    }
                );
                backoff(attempt)
            }
        };
        if attempt < target.max_retries {
            tracing::debug!(attempt, ?wait, "LLM call failed, retrying: {last}");
            tokio::time::sleep(wait).await;
        }
    }
    Err(format!(
        "{last} (after {} attempts)",
        target.max_retries + 1
    ))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 << attempt.min(4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server whose first answer breaks off mid-body and whose second is whole.
    fn flaky_server() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().flatten().enumerate() {
                let mut stream = stream;
                let mut buf = [0u8; 65536];
                let _ = stream.read(&mut buf);
                let body = serde_json::json!({
                    "choices": [{"message": {"role": "assistant", "content": "{}"}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 1}
                })
                .to_string();
                let reply = if n == 0 {
                    // Promises more than it sends, then hangs up.
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{{\"cho",
                        body.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn an_answer_that_breaks_off_is_retried_not_read_as_bad_json() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let target = LlmTarget {
            provider: ProviderKind::Openai,
            base_url: flaky_server(),
            model: "m".into(),
            api_key: None,
            command: String::new(),
            timeout_secs: 5,
            max_retries: 1,
        };
        let turns = [Turn {
            role: wire::Role::User,
            text: "q".into(),
        }];
        let c = complete(&reqwest::Client::new(), &target, "s", &turns)
            .await
            .unwrap();
        assert_eq!(c.input_tokens, 7);
        let target = LlmTarget {
            max_retries: 0,
            base_url: flaky_server(),
            ..target
        };
        let err = complete(&reqwest::Client::new(), &target, "s", &turns)
            .await
            .unwrap_err();
        assert!(err.contains("its body could not be read"), "{err}");
    }
}
