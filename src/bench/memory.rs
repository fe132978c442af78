//! `hephaestus bench memory`: top-5 search latency on the embedded index at 10k and 100k
//! memories (exact results), a full `search` (embed the query, scan, rank, read the rows), a
//! save, embedding throughput, and the process's memory with 100k memories loaded.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::{rss_mib, stats, us};
use crate::memory::embedder::{Embedder, HashingEmbedder};
use crate::memory::index::{Filter, RowMeta, VectorIndex};
use crate::memory::{Memory, MemorySettings, Query};
use crate::store::{NewMemory, Store};

const DIM: usize = 384;
const WORDS: &[&str] = &[
    "sqlite",
    "migration",
    "login",
    "password",
    "token",
    "worktree",
    "branch",
    "merge",
    "conflict",
    "tmux",
    "pane",
    "agent",
    "task",
    "queue",
    "priority",
    "schema",
    "index",
    "cache",
    "timeout",
    "retry",
    "socket",
    "shim",
    "test",
    "build",
    "release",
    "config",
    "parser",
    "yaml",
    "phase",
    "workflow",
    "memory",
    "vector",
    "search",
    "embed",
    "deploy",
    "docker",
    "rust",
    "python",
    "frontend",
    "backend",
    "api",
    "endpoint",
    "auth",
    "session",
    "cookie",
];

/// Deterministic pseudo-random sentences (xorshift), so runs compare.
/// Memories stored besides the labelled set when measuring quality in a larger store.
#[cfg(feature = "local-embeddings")]
const FILLER: u64 = 2_000;

fn sentence(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..12)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            WORDS[(x % WORDS.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn index_of(n: usize, embedder: &HashingEmbedder) -> Result<VectorIndex> {
    let mut idx = VectorIndex::new(DIM);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let texts: Vec<String> = chunk.iter().map(|i| sentence(*i as u64)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        for (i, v) in chunk.iter().zip(embedder.embed(&refs)?) {
            let meta = RowMeta {
                memory_type: crate::states::MemoryType::Learning,
                workflow_id: None,
                agent_id: None,
            };
            idx.upsert(*i as i64, v, meta).map_err(anyhow::Error::msg)?;
        }
    }
    Ok(idx)
}

/// Times `saves` saves of fresh sentences (from `seed` on), then `searches` full searches.
fn saves_and_searches(
    memory: &Memory,
    seed: u64,
    saves: u64,
    searches: u64,
) -> Result<(super::Stats, super::Stats)> {
    let mut saved = Vec::new();
    for i in 0..saves {
        let t = Instant::now();
        memory.save(NewMemory {
            content: sentence(seed + i),
            memory_type: crate::states::MemoryType::Learning,
            ..Default::default()
        })?;
        saved.push(t.elapsed());
    }
    let mut searched = Vec::new();
    for i in 0..searches {
        let q = Query {
            text: sentence(seed + 2_000_000 + i),
            limit: 5,
            ..Default::default()
        };
        let t = Instant::now();
        memory.search(&q)?;
        searched.push(t.elapsed());
    }
    Ok((stats(saved), stats(searched)))
}

pub fn run(dir: &Path) -> Result<()> {
    let embedder = HashingEmbedder::new(DIM);
    let queries: Vec<Vec<f32>> = (0..200u64)
        .map(|i| {
            embedder
                .embed(&[&sentence(1_000_000 + i)])
                .map(|mut v| v.remove(0))
        })
        .collect::<Result<_>>()?;
    let rss_before = rss_mib(std::process::id());
    let mut rows = Vec::new();
    let mut rss_loaded = None;
    for n in [10_000usize, 100_000] {
        eprintln!("index of {n} × {DIM}…");
        let idx = index_of(n, &embedder)?;
        let mut samples = Vec::new();
        for q in queries.iter().cycle().take(1000) {
            let t = Instant::now();
            let hits = idx.search(q, 5, &Filter::default());
            samples.push(t.elapsed());
            assert_eq!(hits.len(), 5);
        }
        let filtered = Filter {
            memory_types: vec![crate::states::MemoryType::Decision],
            ..Default::default()
        };
        let t = Instant::now();
        idx.search(&queries[0], 5, &filtered);
        rows.push((n, stats(samples), t.elapsed(), idx.memory_bytes()));
        // Measured while this index is alive: the last one is the 100k index.
        rss_loaded = rss_mib(std::process::id());
    }

    eprintln!("embedding throughput…");
    let texts: Vec<String> = (0..2000u64).map(sentence).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    embedder.embed(&refs)?;
    let batched = refs.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for r in &refs {
        embedder.embed(&[r])?;
    }
    let single = refs.len() as f64 / t.elapsed().as_secs_f64();

    eprintln!("saves and full searches on a SQLite file with 10,000 memories…");
    let store = Store::open(&dir.join("memory-bench.db"))?;
    let memory = Memory::open(
        store,
        Arc::new(HashingEmbedder::new(DIM)),
        Box::new(crate::memory::vectors::Embedded::new()),
        MemorySettings::default(),
    )?;
    let (saves, searches) = saves_and_searches(&memory, 0, 10_000, 500)?;

    let set_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/memory_quality.json");
    let quality = crate::memory::quality::load(&set_path).and_then(|set| {
        crate::memory::quality::evaluate(&set, Arc::new(HashingEmbedder::new(DIM)), true)
    });

    println!("| measurement | p50 | p99 | note |");
    println!("|---|---|---|---|");
    for (n, s, filtered, bytes) in &rows {
        println!(
            "| exact top-5, {n} × {DIM} (one core) | {} | {} | vectors {:.0} MiB (f32 + bf16); with a type filter {} |",
            us(s.p50),
            us(s.p99),
            *bytes as f64 / 1_048_576.0,
            us(*filtered)
        );
    }
    println!(
        "| search_memories path, 10k (embed query, scan, rank, read rows) | {} | {} | |",
        us(searches.p50),
        us(searches.p99)
    );
    println!(
        "| save with duplicate check (committed write), up to 10k | {} | {} | hashing embedder |",
        us(saves.p50),
        us(saves.p99)
    );
    println!(
        "| embedding throughput, hashing embedder | {batched:.0} texts/s batched | {single:.0} texts/s one by one | |"
    );
    let mib = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} MiB"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "| process RSS before → with the 100k index loaded | {} → {} | | |",
        mib(rss_before),
        mib(rss_loaded)
    );
    match quality {
        Ok(q) => println!(
            "| retrieval quality, hashing embedder ({} labelled queries) | top-1 {:.0}% | MRR {:.2} | relevance only |",
            q.queries,
            q.top1 * 100.0,
            q.mrr
        ),
        Err(e) => println!("| retrieval quality | n/a | | {e:#} |"),
    }
    #[cfg(feature = "local-embeddings")]
    minilm_rows(dir, &set_path)?;
    Ok(())
}

/// The same paths with the local model, when its files are in the cache (this never downloads).
#[cfg(feature = "local-embeddings")]
fn minilm_rows(dir: &Path, set_path: &Path) -> Result<()> {
    use crate::memory::minilm;
    let Some(home) = std::env::var_os("HOME") else {
        println!("| MiniLM | n/a | | HOME is not set |");
        return Ok(());
    };
    let cache = crate::memory::minilm_cache_dir(Path::new(&home));
    if !minilm::is_cached(&cache) {
        println!(
            "| MiniLM | n/a | | no model in {} (a coordinator fetches it on first start) |",
            cache.display()
        );
        return Ok(());
    }
    eprintln!("MiniLM: load, throughput, saves and searches…");
    let rss_before = rss_mib(std::process::id());
    let t = Instant::now();
    let model = Arc::new(minilm::MiniLmEmbedder::load(&cache)?);
    let load = t.elapsed();
    let rss_loaded = rss_mib(std::process::id());
    let texts: Vec<String> = (0..256u64).map(sentence).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    model.embed(&refs)?;
    let batched = refs.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for r in &refs[..64] {
        model.embed(&[r])?;
    }
    let single = 64.0 / t.elapsed().as_secs_f64();

    // The same saves and searches with and without token re-ranking, one after the other, so
    // their ratio is measured under the same load.
    let mut runs = Vec::new();
    for token_rerank in [false, true] {
        let path = dir.join(format!("memory-bench-minilm-{token_rerank}.db"));
        let _ = std::fs::remove_file(&path);
        let memory = Memory::open(
            Store::open(&path)?,
            model.clone(),
            Box::new(crate::memory::vectors::Embedded::new()),
            MemorySettings {
                token_rerank,
                ..MemorySettings::default()
            },
        )?;
        runs.push(saves_and_searches(&memory, 3_000_000, 1_000, 200)?);
    }
    let db_size = |rerank: bool| {
        std::fs::metadata(dir.join(format!("memory-bench-minilm-{rerank}.db")))
            .map(|m| format!("{:.1} MiB", m.len() as f64 / 1_048_576.0))
            .unwrap_or_else(|_| "n/a".into())
    };
    let set = crate::memory::quality::load(set_path);
    let quality = |token_rerank: bool| {
        set.as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|set| crate::memory::quality::evaluate(set, model.clone(), token_rerank))
    };
    let mib = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.1} MiB"));
    println!(
        "| MiniLM: model load (read, sha256, build) | {:.2} s | | RSS {} → {} |",
        load.as_secs_f64(),
        mib(rss_before),
        mib(rss_loaded)
    );
    println!(
        "| MiniLM: embedding throughput | {batched:.0} texts/s batched | {single:.0} texts/s one by one | 12-word texts |"
    );
    for ((saves, searches), token_rerank) in runs.iter().zip([false, true]) {
        let how = if token_rerank {
            "with token re-ranking"
        } else {
            "sentence vectors only"
        };
        println!(
            "| MiniLM, {how}: save with duplicate check, up to 1k | {} | {} | embeds the text; database {} |",
            us(saves.p50),
            us(saves.p99),
            db_size(token_rerank)
        );
        println!(
            "| MiniLM, {how}: search_memories path, 1k | {} | {} | embeds the query |",
            us(searches.p50),
            us(searches.p99)
        );
    }
    let (plain, reranked) = (&runs[0].1, &runs[1].1);
    println!(
        "| MiniLM: search with / without token re-ranking | {:.2}x p50 | {:.2}x p99 | same run |",
        reranked.p50.as_secs_f64() / plain.p50.as_secs_f64(),
        reranked.p99.as_secs_f64() / plain.p99.as_secs_f64()
    );
    eprintln!("MiniLM: retrieval quality among {FILLER} other memories…");
    let filler: Vec<String> = (0..FILLER).map(|i| sentence(9_000_000 + i)).collect();
    for token_rerank in [false, true] {
        let how = if token_rerank {
            "with token re-ranking"
        } else {
            "sentence vectors only"
        };
        let among = set
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|set| {
                crate::memory::quality::evaluate_among(set, model.clone(), token_rerank, &filler)
            });
        match among {
            Ok(q) => println!(
                "| retrieval quality, MiniLM, {how}, among {FILLER} word-salad memories of the same vocabulary | top-1 {:.0}% | MRR {:.2} | relevance only |",
                q.top1 * 100.0,
                q.mrr
            ),
            Err(e) => println!("| retrieval quality among filler, MiniLM, {how} | n/a | | {e:#} |"),
        }
        match quality(token_rerank) {
            Ok(q) => println!(
                "| retrieval quality, MiniLM, {how} ({} labelled queries) | top-1 {:.0}% | MRR {:.2} | relevance only |",
                q.queries,
                q.top1 * 100.0,
                q.mrr
            ),
            Err(e) => println!("| retrieval quality, MiniLM, {how} | n/a | | {e:#} |"),
        }
    }
    Ok(())
}
