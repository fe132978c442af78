//! Embeddings from any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM,
//! LM Studio): batched, with timeouts, and retried with backoff on 429, 5xx and network errors
//! (a `Retry-After` header is honoured).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::json;

use super::embedder::Embedder;

#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    /// Sent as `dimensions` when set; otherwise learned from a first request.
    pub dimensions: Option<usize>,
    pub timeout: Duration,
    pub batch_size: usize,
    pub max_retries: u32,
}

pub struct OpenAiEmbedder {
    client: reqwest::blocking::Client,
    settings: OpenAiSettings,
    url: String,
    dim: usize,
    id: String,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    #[serde(default)]
    index: usize,
}

impl OpenAiEmbedder {
    /// Connects and learns the dimension (one request) unless it is configured.
    pub fn new(settings: OpenAiSettings) -> Result<OpenAiEmbedder> {
        let client = reqwest::blocking::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .build()
            .context("cannot build the HTTP client")?;
        let url = format!("{}/embeddings", settings.base_url.trim_end_matches('/'));
        let mut e = OpenAiEmbedder {
            client,
            url,
            dim: settings.dimensions.unwrap_or(0),
            id: String::new(),
            settings,
        };
        if e.dim == 0 {
            let probe = e.request(&["dimension probe"]).with_context(|| {
                format!("cannot reach the embedding endpoint {} to learn its dimension: set memory.dimensions, or start the endpoint", e.url)
            })?;
            e.dim = probe
                .first()
                .map(Vec::len)
                .ok_or_else(|| anyhow!("the endpoint returned no embedding"))?;
        }
        e.id = format!("openai:{}:{}", e.settings.model, e.dim);
        Ok(e)
    }

    fn request(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut body = json!({"model": self.settings.model, "input": texts});
        if let Some(d) = self.settings.dimensions {
            body["dimensions"] = json!(d);
        }
        let mut backoff = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.client.post(&self.url).json(&body);
            if let Some(key) = &self.settings.api_key {
                req = req.bearer_auth(key);
            }
            let retry_after = match req.send() {
                Ok(resp) if resp.status().is_success() => {
                    let parsed: Response = resp.json().context("unreadable embeddings response")?;
                    let mut data = parsed.data;
                    if data.len() != texts.len() {
                        bail!("asked for {} embeddings, got {}", texts.len(), data.len());
                    }
                    data.sort_by_key(|d| d.index);
                    return Ok(data.into_iter().map(|d| d.embedding).collect());
                }
                Ok(resp) => {
                    let status = resp.status();
                    let wait = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.text().unwrap_or_default();
                    if status.as_u16() != 429 && !status.is_server_error() {
                        bail!(
                            "embedding endpoint {} answered {status}: {}",
                            self.url,
                            text.chars().take(300).collect::<String>()
                        );
                    }
                    if attempt > self.settings.max_retries {
                        bail!(
                            "embedding endpoint {} answered {status} {attempt} times; giving up",
                            self.url
                        );
                    }
                    wait
                }
                Err(e) => {
                    if attempt > self.settings.max_retries {
                        return Err(anyhow!(e).context(format!(
                            "embedding endpoint {} failed {attempt} times",
                            self.url
                        )));
                    }
                    None
                }
            };
            std::thread::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(10)));
            backoff = (backoff * 2).min(Duration::from_secs(8));
        }
    }
}

impl Embedder for OpenAiEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.settings.batch_size.max(1)) {
            for v in self.request(batch)? {
                if v.len() != self.dim {
                    bail!(
                        "the endpoint returned {} dimensions, expected {}",
                        v.len(),
                        self.dim
                    );
                }
                out.push(v);
            }
        }
        Ok(out)
    }
}
