//! The key layout of protocol v1: every key of a job carries the job id as a hash tag, so a
//! job lives in one Redis Cluster slot and multi-key scripts work there.

/// The consumer group every worker reads a job's queue through.
pub const GROUP: &str = "workers";

/// The index of all jobs (a sorted set scored by creation time in ms). Not a job key.
pub const JOBS: &str = "crunch:jobs";

/// The keys of one job.
#[derive(Clone, Debug)]
pub struct JobKeys {
    prefix: String,
}

impl JobKeys {
    /// Keys of job `job`.
    pub fn new(job: &str) -> Self {
        Self {
            prefix: format!("crunch:{{{job}}}"),
        }
    }

    /// Hash: the job spec.
    pub fn spec(&self) -> String {
        format!("{}:spec", self.prefix)
    }

    /// Hash: counters and state.
    pub fn progress(&self) -> String {
        format!("{}:progress", self.prefix)
    }

    /// Stream: one entry per batch waiting to run, read through [`GROUP`].
    pub fn queue(&self) -> String {
        format!("{}:queue", self.prefix)
    }

    /// String: batch `b`'s input items (Crunch binary).
    pub fn input(&self, b: u64) -> String {
        format!("{}:in:{b}", self.prefix)
    }

    /// String: batch `b`'s results (Crunch binary).
    pub fn output(&self, b: u64) -> String {
        format!("{}:out:{b}", self.prefix)
    }

    /// Set: batches whose result has been counted (makes completion idempotent).
    pub fn done(&self) -> String {
        format!("{}:done", self.prefix)
    }

    /// Hash: batch -> JSON list of that batch's failed items.
    pub fn errors(&self) -> String {
        format!("{}:errors", self.prefix)
    }

    /// Hash: batch -> the last batch-level error, while it is being retried.
    pub fn last_error(&self) -> String {
        format!("{}:lasterror", self.prefix)
    }

    /// Hash: consumer -> its last claim's request id and the batch it claimed (makes a
    /// repeated claim return the same batch).
    pub fn claims(&self) -> String {
        format!("{}:claims", self.prefix)
    }

    /// Stream: dead-lettered batches with their error.
    pub fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    /// Stream: one record per batch run (worker, times, outcome), capped.
    pub fn batches(&self) -> String {
        format!("{}:batches", self.prefix)
    }

    /// The key pattern that matches every key of the job (for SCAN).
    pub fn pattern(&self) -> String {
        format!("{}:*", self.prefix.replace('{', "\\{").replace('}', "\\}"))
    }
}

/// Whether `job` is a valid job id: 1 to 64 of `[A-Za-z0-9_-]` (no braces, so the hash tag is
/// exactly the id).
pub fn valid_job_id(job: &str) -> bool {
    !job.is_empty()
        && job.len() <= 64
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
