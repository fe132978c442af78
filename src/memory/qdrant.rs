//! The Qdrant memory backend (`memory.qdrant_url`): vectors searched in a Qdrant server over
//! gRPC, so a team's memory can outgrow one machine.
//!
//! One collection per embedder (`<prefix>_<embedder id>`, cosine distance), so vectors of two
//! embedders never meet. Points carry the memory's SQLite id as their id and, as payload, what
//! searches filter on (`memory_type`, `workflow_id`, `agent_id`, each with a keyword index). The
//! text stays in SQLite, which remains the truth: a collection can always be rebuilt from it.
//!
//! The client is async (tonic); `Memory` is called on blocking threads, so this backend owns a
//! one-thread runtime and blocks on it.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter as QFilter, PointStruct, QueryPointsBuilder,
    UpsertPointsBuilder, Value, VectorParamsBuilder, point_id::PointIdOptions,
};

use super::QdrantSettings;
use super::index::{Filter, Hit};
use super::vectors::{Row, Space, VectorBackend};

/// Points per upsert request while rebuilding: well under gRPC's default 4 MiB message limit
/// at 384 dimensions.
const UPSERT_BATCH: usize = 256;
const FILTER_FIELDS: [&str; 3] = ["memory_type", "workflow_id", "agent_id"];

pub struct QdrantBackend {
    client: Qdrant,
    settings: QdrantSettings,
    runtime: tokio::runtime::Runtime,
    /// Collections known to exist, so a save costs one round trip, not two. A collection
    /// dropped behind our back is noticed by the upsert that fails, and created again.
    known: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl QdrantBackend {
    /// Builds the client; the first request connects.
    pub fn connect(settings: QdrantSettings) -> Result<QdrantBackend> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("qdrant-client")
            .enable_all()
            .build()
            .context("starting the Qdrant client's runtime")?;
        let client = {
            let _inside = runtime.enter();
            Qdrant::from_url(&settings.url)
                .api_key(settings.api_key.clone())
                .timeout(settings.timeout)
                .connect_timeout(settings.timeout)
                // Checking the server's version costs a round trip at start and only warns.
                .skip_compatibility_check()
                .build()
                .with_context(|| format!("configuring the Qdrant client for {}", settings.url))?
        };
        Ok(QdrantBackend {
            client,
            settings,
            runtime,
            known: Default::default(),
        })
    }

    /// The collection that holds `space`. Qdrant allows letters, digits, `-` and `_` in names.
    pub fn collection(&self, space: &Space) -> String {
        let id: String = space
            .embedder_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}_{id}_{}", self.settings.collection_prefix, space.dim)
    }

    fn block<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, qdrant_client::QdrantError>>,
    ) -> Result<T> {
        self.runtime
            .block_on(f)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("qdrant at {}: {what}", self.settings.url))
    }

    async fn create(&self, name: &str, dim: usize) -> Result<(), qdrant_client::QdrantError> {
        self.client
            .create_collection(
                CreateCollectionBuilder::new(name)
                    .vectors_config(VectorParamsBuilder::new(dim as u64, Distance::Cosine)),
            )
            .await?;
        for field in FILTER_FIELDS {
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword)
                        .wait(true),
                )
                .await?;
        }
        Ok(())
    }

    fn ensure_collection(&self, space: &Space) -> Result<String> {
        let name = self.collection(space);
        if self.known().contains(&name) {
            return Ok(name);
        }
        let exists = self.block(
            "checking a collection",
            self.client.collection_exists(&name),
        )?;
        if !exists {
            self.block("creating a collection", self.create(&name, space.dim))?;
        }
        self.known().insert(name.clone());
        Ok(name)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn point(row: Row) -> Result<PointStruct> {
    let id = u64::try_from(row.id).map_err(|_| anyhow!("memory id {} is negative", row.id))?;
    let mut payload: HashMap<String, Value> = HashMap::new();
    payload.insert("memory_type".into(), row.meta.memory_type.as_str().into());
    if let Some(w) = row.meta.workflow_id {
        payload.insert("workflow_id".into(), w.into());
    }
    if let Some(a) = row.meta.agent_id {
        payload.insert("agent_id".into(), a.into());
    }
    Ok(PointStruct::new(id, row.vector, payload))
}

fn filter(f: &Filter) -> Option<QFilter> {
    let mut must = Vec::new();
    if !f.memory_types.is_empty() {
        let types: Vec<String> = f.memory_types.iter().map(|t| t.to_string()).collect();
        must.push(Condition::matches("memory_type", types));
    }
    // One-element keyword lists: a lone string with a space would be matched as full text.
    if let Some(w) = &f.workflow_id {
        must.push(Condition::matches("workflow_id", vec![w.clone()]));
    }
    if let Some(a) = &f.agent_id {
        must.push(Condition::matches("agent_id", vec![a.clone()]));
    }
    (!must.is_empty()).then(|| QFilter::must(must))
}

impl VectorBackend for QdrantBackend {
    fn describe(&self) -> String {
        format!("qdrant at {}", self.settings.url)
    }

    fn rebuild(&self, space: &Space, rows: Vec<Row>) -> Result<()> {
        let name = self.collection(space);
        if self.block(
            "checking a collection",
            self.client.collection_exists(&name),
        )? {
            self.block(
                "dropping a collection to rebuild it",
                self.client.delete_collection(&name),
            )?;
        }
        self.known().remove(&name);
        self.block("creating a collection", self.create(&name, space.dim))?;
        self.known().insert(name.clone());
        let points = rows.into_iter().map(point).collect::<Result<Vec<_>>>()?;
        for batch in points.chunks(UPSERT_BATCH) {
            self.block(
                "upserting points",
                self.client
                    .upsert_points(UpsertPointsBuilder::new(&name, batch.to_vec()).wait(true)),
            )?;
        }
        Ok(())
    }

    fn upsert(&self, space: &Space, row: Row) -> Result<()> {
        let point = point(row)?;
        let name = self.ensure_collection(space)?;
        let upsert = |name: &str| {
            self.runtime.block_on(
                self.client
                    .upsert_points(UpsertPointsBuilder::new(name, vec![point.clone()]).wait(true)),
            )
        };
        let result = match upsert(&name) {
            Err(e) if is_not_found(&e) => {
                self.known().remove(&name);
                let name = self.ensure_collection(space)?;
                upsert(&name)
            }
            other => other,
        };
        result
            .map(drop)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("qdrant at {}: upserting a point", self.settings.url))
    }

    fn remove(&self, space: &Space, id: i64) -> Result<()> {
        let Ok(point) = u64::try_from(id) else {
            return Ok(()); // never stored: point ids are memory ids, which are positive
        };
        let name = self.collection(space);
        match self.runtime.block_on(
            self.client.delete_points(
                DeletePointsBuilder::new(&name)
                    .points(vec![point])
                    .wait(true),
            ),
        ) {
            // No collection yet: nothing to remove.
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(anyhow!("{e}"))
                .with_context(|| format!("qdrant at {}: deleting a point", self.settings.url)),
        }
    }

    fn search(&self, space: &Space, query: &[f32], k: usize, f: &Filter) -> Result<Vec<Hit>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let name = self.collection(space);
        let mut request = QueryPointsBuilder::new(&name)
            .query(query.to_vec())
            .limit(k as u64)
            .with_payload(false);
        if let Some(f) = filter(f) {
            request = request.filter(f);
        }
        let found = match self.runtime.block_on(self.client.query(request)) {
            Ok(found) => found,
            // A collection that does not exist yet holds nothing.
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => {
                return Err(anyhow!("{e}"))
                    .with_context(|| format!("qdrant at {}: searching", self.settings.url));
            }
        };
        found
            .result
            .into_iter()
            .map(|p| {
                let id = match p.id.and_then(|id| id.point_id_options) {
                    Some(PointIdOptions::Num(n)) => i64::try_from(n).ok(),
                    _ => None,
                };
                id.map(|id| Hit { id, score: p.score }).ok_or_else(|| {
                    anyhow!("collection {name} holds a point whose id is not a memory id")
                })
            })
            .collect()
    }

    fn count(&self, space: &Space) -> Result<usize> {
        let name = self.collection(space);
        match self.runtime.block_on(
            self.client
                .count(CountPointsBuilder::new(&name).exact(true)),
        ) {
            Ok(r) => Ok(r.result.map_or(0, |c| c.count as usize)),
            Err(e) if is_not_found(&e) => Ok(0),
            Err(e) => Err(anyhow!("{e}"))
                .with_context(|| format!("qdrant at {}: counting points", self.settings.url)),
        }
    }
}

fn is_not_found(e: &qdrant_client::QdrantError) -> bool {
    matches!(e, qdrant_client::QdrantError::ResponseError { status } if status.code() == tonic::Code::NotFound)
}
