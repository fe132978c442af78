//! The agents' inboxes: direct messages and broadcasts, kept until read.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Entity, OpError, OpResult, Store};
use crate::time::{now_ms, rfc3339};
use crate::views::MessageView;

/// Longest message body accepted.
pub const MAX_MESSAGE_CHARS: usize = 4000;

fn check_body(body: &str) -> OpResult<()> {
    if body.trim().is_empty() {
        return Err(OpError::Invalid("message must not be empty".into()));
    }
    if body.chars().count() > MAX_MESSAGE_CHARS {
        return Err(OpError::Invalid(format!(
            "message is longer than {MAX_MESSAGE_CHARS} characters: put the details in a file in your worktree or in a task"
        )));
    }
    Ok(())
}

impl Store {
    /// Queues a message for one agent.
    pub fn send_message(&self, sender: &str, recipient: &str, body: &str) -> OpResult<i64> {
        check_body(body)?;
        if sender == recipient {
            return Err(OpError::Invalid(
                "you cannot send a message to yourself".into(),
            ));
        }
        let conn = self.lock();
        let status: Option<String> = conn
            .query_row(
                "SELECT status FROM agents WHERE id = ?1",
                params![recipient],
                |r| r.get(0),
            )
            .optional()?;
        match status.as_deref() {
            None => {
                return Err(OpError::Missing {
                    entity: Entity::Agent,
                    id: recipient.to_string(),
                });
            }
            Some("terminated") => {
                return Err(OpError::Invalid(format!(
                    "agent {recipient} has ended and takes no more messages"
                )));
            }
            _ => {}
        }
        conn.execute(
            "INSERT INTO messages (sender_agent_id, recipient_agent_id, broadcast, body, created_at)
             VALUES (?1, ?2, 0, ?3, ?4)",
            params![sender, recipient, body, now_ms()],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Queues a message from a part of the coordinator (`sender`, e.g. "conductor") for an
    /// agent still at work.
    pub fn send_note(&self, sender: &str, recipient: &str, body: &str) -> OpResult<i64> {
        check_body(body)?;
        let conn = self.lock();
        let changed = conn.execute(
            "INSERT INTO messages (sender_name, recipient_agent_id, broadcast, body, created_at)
             SELECT ?1, id, 0, ?3, ?4 FROM agents WHERE id = ?2 AND status != 'terminated'",
            params![sender, recipient, body, now_ms()],
        )?;
        if changed == 0 {
            return Err(OpError::Invalid(format!(
                "agent {recipient} is unknown or has ended"
            )));
        }
        Ok(conn.last_insert_rowid())
    }

    /// Queues a message for every other active agent, at most one broadcast per sender per
    /// `min_interval_ms`. Returns the recipients.
    pub fn broadcast_message(
        &self,
        sender: &str,
        body: &str,
        min_interval_ms: i64,
    ) -> OpResult<Vec<String>> {
        check_body(body)?;
        let now = now_ms();
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx.query_row(
            "SELECT MAX(created_at) FROM messages WHERE sender_agent_id = ?1 AND broadcast = 1",
            params![sender],
            |r| r.get(0),
        )?;
        if let Some(last) = last
            && now - last < min_interval_ms
        {
            let wait = (min_interval_ms - (now - last) + 999) / 1000;
            return Err(OpError::Conflict(format!(
                "you broadcast less than {}s ago: wait {wait}s, or send to one agent",
                min_interval_ms / 1000
            )));
        }
        let recipients: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT id FROM agents WHERE status != 'terminated' AND id != ?1 ORDER BY created_at",
            )?;
            stmt.query_map(params![sender], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for r in &recipients {
            tx.execute(
                "INSERT INTO messages (sender_agent_id, recipient_agent_id, broadcast, body, created_at)
                 VALUES (?1, ?2, 1, ?3, ?4)",
                params![sender, r, body, now],
            )?;
        }
        if recipients.is_empty() {
            // Still counts for the rate limit, so a loop cannot spin on an empty room.
            tx.execute(
                "INSERT INTO messages (sender_agent_id, recipient_agent_id, broadcast, body, created_at, typed_at, read_at)
                 VALUES (?1, ?1, 1, ?2, ?3, ?3, ?3)",
                params![sender, body, now],
            )?;
        }
        tx.commit()?;
        Ok(recipients)
    }

    /// Unread messages of `agent`, oldest first; they are marked read.
    pub fn take_messages(&self, agent: &str) -> OpResult<Vec<MessageView>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let messages: Vec<MessageView> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, sender_agent_id, broadcast, body, created_at, sender_name FROM messages
                 WHERE recipient_agent_id = ?1 AND read_at IS NULL AND sender_agent_id IS NOT ?1 ORDER BY id",
            )?;
            stmt.query_map(params![agent], |r| {
                Ok(MessageView {
                    id: r.get(0)?,
                    from_agent_id: r.get(1)?,
                    from_coordinator: r.get(5)?,
                    broadcast: r.get(2)?,
                    body: r.get(3)?,
                    sent_at: rfc3339(r.get(4)?),
                })
            })?
            .collect::<Result<_, _>>()?
        };
        tx.execute(
            "UPDATE messages SET read_at = ?2 WHERE recipient_agent_id = ?1 AND read_at IS NULL",
            params![agent, now_ms()],
        )?;
        tx.commit()?;
        Ok(messages)
    }

    /// Messages not yet typed into `agent`'s terminal: (id, sending agent or coordinator part,
    /// body).
    pub fn untyped_messages(&self, agent: &str) -> OpResult<Vec<(i64, Option<String>, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, COALESCE(sender_agent_id, sender_name), body FROM messages
             WHERE recipient_agent_id = ?1 AND typed_at IS NULL AND read_at IS NULL ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![agent], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn mark_typed(&self, ids: &[i64]) -> OpResult<()> {
        let conn = self.lock();
        let now = now_ms();
        for id in ids {
            conn.execute(
                "UPDATE messages SET typed_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inboxes_deliver_once_and_broadcasts_are_rate_limited() {
        let store = Store::open_in_memory().unwrap();
        let a = store.register_agent("a", None).unwrap().0.id;
        let b = store.register_agent("b", None).unwrap().0.id;
        let c = store.register_agent("c", None).unwrap().0.id;
        store.send_message(&a, &b, "hello b").unwrap();
        assert!(store.send_message(&a, &a, "me").is_err());
        assert!(
            store
                .send_message(&a, "ghost", "x")
                .unwrap_err()
                .to_string()
                .contains("no agent")
        );
        assert_eq!(store.untyped_messages(&b).unwrap().len(), 1);
        let got = store.take_messages(&b).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "hello b");
        assert_eq!(got[0].from_agent_id.as_deref(), Some(a.as_str()));
        assert!(store.take_messages(&b).unwrap().is_empty(), "read once");
        assert!(
            store.untyped_messages(&b).unwrap().is_empty(),
            "read messages are not typed"
        );

        let to = store.broadcast_message(&c, "all hands", 10_000).unwrap();
        assert_eq!(to, vec![a.clone(), b.clone()]);
        let again = store
            .broadcast_message(&c, "again", 10_000)
            .unwrap_err()
            .to_string();
        assert!(again.contains("wait"), "{again}");
        assert!(
            store.take_messages(&c).unwrap().is_empty(),
            "no echo to the sender"
        );
        assert!(store.take_messages(&a).unwrap()[0].broadcast);
        assert!(
            store
                .send_message(&a, &b, &"x".repeat(MAX_MESSAGE_CHARS + 1))
                .is_err()
        );
    }
}
