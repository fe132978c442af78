//! Agents: registration, token checks and the views tools return.

use rusqlite::{OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

use super::{Entity, OpError, OpResult, Store, new_id};
pub use crate::states::AgentKind;
use crate::states::AgentStatus;
use crate::time::{now_ms, rfc3339};
use crate::views::AgentView;

/// Who a connection speaks for, once its handshake is accepted.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub agent_id: String,
    pub kind: AgentKind,
}

const AGENT_COLUMNS: &str =
    "id, name, kind, status, cli_type, current_task_id, created_at, last_activity_at";

fn agent_from_row(r: &Row<'_>) -> rusqlite::Result<AgentView> {
    Ok(AgentView {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        cli_type: r.get(4)?,
        current_task_id: r.get(5)?,
        created_at: rfc3339(r.get(6)?),
        last_activity_at: rfc3339(r.get(7)?),
    })
}

fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Store {
    /// Registers an agent that will authenticate with the returned token.
    pub fn register_agent(
        &self,
        name: &str,
        cli_type: Option<&str>,
    ) -> OpResult<(AgentView, String)> {
        let id = new_id();
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = now_ms();
        let conn = self.lock();
        conn.execute(
            "INSERT INTO agents (id, name, kind, cli_type, token_hash, status, created_at, last_activity_at)
             VALUES (?1, ?2, 'managed', ?3, ?4, 'idle', ?5, ?5)",
            params![id, name, cli_type, hash_token(&token), now],
        )?;
        let agent = get_agent(&conn, &id)?;
        Ok((agent, token))
    }

    /// Registers (or finds again, after a reconnect of the same process) an external agent named
    /// after the MCP client that connected.
    pub fn register_external_agent(&self, client_name: &str, pid: u32) -> OpResult<AgentView> {
        let now = now_ms();
        let conn = self.lock();
        let existing: Option<String> = conn
            .query_row(
                "SELECT id FROM agents WHERE kind = 'external' AND client_name = ?1
                 AND client_pid = ?2 AND status != 'terminated'",
                params![client_name, pid],
                |r| r.get(0),
            )
            .optional()?;
        let id = match existing {
            Some(id) => {
                conn.execute(
                    "UPDATE agents SET last_activity_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                id
            }
            None => {
                let id = new_id();
                conn.execute(
                    "INSERT INTO agents (id, name, kind, status, client_name, client_pid, created_at, last_activity_at)
                     VALUES (?1, ?2, 'external', 'idle', ?3, ?4, ?5, ?5)",
                    params![id, format!("external:{client_name}"), client_name, pid, now],
                )?;
                id
            }
        };
        get_agent(&conn, &id)
    }

    /// Checks an agent id and token from a handshake.
    pub fn authenticate(&self, agent_id: &str, token: Option<&str>) -> OpResult<Authenticated> {
        let conn = self.lock();
        let row: Option<(AgentKind, Option<String>, AgentStatus)> = conn
            .query_row(
                "SELECT kind, token_hash, status FROM agents WHERE id = ?1",
                params![agent_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((kind, token_hash, status)) = row else {
            return Err(OpError::Forbidden(format!(
                "unknown agent id {agent_id}: HEPHAESTUS_AGENT_ID must name an agent this coordinator registered"
            )));
        };
        if status == AgentStatus::Terminated {
            return Err(OpError::Forbidden(format!(
                "agent {agent_id} has been terminated"
            )));
        }
        let ok = match (&token_hash, token) {
            (Some(hash), Some(t)) => same(hash, &hash_token(t)),
            _ => false,
        };
        if !ok {
            return Err(OpError::Forbidden(format!(
                "wrong or missing token for agent {agent_id}: check HEPHAESTUS_AGENT_TOKEN"
            )));
        }
        Ok(Authenticated {
            agent_id: agent_id.to_string(),
            kind,
        })
    }

    pub fn get_agent(&self, id: &str) -> OpResult<AgentView> {
        get_agent(&self.lock(), id)
    }

    /// Agents that are not terminated, oldest first; all of them with `include_terminated`.
    pub fn list_agents(&self, include_terminated: bool) -> OpResult<Vec<AgentView>> {
        let conn = self.lock();
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents {} ORDER BY created_at, id",
            if include_terminated {
                ""
            } else {
                "WHERE status != 'terminated'"
            }
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([], agent_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Marks an agent terminated (its connection ended for good, or a person stopped it).
    /// Marks a working agent stuck (it stopped without reporting, and reminders did not help);
    /// false when it was not working.
    pub fn mark_stuck(&self, id: &str) -> OpResult<bool> {
        let changed = self.lock().execute(
            "UPDATE agents SET status = 'stuck' WHERE id = ?1 AND status = 'working'",
            params![id],
        )?;
        Ok(changed == 1)
    }

    pub fn terminate_agent(&self, id: &str) -> OpResult<()> {
        let now = now_ms();
        self.lock().execute(
            "UPDATE agents SET status = 'terminated', terminated_at = ?2, last_activity_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }
}

pub(super) fn get_agent(conn: &rusqlite::Connection, id: &str) -> OpResult<AgentView> {
    conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?1"))?
        .query_row(params![id], agent_from_row)
        .optional()?
        .ok_or_else(|| OpError::Missing {
            entity: Entity::Agent,
            id: id.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_and_not_stored_in_clear() {
        let store = Store::open_in_memory().unwrap();
        let (agent, token) = store.register_agent("worker", Some("claude")).unwrap();
        assert!(store.authenticate(&agent.id, Some(&token)).is_ok());
        let wrong = store
            .authenticate(&agent.id, Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("wrong or missing token"), "{wrong}");
        let unknown = store
            .authenticate("ghost", Some(&token))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown agent id ghost"), "{unknown}");
        let stored: String = store
            .lock()
            .query_row("SELECT token_hash FROM agents", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, token);
    }

    #[test]
    fn an_external_client_reconnecting_keeps_its_agent() {
        let store = Store::open_in_memory().unwrap();
        let a = store.register_external_agent("claude-code", 42).unwrap();
        let b = store.register_external_agent("claude-code", 42).unwrap();
        let c = store.register_external_agent("claude-code", 43).unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.name, "external:claude-code");
        assert_eq!(a.kind, AgentKind::External);
    }
}
