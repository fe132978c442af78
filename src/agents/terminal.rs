//! The agents' terminals, for async callers: every call goes through `tmux.rs` on the blocking
//! pool, never on the reactor thread (a tmux call takes milliseconds, and the coordinator runs
//! one reactor thread). The manager reads and types through this; so will the guardian and the
//! board. Cheap to clone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::tmux::Tmux;

/// Width × height of each agent's terminal.
pub const PANE_SIZE: (u16, u16) = (200, 50);

#[derive(Debug, Clone)]
pub struct Terminal {
    tmux: Tmux,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("blocking task failed: {e}"))?
}

impl Terminal {
    pub fn new(tmux: Tmux) -> Terminal {
        Terminal { tmux }
    }

    /// The private tmux server's name (for `tmux -L` and `agents attach`).
    pub fn tmux(&self) -> &Tmux {
        &self.tmux
    }

    /// Starts a session running `command` in `cwd` with `env`, on a [`PANE_SIZE`] window.
    pub async fn start(
        &self,
        session: &str,
        cwd: &Path,
        command: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<()> {
        let (tmux, session, cwd, command, env) = (
            self.tmux.clone(),
            session.to_string(),
            cwd.to_path_buf(),
            command.to_string(),
            env.clone(),
        );
        blocking(move || tmux.new_session(&session, &cwd, &command, &env, PANE_SIZE)).await
    }

    /// The session exists and its program still runs.
    pub async fn is_alive(&self, session: &str) -> bool {
        let (tmux, session) = (self.tmux.clone(), session.to_string());
        // A tmux that cannot be run says nothing about the agent: count it alive.
        blocking(move || Ok(tmux.is_alive(&session)))
            .await
            .unwrap_or(true)
    }

    /// Whether its program runs, its title and its screen, in one call; none when the session
    /// is gone.
    pub async fn look(&self, session: &str) -> Option<super::tmux::Glance> {
        let (tmux, session) = (self.tmux.clone(), session.to_string());
        blocking(move || Ok(tmux.look(&session).ok()))
            .await
            .ok()
            .flatten()
    }

    /// The exit status of the session's program, once it has exited. tmux marks a pane dead
    /// when its program's output ends, before the program has exited: a pane seen dead is
    /// asked again for up to half a second (an exited, unreaped one answers at once).
    pub async fn exit_status(&self, session: &str) -> Option<i32> {
        for _ in 0..10 {
            let (tmux, s) = (self.tmux.clone(), session.to_string());
            let status = blocking(move || Ok(tmux.exit_status(&s)))
                .await
                .ok()
                .flatten();
            if status.is_some() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// The visible screen plus `history` lines of scrollback; empty when it cannot be read.
    pub async fn capture(&self, session: &str, history: u32) -> String {
        let (tmux, session) = (self.tmux.clone(), session.to_string());
        blocking(move || tmux.capture(&session, history))
            .await
            .unwrap_or_default()
    }

    /// The last `lines` non-blank lines of the screen. Read with some scrollback: when a
    /// program exits, tmux moves the screen into the history to print "Pane is dead".
    pub async fn tail(&self, session: &str, lines: usize) -> String {
        let text = self.capture(session, 200).await;
        let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }

    /// The last non-blank line of the screen.
    pub async fn last_line(&self, session: &str) -> Option<String> {
        Some(self.tail(session, 1).await).filter(|l| !l.is_empty())
    }

    /// The screen did not change for `quiet`: the program is waiting for input.
    pub async fn is_idle(&self, session: &str, quiet: Duration) -> bool {
        let before = self.tail(session, 50).await;
        tokio::time::sleep(quiet).await;
        before == self.tail(session, 50).await
    }

    /// Pastes `text` as typed input (without Enter), through the file `scratch`.
    pub async fn type_text(&self, session: &str, text: &str, scratch: &Path) -> Result<()> {
        let (tmux, session, text, scratch): (Tmux, String, String, PathBuf) = (
            self.tmux.clone(),
            session.to_string(),
            text.to_string(),
            scratch.to_path_buf(),
        );
        blocking(move || tmux.paste(&session, &text, &scratch)).await
    }

    pub async fn press(&self, session: &str, key: &str) -> Result<()> {
        let (tmux, session, key) = (self.tmux.clone(), session.to_string(), key.to_string());
        blocking(move || tmux.send_key(&session, &key)).await
    }

    /// Types `text` and presses Enter, with a pause between so the program takes the paste
    /// in as one input.
    pub async fn send_line(&self, session: &str, text: &str, scratch: &Path) -> Result<()> {
        self.type_text(session, text, scratch).await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.press(session, "Enter").await
    }

    /// Ends the session; a missing one is fine.
    pub async fn end(&self, session: &str) -> Result<()> {
        let (tmux, session) = (self.tmux.clone(), session.to_string());
        blocking(move || tmux.kill_session(&session)).await
    }

    /// Every session on the private server.
    pub async fn sessions(&self) -> Result<Vec<String>> {
        let tmux = self.tmux.clone();
        blocking(move || tmux.list_sessions()).await
    }
}
