//! Newline-delimited JSON-RPC over the coordinator's socket, as an rmcp [`Transport`].
//!
//! rmcp's own stream transport drops unparsable lines and oversize messages silently; agents
//! deserve an answer. Here a malformed line gets -32700, a message over the size limit gets
//! -32600 (its bytes are skipped, never buffered), a known method with bad params gets -32602,
//! and an unknown method gets -32601 at once, before or after `initialize`. The connection
//! keeps working after each of them.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{ClientRequest, JsonRpcMessage};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

pub struct LineTransport<R, W> {
    read: R,
    line: Vec<u8>,
    max_bytes: usize,
    /// Skipping the rest of an oversize line; kept on the struct because `receive` may be
    /// cancelled between reads.
    discarding: bool,
    write: Arc<Mutex<W>>,
}

impl<R, W> LineTransport<R, W>
where
    R: AsyncBufRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// `read` must be the buffered reader the handshake was read with: it may already hold the
    /// first request.
    pub fn new(read: R, write: W, max_bytes: usize) -> Self {
        LineTransport {
            read,
            line: Vec::new(),
            max_bytes,
            discarding: false,
            write: Arc::new(Mutex::new(write)),
        }
    }

    /// Sends an error response without tying it to `receive`'s cancellation: a dropped
    /// `receive` must never leave half a line on the socket.
    fn answer_error(&self, id: Value, code: i64, message: String) {
        let mut bytes =
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
                .to_string()
                .into_bytes();
        bytes.push(b'\n');
        let write = self.write.clone();
        tokio::spawn(async move {
            let mut w = write.lock().await;
            let _ = w.write_all(&bytes).await;
            let _ = w.flush().await;
        });
    }

    /// Reads one line into `self.line`; `Ok(false)` at end of stream.
    async fn read_line(&mut self) -> std::io::Result<LineOutcome> {
        loop {
            let (consumed, outcome) = {
                let available = self.read.fill_buf().await?;
                if available.is_empty() {
                    return Ok(LineOutcome::Eof);
                }
                let newline = available.iter().position(|b| *b == b'\n');
                let take = newline.map_or(available.len(), |i| i + 1);
                if self.discarding {
                    if newline.is_some() {
                        self.discarding = false;
                    }
                    (take, None)
                } else if self.line.len() + take > self.max_bytes + 1 {
                    self.line.clear();
                    self.discarding = newline.is_none();
                    (take, Some(LineOutcome::Oversize))
                } else {
                    self.line.extend_from_slice(&available[..take]);
                    (take, newline.map(|_| LineOutcome::Line))
                }
            };
            self.read.consume(consumed);
            if let Some(o) = outcome {
                return Ok(o);
            }
        }
    }
}

enum LineOutcome {
    Line,
    Oversize,
    Eof,
}

impl<R, W> Transport<RoleServer> for LineTransport<R, W>
where
    R: AsyncBufRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        async move {
            let mut bytes = serde_json::to_vec(&item)?;
            bytes.push(b'\n');
            let mut w = write.lock().await;
            w.write_all(&bytes).await?;
            w.flush().await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            match self.read_line().await {
                Ok(LineOutcome::Line) => {}
                Ok(LineOutcome::Oversize) => {
                    tracing::warn!(limit = self.max_bytes, "rejected an oversize message");
                    self.answer_error(
                        Value::Null,
                        -32600,
                        format!(
                            "message exceeds the {} byte limit and was discarded",
                            self.max_bytes
                        ),
                    );
                    continue;
                }
                Ok(LineOutcome::Eof) => return None,
                Err(e) => {
                    tracing::debug!("connection read failed: {e}");
                    return None;
                }
            }
            let line = std::mem::take(&mut self.line);
            let text = trim_line(&line);
            if text.is_empty() {
                self.line = line;
                self.line.clear();
                continue;
            }
            let parsed = serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(text);
            let reply = match parsed {
                Ok(JsonRpcMessage::Request(req)) => match &req.request {
                    ClientRequest::CustomRequest(custom) => Some((
                        serde_json::to_value(&req.id).unwrap_or(Value::Null),
                        -32601,
                        format!("method not found: {}", custom.method),
                    )),
                    _ => {
                        self.recycle(line);
                        return Some(JsonRpcMessage::Request(req));
                    }
                },
                Ok(msg) => {
                    self.recycle(line);
                    return Some(msg);
                }
                Err(e) => classify(text, e),
            };
            if let Some((id, code, message)) = reply {
                self.answer_error(id, code, message);
            }
            self.recycle(line);
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.write.lock().await.shutdown().await
    }
}

impl<R, W> LineTransport<R, W> {
    /// Keeps the line buffer's capacity for the next message.
    fn recycle(&mut self, mut line: Vec<u8>) {
        line.clear();
        self.line = line;
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}

/// The error answer for a line rmcp could not take: parse error, invalid request or invalid
/// params. Notifications (no id) with bad params get no answer, as JSON-RPC requires.
fn classify(text: &[u8], err: serde_json::Error) -> Option<(Value, i64, String)> {
    let value: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => return Some((Value::Null, -32700, format!("parse error: {e}"))),
    };
    let Some(obj) = value.as_object() else {
        return Some((
            Value::Null,
            -32600,
            "invalid request: expected a JSON object".into(),
        ));
    };
    let id = obj.get("id").cloned();
    match (obj.get("method").and_then(Value::as_str), id) {
        (Some(method), Some(id)) => {
            Some((id, -32602, format!("invalid params for {method}: {err}")))
        }
        (Some(method), None) => {
            tracing::debug!("ignored malformed notification {method}: {err}");
            None
        }
        (None, id) => Some((
            id.unwrap_or(Value::Null),
            -32600,
            format!("invalid request: {err}"),
        )),
    }
}
