//! The only module that runs tmux. Every call goes to a private tmux server (`tmux -L <socket>`),
//! so a person's own tmux sessions are never seen or touched.
//!
//! Calls are blocking (a few milliseconds each); async callers use `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// What one look at a session shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Glance {
    pub alive: bool,
    pub title: String,
    pub screen: String,
}

#[derive(Debug, Clone)]
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A handle on the private tmux server named `socket` (a name, not a path).
    pub fn new(socket: impl Into<String>) -> Tmux {
        Tmux {
            socket: socket.into(),
        }
    }

    /// `tmux -V`, or an error saying tmux is missing.
    pub fn version(&self) -> Result<String> {
        let out = Command::new("tmux")
            .arg("-V")
            .output()
            .context("cannot run tmux: install it (e.g. apt-get install tmux)")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The exact-name target of a session's current pane (`=name` alone matches sessions only).
    fn pane(name: &str) -> String {
        format!("={name}:")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L").arg(&self.socket).stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<Output> {
        let out = self
            .command()
            .args(args)
            .output()
            .context("cannot run tmux: is it installed and on PATH?")?;
        Ok(out)
    }

    fn run_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "tmux {} failed: {}",
                args.first().copied().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a detached session running `command` (through `sh -c`) in `cwd`, with `env` set
    /// for it, on a window of `width`×`height`.
    pub fn new_session(
        &self,
        name: &str,
        cwd: &Path,
        command: &str,
        env: &BTreeMap<String, String>,
        (width, height): (u16, u16),
    ) -> Result<()> {
        // Panes stay after their program exits, so its last output and exit status can be
        // read: set on the private server before the session starts (set after, it comes too
        // late for a program that exits at once). The server stays when its last session
        // ends: it used to exit then, and a session started meanwhile for the next agent
        // landed on the exiting server and vanished with it. Started by a call of its own, so
        // the command line the server keeps as its own names nothing of any agent.
        self.run_ok(&[
            "start-server",
            ";",
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "set-option",
            "-s",
            "exit-empty",
            "off",
        ])?;
        let mut cmd = self.command();
        cmd.args([
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
        cmd.arg("-c").arg(cwd);
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.arg(command);
        let out = cmd
            .output()
            .context("cannot run tmux: is it installed and on PATH?")?;
        if !out.status.success() {
            bail!(
                "tmux new-session {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    pub fn has_session(&self, name: &str) -> bool {
        self.run(&["has-session", "-t", &format!("={name}")])
            .is_ok_and(|o| o.status.success())
    }

    /// True while the program in the session's pane is still running.
    /// One look at a session: whether its program still runs, its title and its visible screen,
    /// in one tmux call (the guardian makes one per agent every poll).
    pub fn look(&self, name: &str) -> Result<Glance> {
        let pane = Self::pane(name);
        let out = self.run_ok(&[
            "display-message",
            "-p",
            "-t",
            &pane,
            "#{pane_dead}\t#{pane_title}",
            ";",
            "capture-pane",
            "-p",
            "-J",
            "-t",
            &pane,
        ])?;
        let (head, screen) = out.split_once('\n').unwrap_or((&out, ""));
        let (dead, title) = head.split_once('\t').unwrap_or((head, ""));
        Ok(Glance {
            alive: dead.trim() == "0",
            title: title.to_string(),
            screen: screen.to_string(),
        })
    }

    /// The exit status of the session's program, once it has exited.
    ///
    /// tmux learns the status when it reaps the process, and tmux 3.3 sometimes does not reap
    /// a program that exits at once until its next child exits (the pane reads dead, its
    /// status empty, its process a zombie for seconds). Then the status is read from the
    /// zombie itself.
    pub fn exit_status(&self, name: &str) -> Option<i32> {
        let out = self
            .run(&[
                "display-message",
                "-p",
                "-t",
                &Self::pane(name),
                "#{pane_dead}\t#{pane_dead_status}\t#{pane_pid}",
            ])
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.trim_end_matches('\n').split('\t');
        let (dead, status, pid) = (fields.next()?, fields.next()?, fields.next()?);
        if dead != "1" {
            return None;
        }
        status
            .parse()
            .ok()
            .or_else(|| zombie_exit_status(pid.parse().ok()?))
    }

    pub fn is_alive(&self, name: &str) -> bool {
        match self.run(&[
            "display-message",
            "-p",
            "-t",
            &Self::pane(name),
            "#{pane_dead}",
        ]) {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim() == "0",
            _ => false,
        }
    }

    /// The visible pane text, plus up to `history` lines of scrollback.
    pub fn capture(&self, name: &str, history: u32) -> Result<String> {
        self.run_ok(&[
            "capture-pane",
            "-p",
            "-J",
            "-t",
            &Self::pane(name),
            "-S",
            &format!("-{history}"),
        ])
    }

    /// Types `text` as one paste (bracketed when the program asked for it), without Enter.
    pub fn paste(&self, name: &str, text: &str, scratch: &Path) -> Result<()> {
        std::fs::write(scratch, text)
            .with_context(|| format!("cannot write {}", scratch.display()))?;
        let buffer = format!("hephaestus-{name}");
        self.run_ok(&["load-buffer", "-b", &buffer, &scratch.to_string_lossy()])?;
        self.run_ok(&[
            "paste-buffer",
            "-d",
            "-p",
            "-b",
            &buffer,
            "-t",
            &Self::pane(name),
        ])?;
        Ok(())
    }

    /// Sends one key by its tmux name (e.g. `Enter`, `C-c`).
    pub fn send_key(&self, name: &str, key: &str) -> Result<()> {
        self.run_ok(&["send-keys", "-t", &Self::pane(name), key])?;
        Ok(())
    }

    pub fn kill_session(&self, name: &str) -> Result<()> {
        if self.has_session(name) {
            self.run_ok(&["kill-session", "-t", &format!("={name}")])?;
        }
        Ok(())
    }

    /// Names of all sessions on this private server.
    pub fn list_sessions(&self) -> Result<Vec<String>> {
        let out = self.run(&["list-sessions", "-F", "#{session_name}"])?;
        if !out.status.success() {
            // No server running means no sessions.
            return Ok(Vec::new());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Replaces this process with `tmux attach` to the session, for a person to watch it.
    /// Returns only if tmux could not be started.
    pub fn attach(&self, name: &str) -> std::io::Error {
        use std::os::unix::process::CommandExt;
        Command::new("tmux")
            .args([
                "-L",
                &self.socket,
                "attach-session",
                "-t",
                &format!("={name}"),
            ])
            .exec()
    }

    /// Stops the private server and every session on it.
    pub fn kill_server(&self) {
        let _ = self.run(&["kill-server"]);
    }

    /// Stops the server when no session is left on it.
    pub fn stop_if_empty(&self) {
        if self.list_sessions().is_ok_and(|s| s.is_empty()) {
            self.kill_server();
        }
    }
}

/// The exit code of process `pid` if it is a zombie (exited, not yet reaped), read from
/// `/proc/PID/stat` (field 52, in `waitpid` form); none elsewhere, or when it ended by a signal.
/// A zombie keeps its pid, so the number cannot name another process meanwhile.
fn zombie_exit_status(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    exit_code_of_zombie_stat(&stat)
}

fn exit_code_of_zombie_stat(stat: &str) -> Option<i32> {
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    let wait_status: i32 = fields.get(52 - 3)?.parse().ok()?;
    (wait_status & 0x7f == 0).then_some((wait_status >> 8) & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if cond() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// A child this test does not reap stays a zombie: its status is read from /proc, as the
    /// pane's program is when tmux has not reaped it.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_unreaped_programs_exit_status_is_read_from_the_zombie() {
        let ended = |script: &str| {
            let mut child = Command::new("sh").args(["-c", script]).spawn().unwrap();
            let mut status = None;
            assert!(wait_for(|| {
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
                let zombie = stat
                    .rsplit_once(')')
                    .unwrap()
                    .1
                    .trim_start()
                    .starts_with('Z');
                status = zombie_exit_status(child.id());
                zombie
            }));
            child.wait().unwrap();
            status
        };
        assert_eq!(ended("exit 3"), Some(3));
        assert_eq!(ended("exit 0"), Some(0));
        assert_eq!(
            ended("kill -9 $$"),
            None,
            "killed by a signal: no exit code"
        );
        assert_eq!(zombie_exit_status(std::process::id()), None, "not a zombie");
    }

    #[test]
    fn a_stat_line_gives_its_exit_code_only_for_a_zombie() {
        let stat = |state: &str, code: i32| {
            let mut fields = vec!["0"; 50];
            fields[0] = state;
            let code = code.to_string();
            fields[49] = &code;
            format!("42 (a (weird) name) {}", fields.join(" "))
        };
        assert_eq!(exit_code_of_zombie_stat(&stat("Z", 3 << 8)), Some(3));
        assert_eq!(exit_code_of_zombie_stat(&stat("S", 3 << 8)), None);
        assert_eq!(exit_code_of_zombie_stat(&stat("Z", 9)), None);
        assert_eq!(exit_code_of_zombie_stat("garbage"), None);
    }

    #[test]
    fn sessions_run_read_type_and_die_on_a_private_server() {
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux::new(format!("hephaestus-test-{}", std::process::id()));
        let mut env = BTreeMap::new();
        env.insert("GREETING".to_string(), "hello from env".to_string());
        tmux.new_session(
            "t1",
            dir.path(),
            "echo \"$GREETING in $(pwd)\"; cat",
            &env,
            (120, 30),
        )
        .unwrap();
        assert!(tmux.has_session("t1"));
        assert!(!tmux.has_session("t"), "exact names only");
        let cwd = dir.path().canonicalize().unwrap().display().to_string();
        assert!(wait_for(|| tmux
            .capture("t1", 0)
            .unwrap()
            .contains(&format!("hello from env in {cwd}"))));

        tmux.paste("t1", "line one\nline two", &dir.path().join("paste.txt"))
            .unwrap();
        tmux.send_key("t1", "Enter").unwrap();
        assert!(
            wait_for(|| tmux.capture("t1", 0).unwrap().matches("line two").count() >= 2),
            "cat echoed the paste"
        );
        assert!(tmux.is_alive("t1"));
        assert_eq!(tmux.list_sessions().unwrap(), vec!["t1".to_string()]);

        tmux.send_key("t1", "C-d").unwrap();
        assert!(
            wait_for(|| !tmux.is_alive("t1")),
            "the pane is dead once cat exits"
        );
        assert!(
            tmux.has_session("t1"),
            "remain-on-exit keeps the last output"
        );
        tmux.kill_session("t1").unwrap();
        assert!(!tmux.has_session("t1"));
        tmux.kill_session("t1").unwrap();
        tmux.kill_server();
    }
}
