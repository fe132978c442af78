pub mod config;
pub mod phases;
pub mod protocol;
pub mod queue;
pub mod store;
pub mod time;
