//! The domain operations every front end shares: the MCP tools, the control socket the CLI
//! speaks, the agent manager, and later the board. Each checks, writes through the store (one
//! transaction per operation) and publishes what changed on the event bus; so a task reported
//! done from any front end is logged, its learnings saved and the manager woken, the same way.
//! Front ends parse, call one of these, and render. Reads go to the store directly.

pub mod memory;
pub mod messages;
pub mod tasks;
pub mod workflows;
