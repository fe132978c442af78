//! `[memory]` in `hephaestus.toml`, with the `HEPHAESTUS_EMBEDDER`, `HEPHAESTUS_QDRANT_URL`,
//! `HF_ENDPOINT` and API-key variables: which embedder, which vector store, how search ranks.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// `[memory]` in `hephaestus.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemoryFile {
    /// "minilm" (the default), "openai" or "hashing"
    embedder: Option<String>,
    /// A Qdrant gRPC endpoint: memories are searched there instead of in-process.
    qdrant_url: Option<String>,
    /// Name of the environment variable that holds the Qdrant API key (default QDRANT_API_KEY).
    qdrant_api_key_env: Option<String>,
    qdrant_collection_prefix: Option<String>,
    qdrant_timeout_secs: Option<u64>,
    /// Where the local model is fetched from first (a Hugging Face endpoint); "" skips the hub.
    model_hub_url: Option<String>,
    base_url: Option<String>,
    model: Option<String>,
    /// Name of the environment variable that holds the API key (default OPENAI_API_KEY).
    api_key_env: Option<String>,
    dimensions: Option<usize>,
    timeout_secs: Option<u64>,
    batch_size: Option<usize>,
    max_retries: Option<u32>,
    pending_retry_secs: Option<u64>,
    dedup_threshold: Option<f32>,
    weight_similarity: Option<f32>,
    weight_recency: Option<f32>,
    weight_type: Option<f32>,
    recency_half_life_days: Option<f32>,
    /// Re-rank search candidates by token vectors (local model only; default true).
    token_rerank: Option<bool>,
}

/// The memory settings from the file's `[memory]` and the environment.
pub(super) fn resolve(
    f: MemoryFile,
    env: &HashMap<String, String>,
) -> Result<crate::memory::MemorySettings> {
    let d = crate::memory::MemorySettings::default();
    // The local model is the default where it is built in and has a home to live in.
    let explicit = env
        .get("HEPHAESTUS_EMBEDDER")
        .filter(|v| !v.is_empty())
        .cloned()
        .or_else(|| f.embedder.clone());
    let default =
        if cfg!(feature = "local-embeddings") && env.get("HOME").is_some_and(|h| !h.is_empty()) {
            "minilm"
        } else {
            "hashing"
        };
    let embedder = match explicit.as_deref().unwrap_or(default) {
        "hashing" => crate::memory::EmbedderChoice::Hashing,
        "openai" => {
            let key_var = f
                .api_key_env
                .clone()
                .unwrap_or_else(|| "OPENAI_API_KEY".to_string());
            crate::memory::EmbedderChoice::OpenAi(crate::memory::openai::OpenAiSettings {
                base_url: f
                    .base_url
                    .clone()
                    .unwrap_or_else(|| "https://api.openai.com/v1".to_string()),
                model: f
                    .model
                    .clone()
                    .unwrap_or_else(|| "text-embedding-3-small".to_string()),
                api_key: env.get(&key_var).filter(|k| !k.is_empty()).cloned(),
                dimensions: f.dimensions,
                timeout: std::time::Duration::from_secs(f.timeout_secs.unwrap_or(30).max(1)),
                batch_size: f.batch_size.unwrap_or(64).max(1),
                max_retries: f.max_retries.unwrap_or(4),
            })
        }
        "minilm" => {
            if !cfg!(feature = "local-embeddings") {
                bail!(
                    "memory.embedder = \"minilm\" needs a build with the `local-embeddings` feature (this one was built without it); use \"hashing\" or \"openai\", or rebuild with default features"
                );
            }
            let home = env.get("HOME").filter(|h| !h.is_empty()).with_context(|| {
                "memory.embedder = \"minilm\" keeps its model under $HOME/.cache, and HOME is not set"
            })?;
            // HF_ENDPOINT is the hub's own variable for a mirror.
            let hub = env
                .get("HF_ENDPOINT")
                .cloned()
                .or(f.model_hub_url.clone())
                .unwrap_or_else(|| "https://huggingface.co".to_string());
            crate::memory::EmbedderChoice::MiniLm {
                cache_dir: crate::memory::minilm_cache_dir(Path::new(home)),
                hub: (!hub.is_empty()).then_some(hub),
            }
        }
        other => {
            bail!("memory.embedder must be \"hashing\", \"openai\" or \"minilm\", got {other:?}")
        }
    };
    let m = crate::memory::MemorySettings {
        embedder,
        pending_retry: std::time::Duration::from_secs(
            f.pending_retry_secs.unwrap_or(30).max(1),
        ),
        dedup_threshold: f.dedup_threshold.unwrap_or(d.dedup_threshold),
        weight_similarity: f.weight_similarity.unwrap_or(d.weight_similarity),
        weight_recency: f.weight_recency.unwrap_or(d.weight_recency),
        weight_type: f.weight_type.unwrap_or(d.weight_type),
        recency_half_life_days: f
            .recency_half_life_days
            .unwrap_or(d.recency_half_life_days),
        token_rerank: f.token_rerank.unwrap_or(d.token_rerank),
        qdrant: env
            .get("HEPHAESTUS_QDRANT_URL")
            .cloned()
            .or(f.qdrant_url.clone())
            .filter(|u| !u.is_empty())
            .map(|url| -> Result<crate::memory::QdrantSettings> {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    bail!("memory.qdrant_url must start with http:// or https:// (the gRPC port, usually 6334), got {url:?}");
                }
                let key_var = f.qdrant_api_key_env.as_deref().unwrap_or("QDRANT_API_KEY");
                Ok(crate::memory::QdrantSettings {
                    url,
                    api_key: env.get(key_var).filter(|k| !k.is_empty()).cloned(),
                    collection_prefix: f
                        .qdrant_collection_prefix
                        .clone()
                        .unwrap_or_else(|| "hephaestus".to_string()),
                    timeout: std::time::Duration::from_secs(
                        f.qdrant_timeout_secs.unwrap_or(10).max(1),
                    ),
                })
            })
            .transpose()?,
    };
    if !(0.0..=1.0).contains(&m.dedup_threshold) {
        bail!(
            "memory.dedup_threshold must be between 0 and 1, got {}",
            m.dedup_threshold
        );
    }
    if m.recency_half_life_days <= 0.0 {
        bail!("memory.recency_half_life_days must be positive");
    }
    Ok(m)
}
