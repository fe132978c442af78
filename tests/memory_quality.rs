//! The labelled retrieval set (tests/fixtures/memory_quality.json) and its evaluation through the
//! same `Memory` search agents use, for the local model and the hashing fallback.

use std::path::Path;
use std::sync::Arc;

use hephaestus::memory::embedder::HashingEmbedder;
use hephaestus::memory::quality;

fn set() -> quality::LabelledSet {
    quality::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/memory_quality.json"))
        .unwrap()
}

#[test]
fn the_labelled_set_is_well_formed() {
    let set = set();
    assert!(set.memories.len() >= 40, "{} memories", set.memories.len());
    assert!(set.queries.len() >= 20, "{} queries", set.queries.len());
    let ids: std::collections::HashSet<&str> = set.memories.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), set.memories.len(), "memory ids are unique");
    for q in &set.queries {
        assert!(
            ids.contains(q.relevant.as_str()),
            "query {:?} names unknown memory {}",
            q.query,
            q.relevant
        );
    }
    // Every memory's type is a known one: the set would not have parsed otherwise (its
    // `memory_type` is a `MemoryType`).
    assert!(!set.memories.is_empty());
}

#[test]
fn the_evaluation_runs_through_memory_search() {
    let q = quality::evaluate(&set(), Arc::new(HashingEmbedder::new(384)), true).unwrap();
    assert_eq!(q.queries, set().queries.len());
    assert!(
        (0.0..=1.0).contains(&q.top1) && q.mrr >= q.top1 && q.mrr <= 1.0,
        "{q:?}"
    );
    // Lexical overlap alone finds some answers, but the set is built so that it cannot find most.
    assert!(
        q.top1 > 0.0 && q.top1 < 0.9,
        "hashing top-1 {:.2}: the set no longer tests meaning",
        q.top1
    );
    println!(
        "hashing embedder: top-1 {:.0}%, MRR {:.2}",
        q.top1 * 100.0,
        q.mrr
    );
}

/// The target: the right memory first for 90% of the queries. The first 34 queries were written
/// with the set; all-MiniLM-L6-v2's sentence vectors alone get 76% of them (the misses are
/// paraphrases that lose to a distractor on the same topic). Token re-ranking was designed on
/// those 34 (88%); the last 26 queries were written after that and before any of them was
/// measured, to check that it holds on queries it was not tuned on.
#[cfg(feature = "local-embeddings")]
#[test]
fn minilm_finds_the_right_memory_for_nine_queries_in_ten() {
    let Some(home) = std::env::var_os("HOME") else {
        println!("skipped: HOME is not set, so the model cache cannot be found");
        return;
    };
    let cache = hephaestus::memory::minilm_cache_dir(Path::new(&home));
    let embedder = match hephaestus::memory::minilm::MiniLmEmbedder::open(&cache) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            println!("skipped: the MiniLM weights could not be had: {e:#}");
            return;
        }
    };
    let set = set();
    let reranked = quality::evaluate(&set, embedder.clone(), true).unwrap();
    let sentence = quality::evaluate(&set, embedder, false).unwrap();
    let hashing = quality::evaluate(&set, Arc::new(HashingEmbedder::new(384)), true).unwrap();
    println!(
        "{} queries, top-1 and MRR. MiniLM with token re-ranking: {:.0}%, {:.2}; sentence vectors only: {:.0}%, {:.2}; hashing: {:.0}%, {:.2}",
        reranked.queries,
        reranked.top1 * 100.0,
        reranked.mrr,
        sentence.top1 * 100.0,
        sentence.mrr,
        hashing.top1 * 100.0,
        hashing.mrr,
    );
    assert!(
        reranked.top1 >= 0.90,
        "MiniLM with token re-ranking: top-1 {:.2}, MRR {:.2}",
        reranked.top1,
        reranked.mrr
    );
    assert!(
        reranked.top1 > sentence.top1 && reranked.mrr > sentence.mrr,
        "token re-ranking must beat the sentence vectors: {reranked:?} vs {sentence:?}"
    );
    assert!(sentence.mrr > hashing.mrr);
}
