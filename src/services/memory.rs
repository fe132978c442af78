//! Memory as the front ends change it: every save goes through here, so each stored memory is
//! announced on the bus. Search, reindex and delete are `Memory`'s own (`memory/`).

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
