//! Layered configuration: defaults → `hephaestus.toml` → `HEPHAESTUS_*` env → flags, resolved once.
//!
//! Deep modules never read the environment: the caller hands [`Config::load`] a snapshot of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The file a project keeps its settings in, at the project root.
pub const CONFIG_FILE: &str = "hephaestus.toml";
/// Default data directory, relative to the project root.
pub const DEFAULT_DATA_DIR: &str = ".hephaestus";
const SOCKET_NAME: &str = "coordinator.sock";
/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Everything the coordinator and the CLI need to know, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub project_root: PathBuf,
    pub data_dir: PathBuf,
    pub socket_path: PathBuf,
    /// Set when the socket could not live in the data dir (path too long) and moved elsewhere.
    pub socket_note: Option<String>,
    pub max_concurrent_agents: u32,
    pub log_level: String,
    /// Largest JSON-RPC message accepted from a client, in bytes.
    pub max_message_bytes: usize,
    /// Project workflow folders (`<dir>/<workflow-id>/NN_name.yaml`); they override shipped ones.
    pub workflows_dir: PathBuf,
    /// The file that was read, if any.
    pub config_file: Option<PathBuf>,
    pub agents: AgentSettings,
    pub memory: crate::memory::MemorySettings,
}

/// How the agent manager spawns agents (`[agents]` in `hephaestus.toml`).
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Spawn agents for queued tasks. Off, tasks wait for `hephaestus task assign`.
    pub enabled: bool,
    /// claude | codex | opencode | gemini | droid | custom
    pub cli: String,
    pub model: Option<String>,
    /// Command template for `cli = "custom"`: `{mcp_config}`, `{system_prompt_file}`,
    /// `{worktree}`, `{model}` are filled in.
    pub custom_command: Option<String>,
    /// `[agents.codex_config]`: the `config.toml` settings every Codex agent starts from.
    pub codex_config: Option<toml::Table>,
    /// Branch agents start from and merge into; default: the repository's current branch.
    pub base_branch: Option<String>,
    pub worktrees_dir: PathBuf,
    /// Untracked files copied from the repository into each new worktree.
    pub copy_untracked: Vec<String>,
    /// Name of the private tmux server (`tmux -L`).
    pub tmux_socket: String,
    pub session_prefix: String,
    /// How long a CLI may take to start, connect its MCP server and list our tools.
    pub ready_timeout_secs: u64,
    /// How long after its first message an agent has to make its first tool call before the
    /// message is sent again (the wait grows with each try).
    pub delivery_timeout_secs: u64,
    /// Attempts per task before a task whose agent keeps dying or failing to start is failed.
    pub max_attempts: u32,
    /// What the CLI adapters need from the coordinator's environment.
    pub host: crate::agents::adapters::Host,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsFile {
    enabled: Option<bool>,
    cli: Option<String>,
    model: Option<String>,
    custom_command: Option<String>,
    codex_config: Option<toml::Table>,
    base_branch: Option<String>,
    worktrees_dir: Option<PathBuf>,
    copy_untracked: Option<Vec<String>>,
    session_prefix: Option<String>,
    ready_timeout_secs: Option<u64>,
    delivery_timeout_secs: Option<u64>,
    max_attempts: Option<u32>,
}

/// Keys accepted in `hephaestus.toml`; unknown keys are an error so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    max_concurrent_agents: Option<u32>,
    log_level: Option<String>,
    max_message_bytes: Option<usize>,
    workflows_dir: Option<PathBuf>,
    agents: Option<AgentsFile>,
    memory: Option<MemoryFile>,
}

/// `[memory]` in `hephaestus.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryFile {
    /// "minilm" (the default), "openai" or "hashing"
    embedder: Option<String>,
    /// A Qdrant gRPC endpoint: memories are searched there instead of in-process.
    qdrant_url: Option<String>,
    /// Name of the environment variable that holds the Qdrant API key (default QDRANT_API_KEY).
    qdrant_api_key_env: Option<String>,
    qdrant_collection_prefix: Option<String>,
    qdrant_timeout_secs: Option<u64>,
    /// Where the local model is fetched from first (a Hugging Face endpoint); "" skips the hub.
    model_hub_url: Option<String>,
    base_url: Option<String>,
    model: Option<String>,
    /// Name of the environment variable that holds the API key (default OPENAI_API_KEY).
    api_key_env: Option<String>,
    dimensions: Option<usize>,
    timeout_secs: Option<u64>,
    batch_size: Option<usize>,
    max_retries: Option<u32>,
    pending_retry_secs: Option<u64>,
    dedup_threshold: Option<f32>,
    weight_similarity: Option<f32>,
    weight_recency: Option<f32>,
    weight_type: Option<f32>,
    recency_half_life_days: Option<f32>,
    /// Re-rank search candidates by token vectors (local model only; default true).
    token_rerank: Option<bool>,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub project: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub max_concurrent_agents: Option<u32>,
    pub log_level: Option<String>,
    pub agents_enabled: Option<bool>,
    pub agent_cli: Option<String>,
}

impl Config {
    /// Resolves the configuration for the project that contains `cwd`.
    pub fn load(cwd: &Path, env: &HashMap<String, String>, flags: &Overrides) -> Result<Config> {
        let project_root = match &flags.project {
            Some(p) => absolute(cwd, p),
            None => find_project_root(cwd),
        };
        let explicit_file = flags
            .config_file
            .clone()
            .or_else(|| env.get("HEPHAESTUS_CONFIG").map(PathBuf::from))
            .map(|p| absolute(cwd, &p));
        let (file, config_file) = match explicit_file {
            Some(path) => (read_file_config(&path)?, Some(path)),
            None => {
                let path = project_root.join(CONFIG_FILE);
                if path.is_file() {
                    (read_file_config(&path)?, Some(path))
                } else {
                    (FileConfig::default(), None)
                }
            }
        };

        let env_path = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env_path("HEPHAESTUS_DATA_DIR"))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let data_dir = absolute(&project_root, &data_dir);

        let max_concurrent_agents = match flags.max_concurrent_agents {
            Some(n) => n,
            None => match env.get("HEPHAESTUS_MAX_CONCURRENT_AGENTS") {
                Some(v) => v.trim().parse().with_context(|| {
                    format!("HEPHAESTUS_MAX_CONCURRENT_AGENTS must be a whole number, got {v:?}")
                })?,
                None => file.max_concurrent_agents.unwrap_or(4),
            },
        };
        if max_concurrent_agents == 0 {
            bail!("max_concurrent_agents must be at least 1");
        }
        let max_message_bytes = match env.get("HEPHAESTUS_MAX_MESSAGE_BYTES") {
            Some(v) => v.trim().parse().with_context(|| {
                format!("HEPHAESTUS_MAX_MESSAGE_BYTES must be a whole number, got {v:?}")
            })?,
            None => file.max_message_bytes.unwrap_or(4 * 1024 * 1024),
        };
        let log_level = flags
            .log_level
            .clone()
            .or_else(|| env.get("HEPHAESTUS_LOG_LEVEL").cloned())
            .or(file.log_level)
            .unwrap_or_else(|| "info".to_string());
        let workflows_dir = env_path("HEPHAESTUS_WORKFLOWS_DIR")
            .or(file.workflows_dir)
            .unwrap_or_else(|| PathBuf::from("phases"));
        let workflows_dir = absolute(&project_root, &workflows_dir);

        let explicit_socket = flags
            .socket
            .clone()
            .or_else(|| env_path("HEPHAESTUS_SOCKET"))
            .or(file.socket)
            .map(|p| absolute(&project_root, &p));
        let (socket_path, socket_note) = match explicit_socket {
            Some(p) => {
                if p.as_os_str().len() > MAX_SOCKET_PATH {
                    bail!(
                        "socket path {} is {} bytes; a Unix socket path may have at most {MAX_SOCKET_PATH}",
                        p.display(),
                        p.as_os_str().len()
                    );
                }
                (p, None)
            }
            None => default_socket_path(&data_dir, env.get("XDG_RUNTIME_DIR").map(Path::new)),
        };

        let memory = {
            let f = file.memory.unwrap_or_default();
            let d = crate::memory::MemorySettings::default();
            // The local model is the default where it is built in and has a home to live in.
            let explicit = env
                .get("HEPHAESTUS_EMBEDDER")
                .filter(|v| !v.is_empty())
                .cloned()
                .or_else(|| f.embedder.clone());
            let default = if cfg!(feature = "local-embeddings")
                && env.get("HOME").is_some_and(|h| !h.is_empty())
            {
                "minilm"
            } else {
                "hashing"
            };
            let embedder = match explicit.as_deref().unwrap_or(default) {
                "hashing" => crate::memory::EmbedderChoice::Hashing,
                "openai" => {
                    let key_var = f
                        .api_key_env
                        .clone()
                        .unwrap_or_else(|| "OPENAI_API_KEY".to_string());
                    crate::memory::EmbedderChoice::OpenAi(crate::memory::openai::OpenAiSettings {
                        base_url: f
                            .base_url
                            .clone()
                            .unwrap_or_else(|| "https://api.openai.com/v1".to_string()),
                        model: f
                            .model
                            .clone()
                            .unwrap_or_else(|| "text-embedding-3-small".to_string()),
                        api_key: env.get(&key_var).filter(|k| !k.is_empty()).cloned(),
                        dimensions: f.dimensions,
                        timeout: std::time::Duration::from_secs(
                            f.timeout_secs.unwrap_or(30).max(1),
                        ),
                        batch_size: f.batch_size.unwrap_or(64).max(1),
                        max_retries: f.max_retries.unwrap_or(4),
                    })
                }
                "minilm" => {
                    if !cfg!(feature = "local-embeddings") {
                        bail!(
                            "memory.embedder = \"minilm\" needs a build with the `local-embeddings` feature (this one was built without it); use \"hashing\" or \"openai\", or rebuild with default features"
                        );
                    }
                    let home = env.get("HOME").filter(|h| !h.is_empty()).with_context(|| {
                        "memory.embedder = \"minilm\" keeps its model under $HOME/.cache, and HOME is not set"
                    })?;
                    // HF_ENDPOINT is the hub's own variable for a mirror.
                    let hub = env
                        .get("HF_ENDPOINT")
                        .cloned()
                        .or(f.model_hub_url.clone())
                        .unwrap_or_else(|| "https://huggingface.co".to_string());
                    crate::memory::EmbedderChoice::MiniLm {
                        cache_dir: crate::memory::minilm_cache_dir(Path::new(home)),
                        hub: (!hub.is_empty()).then_some(hub),
                    }
                }
                other => bail!(
                    "memory.embedder must be \"hashing\", \"openai\" or \"minilm\", got {other:?}"
                ),
            };
            let m = crate::memory::MemorySettings {
                embedder,
                pending_retry: std::time::Duration::from_secs(
                    f.pending_retry_secs.unwrap_or(30).max(1),
                ),
                dedup_threshold: f.dedup_threshold.unwrap_or(d.dedup_threshold),
                weight_similarity: f.weight_similarity.unwrap_or(d.weight_similarity),
                weight_recency: f.weight_recency.unwrap_or(d.weight_recency),
                weight_type: f.weight_type.unwrap_or(d.weight_type),
                recency_half_life_days: f
                    .recency_half_life_days
                    .unwrap_or(d.recency_half_life_days),
                token_rerank: f.token_rerank.unwrap_or(d.token_rerank),
                qdrant: env
                    .get("HEPHAESTUS_QDRANT_URL")
                    .cloned()
                    .or(f.qdrant_url.clone())
                    .filter(|u| !u.is_empty())
                    .map(|url| -> Result<crate::memory::QdrantSettings> {
                        if !(url.starts_with("http://") || url.starts_with("https://")) {
                            bail!("memory.qdrant_url must start with http:// or https:// (the gRPC port, usually 6334), got {url:?}");
                        }
                        let key_var = f.qdrant_api_key_env.as_deref().unwrap_or("QDRANT_API_KEY");
                        Ok(crate::memory::QdrantSettings {
                            url,
                            api_key: env.get(key_var).filter(|k| !k.is_empty()).cloned(),
                            collection_prefix: f
                                .qdrant_collection_prefix
                                .clone()
                                .unwrap_or_else(|| "hephaestus".to_string()),
                            timeout: std::time::Duration::from_secs(
                                f.qdrant_timeout_secs.unwrap_or(10).max(1),
                            ),
                        })
                    })
                    .transpose()?,
            };
            if !(0.0..=1.0).contains(&m.dedup_threshold) {
                bail!(
                    "memory.dedup_threshold must be between 0 and 1, got {}",
                    m.dedup_threshold
                );
            }
            if m.recency_half_life_days <= 0.0 {
                bail!("memory.recency_half_life_days must be positive");
            }
            m
        };
        let agents = resolve_agents(
            file.agents.unwrap_or_default(),
            env,
            flags,
            &project_root,
            &data_dir,
        )?;

        Ok(Config {
            memory,
            agents,
            project_root,
            data_dir,
            socket_path,
            socket_note,
            max_concurrent_agents,
            log_level,
            max_message_bytes,
            workflows_dir,
            config_file,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    pub fn pidfile_path(&self) -> PathBuf {
        self.data_dir.join("coordinator.pid")
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name} must be true or false, got {v:?}"),
    }
}

fn resolve_agents(
    file: AgentsFile,
    env: &HashMap<String, String>,
    flags: &Overrides,
    project_root: &Path,
    data_dir: &Path,
) -> Result<AgentSettings> {
    let enabled = match (flags.agents_enabled, env.get("HEPHAESTUS_AGENTS_ENABLED")) {
        (Some(b), _) => b,
        (None, Some(v)) => parse_bool("HEPHAESTUS_AGENTS_ENABLED", v)?,
        (None, None) => file.enabled.unwrap_or(true),
    };
    let cli = flags
        .agent_cli
        .clone()
        .or_else(|| env.get("HEPHAESTUS_AGENT_CLI").cloned())
        .or(file.cli)
        .unwrap_or_else(|| "claude".to_string());
    let hash = format!(
        "{:08x}",
        fnv1a(data_dir.as_os_str().as_encoded_bytes()) as u32
    );
    let worktrees_dir = match file.worktrees_dir {
        Some(p) => absolute(project_root, &p),
        None => {
            // Outside the repository, so tools run in the repo never walk into agents' copies.
            let name = project_root
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let share = env
                .get("XDG_DATA_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    env.get("HOME")
                        .filter(|v| !v.is_empty())
                        .map(|h| Path::new(h).join(".local/share"))
                });
            match share {
                Some(dir) => dir
                    .join("hephaestus/worktrees")
                    .join(format!("{name}-{hash}")),
                None => data_dir.join("worktrees"),
            }
        }
    };
    Ok(AgentSettings {
        enabled,
        cli,
        model: file.model,
        custom_command: file.custom_command,
        codex_config: file.codex_config,
        base_branch: file.base_branch,
        worktrees_dir,
        copy_untracked: file
            .copy_untracked
            .unwrap_or_else(|| vec![".env".to_string()]),
        tmux_socket: format!("hephaestus-{hash}"),
        session_prefix: file.session_prefix.unwrap_or_else(|| "hep".to_string()),
        ready_timeout_secs: file.ready_timeout_secs.unwrap_or(90),
        delivery_timeout_secs: file.delivery_timeout_secs.unwrap_or(20).max(1),
        max_attempts: file.max_attempts.unwrap_or(3).max(1),
        host: crate::agents::adapters::Host::from_env(env),
    })
}

fn read_file_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The nearest ancestor of `cwd` with a `hephaestus.toml` or a `.hephaestus/` dir, else the
/// nearest git work tree, else `cwd` itself.
pub fn find_project_root(cwd: &Path) -> PathBuf {
    let marked = cwd
        .ancestors()
        .find(|dir| dir.join(CONFIG_FILE).is_file() || dir.join(DEFAULT_DATA_DIR).is_dir());
    if let Some(dir) = marked {
        return dir.to_path_buf();
    }
    cwd.ancestors()
        .find(|dir| dir.join(".git").exists())
        .unwrap_or(cwd)
        .to_path_buf()
}

/// `<data_dir>/coordinator.sock`, or a short path derived from the data dir when that one is
/// too long for a Unix socket. Deterministic, so the shim finds the same path on its own.
pub fn default_socket_path(
    data_dir: &Path,
    runtime_dir: Option<&Path>,
) -> (PathBuf, Option<String>) {
    let in_data_dir = data_dir.join(SOCKET_NAME);
    if in_data_dir.as_os_str().len() <= MAX_SOCKET_PATH {
        return (in_data_dir, None);
    }
    let name = format!(
        "hephaestus-{:016x}.sock",
        fnv1a(data_dir.as_os_str().as_encoded_bytes())
    );
    let base = runtime_dir
        .filter(|d| d.is_absolute() && d.join(&name).as_os_str().len() <= MAX_SOCKET_PATH)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let path = base.join(name);
    let note = format!(
        "socket path {} would exceed the {MAX_SOCKET_PATH}-byte Unix socket limit; using {} instead",
        in_data_dir.display(),
        path.display()
    );
    (path, Some(note))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A snapshot of the process environment, taken once by the entry point.
pub fn env_snapshot() -> HashMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "max_concurrent_agents = 7\nlog_level = \"debug\"\n",
        )
        .unwrap();
        let base = Config::load(dir.path(), &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(base.max_concurrent_agents, 7);
        assert_eq!(base.log_level, "debug");
        assert_eq!(base.data_dir, dir.path().join(".hephaestus"));

        let with_env = Config::load(
            dir.path(),
            &env(&[("HEPHAESTUS_MAX_CONCURRENT_AGENTS", "3")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(with_env.max_concurrent_agents, 3);

        let flags = Overrides {
            max_concurrent_agents: Some(9),
            ..Default::default()
        };
        let with_flag = Config::load(
            dir.path(),
            &env(&[("HEPHAESTUS_MAX_CONCURRENT_AGENTS", "3")]),
            &flags,
        )
        .unwrap();
        assert_eq!(with_flag.max_concurrent_agents, 9);
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "max_agents = 2\n").unwrap();
        let err = Config::load(dir.path(), &env(&[]), &Overrides::default()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("hephaestus.toml"), "{text}");
        assert!(text.contains("max_agents"), "{text}");
    }

    #[test]
    fn long_data_dir_moves_the_socket_and_says_so() {
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(120)));
        let (path, note) = default_socket_path(&long, Some(Path::new("/run/user/0")));
        assert!(path.starts_with("/run/user/0"));
        assert!(path.as_os_str().len() <= MAX_SOCKET_PATH);
        assert!(note.unwrap().contains("107-byte"));
        let (again, _) = default_socket_path(&long, Some(Path::new("/run/user/0")));
        assert_eq!(path, again, "the shim must compute the same path");
        let (short, note) = default_socket_path(Path::new("/tmp/p/.hephaestus"), None);
        assert_eq!(short, PathBuf::from("/tmp/p/.hephaestus/coordinator.sock"));
        assert!(note.is_none());
    }

    #[test]
    fn minilm_is_chosen_with_a_cache_under_home_or_refused_without_the_feature() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[memory]\nembedder = \"minilm\"\n",
        )
        .unwrap();
        let loaded = Config::load(
            dir.path(),
            &env(&[("HOME", "/home/u")]),
            &Overrides::default(),
        );
        if cfg!(feature = "local-embeddings") {
            let c = loaded.unwrap();
            let crate::memory::EmbedderChoice::MiniLm { cache_dir, hub } = c.memory.embedder else {
                panic!("{:?}", c.memory.embedder)
            };
            assert_eq!(
                cache_dir,
                PathBuf::from("/home/u/.cache/hephaestus/models/all-MiniLM-L6-v2")
            );
            assert_eq!(hub.as_deref(), Some("https://huggingface.co"));
            let mirror = Config::load(
                dir.path(),
                &env(&[("HOME", "/home/u"), ("HF_ENDPOINT", "http://mirror:8080")]),
                &Overrides::default(),
            )
            .unwrap();
            let crate::memory::EmbedderChoice::MiniLm { hub, .. } = mirror.memory.embedder else {
                panic!("{:?}", mirror.memory.embedder)
            };
            assert_eq!(hub.as_deref(), Some("http://mirror:8080"));
            let no_home = Config::load(dir.path(), &env(&[]), &Overrides::default()).unwrap_err();
            assert!(format!("{no_home:#}").contains("HOME"), "{no_home:#}");
        } else {
            let text = format!("{:#}", loaded.unwrap_err());
            assert!(text.contains("local-embeddings"), "{text}");
        }
    }

    #[test]
    fn the_local_model_is_the_default_and_the_environment_picks_another() {
        let dir = tempfile::tempdir().unwrap();
        let home = env(&[("HOME", "/home/u")]);
        let c = Config::load(dir.path(), &home, &Overrides::default()).unwrap();
        if cfg!(feature = "local-embeddings") {
            assert!(
                matches!(
                    c.memory.embedder,
                    crate::memory::EmbedderChoice::MiniLm { .. }
                ),
                "{:?}",
                c.memory.embedder
            );
        } else {
            assert!(matches!(
                c.memory.embedder,
                crate::memory::EmbedderChoice::Hashing
            ));
        }
        // Without a home there is no model cache: the default falls back instead of failing.
        let homeless = Config::load(dir.path(), &env(&[]), &Overrides::default()).unwrap();
        assert!(matches!(
            homeless.memory.embedder,
            crate::memory::EmbedderChoice::Hashing
        ));

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[memory]\nembedder = \"minilm\"\n",
        )
        .unwrap();
        let pinned = Config::load(
            dir.path(),
            &env(&[("HOME", "/home/u"), ("HEPHAESTUS_EMBEDDER", "hashing")]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(matches!(
            pinned.memory.embedder,
            crate::memory::EmbedderChoice::Hashing
        ));
        let bad = Config::load(
            dir.path(),
            &env(&[("HEPHAESTUS_EMBEDDER", "bert")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{bad:#}").contains("\"bert\""), "{bad:#}");
    }

    #[test]
    fn qdrant_settings_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[memory]\nembedder = \"hashing\"\nqdrant_url = \"http://q:6334\"\nqdrant_collection_prefix = \"team\"\nqdrant_api_key_env = \"QKEY\"\n",
        )
        .unwrap();
        let c = Config::load(dir.path(), &env(&[("QKEY", "k1")]), &Overrides::default()).unwrap();
        let q = c.memory.qdrant.unwrap();
        assert_eq!(
            (q.url.as_str(), q.collection_prefix.as_str()),
            ("http://q:6334", "team")
        );
        assert_eq!(q.api_key.as_deref(), Some("k1"));
        let from_env = Config::load(
            dir.path(),
            &env(&[("HEPHAESTUS_QDRANT_URL", "https://other:6334")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(from_env.memory.qdrant.unwrap().url, "https://other:6334");
        let bad = Config::load(
            dir.path(),
            &env(&[("HEPHAESTUS_QDRANT_URL", "q:6334")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{bad:#}").contains("http://"), "{bad:#}");
    }
}
