//! The agent manager and what it drives: tmux sessions, git worktrees, CLI adapters, prompts.

pub mod adapters;
pub mod manager;
pub mod prompt;
pub mod signals;
pub mod tmux;
pub mod worktree;
