//! `hephaestus bench agents`: what starting and ending an agent costs on a generated repository:
//! worktree creation next to a plain `git clone` of the same repository (the baseline, measured
//! in the same run), the final commit and merge-back, and the whole spawn path of the real
//! manager with the scripted agent (claim → worktree → tmux → CLI connected → task delivered).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{BenchArgs, ms, stats};
use crate::agents::worktree::{BaseRef, MergeOutcome, Worktrees};

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@localhost",
            "-c",
            "init.defaultBranch=trunk",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn generate_repo(repo: &Path, files: usize) -> Result<()> {
    std::fs::create_dir_all(repo)?;
    git(repo, &["init", "-q"])?;
    for i in 0..files {
        let d = repo.join(format!("src/m{:03}", i / 100));
        std::fs::create_dir_all(&d)?;
        std::fs::write(
            d.join(format!("f{i:05}.rs")),
            format!("// file {i}\npub fn f{i}() -> u64 {{ {i} }}\n").repeat(8),
        )?;
    }
    std::fs::write(repo.join(".gitignore"), ".hephaestus/\n")?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "generated"])?;
    Ok(())
}

/// `hephaestus --json ARGS` in `repo`, its answer.
pub(super) fn cli(exe: &Path, repo: &Path, args: &[&str]) -> Result<Value> {
    let out = Command::new(exe)
        .arg("--json")
        .args(args)
        .current_dir(repo)
        .output()?;
    if !out.status.success() {
        bail!(
            "hephaestus {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub fn run(args: &BenchArgs, exe: &Path, dir: &Path) -> Result<()> {
    let repo = dir.join("repo");
    eprintln!("generating a {}-file repository…", args.files);
    generate_repo(&repo, args.files)?;
    let rounds = 5;

    eprintln!("worktree vs clone ×{rounds}…");
    let worktrees = Worktrees::open(&repo, &dir.join("worktrees"))?;
    let (mut create, mut clone) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let id = format!("bench{i:03}");
        let t = Instant::now();
        worktrees.create(&id, &BaseRef::Branch("trunk".into()), &[])?;
        create.push(t.elapsed());
        worktrees.remove(&id, true)?;
        let target = dir.join(format!("clone{i}"));
        let t = Instant::now();
        let status = Command::new("git")
            .args(["clone", "-q", "--no-hardlinks"])
            .arg(&repo)
            .arg(&target)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdout(Stdio::null())
            .status()?;
        clone.push(t.elapsed());
        if !status.success() {
            bail!("git clone failed");
        }
        std::fs::remove_dir_all(&target)?;
    }
    let (create, clone) = (stats(create), stats(clone));

    eprintln!("checkpoint and merge-back ×{rounds}…");
    let (mut commit, mut ff, mut three_way) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (a, b) = (format!("ma{i:03}"), format!("mb{i:03}"));
        let wa = worktrees.create(&a, &BaseRef::Branch("trunk".into()), &[])?;
        let wb = worktrees.create(&b, &BaseRef::Branch("trunk".into()), &[])?;
        for (w, tag) in [(&wa, "a"), (&wb, "b")] {
            for f in 0..10 {
                std::fs::write(
                    w.path.join(format!("src/m000/{tag}{i}_{f}.rs")),
                    format!("// {tag}\n"),
                )?;
            }
        }
        let t = Instant::now();
        worktrees.checkpoint(&wa.path, "bench a")?;
        commit.push(t.elapsed());
        worktrees.checkpoint(&wb.path, "bench b")?;
        let t = Instant::now();
        let first = worktrees.merge(&wa.branch, "trunk", "merge a")?;
        ff.push(t.elapsed());
        let t = Instant::now();
        let second = worktrees.merge(&wb.branch, "trunk", "merge b")?;
        three_way.push(t.elapsed());
        if !matches!(first, MergeOutcome::FastForward { .. })
            || !matches!(second, MergeOutcome::Merged { .. })
        {
            bail!("unexpected merge outcomes: {first:?}, {second:?}");
        }
        worktrees.remove(&a, true)?;
        worktrees.remove(&b, true)?;
    }
    let (commit, ff, three_way) = (stats(commit), stats(ff), stats(three_way));

    eprintln!(
        "spawning {} scripted agents one after another…",
        args.spawns
    );
    if !args.agent_script.is_file() {
        bail!(
            "scripted agent {} not found: pass --agent-script",
            args.agent_script.display()
        );
    }
    std::fs::write(
        repo.join("hephaestus.toml"),
        format!(
            "[agents]\ncli = \"custom\"\ncustom_command = \"python3 {} --mcp-config {{mcp_config}}\"\nworktrees_dir = \"{}\"\n",
            args.agent_script.display(),
            dir.join("agent-worktrees").display()
        ),
    )?;
    let mut serve = Command::new(exe)
        .args([
            "serve",
            "--max-concurrent-agents",
            "1",
            "--log-level",
            "warn",
        ])
        .current_dir(&repo)
        // Memories go into each first message; the hashing embedder keeps that off the
        // measured path's first-use model load.
        .env("HEPHAESTUS_EMBEDDER", "hashing")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = spawn_rounds(args, exe, &repo);
    let tmux = cli(exe, &repo, &["status"])
        .ok()
        .and_then(|v| v["tmux_socket"].as_str().map(str::to_string));
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let _ = serve.wait();
    if let Some(socket) = tmux {
        crate::agents::tmux::Tmux::new(socket).kill_server();
    }
    let (session, connected, delivered, done) = result?;

    println!("| measurement ({} files) | p50 | p99 | note |", args.files);
    println!("|---|---|---|---|");
    println!(
        "| git clone --no-hardlinks (baseline) | {} | {} | same run |",
        ms(clone.p50),
        ms(clone.p99)
    );
    println!(
        "| worktree + branch (git2) | {} | {} | {:.2}× the clone at p50 |",
        ms(create.p50),
        ms(create.p99),
        create.p50.as_secs_f64() / clone.p50.as_secs_f64()
    );
    println!(
        "| final commit of 10 changed files | {} | {} | |",
        ms(commit.p50),
        ms(commit.p99)
    );
    println!(
        "| merge-back, fast-forward | {} | {} | |",
        ms(ff.p50),
        ms(ff.p99)
    );
    println!(
        "| merge-back, three-way in memory | {} | {} | |",
        ms(three_way.p50),
        ms(three_way.p99)
    );
    println!(
        "| spawn: task queued → worktree + tmux session up | {} | {} | {} spawns |",
        ms(session.p50),
        ms(session.p99),
        args.spawns
    );
    println!(
        "| spawn: → agent CLI connected (its shim initialized) | {} | {} | scripted agent (python3) |",
        ms(connected.p50),
        ms(connected.p99)
    );
    println!(
        "| spawn: → first message delivered and acted on | {} | {} | first tool call |",
        ms(delivered.p50),
        ms(delivered.p99)
    );
    println!(
        "| whole task: queued → done and merged | {} | {} | |",
        ms(done.p50),
        ms(done.p99)
    );
    Ok(())
}

type Spawns = (super::Stats, super::Stats, super::Stats, super::Stats);

fn spawn_rounds(args: &BenchArgs, exe: &Path, repo: &Path) -> Result<Spawns> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while cli(exe, repo, &["status"]).is_err() {
        if Instant::now() > deadline {
            bail!("the coordinator did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut session, mut connected, mut delivered, mut done) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.spawns {
        // Measure each spawn from an idle manager: the previous agent fully ended.
        let deadline = Instant::now() + Duration::from_secs(60);
        while cli(exe, repo, &["agents"])?
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["kind"] == "managed"))
        {
            if Instant::now() > deadline {
                bail!("the previous agent did not end within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let queued_at = crate::time::now_ms();
        let t = Instant::now();
        let task = cli(
            exe,
            repo,
            &[
                "task",
                "create",
                &format!("WRITE spawn{i}.txt: x"),
                "--done",
                "written",
            ],
        )?;
        let id = task["task"]["id"].as_str().unwrap_or_default().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t_now = cli(exe, repo, &["task", "show", &id])?;
            if t_now["status"] == "failed" {
                bail!("spawn {i} failed: {}", t_now["failure_reason"]);
            }
            if t_now["status"] == "done" && t_now["merge_status"] == "merged" {
                done.push(t.elapsed());
                break;
            }
            if Instant::now() > deadline {
                bail!("spawn {i} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let agents = cli(exe, repo, &["agents", "list", "--all"])?;
        let agent = agents
            .as_array()
            .and_then(|a| a.iter().rev().find(|a| a["kind"] == "managed"))
            .and_then(|a| a["id"].as_str())
            .unwrap_or_default()
            .to_string();
        let info = cli(exe, repo, &["agents", "show", &agent])?;
        let at = |kind: &str| -> Result<Duration> {
            let ms = info["events"]
                .as_array()
                .and_then(|e| e.iter().find(|e| e["kind"] == kind))
                .and_then(|e| e["at_ms"].as_i64())
                .with_context(|| format!("agent {agent} has no {kind} event"))?;
            Ok(Duration::from_millis((ms - queued_at).max(0) as u64))
        };
        session.push(at("created")?);
        connected.push(at("connected")?);
        delivered.push(at("prompt_delivered")?);
    }
    Ok((
        stats(session),
        stats(connected),
        stats(delivered),
        stats(done),
    ))
}
