//! Retrieval quality on a labelled set: each query has one relevant memory. Reports top-1
//! accuracy and mean reciprocal rank for an embedder, through the same `Memory` search agents use.

use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::embedder::Embedder;
use super::{Memory, MemorySettings, Query};
use crate::store::{NewMemory, Store};

#[derive(Debug, Deserialize)]
pub struct LabelledSet {
    pub memories: Vec<LabelledMemory>,
    pub queries: Vec<LabelledQuery>,
}

#[derive(Debug, Deserialize)]
pub struct LabelledMemory {
    pub id: String,
    pub memory_type: crate::states::MemoryType,
    pub content: String,
}

#[derive(Debug, Deserialize)]
pub struct LabelledQuery {
    pub query: String,
    pub relevant: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Quality {
    pub top1: f64,
    pub mrr: f64,
    pub queries: usize,
}

pub fn load(path: &std::path::Path) -> Result<LabelledSet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("invalid labelled set {}", path.display()))
}

/// Ranks by relevance alone (recency and type weights off), so the figure measures the embedder
/// and, with `token_rerank`, the token re-ranking (a no-op for embedders without token vectors).
pub fn evaluate(
    set: &LabelledSet,
    embedder: Arc<dyn Embedder>,
    token_rerank: bool,
) -> Result<Quality> {
    evaluate_among(set, embedder, token_rerank, &[])
}

/// Like `evaluate`, with `filler` memories (of type learning) stored too: whether the right
/// memory still comes first in a large store, whose filler also shifts the token frequencies.
pub fn evaluate_among(
    set: &LabelledSet,
    embedder: Arc<dyn Embedder>,
    token_rerank: bool,
    filler: &[String],
) -> Result<Quality> {
    let store = Store::open_in_memory()?;
    let settings = MemorySettings {
        weight_recency: 0.0,
        weight_type: 0.0,
        weight_similarity: 1.0,
        dedup_threshold: 1.01,
        token_rerank,
        ..Default::default()
    };
    let memory = Memory::open(
        store,
        embedder,
        Box::new(super::vectors::Embedded::new()),
        settings,
    )?;
    for text in filler {
        memory.save(NewMemory {
            content: text.clone(),
            memory_type: crate::states::MemoryType::Learning,
            ..Default::default()
        })?;
    }
    let mut ids = std::collections::HashMap::new();
    for m in &set.memories {
        let saved = memory.save(NewMemory {
            content: m.content.clone(),
            memory_type: m.memory_type,
            ..Default::default()
        })?;
        let super::Saved::Stored { id } = saved else {
            anyhow::bail!("memory {} was not stored: {saved:?}", m.id)
        };
        ids.insert(id, m.id.clone());
    }
    let (mut top1, mut rr) = (0usize, 0f64);
    for q in &set.queries {
        let found = memory.search(&Query {
            text: q.query.clone(),
            limit: set.memories.len(),
            ..Default::default()
        })?;
        if let Some(rank) = found
            .iter()
            .position(|f| ids.get(&f.memory.id) == Some(&q.relevant))
        {
            rr += 1.0 / (rank as f64 + 1.0);
            if rank == 0 {
                top1 += 1;
            }
        }
    }
    let n = set.queries.len().max(1) as f64;
    Ok(Quality {
        top1: top1 as f64 / n,
        mrr: rr / n,
        queries: set.queries.len(),
    })
}
