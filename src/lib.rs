//! Hephaestus: one coordinator that many AI coding agents talk to over MCP.
//!
//! The binary (`main.rs`) only parses the command line and calls into these modules; see
//! ARCHITECTURE.md for the code map and the invariants each module keeps.

pub mod agents;
pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod events;
pub mod guardian;
pub mod hook;
pub mod llm;
pub mod logging;
pub mod mcp;
pub mod mcp_config;
pub mod memory;
pub mod phases;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod services;
pub mod shim;
pub mod state;
pub mod states;
pub mod store;
pub mod text;
pub mod time;
pub mod views;
