//! The CLI's end of the control protocol: a blocking connection to the coordinator.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Request, Response};
use crate::protocol::{Hello, PROTOCOL_VERSION, Role, Welcome};

/// A blocking control connection, for the CLI.
pub struct Client {
    read: BufReader<UnixStream>,
    write: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client> {
        Self::handshake(UnixStream::connect(socket).map_err(|e| {
            anyhow!(
                "cannot reach the coordinator at {}: {e}; start it with `hephaestus serve`",
                socket.display()
            )
        })?)
    }

    /// Connects and gives up on any read or write that takes longer than `limit` (for callers
    /// that must not hang, like a CLI's hook).
    pub fn connect_within(socket: &Path, limit: std::time::Duration) -> Result<Client> {
        let stream = UnixStream::connect(socket).map_err(|e| {
            anyhow!(
                "cannot reach the coordinator at {}: {e}; start it with `hephaestus serve`",
                socket.display()
            )
        })?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        Self::handshake(stream)
    }

    fn handshake(stream: UnixStream) -> Result<Client> {
        let mut write = stream.try_clone()?;
        let hello = Hello {
            hephaestus: PROTOCOL_VERSION,
            role: Role::Control,
            agent_id: None,
            token: None,
            pid: std::process::id(),
        };
        write.write_all(&hello.line())?;
        let mut read = BufReader::new(stream);
        let mut line = String::new();
        read.read_line(&mut line)
            .context("coordinator closed the connection during the handshake")?;
        let welcome: Welcome = serde_json::from_str(&line)
            .context("unexpected handshake answer from the coordinator")?;
        if !welcome.ok {
            bail!(
                "coordinator refused the connection: {}",
                welcome.error.unwrap_or_default()
            );
        }
        Ok(Client { read, write })
    }

    pub fn call(&mut self, req: &Request) -> Result<Value> {
        let mut bytes = serde_json::to_vec(req)?;
        bytes.push(b'\n');
        self.write
            .write_all(&bytes)
            .context("cannot send request to the coordinator")?;
        let mut line = String::new();
        if self.read.read_line(&mut line)? == 0 {
            bail!("coordinator closed the connection before answering");
        }
        let resp: Response =
            serde_json::from_str(&line).context("unreadable answer from the coordinator")?;
        if resp.ok {
            Ok(resp.data.unwrap_or(Value::Null))
        } else {
            Err(anyhow!(
                resp.error.unwrap_or_else(|| "unknown error".into())
            ))
        }
    }
}

impl Client {
    /// Sends a request and reads its answer both as it came (for `--json`) and as the reply
    /// type both ends share (for printing).
    pub fn ask<T: DeserializeOwned>(&mut self, req: &Request) -> Result<(Value, T)> {
        let value = self.call(req)?;
        let typed = serde_json::from_value(value.clone())
            .context("the coordinator answered in a shape this CLI does not know; are both the same version?")?;
        Ok((value, typed))
    }
}
