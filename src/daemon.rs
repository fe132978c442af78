//! `hephaestus serve`: owns the process-level resources (pidfile lock, socket file, signals, the
//! database) and hands them to [`crate::server::run`]. The only module that listens for signals.
//!
//! Shutdown order: stop accepting, let in-flight calls finish, checkpoint and close the database,
//! remove the socket, release the pidfile.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::AppState;
use crate::store::Store;

/// Runs the coordinator until SIGINT or SIGTERM.
pub fn serve(config: Config) -> Result<()> {
    create_private_dir(&config.data_dir)?;
    let _log_guard = crate::logging::init_coordinator(&config.logs_dir(), &config.log_level)?;
    let pidfile = Pidfile::acquire(&config.pidfile_path())?;

    if let Some(note) = &config.socket_note {
        tracing::warn!("{note}");
    }
    let store = Store::open(&config.db_path())?;
    let workflows = crate::phases::load_all(&config.workflows_dir)?;
    store
        .sync_definitions(&workflows)
        .map_err(|e| anyhow::anyhow!("cannot store workflow definitions: {e}"))?;

    // One reactor thread: tool calls are tens of microseconds of CPU each, so cross-thread
    // wake-ups cost more than they parallelize (measured with `hephaestus bench` on 2 cores:
    // about 30% more calls/s than the multi-threaded runtime at the same latency). Anything that
    // may block for long goes to `spawn_blocking`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Before the socket exists: whoever sees it listening may send SIGTERM at once, and a
        // handler registered later (in a task that has not run yet) would leave the default
        // action, an exit without cleanup.
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let listener = bind_socket(&config.socket_path)?;
        tracing::info!(
            socket = %config.socket_path.display(),
            db = %config.db_path().display(),
            workflows = workflows.len(),
            pid = std::process::id(),
            "coordinator listening"
        );
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
            signals.cancel();
        });
        let (memory, fetch_model) = {
            let (store, settings) = (store.clone(), config.memory.clone());
            tokio::task::spawn_blocking(move || -> Result<_> {
                let start = crate::memory::Memory::startup_embedder(&settings)?;
                let backend = crate::memory::Memory::make_backend(&settings)?;
                let memory = crate::memory::Memory::open(store, start.embedder, backend, settings)?;
                Ok((memory, start.fetch_model))
            })
            .await
            .context("memory set-up failed")??
        };
        if memory.degraded() && !fetch_model {
            tracing::warn!("memory search uses the hashing embedder: quality is degraded (lexical overlap only)");
        }
        let terminal = crate::agents::terminal::Terminal::new(crate::agents::tmux::Tmux::new(
            config.agents.tmux_socket.clone(),
        ));
        let (handle, commands) = if config.agents.enabled {
            let (handle, commands) = crate::agents::handle::AgentsHandle::new(
                terminal.clone(),
                &config.agents.cli,
                config.agents.host.clone(),
            );
            if let Some(problem) = handle.cli_problem() {
                tracing::error!("agents cannot start: {problem}");
            }
            (Some(handle), Some(commands))
        } else {
            (None, None)
        };
        let state = Arc::new(AppState::new(store.clone(), config.clone(), memory, handle));
        let manager = match commands {
            Some(commands) => {
                // It opens the repository and asks tmux its version: off the reactor thread.
                let s = state.clone();
                let made = tokio::task::spawn_blocking(move || {
                    crate::agents::manager::AgentManager::new(s, terminal, commands)
                })
                .await
                .context("starting the agent manager")?;
                match made {
                    Ok(m) => Some(tokio::spawn(Arc::new(m).run(shutdown.clone()))),
                    Err(e) => {
                        tracing::error!("agents will not be spawned: {e:#}");
                        None
                    }
                }
            }
            None => {
                tracing::info!(
                    "agent spawning is off; queued tasks wait for `hephaestus task assign`"
                );
                None
            }
        };
        if manager.is_some() && config.guardian.enabled {
            let guardian = crate::guardian::Guardian::new(
                state.clone(),
                crate::agents::terminal::Terminal::new(crate::agents::tmux::Tmux::new(
                    config.agents.tmux_socket.clone(),
                )),
            );
            tokio::spawn(guardian.run(shutdown.clone()));
        }
        tokio::spawn(index_pending_memories(state.clone(), shutdown.clone()));
        #[cfg(feature = "local-embeddings")]
        if fetch_model {
            let state = state.clone();
            // Detached: a download in progress at shutdown is abandoned with the process, and
            // its staging dir never becomes the cache.
            drop(tokio::task::spawn_blocking(move || state.memory.fetch_model_then_switch()));
        }
        let result = crate::server::run(listener, state, shutdown).await;
        if let Some(m) = manager {
            let _ = m.await;
            // The agents' server outlives its sessions (`agents/tmux.rs`); with none left,
            // it goes with the coordinator. Live agents keep it, for the next coordinator.
            let tmux = crate::agents::tmux::Tmux::new(config.agents.tmux_socket.clone());
            let _ = tokio::task::spawn_blocking(move || tmux.stop_if_empty()).await;
        }
        if let Err(e) = store.checkpoint() {
            tracing::warn!("database checkpoint failed: {e:#}");
        }
        let _ = std::fs::remove_file(&config.socket_path);
        result
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(pidfile);
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Memories saved while the embedder failed are embedded and indexed once it answers again.
async fn index_pending_memories(state: crate::state::Shared, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(state.config.memory.pending_retry) => {}
        }
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if s.memory.needs_indexing() {
                match s.memory.reindex() {
                    Ok(r) => tracing::info!(embedded = r.embedded, "pending memories indexed"),
                    Err(e) => tracing::warn!("pending memories still not indexed: {e:#}"),
                }
            }
        })
        .await;
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Binds the socket with mode 0600. The caller holds the pidfile lock, so a socket file already
/// there is left from a crash and safe to remove.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if path.exists() {
        tracing::info!(socket = %path.display(), "removing stale socket");
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    // The umask makes the socket 0600 from its first instant, with no window for other users.
    let old = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// An exclusive `flock` on `coordinator.pid`: one coordinator per data dir. The kernel releases
/// the lock when the process dies, so a crash never leaves the data dir locked.
pub struct Pidfile {
    file: File,
    path: PathBuf,
}

impl Pidfile {
    pub fn acquire(path: &Path) -> Result<Pidfile> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open pidfile {}", path.display()))?;
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            bail!(
                "another coordinator (pid {}) is already running for data dir {}",
                pid.trim(),
                path.parent().unwrap_or(path).display()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Pidfile {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // The file stays (removing it would let a racing coordinator lock an unlinked inode);
        // an empty pidfile means no coordinator runs.
        let _ = self.file.set_len(0);
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
        tracing::debug!(pidfile = %self.path.display(), "pidfile released");
    }
}
