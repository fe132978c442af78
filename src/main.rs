//! The `hephaestus` binary: parses the command line and calls into the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let env = hephaestus::config::env_snapshot();
    let cli = hephaestus::cli::Cli::parse();
    if !matches!(cli.command, hephaestus::cli::Command::Serve { .. }) {
        hephaestus::logging::init_stderr(
            env.get("HEPHAESTUS_LOG_LEVEL")
                .map(String::as_str)
                .unwrap_or("warn"),
        );
    }
    match hephaestus::cli::run(cli, &env) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hephaestus: {e:#}");
            ExitCode::FAILURE
        }
    }
}
