//! The agent manager and what it drives: tmux sessions, git worktrees, CLI adapters, prompts.
//! `manager.rs` is the map of the concerns and the files that hold them.

pub mod adapters;
mod briefing;
mod commands;
mod death;
mod delivery;
mod finish;
mod gc;
pub mod handle;
mod inbox;
mod launch;
pub mod manager;
mod policy;
pub mod progress;
pub mod prompt;
mod resume;
mod teardown;
pub mod terminal;
pub mod tmux;
pub mod worktree;

pub use commands::resolve_agent;
