//! Tracing set-up: the coordinator logs to `logs/coordinator.log` and stderr; CLI commands and the
//! shim log to stderr only (the shim's stdout belongs to the protocol).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

fn filter(level: &str) -> EnvFilter {
    // Dependencies stay at warn so `debug` shows our tool-call lines, not rmcp's internals.
    EnvFilter::try_new(format!("warn,hephaestus={level}"))
        .unwrap_or_else(|_| EnvFilter::new("warn,hephaestus=info"))
}

/// Logs to `<logs_dir>/coordinator.log` and to stderr. Keep the guard alive until exit.
pub fn init_coordinator(logs_dir: &Path, level: &str) -> Result<WorkerGuard> {
    std::fs::create_dir_all(logs_dir)
        .with_context(|| format!("cannot create {}", logs_dir.display()))?;
    let file = tracing_appender::rolling::never(logs_dir, "coordinator.log");
    let (writer, guard) = tracing_appender::non_blocking(file);
    let _ = tracing_subscriber::registry()
        .with(filter(level))
        .with(fmt::layer().with_writer(writer).with_ansi(false))
        // Colours only for a terminal: stderr redirected to a file stays plain text.
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init();
    Ok(guard)
}

/// Logs warnings (or `level`) to stderr.
pub fn init_stderr(level: &str) {
    let _ = tracing_subscriber::registry()
        .with(filter(level))
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init();
}
