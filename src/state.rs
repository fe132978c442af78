//! What every connection handler shares: the store, the configuration, and start time.

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub config: Config,
    pub started: Instant,
}

pub type Shared = Arc<AppState>;
