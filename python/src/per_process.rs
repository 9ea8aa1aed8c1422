//! Process-wide tables of things that own threads (engines with their epoch ticker, thread
//! pools). A child made by `fork()` (Python's multiprocessing does it) has none of its parent's
//! threads, so it starts with empty tables, and leaves the parent's entries alone: dropping them
//! would join threads that do not exist in the child.

use std::sync::{Arc, Mutex, PoisonError};

/// Values made on first use for each key, shared afterwards, within one process.
pub struct PerProcess<K, V> {
    table: Mutex<Table<K, V>>,
}

struct Table<K, V> {
    pid: u32,
    entries: Vec<(K, Arc<V>)>,
}

impl<K: PartialEq, V> PerProcess<K, V> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            table: Mutex::new(Table {
                pid: 0,
                entries: Vec::new(),
            }),
        }
    }

    /// The value for `key`, made by `make` the first time this process asks.
    pub fn get_or_make<E>(&self, key: K, make: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = std::process::id();
        if table.pid != pid {
            std::mem::forget(std::mem::take(&mut table.entries));
            table.pid = pid;
        }
        if let Some((_, value)) = table.entries.iter().find(|(k, _)| *k == key) {
            return Ok(value.clone());
        }
        let value = Arc::new(make()?);
        table.entries.push((key, value.clone()));
        Ok(value)
    }
}
