//! The AWS Lambda `bootstrap` (provided.al2023 runtime): drains Crunch jobs named by events
//! `{"job": "JOB"}`, with one claim loop per vCPU. The engine, the Redis connections and the
//! kernel cache are made once at init and reused by warm invocations. Logs are JSON lines;
//! each invocation also prints one CloudWatch EMF metrics record; batch failures go to Sentry
//! when `SENTRY_DSN` is set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crunch::lambda::{Handler, HandlerConfig, HandlerError, Invocation};
use crunch::process::settings::Settings;
use crunch::queue::jobs::now_ms;
use crunch::queue::store::Redis;
use crunch::queue::worker::{BatchFailure, Worker};
use crunch::{Engine, Limits};
use lambda_runtime::layers::TracingLayer;
use lambda_runtime::tower::util::MapRequestLayer;
use lambda_runtime::{Error, Runtime, service_fn};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> Result<(), Error> {
    crunch::process::memory::keep_freed_memory();
    let process_start = Instant::now();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .finish()
        // The runtime logs every handler error again (unstructured); the handler's own line is
        // the one kept. A panic still reaches stderr through the panic hook, and Sentry.
        .with(
            crunch::process::logging::filter_from_env(LevelFilter::INFO)
                .with_target("lambda_runtime::layers::panic", LevelFilter::OFF),
        )
        .init();
    crunch::queue::store::install_tls_provider();
    let settings = Settings::from_env();
    crunch::queue::store::trust_redis_ca(settings.redis_ca.clone());
    // Sentry first, so that its panic hook and transport cover everything after.
    let _sentry = std::env::var("SENTRY_DSN")
        .ok()
        .filter(|d| !d.is_empty())
        .map(|dsn| {
            let mut options = sentry::ClientOptions::default();
            options.release = sentry::release_name!();
            sentry::init((dsn, options))
        });
    let handler = match init(&settings) {
        Ok(handler) => handler,
        Err(e) => {
            // Logged as JSON like every other line, then a non-zero exit (an init error).
            tracing::error!(error = %e, "init failed");
            std::process::exit(1);
        }
    };
    tracing::info!(
        init_ms = process_start.elapsed().as_secs_f64() * 1e3,
        "ready"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let service = service_fn(move |event| {
        let handler = Arc::clone(&handler);
        async move { finish(handler.handle(event).await) }
    });
    let lambda = Runtime::new(service)
        .layer(TracingLayer::new())
        .layer(MapRequestLayer::new(crunch::lambda::raw_payload));
    runtime.block_on(lambda.run())
}

/// What the Lambda service sets and the runtime needs (it would panic without them).
const RUNTIME_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// Prints the invocation's EMF metrics record and sends what Sentry holds before the
/// invocation ends (Lambda may freeze the process right after), then answers the runtime.
fn finish(invocation: Invocation) -> Result<crunch::lambda::DrainResponse, HandlerError> {
    println!("{}", invocation.metrics.to_emf(now_ms()));
    if let Some(client) = sentry::Hub::current().client() {
        client.flush(Some(Duration::from_secs(2)));
    }
    invocation.result
}

/// The engine, the Redis connection and the pack cache, made once per execution environment.
fn init(settings: &Settings) -> Result<Arc<Handler>, Error> {
    let missing: Vec<&str> = RUNTIME_VARIABLES
        .into_iter()
        .filter(|name| std::env::var_os(name).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} not set: the Lambda service sets them; to run the bootstrap by hand see docs/lambda.md",
            missing.join(", ")
        )
        .into());
    }
    let config = HandlerConfig::from_env()?;
    // One batch runs at a time per claim loop: a small instance pool is enough.
    let limits = Limits {
        max_concurrent_batches: u32::try_from(config.concurrency * 2)
            .unwrap_or(u32::MAX)
            .max(4),
        ..Limits::default()
    };
    let engine = Engine::with_perf_map(limits, settings.perf_map)?;
    tracing::info!(
        concurrency = config.concurrency,
        "one claim loop per vCPU (CRUNCH_CONCURRENCY overrides)"
    );
    let store = Redis::connect(&config.redis_url)?;
    let worker = Worker::new(engine)
        .with_cache_dir(settings.cache_dir.clone())
        .with_error_hook(Box::new(report_to_sentry));
    Ok(Arc::new(Handler::new(worker, store, config)))
}

/// Sends a batch failure to Sentry (a no-op without `SENTRY_DSN`), tagged with job, batch
/// and kernel so that the event names them.
fn report_to_sentry(failure: &BatchFailure) {
    sentry::with_scope(
        |scope| {
            scope.set_tag("job", &failure.job);
            scope.set_tag("batch", failure.batch);
            scope.set_tag("kernel", &failure.kernel);
            scope.set_tag("dead_lettered", failure.dead_lettered);
            scope.set_extra("deliveries", failure.deliveries.into());
        },
        || sentry::capture_message(&failure.error.to_string(), sentry::Level::Error),
    );
}
