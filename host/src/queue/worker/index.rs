//! The jobs a worker without `--job` looks at: the ids of the `crunch:jobs` index, read again
//! only when the index changes (or every [`RESCAN`]), less the jobs this worker has seen
//! finished; ids whose job is gone are pruned from the index. An idle poll therefore costs one
//! small round trip plus one claim per live job, however many old jobs the index holds.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::queue::store::Redis;
use crate::queue::store::keys::JOBS;

/// The longest a worker goes without reading the whole index.
const RESCAN: Duration = Duration::from_secs(30);

/// Reads closer together than this share one answer (the claim loops of a worker poll at once).
const FRESH: Duration = Duration::from_millis(10);

/// A worker's view of the job index, shared by its claim loops.
#[derive(Default)]
pub(crate) struct JobIndex {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ids: Vec<String>,
    /// The index's size and newest entry when `ids` was read: a new job changes them.
    mark: Option<(u64, Vec<String>)>,
    read_at: Option<Instant>,
    checked_at: Option<Instant>,
    /// Jobs seen finished (a final state never changes).
    finished: HashSet<String>,
}

impl JobIndex {
    /// The jobs that may have work: the index less the jobs known to be finished.
    pub fn runnable(&self, store: &mut Redis) -> Result<Vec<String>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = state.checked_at.is_some_and(|t| t.elapsed() < FRESH);
        if !fresh {
            let mut pipe = redis::pipe();
            pipe.zcard(JOBS).zrange_withscores(JOBS, -1, -1);
            let mark: (u64, Vec<String>) = store.pipeline(&pipe)?;
            let stale = state.read_at.is_none_or(|t| t.elapsed() >= RESCAN);
            if stale || state.mark.as_ref() != Some(&mark) {
                let ids: Vec<String> =
                    store.run(|c| redis::cmd("ZRANGE").arg(JOBS).arg(0).arg(-1).query(c))?;
                let listed: HashSet<&String> = ids.iter().collect();
                let finished = std::mem::take(&mut state.finished);
                state.finished = finished
                    .into_iter()
                    .filter(|j| listed.contains(j))
                    .collect();
                state.ids = ids;
                state.mark = Some(mark);
                state.read_at = Some(Instant::now());
            }
            state.checked_at = Some(Instant::now());
        }
        Ok(state
            .ids
            .iter()
            .filter(|j| !state.finished.contains(*j))
            .cloned()
            .collect())
    }

    /// Whether `job` is known to be finished (or gone).
    pub fn is_finished(&self, job: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.finished.contains(job)
    }

    /// Remembers that `job` has finished: it is not claimed from again.
    pub fn finished(&self, job: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.finished.insert(job.to_string());
    }

    /// Drops `job`, whose keys are gone (expired or deleted), from the index.
    pub fn prune(&self, store: &mut Redis, job: &str) -> Result<()> {
        store.run(|c| redis::cmd("ZREM").arg(JOBS).arg(job).query::<()>(c))?;
        tracing::info!(
            job,
            "job gone (expired or deleted); dropped from the job index"
        );
        self.finished(job);
        Ok(())
    }
}
