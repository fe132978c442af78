//! The `hephaestus` binary: parses the command line and calls into the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The shim is launched for every agent and sits on every tool call's path: it skips
    // argument parsing, logging set-up and (when the socket is given) config discovery.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") && std::env::args_os().len() == 2 {
        return hephaestus::shim::main();
    }
    // A CLI's lifecycle hook runs this at every turn: as light as the shim.
    let args: Vec<String> = std::env::args().collect();
    if (args.len() == 3 || args.len() == 4) && args[1] == "hook" {
        return hephaestus::hook::main(&args[2], args.get(3).map(std::path::Path::new));
    }
    // One TLS crypto provider for the process (HTTP clients panic without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
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
