//! The invocation handler: parse the event, drain the job with one claim loop per vCPU until
//! the deadline less a margin, return a small summary, and print one EMF metrics record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde::Serialize;

use super::event::{DrainEvent, EventError};
use super::metrics::InvocationMetrics;
use crate::queue::jobs::{self, now_ms};
use crate::queue::store::pool::StorePool;
use crate::queue::store::spec::JobState;
use crate::queue::store::{Patience, Redis};
use crate::queue::worker::{Deadline, DrainReport, Worker};

/// Settings of the bootstrap, from its environment.
#[derive(Clone, Debug)]
pub struct HandlerConfig {
    /// Redis URL (`CRUNCH_REDIS`).
    pub redis_url: String,
    /// Function name, the metrics dimension (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function_name: String,
    /// Caps the time one invocation works, whatever its deadline (`CRUNCH_TIME_BUDGET_MS`).
    /// Also the limit used when the deadline is not a plausible time (see `docs/lambda.md`).
    pub time_budget: Option<Duration>,
    /// Time kept free before the deadline for writing results (`CRUNCH_DEADLINE_MARGIN_MS`).
    pub margin: Duration,
    /// Claim loops per invocation, each running one batch at a time (`CRUNCH_CONCURRENCY`;
    /// default: the function's vCPUs, see [`vcpus`](super::vcpus::vcpus)).
    pub concurrency: usize,
}

/// Used when the runtime's deadline is implausible and no budget is configured.
pub const FALLBACK_BUDGET: Duration = Duration::from_secs(60);

impl HandlerConfig {
    /// Reads the configuration from the environment, with defaults.
    pub fn from_env() -> Result<Self, String> {
        let ms = |name: &str| -> Result<Option<Duration>, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse::<u64>()
                    .map(|ms| Some(Duration::from_millis(ms)))
                    .map_err(|_| {
                        format!("{name} must be a whole number of milliseconds, got {v:?}")
                    }),
                Err(_) => Ok(None),
            }
        };
        Ok(Self {
            redis_url: std::env::var("CRUNCH_REDIS")
                .map_err(|_| "CRUNCH_REDIS is not set".to_string())?,
            function_name: std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|_| "crunch".into()),
            time_budget: ms("CRUNCH_TIME_BUDGET_MS")?,
            margin: ms("CRUNCH_DEADLINE_MARGIN_MS")?.unwrap_or(Duration::from_secs(2)),
            concurrency: super::vcpus::concurrency_from_env()?,
        })
    }
}

/// The response: a summary well under 1 KB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DrainResponse {
    /// The job.
    pub job: String,
    /// Batches whose results this invocation stored (dead-lettered ones included).
    pub batches: u64,
    /// Batches put back on the queue for another delivery.
    pub batches_retried: u64,
    /// Batches dead-lettered.
    pub batches_dead: u64,
    /// Items computed.
    pub items_ok: u64,
    /// Items that failed.
    pub items_failed: u64,
    /// Milliseconds inside kernels.
    pub kernel_ms: u64,
    /// True when the queue had nothing left to claim.
    pub drained: bool,
    /// True when the invocation stopped at its deadline with work left for others.
    pub stopped_at_deadline: bool,
    /// The job's state afterwards.
    pub job_state: JobState,
    /// Claim loops this invocation ran (one per vCPU by default).
    pub concurrency: usize,
    /// The most batches that ran at the same moment.
    pub peak_batches: usize,
}

/// What one invocation did: its response or error, and its metrics record.
#[derive(Debug)]
pub struct Invocation {
    /// The response, or why the invocation failed.
    pub result: Result<DrainResponse, HandlerError>,
    /// The invocation's metrics ([`InvocationMetrics::to_emf`] gives its EMF record).
    pub metrics: InvocationMetrics,
}

/// Why an invocation failed; becomes the Lambda error type and message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is not `{"job": "JOB"}`; nothing was claimed.
    #[error(transparent)]
    InvalidEvent(#[from] EventError),
    /// The job could not be worked on (unknown job, Redis unreachable...).
    #[error("job {job}: {message}")]
    Job {
        /// The job id.
        job: String,
        /// What went wrong.
        message: String,
    },
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match e {
            HandlerError::InvalidEvent(_) => "Crunch.InvalidEvent",
            HandlerError::Job { .. } => "Crunch.JobError",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}

/// Drains jobs on invocation. Built once at init; warm invocations reuse the engine, the
/// Redis connections and the compiled kernels.
pub struct Handler {
    worker: Arc<Worker>,
    pool: Arc<StorePool>,
    config: HandlerConfig,
    cold: AtomicBool,
}

impl Handler {
    /// A handler over a worker and a connected store (kept for the first invocation).
    pub fn new(worker: Worker, store: Redis, config: HandlerConfig) -> Self {
        let pool = StorePool::new(&config.redis_url);
        pool.give_back([store]);
        Self {
            worker: Arc::new(worker),
            pool: Arc::new(pool),
            config,
            cold: AtomicBool::new(true),
        }
    }

    /// The deadline this invocation works to: the runtime's deadline when it is a plausible
    /// epoch time, capped by the configured budget; the budget alone (or 60 s) otherwise.
    pub fn deadline(&self, ctx: &Context, started: Instant) -> Deadline {
        let now = now_ms();
        let from_runtime = (ctx.deadline > now).then(|| Duration::from_millis(ctx.deadline - now));
        if from_runtime.is_none() {
            tracing::warn!(
                deadline_ms = ctx.deadline,
                "the runtime's deadline is not a future epoch time (a local emulator?); using the time budget"
            );
        }
        let remaining = match (from_runtime, self.config.time_budget) {
            (Some(r), Some(b)) => r.min(b),
            (Some(r), None) => r,
            (None, Some(b)) => b,
            (None, None) => FALLBACK_BUDGET,
        };
        Deadline {
            at: started + remaining,
            margin: self.config.margin,
        }
    }

    /// Handles one invocation; the payload is the event's raw text (see
    /// [`raw_payload`](super::raw_payload)). The caller prints the invocation's metrics record
    /// (`bootstrap` does, as CloudWatch EMF).
    pub async fn handle(self: Arc<Self>, event: LambdaEvent<String>) -> Invocation {
        let started = Instant::now();
        let (payload, ctx) = event.into_parts();
        let cold = self.cold.swap(false, Ordering::Relaxed);
        let mut metrics = InvocationMetrics {
            function: self.config.function_name.clone(),
            request_id: ctx.request_id.clone(),
            cold_start: cold,
            ..InvocationMetrics::default()
        };
        let result = self.drain(payload, &ctx, started, &mut metrics).await;
        metrics.duration_ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(r) => {
                tracing::info!(request_id = %ctx.request_id, job = %r.job, batches = r.batches, items_ok = r.items_ok, items_failed = r.items_failed, drained = r.drained, "invocation done")
            }
            Err(e) => {
                // The one log line of the error (the runtime's own is filtered out, see
                // `bootstrap`); its message is short: an event is echoed only in part.
                metrics.errors = 1;
                tracing::error!(request_id = %ctx.request_id, job = %metrics.job, "{e}");
            }
        }
        Invocation { result, metrics }
    }

    async fn drain(
        self: &Arc<Self>,
        payload: String,
        ctx: &Context,
        started: Instant,
        metrics: &mut InvocationMetrics,
    ) -> Result<DrainResponse, HandlerError> {
        let event = DrainEvent::parse(payload.as_bytes())?;
        metrics.job = event.job.clone();
        let deadline = self.deadline(ctx, started);
        let this = Arc::clone(self);
        let job = event.job.clone();
        let request_id = ctx.request_id.clone();
        let outcome =
            tokio::task::spawn_blocking(move || -> anyhow::Result<(DrainReport, JobState)> {
                let span = tracing::info_span!("invocation", request_id = %request_id, job = %job);
                let _entered = span.enter();
                let mut store = this.pool.take(Patience::Until(deadline.at))?;
                jobs::spec(&mut store, &job)?;
                let loops = this.config.concurrency;
                let report = this.worker.drain(&this.pool, &job, loops, Some(deadline))?;
                let state = jobs::progress(&mut store, &job)?.state;
                this.pool.give_back([store]);
                Ok((report, state))
            })
            .await
            .map_err(|e| HandlerError::Job {
                job: event.job.clone(),
                message: format!("worker task failed: {e}"),
            })?;
        let (report, job_state) = outcome.map_err(|e| HandlerError::Job {
            job: event.job.clone(),
            message: format!("{e:#}"),
        })?;
        let s = report.summary;
        metrics.batches = s.batches;
        metrics.batches_retried = s.retried;
        metrics.batches_dead = s.dead;
        metrics.items_ok = s.items_ok;
        metrics.items_failed = s.items_failed;
        metrics.kernel_ms = s.kernel_time.as_secs_f64() * 1e3;
        metrics.stopped_at_deadline = report.stopped_at_deadline;
        metrics.concurrency = report.concurrency as u64;
        metrics.peak_batches = report.peak_batches as u64;
        Ok(DrainResponse {
            job: event.job,
            batches: s.batches,
            batches_retried: s.retried,
            batches_dead: s.dead,
            items_ok: s.items_ok,
            items_failed: s.items_failed,
            kernel_ms: s.kernel_time.as_millis() as u64,
            drained: !report.stopped_at_deadline,
            stopped_at_deadline: report.stopped_at_deadline,
            job_state,
            concurrency: report.concurrency,
            peak_batches: report.peak_batches,
        })
    }
}
