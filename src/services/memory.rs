//! Memory as the front ends change it: every save and delete goes through here, so each is
//! announced on the bus. Search and reindex (which changes no memory's content) are `Memory`'s
//! own (`memory/`).

use anyhow::Result;

use crate::events::Event;
use crate::memory::Saved;
use crate::state::AppState;
use crate::store::NewMemory;

/// Saves a memory (blocking: it embeds). A near-duplicate of a stored one is not saved again.
pub fn save(state: &AppState, new: NewMemory) -> Result<Saved> {
    let saved = state.memory.save(new)?;
    if let Saved::Stored { id } | Saved::Pending { id } = saved {
        state.events.publish(Event::MemorySaved { memory_id: id });
    }
    Ok(saved)
}

/// Deletes a memory (blocking); false when there was none with that id.
pub fn delete(state: &AppState, id: i64) -> Result<bool> {
    let deleted = state.memory.delete(id)?;
    if deleted {
        state.events.publish(Event::MemoryDeleted { memory_id: id });
    }
    Ok(deleted)
}
