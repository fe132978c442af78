//! Turning text into vectors. `Embedder` is the seam: the local model, a remote
//! OpenAI-compatible endpoint, or (when no model can be had) the hashing embedder here.
//!
//! Embedders block (model inference, HTTP); async callers use `spawn_blocking`.

use anyhow::Result;

use super::tokens::TokenVectors;

/// One text's sentence vector and, from a model that has them, its token vectors (for token
/// re-ranking, see `tokens`).
#[derive(Debug, Clone)]
pub struct Embedding {
    pub vector: Vec<f32>,
    pub tokens: Option<TokenVectors>,
}

/// Sentence vectors as embeddings without token vectors.
pub fn without_tokens(vectors: Vec<Vec<f32>>) -> Vec<Embedding> {
    vectors
        .into_iter()
        .map(|vector| Embedding {
            vector,
            tokens: None,
        })
        .collect()
}

pub trait Embedder: Send + Sync {
    /// Identifies the vector space: vectors from different ids are never compared.
    fn id(&self) -> &str;
    fn dim(&self) -> usize;
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// True when `embed_with_tokens` gives token vectors.
    fn has_tokens(&self) -> bool {
        false
    }
    /// Like `embed`, with each text's token vectors when the model has them (one pass).
    fn embed_with_tokens(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        Ok(without_tokens(self.embed(texts)?))
    }
    /// True when search quality is below what a real model gives (shown in `status`).
    fn degraded(&self) -> bool {
        false
    }
}

/// Feature hashing of words, word pairs and character trigrams: no model, no download, and
/// lexical overlap only (it cannot tell that "auth" and "login" are related). Used only when no
/// model is available, with a warning.
pub struct HashingEmbedder {
    dim: usize,
    id: String,
}

impl HashingEmbedder {
    pub fn new(dim: usize) -> HashingEmbedder {
        HashingEmbedder {
            dim,
            id: format!("hashing-v1-{dim}"),
        }
    }
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "for", "with", "is", "are", "be", "it",
    "this", "that", "as", "at", "by", "from", "we", "you", "i", "do", "does", "how", "what",
    "when", "where", "why", "which",
];

impl HashingEmbedder {
    fn add(&self, v: &mut [f32], feature: &str, weight: f32) {
        let h = fnv1a(feature.as_bytes(), 0);
        let bucket = (h % self.dim as u64) as usize;
        let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign * weight;
    }

    fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty() && !STOP_WORDS.contains(w))
            .collect();
        for w in &words {
            self.add(&mut v, &format!("w:{w}"), 1.0);
            let chars: Vec<char> = format!("^{w}$").chars().collect();
            for tri in chars.windows(3) {
                self.add(
                    &mut v,
                    &format!("c:{}", tri.iter().collect::<String>()),
                    0.25,
                );
            }
        }
        for pair in words.windows(2) {
            self.add(&mut v, &format!("b:{} {}", pair[0], pair[1]), 0.5);
        }
        super::index::normalize(&mut v);
        v
    }
}

impl Embedder for HashingEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }

    fn degraded(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn shared_words_score_higher_than_unrelated_text() {
        let e = HashingEmbedder::new(384);
        let v = e
            .embed(&[
                "the sqlite database is locked during migrations",
                "migrations lock the sqlite database",
                "render the login page with dark colours",
            ])
            .unwrap();
        assert_eq!(v[0].len(), 384);
        assert!(
            cos(&v[0], &v[1]) > cos(&v[0], &v[2]) + 0.2,
            "{} vs {}",
            cos(&v[0], &v[1]),
            cos(&v[0], &v[2])
        );
        assert!((cos(&v[0], &v[0]) - 1.0).abs() < 1e-5);
        assert_eq!(
            e.embed(&["same text"]).unwrap(),
            e.embed(&["same text"]).unwrap(),
            "deterministic"
        );
        assert!(e.degraded());
    }
}
