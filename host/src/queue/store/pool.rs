//! Connections kept for reuse: a warm Lambda invocation takes the connections the last one gave
//! back instead of connecting again. A connection taken out is owned by its user; one whose
//! user panicked is simply never given back, so the pool never hands out a broken one.

use std::sync::{Mutex, PoisonError};

use anyhow::Result;

use super::{Patience, Redis};

/// Idle connections to one Redis.
pub struct StorePool {
    url: String,
    idle: Mutex<Vec<Redis>>,
}

impl StorePool {
    /// An empty pool for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection, or a new one, waiting for Redis as `patience` says.
    pub fn take(&self, patience: Patience) -> Result<Redis> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(mut store) => {
                store.set_patience(patience);
                Ok(store)
            }
            None => Redis::connect_with(&self.url, patience),
        }
    }

    /// Keeps `stores` for the next user.
    pub fn give_back(&self, stores: impl IntoIterator<Item = Redis>) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(stores);
    }
}
