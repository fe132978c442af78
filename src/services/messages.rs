//! Messages between agents (and from people): into the recipients' inboxes, announced on the bus
//! so the manager types them into idle terminals.

use crate::events::Event;
use crate::state::AppState;
use crate::store::OpResult;

/// The least time between two broadcasts of one agent.
pub const BROADCAST_INTERVAL_MS: i64 = 10_000;

pub fn send(state: &AppState, sender: &str, recipient: &str, body: &str) -> OpResult<()> {
    state.store.send_message(sender, recipient, body)?;
    state.events.publish(Event::MessageSent {
        from: Some(sender.to_string()),
        to: vec![recipient.to_string()],
    });
    Ok(())
}

/// To every other active agent; the recipients.
pub fn broadcast(state: &AppState, sender: &str, body: &str) -> OpResult<Vec<String>> {
    let recipients = state
        .store
        .broadcast_message(sender, body, BROADCAST_INTERVAL_MS)?;
    state.events.publish(Event::MessageSent {
        from: Some(sender.to_string()),
        to: recipients.clone(),
    });
    Ok(recipients)
}

/// From a part of the coordinator (`sender`, e.g. "conductor") to one agent at work.
pub fn note(state: &AppState, sender: &str, recipient: &str, body: &str) -> OpResult<()> {
    state.store.send_note(sender, recipient, body)?;
    state.events.publish(Event::MessageSent {
        from: None,
        to: vec![recipient.to_string()],
    });
    Ok(())
}
