//! The embedded vector index: exact nearest-neighbour search over vectors kept in memory.
//! Vectors are L2-normalized on insert, so a dot product is the cosine similarity.
//!
//! A scan of 100k × 384 `f32` is 150 MB of memory traffic per query, which one core cannot read
//! in under ~15 ms. So each vector is also kept rounded to bfloat16 (half the bytes), and a search
//! runs in two passes: score every row on the bf16 copy, then re-score exactly, on the `f32`
//! copy, every row whose rough score is within twice the rounding error bound of the k-th best.
//! The error bound is proven below, so the result is exactly the `f32` top-k.
//!
//! Derived data: SQLite holds every memory and its vector; this is rebuilt from it at start.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::states::MemoryType;

/// What a search may filter on, per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta {
    pub memory_type: MemoryType,
    pub workflow_id: Option<String>,
    pub agent_id: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Any of these types; empty means all.
    pub memory_types: Vec<MemoryType>,
    pub workflow_id: Option<String>,
    pub agent_id: Option<String>,
}

impl Filter {
    fn accepts(&self, m: &RowMeta) -> bool {
        (self.memory_types.is_empty() || self.memory_types.contains(&m.memory_type))
            && self
                .workflow_id
                .as_ref()
                .is_none_or(|w| m.workflow_id.as_ref() == Some(w))
            && self
                .agent_id
                .as_ref()
                .is_none_or(|a| m.agent_id.as_ref() == Some(a))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: i64,
    pub score: f32,
}

/// Bound on |rough − exact| score for unit vectors: bf16 keeps 8 significant bits, so rounding to
/// nearest moves each stored component by at most 2^-8 of itself (relative), and by
/// Cauchy-Schwarz |Σ q·v·e| ≤ 2^-8 · Σ|q||v| ≤ 2^-8 · ‖q‖‖v‖ = 2^-8. The extra term covers the
/// f32 summation error of both passes.
const ROUGH_ERROR: f32 = 1.0 / 256.0 + 1e-4;

#[derive(Debug)]
pub struct VectorIndex {
    dim: usize,
    data: Vec<f32>,
    /// The same vectors as bfloat16 bit patterns, for the first pass.
    rough: Vec<u16>,
    ids: Vec<i64>,
    meta: Vec<RowMeta>,
    rows: HashMap<i64, usize>,
}

/// Heap entry ordered so the heap's top is the worst of the best k.
struct Worst(f32, usize);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 && self.1 == other.1
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: lower scores are "greater", so they sit on top and are evicted first.
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Rounds to the nearest bfloat16 (ties to even).
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

#[inline]
fn dot_rough(q: &[f32], v: &[u16]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (qc, vc) = (q.chunks_exact(8), v.chunks_exact(8));
    let (qr, vr) = (qc.remainder(), vc.remainder());
    for (qa, va) in qc.zip(vc) {
        for j in 0..8 {
            acc[j] += qa[j] * f32::from_bits(u32::from(va[j]) << 16);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (a, b) in qr.iter().zip(vr) {
        sum += a * f32::from_bits(u32::from(*b) << 16);
    }
    sum
}

#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorize the loop.
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for (j, slot) in acc.iter_mut().enumerate() {
            *slot += a[i * 8 + j] * b[i * 8 + j];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

impl VectorIndex {
    pub fn new(dim: usize) -> VectorIndex {
        VectorIndex {
            dim,
            data: Vec::new(),
            rough: Vec::new(),
            ids: Vec::new(),
            meta: Vec::new(),
            rows: HashMap::new(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds (or replaces) a vector; it is normalized here. A wrong dimension is refused.
    pub fn upsert(&mut self, id: i64, mut vector: Vec<f32>, meta: RowMeta) -> Result<(), String> {
        if vector.len() != self.dim {
            return Err(format!(
                "vector has {} dimensions, the index {}",
                vector.len(),
                self.dim
            ));
        }
        normalize(&mut vector);
        match self.rows.get(&id) {
            Some(&row) => {
                self.data[row * self.dim..(row + 1) * self.dim].copy_from_slice(&vector);
                for (r, x) in self.rough[row * self.dim..(row + 1) * self.dim]
                    .iter_mut()
                    .zip(&vector)
                {
                    *r = to_bf16(*x);
                }
                self.meta[row] = meta;
            }
            None => {
                self.rows.insert(id, self.ids.len());
                self.ids.push(id);
                self.meta.push(meta);
                self.data.extend_from_slice(&vector);
                self.rough.extend(vector.iter().map(|x| to_bf16(*x)));
            }
        }
        Ok(())
    }

    /// Removes a vector; true if it was there. The last row moves into its place, so the slab
    /// stays contiguous.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some(row) = self.rows.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if row != last {
            let moved = self.ids[last];
            self.ids[row] = moved;
            self.meta.swap(row, last);
            self.data
                .copy_within(last * self.dim..(last + 1) * self.dim, row * self.dim);
            self.rough
                .copy_within(last * self.dim..(last + 1) * self.dim, row * self.dim);
            self.rows.insert(moved, row);
        }
        self.ids.truncate(last);
        self.meta.truncate(last);
        self.data.truncate(last * self.dim);
        self.rough.truncate(last * self.dim);
        true
    }

    /// The `k` rows most similar to `query` that pass `filter`, best first.
    pub fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Vec<Hit> {
        if query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let mut q = query.to_vec();
        normalize(&mut q);
        // Pass 1: rough scores of every accepted row, and the k-th best of them.
        let mut rough: Vec<(f32, usize)> = Vec::with_capacity(self.ids.len());
        let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(k + 1);
        for (row, chunk) in self.rough.chunks_exact(self.dim).enumerate() {
            if !filter.accepts(&self.meta[row]) {
                continue;
            }
            let score = dot_rough(&q, chunk);
            rough.push((score, row));
            if heap.len() < k {
                heap.push(Worst(score, row));
            } else if heap.peek().is_some_and(|w| score > w.0) {
                heap.pop();
                heap.push(Worst(score, row));
            }
        }
        if heap.len() < k {
            // Fewer rows than k: all of them, exactly scored.
            return self.rescore(&q, rough.into_iter().map(|r| r.1), k);
        }
        // Every true top-k row has a rough score ≥ (k-th rough score) − 2·ROUGH_ERROR.
        let cutoff = heap.peek().map(|w| w.0).unwrap_or(f32::NEG_INFINITY) - 2.0 * ROUGH_ERROR;
        self.rescore(
            &q,
            rough.into_iter().filter(|r| r.0 >= cutoff).map(|r| r.1),
            k,
        )
    }

    /// Pass 2: exact `f32` scores of the candidate rows, best `k` first.
    fn rescore(&self, q: &[f32], rows: impl Iterator<Item = usize>, k: usize) -> Vec<Hit> {
        let mut hits: Vec<Hit> = rows
            .map(|row| Hit {
                id: self.ids[row],
                score: dot(q, &self.data[row * self.dim..(row + 1) * self.dim]),
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        hits.truncate(k);
        hits
    }

    /// Bytes held by the vectors (both copies).
    pub fn memory_bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>() + self.rough.len() * std::mem::size_of::<u16>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(t: &str, w: Option<&str>) -> RowMeta {
        RowMeta {
            memory_type: t.parse().unwrap(),
            workflow_id: w.map(String::from),
            agent_id: None,
        }
    }

    #[test]
    fn finds_the_nearest_and_honours_filters() {
        let mut idx = VectorIndex::new(3);
        idx.upsert(1, vec![1.0, 0.0, 0.0], meta("learning", Some("w1")))
            .unwrap();
        idx.upsert(2, vec![0.9, 0.1, 0.0], meta("decision", Some("w2")))
            .unwrap();
        idx.upsert(3, vec![0.0, 1.0, 0.0], meta("learning", Some("w1")))
            .unwrap();
        let hits = idx.search(&[1.0, 0.0, 0.0], 2, &Filter::default());
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![1, 2]);
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        let only_w1 = Filter {
            workflow_id: Some("w1".into()),
            ..Default::default()
        };
        assert_eq!(
            idx.search(&[1.0, 0.0, 0.0], 2, &only_w1)
                .iter()
                .map(|h| h.id)
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
        let decisions = Filter {
            memory_types: vec![crate::states::MemoryType::Decision],
            ..Default::default()
        };
        assert_eq!(idx.search(&[0.0, 1.0, 0.0], 5, &decisions)[0].id, 2);
        assert!(idx.upsert(4, vec![1.0], meta("learning", None)).is_err());
        idx.upsert(1, vec![0.0, 0.0, 1.0], meta("learning", None))
            .unwrap();
        assert_eq!(idx.len(), 3, "an upsert replaces");
        assert_eq!(idx.search(&[0.0, 0.0, 1.0], 1, &Filter::default())[0].id, 1);
    }

    proptest! {
        /// The heap-based top-k equals a full sort of all scores.
        #[test]
        fn top_k_equals_a_full_sort(rows in proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, 8), 1..60),
                                     query in proptest::collection::vec(-1.0f32..1.0, 8), k in 1usize..10) {
            // (The two-pass search must return exactly the f32 top-k, near-ties included.)
            let mut idx = VectorIndex::new(8);
            for (i, r) in rows.iter().enumerate() {
                idx.upsert(i as i64, r.clone(), meta("learning", None)).unwrap();
            }
            let got: Vec<i64> = idx.search(&query, k, &Filter::default()).iter().map(|h| h.id).collect();
            let mut q = query.clone();
            normalize(&mut q);
            let mut all: Vec<(f32, i64)> = rows.iter().enumerate().map(|(i, r)| {
                let mut r = r.clone();
                normalize(&mut r);
                (dot(&q, &r), i as i64)
            }).collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let want: Vec<i64> = all.iter().take(k).map(|p| p.1).collect();
            prop_assert_eq!(got, want);
        }

        /// After removals (each moving the last row into the hole), search equals a full sort
        /// of the rows that are left.
        #[test]
        fn removal_keeps_search_exact(rows in proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, 8), 1..40),
                                      gone in proptest::collection::vec(proptest::bool::ANY, 40),
                                      query in proptest::collection::vec(-1.0f32..1.0, 8)) {
            let mut idx = VectorIndex::new(8);
            for (i, r) in rows.iter().enumerate() {
                idx.upsert(i as i64, r.clone(), meta("learning", None)).unwrap();
            }
            for (i, _) in rows.iter().enumerate().filter(|(i, _)| gone[*i]) {
                prop_assert!(idx.remove(i as i64));
                prop_assert!(!idx.remove(i as i64));
            }
            let kept: Vec<usize> = (0..rows.len()).filter(|i| !gone[*i]).collect();
            prop_assert_eq!(idx.len(), kept.len());
            let k = rows.len();
            let got: Vec<i64> = idx.search(&query, k, &Filter::default()).iter().map(|h| h.id).collect();
            let mut q = query.clone();
            normalize(&mut q);
            let mut all: Vec<(f32, i64)> = kept.iter().map(|&i| {
                let mut r = rows[i].clone();
                normalize(&mut r);
                (dot(&q, &r), i as i64)
            }).collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let want: Vec<i64> = all.iter().map(|p| p.1).collect();
            prop_assert_eq!(got, want);
        }
    }
}
