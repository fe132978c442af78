//! Layered configuration: defaults → `hephaestus.toml` → `HEPHAESTUS_*` env → flags, resolved once.
//!
//! Deep modules never read the environment: the caller hands [`Config::load`] a snapshot of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod agents;
pub mod llm;
mod memory;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

pub use agents::AgentSettings;
use agents::AgentsFile;
use memory::MemoryFile;

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
    pub guardian: GuardianSettings,
    pub llm: llm::LlmSettings,
}

/// `[guardian]`: how agents are watched.
#[derive(Debug, Clone)]
pub struct GuardianSettings {
    pub enabled: bool,
    /// How often every agent's terminal is read.
    pub poll_ms: u64,
    /// A project's own screen rules, `<cli>.toml` each, replacing the shipped ones.
    pub rules_dir: PathBuf,
    /// An agent idle this long after its task was handed over, without a report, is reminded.
    pub idle_nudge_secs: u64,
    /// Reminders before the agent is marked stuck.
    pub max_nudges: u32,
    /// What then becomes of its task.
    pub on_stuck: OnStuck,
    /// With an LLM configured (`[llm]`): the least time between two judgements of one agent,
    /// each only after its screen changed.
    pub judge_every_secs: u64,
    /// The least time between two steers typed into one agent.
    pub steer_every_secs: u64,
    /// The most of an agent's screen a judgement reads (its newest part).
    pub max_pane_chars: usize,
    /// How often the live agents' work is compared for overlaps (with two or more at work).
    pub conductor_every_secs: u64,
    /// Two live agents whose task texts are at least this alike (cosine of the memory
    /// embedder's vectors, 0–1) are an overlap even before their files are; above 1: off.
    pub similar_tasks: f32,
    /// Press the keys a `blocked_screen` rule gives (`press`), for dialogs safe to answer.
    pub answer_screens: bool,
}

/// `guardian.similar_tasks` by default: near-verbatim copies only. Measured with MiniLM on two
/// labelled sets of task pairs (`tests/task_similarity.rs`): paraphrased duplicates and related
/// but different tasks overlap in similarity, so a lower threshold raises false alarms.
pub const DEFAULT_SIMILAR_TASKS: f32 = 0.9;

/// What becomes of a stuck agent's task (`guardian.on_stuck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStuck {
    /// Leave it to a person: status and the agent's log say it is stuck.
    Wait,
    /// End the agent, keep its work on its branch, and give the task to a new agent (under
    /// `agents.max_attempts`).
    Requeue,
    /// End the agent, keep its work on its branch, and fail the task.
    Fail,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardianFile {
    enabled: Option<bool>,
    poll_ms: Option<u64>,
    rules_dir: Option<PathBuf>,
    idle_nudge_secs: Option<u64>,
    max_nudges: Option<u32>,
    on_stuck: Option<OnStuck>,
    judge_every_secs: Option<u64>,
    steer_every_secs: Option<u64>,
    max_pane_chars: Option<usize>,
    conductor_every_secs: Option<u64>,
    similar_tasks: Option<f32>,
    answer_screens: Option<bool>,
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
    guardian: Option<GuardianFile>,
    llm: Option<llm::LlmFile>,
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

        let memory = memory::resolve(file.memory.unwrap_or_default(), env)?;
        let guardian = {
            let g = file.guardian.unwrap_or_default();
            GuardianSettings {
                enabled: g.enabled.unwrap_or(true),
                poll_ms: g.poll_ms.unwrap_or(500).max(100),
                rules_dir: absolute(
                    &project_root,
                    &g.rules_dir.unwrap_or_else(|| PathBuf::from("screen_rules")),
                ),
                idle_nudge_secs: g.idle_nudge_secs.unwrap_or(20).max(1),
                max_nudges: g.max_nudges.unwrap_or(2),
                on_stuck: g.on_stuck.unwrap_or(OnStuck::Wait),
                judge_every_secs: g.judge_every_secs.unwrap_or(120).max(1),
                steer_every_secs: g.steer_every_secs.unwrap_or(300),
                max_pane_chars: g.max_pane_chars.unwrap_or(6000).clamp(500, 100_000),
                conductor_every_secs: g.conductor_every_secs.unwrap_or(30).max(1),
                similar_tasks: match g.similar_tasks {
                    Some(t) if !(0.0..=2.0).contains(&t) => anyhow::bail!(
                        "guardian.similar_tasks = {t}: give a similarity from 0 to 1 (above 1 turns it off)"
                    ),
                    Some(t) => t,
                    None => DEFAULT_SIMILAR_TASKS,
                },
                answer_screens: g.answer_screens.unwrap_or(true),
            }
        };
        let llm = llm::resolve(file.llm.unwrap_or_default(), env)?;
        let agents = agents::resolve(
            file.agents.unwrap_or_default(),
            env,
            flags,
            &project_root,
            &data_dir,
        )?;

        Ok(Config {
            memory,
            guardian,
            llm,
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

fn read_file_config(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

pub(crate) fn absolute(base: &Path, p: &Path) -> PathBuf {
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

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
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
