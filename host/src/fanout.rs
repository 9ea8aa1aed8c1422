//! Fan-out: start N asynchronous Lambda invocations that drain a job, backing off and retrying
//! when Lambda throttles. Each event carries only the job id.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

/// Attempts per invocation before giving up on it (the job stays queued either way).
const MAX_ATTEMPTS: u32 = 8;

/// What the fan-out did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FanoutReport {
    /// Invocations Lambda accepted.
    pub invoked: u32,
    /// Throttled (or otherwise failed) attempts that were retried.
    pub retries: u32,
    /// Invocations that still failed after every retry, with the last error.
    pub failed: Vec<String>,
}

/// Where and how to invoke.
#[derive(Clone, Debug)]
pub struct FanoutTarget {
    /// Function name or ARN.
    pub function: String,
    /// Endpoint override (for a local emulator), else the regional endpoint.
    pub endpoint: Option<String>,
}

/// How many workers to start: one per batch, at most `max_concurrency`.
pub fn default_workers(batch_count: u64, max_concurrency: u32) -> u32 {
    u32::try_from(batch_count)
        .unwrap_or(u32::MAX)
        .clamp(1, max_concurrency.max(1))
}

/// Starts `workers` asynchronous invocations of `target` with `{"job": job}`.
pub async fn invoke_workers(
    target: &FanoutTarget,
    job: &str,
    workers: u32,
) -> Result<FanoutReport> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(endpoint) = &target.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let config = loader.load().await;
    let client = aws_sdk_lambda::Client::new(&config);
    let payload = serde_json::to_vec(&serde_json::json!({ "job": job }))?;
    let mut report = FanoutReport::default();
    for n in 0..workers {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let sent = client
                .invoke()
                .function_name(&target.function)
                .invocation_type(InvocationType::Event)
                .payload(Blob::new(payload.clone()))
                .send()
                .await;
            match sent {
                Ok(_) => {
                    report.invoked += 1;
                    break;
                }
                Err(e) => {
                    let throttled = e
                        .as_service_error()
                        .is_some_and(|s| s.is_too_many_requests_exception());
                    let message = format!("{}", aws_sdk_lambda::error::DisplayErrorContext(&e));
                    if attempt >= MAX_ATTEMPTS {
                        report.failed.push(format!("invocation {n}: {message}"));
                        break;
                    }
                    tracing::warn!(
                        function = %target.function,
                        attempt,
                        throttled,
                        "invoke failed, retrying in {delay:?}: {message}"
                    );
                    report.retries += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
            }
        }
    }
    Ok(report)
}

/// [`invoke_workers`] from synchronous code.
pub fn invoke_workers_blocking(
    target: &FanoutTarget,
    job: &str,
    workers: u32,
) -> Result<FanoutReport> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime for Lambda invocations")?
        .block_on(invoke_workers(target, job, workers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_default_to_batches_capped_by_concurrency() {
        assert_eq!(default_workers(3, 10), 3);
        assert_eq!(default_workers(1000, 10), 10);
        assert_eq!(default_workers(0, 10), 1);
    }
}
