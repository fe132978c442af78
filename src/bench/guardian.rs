//! `hephaestus bench guardian`: how soon the guardian knows an agent's state, and what its LLM
//! judgement costs an hour.
//!
//! 1. Latency, measured through the real coordinator: a scripted agent in tmux flips its screen
//!    between working and idle on request and notes when it did; the latency is from then to the
//!    `state_changed` event the guardian logs. Idle includes the screen's stillness wait by
//!    design (`still_after_ms`). The original reads every agent once a minute: 30 s on average,
//!    up to 60 s.
//! 2. LLM input per agent-hour, computed on one scripted hour of panes: our judgement (asked only
//!    when the screen changed, at most every `judge_every_secs`, with only the new lines) next
//!    to a fixed 60 s loop over the same panes that sends the agent's output up to 40,000
//!    characters, as the original does. Tokens are estimated the same way for both (4 characters
//!    a token); the original's own prompt text is not counted, so its figure is a lower bound.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::agents::cli;
use super::{BenchArgs, ms, stats};
use crate::guardian::judge;
use crate::states::AgentState;

const STILL_AFTER_MS: u64 = 1500;

pub fn run(args: &BenchArgs, exe: &Path, dir: &Path) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; run `cargo run --release -- bench guardian`");
    }
    let (working, idle) = latency(args, exe, dir)?;
    let hour = tokens_per_hour(args.judge_every_secs);
    let (w, i) = (stats(working.clone()), stats(idle.clone()));
    println!(
        "| pane change → state known ({} flips each way, poll {} ms) | p50 | p99 | note |",
        working.len(),
        args.poll_ms
    );
    println!("|---|---|---|---|");
    println!(
        "| to working (a rule matches at once) | {} | {} | original: a 60 s loop, 30 s on average |",
        ms(w.p50),
        ms(w.p99)
    );
    println!(
        "| to idle (rule + {STILL_AFTER_MS} ms of stillness) | {} | {} | never guessed on a moving screen |",
        ms(i.p50),
        ms(i.p99)
    );
    println!();
    println!("| LLM input, one scripted agent-hour | calls | input tokens | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| fixed 60 s loop, output up to 40,000 chars (the original's shape; its prompt not counted) | {} | {} | 1 |",
        hour.loop_calls, hour.loop_tokens
    );
    println!(
        "| Hephaestus judgement (screen changed, at most every {} s, new lines only) | {} | {} | {:.3} |",
        args.judge_every_secs,
        hour.our_calls,
        hour.our_tokens,
        hour.our_tokens as f64 / hour.loop_tokens as f64
    );
    Ok(())
}

fn latency(args: &BenchArgs, exe: &Path, dir: &Path) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("screen_rules"))?;
    let git = |a: &[&str]| {
        Command::new("git")
            .args(["-c", "user.name=Bench", "-c", "user.email=bench@localhost"])
            .args(a)
            .current_dir(&repo)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdout(Stdio::null())
            .status()
    };
    git(&["init", "-q", "-b", "trunk"])?;
    std::fs::write(repo.join(".gitignore"), ".hephaestus/\nscreen_rules/\n")?;
    git(&["add", "."])?;
    git(&["commit", "-q", "-m", "bench"])?;
    let flip = dir.join("flip");
    std::fs::write(
        repo.join("hephaestus.toml"),
        format!(
            "[agents]\ncli = \"custom\"\ncustom_command = \"python3 {} --mcp-config {{mcp_config}} --flip-file {}\"\nworktrees_dir = \"{}\"\n[guardian]\npoll_ms = {}\nidle_nudge_secs = 3600\n",
            args.agent_script.display(),
            flip.display(),
            dir.join("agent-worktrees").display(),
            args.poll_ms
        ),
    )?;
    std::fs::write(
        repo.join("screen_rules/custom.toml"),
        format!(
            "still_after_ms = {STILL_AFTER_MS}\n[[rule]]\nname = \"working\"\nstate = \"working\"\nin = \"bottom\"\nlines = 1\nany = [\"working:\"]\n[[rule]]\nname = \"prompt\"\nstate = \"idle\"\nin = \"bottom\"\nlines = 1\nall = [\"turn over >\"]\n"
        ),
    )?;
    let mut serve = Command::new(exe)
        .args(["serve", "--log-level", "warn"])
        .current_dir(&repo)
        .env("HEPHAESTUS_EMBEDDER", "hashing")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = flips(args, exe, &repo, &flip);
    let tmux = cli(exe, &repo, &["status"])
        .ok()
        .and_then(|v| v["tmux_socket"].as_str().map(str::to_string));
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let _ = serve.wait();
    if let Some(socket) = tmux {
        crate::agents::tmux::Tmux::new(socket).kill_server();
    }
    result
}

fn flips(
    args: &BenchArgs,
    exe: &Path,
    repo: &Path,
    flip: &Path,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while cli(exe, repo, &["status"]).is_err() {
        if Instant::now() > deadline {
            bail!("the coordinator did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cli(exe, repo, &["task", "create", "SLEEP 0", "--done", "never"])?;
    let agent = wait_for(Duration::from_secs(60), "the agent at work", || {
        let agents = cli(exe, repo, &["agents"])?;
        Ok(agents.as_array().and_then(|a| {
            a.iter()
                .find(|a| a["kind"] == "managed" && a["status"] == "working")
                .and_then(|a| a["id"].as_str().map(str::to_string))
        }))
    })?;
    let (mut working, mut idle) = (Vec::new(), Vec::new());
    eprintln!("flipping the agent's screen {} times…", args.flips * 2);
    for i in 0..args.flips * 2 {
        let want = if i % 2 == 0 {
            AgentState::Working
        } else {
            AgentState::Idle
        };
        let word = if want == AgentState::Working {
            "working"
        } else {
            "idle"
        };
        // Each flip follows a state change the guardian logged at one of its polls: without
        // a spread, every flip would land just after a poll and wait a whole interval.
        std::thread::sleep(Duration::from_millis(
            (i as u64 * 137) % args.poll_ms.max(1),
        ));
        std::fs::write(flip, format!("{word} {i}\n"))?;
        let shown_file = flip.with_extension("shown");
        let shown_ms = wait_for(Duration::from_secs(10), "the screen to flip", || {
            let text = std::fs::read_to_string(&shown_file).unwrap_or_default();
            Ok(text
                .strip_prefix(&format!("{word} {i} "))
                .and_then(|t| t.trim().parse::<f64>().ok()))
        })?;
        let changed_ms = wait_for(Duration::from_secs(10), "the state change", || {
            let detail = cli(exe, repo, &["agents", "show", &agent])?;
            Ok(detail["events"].as_array().and_then(|events| {
                events
                    .iter()
                    .filter(|e| {
                        e["kind"] == "state_changed"
                            && e["message"]
                                .as_str()
                                .is_some_and(|m| m.starts_with(&format!("{want} (")))
                    })
                    .filter_map(|e| e["at_ms"].as_i64())
                    .find(|at| *at as f64 >= shown_ms - 1.0)
            }))
        })?;
        let d = Duration::from_secs_f64(((changed_ms as f64 - shown_ms).max(0.0)) / 1000.0);
        if want == AgentState::Working {
            working.push(d);
        } else {
            idle.push(d);
        }
    }
    Ok((working, idle))
}

fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Hour {
    loop_calls: u64,
    loop_tokens: u64,
    our_calls: u64,
    our_tokens: u64,
}

fn tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// One scripted hour: bursts of output (a line every 2 s for 3 minutes: a build, tests, edits),
/// then 2 minutes at the prompt thinking or waiting, and so on. The screen is the last 50 lines
/// and a footer, as a 200-column terminal shows them.
fn tokens_per_hour(judge_every_secs: u64) -> Hour {
    let mut output: Vec<String> = Vec::new();
    let mut hour = Hour {
        loop_calls: 0,
        loop_tokens: 0,
        our_calls: 0,
        our_tokens: 0,
    };
    let system = crate::agents::prompt::GUARDIAN_JUDGEMENT.len()
        + serde_json::to_string(&schemars::schema_for!(judge::Verdict))
            .map(|s| s.len())
            .unwrap_or(0)
        + 100;
    let (mut last_screen, mut last_judged): (Option<String>, i64) = (None, i64::MIN / 2);
    let summaries: Vec<String> = vec!["building and testing the flag".into(); 3];
    for second in 0..3600i64 {
        let in_burst = second % 300 < 180;
        if in_burst && second % 2 == 0 {
            output.push(format!(
                "   Compiling crate-{:03} v0.{}.{} (step {second}): checking src/module_{}.rs and its tests",
                second % 97,
                second % 7,
                second % 13,
                second % 31
            ));
        }
        let mut screen: Vec<&str> = output[output.len().saturating_sub(50)..]
            .iter()
            .map(String::as_str)
            .collect();
        screen.push(if in_burst {
            "working: esc to interrupt"
        } else {
            "> "
        });
        let screen = screen.join("\n");
        if second % 60 == 59 {
            // The fixed loop: the output so far, up to 40,000 characters, every minute.
            let all = output.join("\n");
            hour.loop_calls += 1;
            hour.loop_tokens += tokens(all.len().min(40_000));
        }
        let changed = last_screen.as_deref() != Some(screen.as_str());
        if changed && second - last_judged >= judge_every_secs as i64 {
            let q = judge::question(&judge::Seen {
                task_id: "4391b468-3e35-4f71-a0a4-751089485f9e",
                description: "Add a --json flag to the status command, with tests",
                done_definition: "status --json prints the status as JSON and the tests pass",
                state: if in_burst {
                    AgentState::Working
                } else {
                    AgentState::Idle
                },
                screen: &screen,
                last_screen: last_screen.as_deref(),
                summaries: &summaries,
                max_chars: 6000,
            });
            last_screen = Some(screen.clone());
            if let Some(q) = q {
                last_judged = second;
                hour.our_calls += 1;
                hour.our_tokens += tokens(system + q.len());
            }
        }
    }
    hour
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scripted_hour_asks_less_than_the_fixed_loop() {
        let hour = super::tokens_per_hour(120);
        assert_eq!(hour.loop_calls, 60);
        assert!(hour.our_calls <= 30, "{}", hour.our_calls);
        assert!(hour.our_tokens > 0 && hour.our_tokens < hour.loop_tokens);
    }
}
