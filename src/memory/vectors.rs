//! Where memory vectors are searched: the seam between `Memory` and a vector store.
//!
//! A backend holds a derived copy of the vectors that SQLite stores, for one embedder's vector
//! space at a time, and answers filtered top-k queries. `Embedded` keeps them in this process
//! (the exact index of `index.rs`); `memory/qdrant.rs` keeps them in a Qdrant server. Both pass
//! the same contract tests (`tests/vector_backends.rs`).
//!
//! Backends block (a lock, or a network round trip): callers are on blocking threads.

use std::sync::RwLock;

use anyhow::{Result, bail};

use super::index::{Filter, Hit, RowMeta, VectorIndex};

/// One embedder's vector space: vectors from different spaces are never compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    pub embedder_id: String,
    pub dim: usize,
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} dimensions)", self.embedder_id, self.dim)
    }
}

/// One vector to index, with what searches filter on.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub vector: Vec<f32>,
    pub meta: RowMeta,
}

pub trait VectorBackend: Send + Sync {
    /// Names the backend for status output and errors ("embedded", "qdrant at URL").
    fn describe(&self) -> String;
    /// Makes the backend hold exactly `rows` for `space`, dropping whatever it held before.
    fn rebuild(&self, space: &Space, rows: Vec<Row>) -> Result<()>;
    /// Adds or replaces one row.
    fn upsert(&self, space: &Space, row: Row) -> Result<()>;
    /// Removes one row, if it is there.
    fn remove(&self, space: &Space, id: i64) -> Result<()>;
    /// The `k` rows most similar to `query` (cosine) that pass `filter`, best first.
    fn search(&self, space: &Space, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>>;
    /// How many rows the backend holds for `space` (0 when it holds none).
    fn count(&self, space: &Space) -> Result<usize>;
}

/// The default backend: an exact index in the coordinator's memory, rebuilt at every start.
pub struct Embedded {
    held: RwLock<Option<(Space, VectorIndex)>>,
}

impl Embedded {
    pub fn new() -> Embedded {
        Embedded {
            held: RwLock::new(None),
        }
    }

    /// Bytes held by the vectors, for the benchmark.
    pub fn memory_bytes(&self) -> usize {
        self.held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |(_, i)| i.memory_bytes())
    }
}

impl Default for Embedded {
    fn default() -> Self {
        Embedded::new()
    }
}

fn same_space<'a>(
    held: &'a Option<(Space, VectorIndex)>,
    space: &Space,
) -> Result<Option<&'a VectorIndex>> {
    match held {
        None => Ok(None),
        Some((s, index)) if s == space => Ok(Some(index)),
        Some((s, _)) => {
            bail!("the memory index holds {s}, not {space}: it is being rebuilt, retry")
        }
    }
}

impl VectorBackend for Embedded {
    fn describe(&self) -> String {
        "embedded".into()
    }

    fn rebuild(&self, space: &Space, rows: Vec<Row>) -> Result<()> {
        let mut fresh = VectorIndex::new(space.dim);
        for r in rows {
            fresh
                .upsert(r.id, r.vector, r.meta)
                .map_err(anyhow::Error::msg)?;
        }
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = Some((space.clone(), fresh));
        Ok(())
    }

    fn upsert(&self, space: &Space, row: Row) -> Result<()> {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some((space.clone(), VectorIndex::new(space.dim)));
        }
        if let Some((s, index)) = held.as_mut() {
            if s != space {
                bail!("the memory index holds {s}, not {space}: it is being rebuilt, retry");
            }
            index
                .upsert(row.id, row.vector, row.meta)
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    fn remove(&self, space: &Space, id: i64) -> Result<()> {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        if let Some((s, index)) = held.as_mut() {
            if s != space {
                bail!("the memory index holds {s}, not {space}: it is being rebuilt, retry");
            }
            index.remove(id);
        }
        Ok(())
    }

    fn search(&self, space: &Space, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        Ok(same_space(&held, space)?.map_or_else(Vec::new, |i| i.search(query, k, filter)))
    }

    fn count(&self, space: &Space) -> Result<usize> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        Ok(match held.as_ref() {
            Some((s, index)) if s == space => index.len(),
            _ => 0,
        })
    }
}
