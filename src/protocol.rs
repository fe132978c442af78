//! The one-line handshake that opens every connection to the coordinator's socket.
//!
//! A client writes one JSON line ([`Hello`]) and reads one JSON line ([`Welcome`]). After that an
//! MCP connection carries newline-delimited JSON-RPC and a control connection carries
//! [`crate::control`] requests. The version lets an old shim get a clear error instead of garbage.

use serde::{Deserialize, Serialize};

/// Bumped whenever the handshake or the control protocol changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest handshake line the coordinator reads.
pub const MAX_HELLO_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An MCP session: the shim forwarding an agent CLI's stdio.
    Mcp,
    /// The `hephaestus` CLI run by a person.
    Control,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub hephaestus: u32,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub coordinator_pid: u32,
}

impl Hello {
    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("hello serializes");
        line.push(b'\n');
        line
    }
}

impl Welcome {
    pub fn accept() -> Self {
        Welcome {
            ok: true,
            error: None,
            coordinator_pid: std::process::id(),
        }
    }

    pub fn reject(reason: impl Into<String>) -> Self {
        Welcome {
            ok: false,
            error: Some(reason.into()),
            coordinator_pid: std::process::id(),
        }
    }

    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("welcome serializes");
        line.push(b'\n');
        line
    }
}
