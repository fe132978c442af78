//! The accept loop: checks each peer's uid, reads its handshake, and serves it as an MCP session
//! or a control client. Takes its listener and a shutdown token; reads no flags or signals.

use std::time::Duration;

use anyhow::Result;
use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::mcp::{McpSession, transport::LineTransport};
use crate::protocol::{Hello, MAX_HELLO_BYTES, PROTOCOL_VERSION, Role, Welcome};
use crate::state::Shared;

/// How long in-flight connections get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that connects and says nothing is dropped after this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves connections until `shutdown` fires, then stops accepting and waits (bounded) for the
/// connections in flight.
pub async fn run(listener: UnixListener, state: Shared, shutdown: CancellationToken) -> Result<()> {
    let tracker = TaskTracker::new();
    let my_uid = unsafe { libc::geteuid() };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    if let Err(e) = handle(stream, state, my_uid, shutdown).await {
                        tracing::debug!("connection ended with error: {e:#}");
                    }
                });
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

async fn handle(
    stream: UnixStream,
    state: Shared,
    my_uid: u32,
    shutdown: CancellationToken,
) -> Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut read)).await {
        Ok(Ok(h)) => h,
        Ok(Err(reason)) => {
            write.write_all(&Welcome::reject(reason).line()).await?;
            return Ok(());
        }
        Err(_) => return Ok(()),
    };
    // Checked after the handshake line is read, so the refusal reaches a client that is still
    // writing (closing first would hand it a broken pipe instead of the reason).
    if cred.uid() != my_uid {
        tracing::warn!(uid = cred.uid(), "rejected a connection from another user");
        let msg =
            format!("connection refused: the coordinator only accepts its own user (uid {my_uid})");
        write.write_all(&Welcome::reject(msg).line()).await?;
        return Ok(());
    }
    if hello.hephaestus != PROTOCOL_VERSION {
        let msg = format!(
            "protocol version {} is not supported: this coordinator speaks version {PROTOCOL_VERSION}; run the same hephaestus binary for the shim and the coordinator",
            hello.hephaestus
        );
        write.write_all(&Welcome::reject(msg).line()).await?;
        return Ok(());
    }
    match hello.role {
        Role::Control => {
            write.write_all(&Welcome::accept().line()).await?;
            crate::control::serve(read, write, state).await
        }
        Role::Mcp => {
            let agent_id = match &hello.agent_id {
                Some(id) => match state.store.authenticate(id, hello.token.as_deref()) {
                    Ok(auth) => Some(auth.agent_id),
                    Err(e) => {
                        tracing::warn!(agent = %id, "handshake refused: {e}");
                        write
                            .write_all(&Welcome::reject(e.to_string()).line())
                            .await?;
                        return Ok(());
                    }
                },
                None => None,
            };
            write.write_all(&Welcome::accept().line()).await?;
            tracing::debug!(
                agent = agent_id.as_deref().unwrap_or("external"),
                pid = hello.pid,
                "mcp session opened"
            );
            let session = McpSession::new(state.clone(), agent_id, hello.pid);
            let transport = LineTransport::new(read, write, state.config.max_message_bytes);
            let running = session
                .serve_with_ct(transport, shutdown.child_token())
                .await?;
            let agent = running.service().agent_id();
            let _ = running.waiting().await;
            crate::mcp::on_disconnect(&state, agent);
            Ok(())
        }
    }
}

async fn read_hello<R: tokio::io::AsyncBufRead + Unpin>(
    read: &mut R,
) -> std::result::Result<Hello, String> {
    let mut line = Vec::new();
    let n = read
        .take(MAX_HELLO_BYTES as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("cannot read handshake: {e}"))?;
    if n == 0 {
        return Err("connection closed before the handshake".into());
    }
    if !line.ends_with(b"\n") {
        return Err(format!(
            "handshake line missing or longer than {MAX_HELLO_BYTES} bytes"
        ));
    }
    serde_json::from_slice(&line).map_err(|e| {
        format!("invalid handshake ({e}): start the connection with `hephaestus shim`, not a raw MCP client")
    })
}
