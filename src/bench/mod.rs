//! `hephaestus bench`: latency and throughput through the real binary, shim, socket and SQLite
//! file, next to a raw Unix-socket echo measured in the same run as the floor.
//!
//! A benchmark, not a test: it reports figures and asserts nothing. Run the release build
//! (`cargo run --release -- bench`); the machines are shared, so compare ratios within one run.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

mod agents;
mod guardian;
mod memory;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Suite {
    /// Tool calls through the shim, socket and coordinator
    Mcp,
    /// Agent spawning, worktrees vs clones, merge-back
    Agents,
    /// Memory search at 10k and 100k memories, saves, embedding throughput
    Memory,
    /// Pane change to state change latency; LLM input per agent-hour
    Guardian,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure
    #[arg(value_enum, default_value = "mcp")]
    suite: Suite,
    /// Where to put the benchmark's files (e.g. /dev/shm to leave the disk out of it)
    #[arg(long)]
    dir: Option<PathBuf>,
    /// agents: files in the generated repository
    #[arg(long, default_value_t = 5_000)]
    files: usize,
    /// agents: agents spawned one after another
    #[arg(long, default_value_t = 5)]
    spawns: usize,
    /// agents: the scripted agent program that stands in for an agent CLI
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scripted_agent.py"))]
    agent_script: PathBuf,
    /// Sequential get_task calls through one shim
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Concurrent shims for the throughput run
    #[arg(long, default_value_t = 32)]
    shims: usize,
    /// Calls per shim in the throughput run
    #[arg(long, default_value_t = 500)]
    calls_per_shim: usize,
    /// Tasks queued before create_task latency is measured
    #[arg(long, default_value_t = 10_000)]
    prefill: usize,
    /// Shim cold starts to time
    #[arg(long, default_value_t = 50)]
    cold_starts: usize,
    /// guardian: screen flips each way (working, then idle)
    #[arg(long, default_value_t = 20)]
    flips: usize,
    /// guardian: how often the guardian reads the screens
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// guardian: the least time between two LLM judgements of one agent
    #[arg(long, default_value_t = 120)]
    judge_every_secs: u64,
}

pub(crate) struct Stats {
    pub p50: Duration,
    pub p99: Duration,
}

pub(crate) fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
    }
}

pub(crate) fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Resident memory of a process, in MiB, from /proc.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Memory only this process holds (private pages), in MiB: what each extra shim really costs,
/// since the binary's code and libc are shared between all shims and the coordinator.
fn private_mib(pid: u32) -> Option<f64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kb: f64 = rollup
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum();
    Some(kb / 1024.0)
}

/// One shim process spoken to with raw JSON-RPC lines, as an agent CLI does.
struct ShimClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    line: String,
}

impl ShimClient {
    fn spawn(exe: &Path, socket: &Path) -> Result<ShimClient> {
        let mut child = Command::new(exe)
            .arg("shim")
            .env("HEPHAESTUS_SOCKET", socket)
            .env_remove("HEPHAESTUS_AGENT_ID")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a shim")?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(ShimClient {
            child,
            stdin,
            stdout,
            next_id: 0,
            line: String::new(),
        })
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let mut msg = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}),
        )?;
        msg.push(b'\n');
        self.stdin.write_all(&msg)?;
        loop {
            self.line.clear();
            if self.stdout.read_line(&mut self.line)? == 0 {
                bail!("the shim closed its output");
            }
            let v: Value = serde_json::from_str(&self.line)?;
            if v["id"] == json!(self.next_id) {
                if let Some(e) = v.get("error") {
                    bail!("{method} failed: {e}");
                }
                return Ok(v["result"].clone());
            }
        }
    }

    fn initialize(&mut self) -> Result<()> {
        self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}),
        )?;
        self.stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")?;
        Ok(())
    }

    fn tool(&mut self, name: &str, args: Value) -> Result<Value> {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}))?;
        if r["isError"] == json!(true) {
            bail!("{name} refused: {}", r["content"][0]["text"]);
        }
        Ok(r["structuredContent"].clone())
    }
}

impl Drop for ShimClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Round trips of a ~200-byte line over a Unix socket to an echo thread: the floor.
fn echo_floor(dir: &Path, calls: usize) -> Result<Stats> {
    let path = dir.join("echo.sock");
    let listener = UnixListener::bind(&path)?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (stream, _) = listener.accept()?;
        let mut write = stream.try_clone()?;
        let mut read = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            if read.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            write.write_all(&line)?;
        }
    });
    let stream = UnixStream::connect(&path)?;
    let mut write = stream.try_clone()?;
    let mut read = BufReader::new(stream);
    let msg = format!(
        "{}\n",
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_task", "arguments": {"task_id": "0c3a4a8e-3f4e-4b9b-9d55-6f0f3c0f1a2b"}}})
    );
    let mut line = String::new();
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls + 200 {
        let t = Instant::now();
        write.write_all(msg.as_bytes())?;
        line.clear();
        read.read_line(&mut line)?;
        if i >= 200 {
            samples.push(t.elapsed());
        }
    }
    drop(write);
    drop(read);
    let _ = server.join();
    Ok(stats(samples))
}

struct Coordinator {
    child: Child,
    socket: PathBuf,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn start_coordinator(exe: &Path, project: &Path) -> Result<Coordinator> {
    let child = Command::new(exe)
        .args([
            "serve",
            "--no-agents",
            "--max-concurrent-agents",
            "64",
            "--log-level",
            "warn",
        ])
        .current_dir(project)
        // The bench measures the tool path; no memory is used, so no model is needed.
        .env("HEPHAESTUS_EMBEDDER", "hashing")
        .env_remove("HEPHAESTUS_SOCKET")
        .env_remove("HEPHAESTUS_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the coordinator")?;
    let socket = project.join(".hephaestus/coordinator.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the coordinator did not start listening on {}",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Coordinator { child, socket })
}

pub fn run(args: BenchArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("hephaestus-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join(".hephaestus"))?;
    let result = match args.suite {
        Suite::Mcp => run_in(&args, &exe, &dir),
        Suite::Agents => agents::run(&args, &exe, &dir),
        Suite::Memory => memory::run(&dir),
        Suite::Guardian => guardian::run(&args, &exe, &dir),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(args: &BenchArgs, exe: &Path, dir: &Path) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "note: this is a debug build; run `cargo run --release -- bench` for real figures"
        );
    }
    eprintln!("raw socket echo: {} round trips…", args.calls);
    let floor = echo_floor(dir, args.calls)?;

    let coord = start_coordinator(exe, dir)?;
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle = rss_mib(coord.child.id());

    eprintln!("shim cold start ×{}…", args.cold_starts);
    let mut cold = Vec::new();
    let mut shim_rss = None;
    let mut shim_private = None;
    for _ in 0..args.cold_starts {
        let t = Instant::now();
        let mut shim = ShimClient::spawn(exe, &coord.socket)?;
        shim.initialize()?;
        cold.push(t.elapsed());
        shim_rss = rss_mib(shim.child.id());
        shim_private = private_mib(shim.child.id());
    }
    let cold = stats(cold);

    let mut shim = ShimClient::spawn(exe, &coord.socket)?;
    shim.initialize()?;
    let task = shim.tool(
        "create_task",
        json!({"description": "benchmark target", "done_definition": "n/a"}),
    )?;
    let task_id = task["task"]["id"].clone();

    eprintln!("get_task through the shim: {} calls…", args.calls);
    for _ in 0..200 {
        shim.tool("get_task", json!({"task_id": task_id}))?;
    }
    let mut samples = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        let t = Instant::now();
        shim.tool("get_task", json!({"task_id": task_id}))?;
        samples.push(t.elapsed());
    }
    let get_task = stats(samples);

    eprintln!(
        "throughput: {} shims × {} calls…",
        args.shims, args.calls_per_shim
    );
    let mut clients = Vec::new();
    for _ in 0..args.shims {
        let mut c = ShimClient::spawn(exe, &coord.socket)?;
        c.initialize()?;
        clients.push(c);
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(args.shims + 1));
    let per = args.calls_per_shim;
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            let id = task_id.clone();
            std::thread::spawn(move || -> Result<()> {
                barrier.wait();
                for _ in 0..per {
                    c.tool("get_task", json!({"task_id": id}))?;
                }
                Ok(())
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))??;
    }
    let elapsed = t.elapsed();
    let throughput = (args.shims * per) as f64 / elapsed.as_secs_f64();

    eprintln!("create_task: prefilling {} queued tasks…", args.prefill);
    let mut prefill_samples = Vec::with_capacity(args.prefill);
    for i in 0..args.prefill {
        let priority = ["low", "medium", "high"][i % 3];
        let t = Instant::now();
        shim.tool("create_task", json!({"description": format!("queued work {i}"), "done_definition": "n/a", "priority": priority}))?;
        prefill_samples.push(t.elapsed());
    }
    let first_creates = stats(prefill_samples);
    let mut samples = Vec::new();
    for i in 0..1000 {
        let t = Instant::now();
        shim.tool(
            "create_task",
            json!({"description": format!("measured {i}"), "done_definition": "n/a"}),
        )?;
        samples.push(t.elapsed());
    }
    let create = stats(samples);
    let rss_after = rss_mib(coord.child.id());

    let mib = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} MiB"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!("| measurement | p50 | p99 | note |");
    println!("|---|---|---|---|");
    println!(
        "| raw Unix-socket echo (floor) | {} | {} | same run |",
        us(floor.p50),
        us(floor.p99)
    );
    println!(
        "| get_task via shim → socket → coordinator | {} | {} | {:.1}× the floor at p50, {} calls |",
        us(get_task.p50),
        us(get_task.p99),
        get_task.p50.as_secs_f64() / floor.p50.as_secs_f64(),
        args.calls
    );
    println!(
        "| create_task, first {} (committed write) | {} | {} | growing queue |",
        args.prefill,
        us(first_creates.p50),
        us(first_creates.p99)
    );
    println!(
        "| create_task with {}+ tasks queued | {} | {} | 1,000 calls |",
        args.prefill,
        us(create.p50),
        us(create.p99)
    );
    println!(
        "| shim cold start → initialize answered | {} | {} | {} starts |",
        ms(cold.p50),
        ms(cold.p99),
        args.cold_starts
    );
    println!(
        "| throughput, {} concurrent shims | {:.0} calls/s | | {} calls in {:.2} s |",
        args.shims,
        throughput,
        args.shims * per,
        elapsed.as_secs_f64()
    );
    println!(
        "| coordinator RSS idle / after run | {} / {} | | |",
        mib(rss_idle),
        mib(rss_after)
    );
    println!(
        "| shim RSS after initialize | {} | | of which private: {} |",
        mib(shim_rss),
        mib(shim_private)
    );
    Ok(())
}
