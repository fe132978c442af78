//! Memories: the text, who saved it and when, and the vector (little-endian f32) with the id of
//! the embedder that made it.

use rusqlite::params;
use serde::Serialize;

use super::{OpResult, Store, json_list};
use crate::time::now_ms;

pub const MEMORY_TYPES: [&str; 6] = [
    "error_fix",
    "discovery",
    "decision",
    "learning",
    "warning",
    "codebase_knowledge",
];

#[derive(Debug, Clone, Default)]
pub struct NewMemory {
    pub content: String,
    pub memory_type: String,
    pub tags: Vec<String>,
    pub related_files: Vec<String>,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    pub workflow_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemoryRow {
    pub id: i64,
    pub content: String,
    pub memory_type: String,
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
    /// Stores a memory, with its vector when one is given (else it is pending).
    pub fn insert_memory(&self, m: &NewMemory, vector: Option<(&str, &[f32])>) -> OpResult<i64> {
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO memories (content, memory_type, tags, related_files, agent_id, task_id, workflow_id,
                embedder_id, dim, vector, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            m.content,
            m.memory_type,
            serde_json::to_string(&m.tags)?,
            serde_json::to_string(&m.related_files)?,
            m.agent_id,
            m.task_id,
            m.workflow_id,
            vector.map(|v| v.0),
            vector.map(|v| v.1.len() as i64),
            vector.map(|v| to_blob(v.1)),
            now_ms(),
        ])?;
        Ok(conn.last_insert_rowid())
    }

    pub fn set_memory_vector(&self, id: i64, embedder_id: &str, vector: &[f32]) -> OpResult<()> {
        self.lock().execute(
            "UPDATE memories SET embedder_id = ?2, dim = ?3, vector = ?4 WHERE id = ?1",
            params![id, embedder_id, vector.len() as i64, to_blob(vector)],
        )?;
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

    /// How many memories have a vector from `embedder_id` of `dim` dimensions, and how many
    /// memories there are in all.
    pub fn count_memory_vectors(&self, embedder_id: &str, dim: usize) -> OpResult<(usize, usize)> {
        let conn = self.lock();
        let (with, all): (i64, i64) = conn.prepare_cached(
            "SELECT COUNT(*) FILTER (WHERE embedder_id = ?1 AND dim = ?2), COUNT(*) FROM memories",
        )?
        .query_row(params![embedder_id, dim as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((with as usize, all as usize))
    }

    /// Memories whose vector is missing or from another embedder: (id, content).
    pub fn memories_to_embed(&self, embedder_id: &str, dim: usize) -> OpResult<Vec<(i64, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, content FROM memories WHERE embedder_id IS NULL OR embedder_id != ?1 OR dim != ?2 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![embedder_id, dim as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
