//! Fan-out: start N asynchronous Lambda invocations that drain a job, backing off and retrying
//! when Lambda throttles. Each event carries only the job id. The AWS configuration (region,
//! credentials) is checked once, before anything is submitted: a missing or broken one fails at
//! once with one line, and so does any invoke error other than throttling.

use std::error::Error as StdError;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::meta::region::RegionProviderChain;
use aws_sdk_lambda::config::ProvideCredentials;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

use crate::data::text;

/// Attempts per invocation while Lambda throttles (the job stays queued either way).
const MAX_ATTEMPTS: u32 = 8;

/// How long the instance metadata service may take to answer (off EC2 it never does).
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// What the fan-out did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FanoutReport {
    /// Invocations Lambda accepted.
    pub invoked: u32,
    /// Throttled attempts that were retried.
    pub retries: u32,
    /// Invocations that could not be started, with the reason (after the first error that is
    /// not throttling, the rest are not tried).
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

/// A Lambda client whose configuration has been checked.
pub struct Fanout {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_lambda::Client,
    function: String,
}

impl Fanout {
    /// Loads the AWS configuration from the usual environment (variables, profile files, the
    /// instance metadata service, asked once with a short timeout) and checks that it names a
    /// region and yields credentials. The error is one line saying what is missing.
    pub fn connect(target: &FanoutTarget) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime for Lambda invocations")?;
        let client = runtime.block_on(checked_client(target))?;
        Ok(Self {
            runtime,
            client,
            function: target.function.clone(),
        })
    }

    /// Starts `workers` asynchronous invocations with `{"job": job}`.
    pub fn invoke_workers(&self, job: &str, workers: u32) -> Result<FanoutReport> {
        self.runtime.block_on(self.invoke_all(job, workers))
    }

    async fn invoke_all(&self, job: &str, workers: u32) -> Result<FanoutReport> {
        let payload = serde_json::to_vec(&serde_json::json!({ "job": job }))?;
        let mut report = FanoutReport::default();
        for n in 0..workers {
            let mut delay = Duration::from_millis(100);
            let mut attempt = 1;
            loop {
                let sent = self
                    .client
                    .invoke()
                    .function_name(&self.function)
                    .invocation_type(InvocationType::Event)
                    .payload(Blob::new(payload.clone()))
                    .send()
                    .await;
                let Err(e) = sent else {
                    report.invoked += 1;
                    break;
                };
                let throttled = e
                    .as_service_error()
                    .is_some_and(|s| s.is_too_many_requests_exception());
                let message = one_line(&e);
                if !throttled {
                    // Not a matter of waiting: every other invocation would fail the same way.
                    report.failed.push(format!(
                        "invoking {}: {message} ({} invocations not started)",
                        self.function,
                        workers - n
                    ));
                    return Ok(report);
                }
                if attempt >= MAX_ATTEMPTS {
                    report.failed.push(format!(
                        "invocation {n}: still throttled after {MAX_ATTEMPTS} attempts: {message}"
                    ));
                    break;
                }
                tracing::warn!(
                    function = %self.function,
                    attempt,
                    "throttled, retrying in {delay:?}: {message}"
                );
                report.retries += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
        }
        Ok(report)
    }
}

/// The SDK configuration with a region and credentials, else the one-line reason.
async fn checked_client(target: &FanoutTarget) -> Result<aws_sdk_lambda::Client> {
    let imds = || {
        aws_config::imds::Client::builder()
            .max_attempts(1)
            .connect_timeout(IMDS_TIMEOUT)
            .read_timeout(IMDS_TIMEOUT)
            .build()
    };
    let region = RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(aws_config::profile::ProfileFileRegionProvider::new())
    .or_else(
        aws_config::imds::region::ImdsRegionProvider::builder()
            .imds_client(imds())
            .build(),
    );
    let credentials = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .imds_client(imds())
        .build()
        .await;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(endpoint) = &target.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        bail!(
            "no AWS region for invoking {}: set AWS_REGION (or a region in ~/.aws/config)",
            target.function
        );
    }
    let Some(provider) = config.credentials_provider() else {
        bail!(
            "no AWS credentials provider for invoking {}",
            target.function
        );
    };
    if let Err(e) = provider.provide_credentials().await {
        bail!(
            "no AWS credentials for invoking {}: {} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)",
            target.function,
            one_line(&e)
        );
    }
    Ok(aws_sdk_lambda::Client::new(&config))
}

/// An error and its causes on one short line, escaped (the SDK's own rendering is a
/// multi-kilobyte debug dump).
fn one_line(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let part = e.to_string();
        if !parts.iter().any(|p| p.contains(&part)) {
            parts.push(part);
        }
        next = e.source();
    }
    text::escaped(&parts.join(": "), 300)
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

    #[test]
    fn errors_are_one_short_line() {
        let inner = std::io::Error::other("connection refused\nretry later");
        let outer = anyhow::Error::new(inner).context("dispatch failure");
        let line = one_line(outer.as_ref());
        assert_eq!(line, "dispatch failure: connection refused\\nretry later");
    }
}
