//! Agent memory: what agents learned, saved as text in SQLite and found again by meaning.
//!
//! SQLite is the truth: every memory and its vector live there. The vector index is derived:
//! built at start from the stored vectors, extended on each save, rebuilt by `reindex` (which
//! also re-embeds memories whose vector is missing or from another embedder, so switching
//! embedders never loses a memory). A memory is committed before it is indexed.

pub mod embedder;
pub mod index;
#[cfg(feature = "local-embeddings")]
pub mod minilm;
pub mod openai;
pub mod quality;

use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::store::{MemoryRow, NewMemory, Store};
use embedder::Embedder;
use index::{Filter, RowMeta, VectorIndex};

/// Which embedder makes the vectors.
#[derive(Debug, Clone)]
pub enum EmbedderChoice {
    /// Dependency-free feature hashing; degraded quality.
    Hashing,
    /// An OpenAI-compatible endpoint.
    OpenAi(openai::OpenAiSettings),
    /// all-MiniLM-L6-v2 run in-process (feature `local-embeddings`); its files live in
    /// `cache_dir`, fetched there on first use.
    MiniLm { cache_dir: std::path::PathBuf },
}

/// Where the MiniLM model files are kept for the user whose home is `home`.
pub fn minilm_cache_dir(home: &std::path::Path) -> std::path::PathBuf {
    home.join(".cache/hephaestus/models/all-MiniLM-L6-v2")
}

/// How search results are ranked and when a memory counts as a duplicate.
#[derive(Debug, Clone)]
pub struct MemorySettings {
    pub embedder: EmbedderChoice,
    /// How often memories saved while the embedder failed are retried.
    pub pending_retry: std::time::Duration,
    /// Cosine similarity at or above which a new memory is not stored again.
    pub dedup_threshold: f32,
    pub weight_similarity: f32,
    pub weight_recency: f32,
    pub weight_type: f32,
    /// Age at which the recency part of the score halves.
    pub recency_half_life_days: f32,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            embedder: EmbedderChoice::Hashing,
            pending_retry: std::time::Duration::from_secs(30),
            dedup_threshold: 0.95,
            weight_similarity: 0.5,
            weight_recency: 0.2,
            weight_type: 0.3,
            recency_half_life_days: 14.0,
        }
    }
}

/// How much each kind of memory is worth to a later agent, before similarity and age.
pub fn type_weight(memory_type: &str) -> f32 {
    match memory_type {
        "error_fix" => 1.0,
        "warning" => 0.9,
        "decision" | "codebase_knowledge" => 0.8,
        "discovery" => 0.7,
        _ => 0.6,
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Saved {
    Stored {
        id: i64,
    },
    /// Not stored: an existing memory says the same.
    Duplicate {
        id: i64,
        similarity: f32,
    },
    /// Stored, but the embedder failed: it will be indexed later.
    Pending {
        id: i64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub memory: MemoryRow,
    pub similarity: f32,
    pub score: f32,
}

#[derive(Debug, Clone, Default)]
pub struct Query {
    pub text: String,
    pub limit: usize,
    pub memory_types: Vec<String>,
    pub min_similarity: Option<f32>,
    pub workflow_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReindexReport {
    pub embedded: usize,
    pub indexed: usize,
    pub embedder: String,
}

pub struct Memory {
    store: Store,
    embedder: Arc<dyn Embedder>,
    index: RwLock<VectorIndex>,
    settings: MemorySettings,
}

fn meta_of(m: &MemoryRow) -> RowMeta {
    RowMeta {
        memory_type: m.memory_type.clone(),
        workflow_id: m.workflow_id.clone(),
        agent_id: m.agent_id.clone(),
    }
}

impl Memory {
    /// The embedder the settings ask for.
    pub fn make_embedder(settings: &MemorySettings) -> Result<Arc<dyn Embedder>> {
        Ok(match &settings.embedder {
            EmbedderChoice::Hashing => Arc::new(embedder::HashingEmbedder::new(384)),
            EmbedderChoice::OpenAi(s) => Arc::new(openai::OpenAiEmbedder::new(s.clone())?),
            #[cfg(feature = "local-embeddings")]
            EmbedderChoice::MiniLm { cache_dir } => {
                Arc::new(minilm::MiniLmEmbedder::open(cache_dir)?)
            }
            #[cfg(not(feature = "local-embeddings"))]
            EmbedderChoice::MiniLm { .. } => anyhow::bail!(
                "the minilm embedder is not in this build: rebuild with the `local-embeddings` feature"
            ),
        })
    }

    /// Builds the index from the stored vectors of this embedder and embeds the rest.
    pub fn open(
        store: Store,
        embedder: Arc<dyn Embedder>,
        settings: MemorySettings,
    ) -> Result<Memory> {
        let memory = Memory {
            index: RwLock::new(VectorIndex::new(embedder.dim())),
            store,
            embedder,
            settings,
        };
        memory.reindex()?;
        Ok(memory)
    }

    pub fn embedder_id(&self) -> &str {
        self.embedder.id()
    }

    pub fn degraded(&self) -> bool {
        self.embedder.degraded()
    }

    /// Memories stored without a vector from the current embedder.
    pub fn pending(&self) -> usize {
        self.store
            .memories_to_embed(self.embedder.id(), self.embedder.dim())
            .map(|v| v.len())
            .unwrap_or(0)
    }

    pub fn indexed(&self) -> usize {
        self.index.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Embeds every memory without a vector from this embedder, then rebuilds the index.
    pub fn reindex(&self) -> Result<ReindexReport> {
        let (id, dim) = (self.embedder.id().to_string(), self.embedder.dim());
        let todo = self
            .store
            .memories_to_embed(&id, dim)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut embedded = 0;
        for batch in todo.chunks(32) {
            let texts: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
            let vectors = self
                .embedder
                .embed(&texts)
                .with_context(|| format!("embedding with {id}"))?;
            for ((mid, _), v) in batch.iter().zip(vectors) {
                self.store
                    .set_memory_vector(*mid, &id, &v)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                embedded += 1;
            }
        }
        let mut fresh = VectorIndex::new(dim);
        for (m, v) in self
            .store
            .memory_vectors(&id, dim)
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            fresh
                .upsert(m.id, v, meta_of(&m))
                .map_err(|e| anyhow::anyhow!(e))?;
        }
        let indexed = fresh.len();
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(ReindexReport {
            embedded,
            indexed,
            embedder: id,
        })
    }

    /// Saves a memory unless an existing one says the same (similarity ≥ the threshold).
    pub fn save(&self, new: NewMemory) -> Result<Saved> {
        let vector = match self.embedder.embed(&[new.content.as_str()]) {
            Ok(mut v) => v.pop(),
            Err(e) => {
                tracing::warn!("embedding failed, the memory is kept and indexed later: {e:#}");
                None
            }
        };
        let Some(vector) = vector else {
            let id = self
                .store
                .insert_memory(&new, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            return Ok(Saved::Pending { id });
        };
        if let Some(best) = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .search(&vector, 1, &Filter::default())
            .first()
            && best.score >= self.settings.dedup_threshold
        {
            return Ok(Saved::Duplicate {
                id: best.id,
                similarity: best.score,
            });
        }
        let id = self
            .store
            .insert_memory(&new, Some((self.embedder.id(), &vector)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let meta = RowMeta {
            memory_type: new.memory_type,
            workflow_id: new.workflow_id,
            agent_id: new.agent_id,
        };
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .upsert(id, vector, meta)
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Saved::Stored { id })
    }

    /// The best memories for `q`: similarity, recency and type combined; `min_similarity`
    /// applies to similarity alone.
    pub fn search(&self, q: &Query) -> Result<Vec<Found>> {
        let limit = q.limit.max(1);
        let vector = self
            .embedder
            .embed(&[q.text.as_str()])?
            .pop()
            .unwrap_or_default();
        let filter = Filter {
            memory_types: q.memory_types.clone(),
            workflow_id: q.workflow_id.clone(),
            agent_id: None,
        };
        // Rank a wider pool by similarity, then re-rank it with recency and type.
        let hits = self.index.read().unwrap_or_else(|e| e.into_inner()).search(
            &vector,
            (limit * 5).max(25),
            &filter,
        );
        let hits: Vec<_> = hits
            .into_iter()
            .filter(|h| q.min_similarity.is_none_or(|m| h.score >= m))
            .collect();
        let rows = self
            .store
            .get_memories(&hits.iter().map(|h| h.id).collect::<Vec<_>>())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = crate::time::now_ms();
        let s = &self.settings;
        let mut found: Vec<Found> = rows
            .into_iter()
            .zip(hits)
            .map(|(memory, hit)| {
                let age_days = ((now - memory.created_at_ms).max(0) as f32) / 86_400_000.0;
                let recency = (-std::f32::consts::LN_2 * age_days / s.recency_half_life_days).exp();
                let score = s.weight_similarity * hit.score
                    + s.weight_recency * recency
                    + s.weight_type * type_weight(&memory.memory_type);
                Found {
                    memory,
                    similarity: hit.score,
                    score,
                }
            })
            .collect();
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        found.truncate(limit);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Memory {
        let store = Store::open_in_memory().unwrap();
        Memory::open(
            store,
            Arc::new(embedder::HashingEmbedder::new(256)),
            MemorySettings::default(),
        )
        .unwrap()
    }

    fn new(content: &str, t: &str) -> NewMemory {
        NewMemory {
            content: content.into(),
            memory_type: t.into(),
            ..Default::default()
        }
    }

    #[test]
    fn saves_deduplicates_and_finds() {
        let m = memory();
        let a = m
            .save(new(
                "cargo test needs tmux installed for the agent tests",
                "learning",
            ))
            .unwrap();
        assert!(matches!(a, Saved::Stored { .. }));
        let dup = m
            .save(new(
                "cargo test needs tmux installed for the agent tests",
                "learning",
            ))
            .unwrap();
        let Saved::Duplicate { id, similarity } = dup else {
            panic!("{dup:?}")
        };
        assert_eq!(Saved::Stored { id }, a);
        assert!(similarity > 0.99);
        m.save(new(
            "the login form crashes on an empty password",
            "error_fix",
        ))
        .unwrap();
        let found = m
            .search(&Query {
                text: "empty password crash".into(),
                limit: 5,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found[0].memory.memory_type, "error_fix");
        let only = m
            .search(&Query {
                text: "tmux".into(),
                limit: 5,
                memory_types: vec!["decision".into()],
                ..Default::default()
            })
            .unwrap();
        assert!(only.is_empty());
        let strict = m
            .search(&Query {
                text: "unrelated words entirely".into(),
                limit: 5,
                min_similarity: Some(0.9),
                ..Default::default()
            })
            .unwrap();
        assert!(strict.is_empty());
    }

    #[test]
    fn switching_embedder_re_embeds_every_memory() {
        let store = Store::open_in_memory().unwrap();
        let first = Memory::open(
            store.clone(),
            Arc::new(embedder::HashingEmbedder::new(128)),
            MemorySettings::default(),
        )
        .unwrap();
        first
            .save(new("use WAL mode for sqlite", "decision"))
            .unwrap();
        first.save(new("the API moved to v2", "discovery")).unwrap();
        drop(first);
        let second = Memory::open(
            store.clone(),
            Arc::new(embedder::HashingEmbedder::new(384)),
            MemorySettings::default(),
        )
        .unwrap();
        assert_eq!(
            second.indexed(),
            2,
            "a dimension change is answered with a re-embed"
        );
        assert_eq!(
            store
                .memories_to_embed("hashing-v1-384", 384)
                .unwrap()
                .len(),
            0
        );
        let hit = second
            .search(&Query {
                text: "sqlite WAL".into(),
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(hit[0].memory.content, "use WAL mode for sqlite");
    }
}
