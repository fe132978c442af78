//! Memories: the text, who saved it and when, and the vector (little-endian f32) with the id of
//! the embedder that made it, plus that embedder's token vectors when it has them.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{OpResult, Store, json_list};
use crate::states::MemoryType;
use crate::time::now_ms;

#[derive(Debug, Clone, Default)]
pub struct NewMemory {
    pub content: String,
    pub memory_type: MemoryType,
    pub tags: Vec<String>,
    pub related_files: Vec<String>,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    pub workflow_id: Option<String>,
    /// When it was learned; now when None (an imported memory keeps its own).
    pub created_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryRow {
    pub id: i64,
    pub content: String,
    pub memory_type: MemoryType,
    pub tags: Vec<String>,
    pub related_files: Vec<String>,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    pub workflow_id: Option<String>,
    pub embedder_id: Option<String>,
    pub created_at_ms: i64,
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// What one embedder made of a memory. The token vectors, when given, are from the same embedder:
/// a row never mixes two.
#[derive(Debug, Clone, Copy)]
pub struct MemoryVectors<'a> {
    pub embedder_id: &'a str,
    pub vector: &'a [f32],
    pub tokens: Option<TokenBlobs<'a>>,
}

/// A memory's token vectors as stored: the token ids as little-endian u32, and the vectors in
/// the encoding `memory::tokens` writes and reads (the store keeps the bytes as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBlobs<'a> {
    pub ids: &'a [u8],
    pub vectors: &'a [u8],
}

/// A memory's token vector blobs as read back: (ids, vectors).
pub type StoredTokens = (Vec<u8>, Vec<u8>);

/// What `delete_memory` removed, as far as the indexes care.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedMemory {
    pub embedder_id: Option<String>,
    pub dim: Option<usize>,
    pub token_ids: Option<Vec<u32>>,
}

const COLUMNS: &str = "id, content, memory_type, tags, related_files, agent_id, task_id, workflow_id, embedder_id, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryRow> {
    Ok(MemoryRow {
        id: r.get(0)?,
        content: r.get(1)?,
        memory_type: r.get(2)?,
        tags: json_list(&r.get::<_, String>(3)?),
        related_files: json_list(&r.get::<_, String>(4)?),
        agent_id: r.get(5)?,
        task_id: r.get(6)?,
        workflow_id: r.get(7)?,
        embedder_id: r.get(8)?,
        created_at_ms: r.get(9)?,
    })
}

impl Store {
    /// Stores a memory, with its vectors when given (else it is pending).
    pub fn insert_memory(
        &self,
        m: &NewMemory,
        vectors: Option<MemoryVectors<'_>>,
    ) -> OpResult<i64> {
        let conn = self.lock();
        let tokens = vectors.and_then(|v| v.tokens);
        conn.prepare_cached(
            "INSERT INTO memories (content, memory_type, tags, related_files, agent_id, task_id, workflow_id,
                embedder_id, dim, vector, created_at, token_ids, token_vectors)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?
        .execute(params![
            m.content,
            m.memory_type,
            serde_json::to_string(&m.tags)?,
            serde_json::to_string(&m.related_files)?,
            m.agent_id,
            m.task_id,
            m.workflow_id,
            vectors.map(|v| v.embedder_id),
            vectors.map(|v| v.vector.len() as i64),
            vectors.map(|v| to_blob(v.vector)),
            m.created_at_ms.unwrap_or_else(now_ms),
            tokens.map(|t| t.ids),
            tokens.map(|t| t.vectors),
        ])?;
        Ok(conn.last_insert_rowid())
    }

    /// Replaces a memory's vectors (and clears token vectors of another embedder).
    pub fn set_memory_vector(&self, id: i64, vectors: MemoryVectors<'_>) -> OpResult<()> {
        self.lock().execute(
            "UPDATE memories SET embedder_id = ?2, dim = ?3, vector = ?4, token_ids = ?5, token_vectors = ?6
             WHERE id = ?1",
            params![
                id,
                vectors.embedder_id,
                vectors.vector.len() as i64,
                to_blob(vectors.vector),
                vectors.tokens.map(|t| t.ids),
                vectors.tokens.map(|t| t.vectors),
            ],
        )?;
        Ok(())
    }

    /// The token vector blobs (ids, vectors) from `embedder_id` of those of `ids` that have them.
    pub fn memory_tokens(
        &self,
        ids: &[i64],
        embedder_id: &str,
    ) -> OpResult<HashMap<i64, StoredTokens>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT token_ids, token_vectors FROM memories
             WHERE id = ?1 AND embedder_id = ?2 AND token_ids IS NOT NULL AND token_vectors IS NOT NULL",
        )?;
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            let blobs = stmt
                .query_map(params![id, embedder_id], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?
                .next()
                .transpose()?;
            if let Some(blobs) = blobs {
                out.insert(*id, blobs);
            }
        }
        Ok(out)
    }

    /// Calls `each` with the token ids of every memory that has token vectors from
    /// `embedder_id` (for document frequencies), without holding them all at once.
    pub fn each_memory_token_ids(
        &self,
        embedder_id: &str,
        mut each: impl FnMut(&[u32]),
    ) -> OpResult<()> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT token_ids FROM memories WHERE embedder_id = ?1 AND token_ids IS NOT NULL",
        )?;
        let mut rows = stmt.query(params![embedder_id])?;
        let mut ids = Vec::new();
        while let Some(r) = rows.next()? {
            let blob = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            ids.clear();
            ids.extend(
                blob.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            each(&ids);
        }
        Ok(())
    }

    pub fn get_memories(&self, ids: &[i64]) -> OpResult<Vec<MemoryRow>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM memories WHERE id = ?1"))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(m) = stmt.query_map(params![id], row)?.next() {
                out.push(m?);
            }
        }
        Ok(out)
    }

    /// Every memory, oldest first.
    pub fn all_memories(&self) -> OpResult<Vec<MemoryRow>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM memories ORDER BY id"))?;
        let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Newest first.
    pub fn list_memories(&self, limit: usize) -> OpResult<Vec<MemoryRow>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM memories ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt
            .query_map(params![limit as i64], row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every memory with a vector from `embedder_id` of `dim` dimensions: what the index is
    /// built from.
    pub fn memory_vectors(
        &self,
        embedder_id: &str,
        dim: usize,
    ) -> OpResult<Vec<(MemoryRow, Vec<f32>)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS}, vector FROM memories WHERE embedder_id = ?1 AND dim = ?2 ORDER BY id"
        ))?;
        let rows = stmt
            .query_map(params![embedder_id, dim as i64], |r| {
                Ok((row(r)?, from_blob(&r.get::<_, Vec<u8>>(10)?)))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// How many memories are embedded by `embedder_id` (a vector of `dim` dimensions, and token
    /// vectors too when `with_tokens`), and how many memories there are in all.
    pub fn count_memory_vectors(
        &self,
        embedder_id: &str,
        dim: usize,
        with_tokens: bool,
    ) -> OpResult<(usize, usize)> {
        let conn = self.lock();
        let (with, all): (i64, i64) = conn.prepare_cached(
            "SELECT COUNT(*) FILTER (WHERE embedder_id = ?1 AND dim = ?2 AND (NOT ?3 OR token_ids IS NOT NULL)),
                    COUNT(*)
             FROM memories",
        )?
        .query_row(params![embedder_id, dim as i64, with_tokens], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok((with as usize, all as usize))
    }

    /// Deletes a memory. Returns what the indexes need to forget it: the embedder of its vector
    /// (if any) and its token ids (if any); None if there was no such memory.
    pub fn delete_memory(&self, id: i64) -> OpResult<Option<DeletedMemory>> {
        let conn = self.lock();
        let gone = conn
            .prepare_cached(
                "DELETE FROM memories WHERE id = ?1 RETURNING embedder_id, dim, token_ids",
            )?
            .query_row(params![id], |r| {
                Ok(DeletedMemory {
                    embedder_id: r.get(0)?,
                    dim: r.get::<_, Option<i64>>(1)?.map(|d| d as usize),
                    token_ids: r.get::<_, Option<Vec<u8>>>(2)?.map(|b| {
                        b.chunks_exact(4)
                            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect()
                    }),
                })
            })
            .optional()?;
        Ok(gone)
    }

    /// Memories not embedded by `embedder_id` (see `count_memory_vectors`): (id, content).
    pub fn memories_to_embed(
        &self,
        embedder_id: &str,
        dim: usize,
        with_tokens: bool,
    ) -> OpResult<Vec<(i64, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, content FROM memories
             WHERE embedder_id IS NULL OR embedder_id != ?1 OR dim != ?2 OR (?3 AND token_ids IS NULL)
             ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![embedder_id, dim as i64, with_tokens], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
