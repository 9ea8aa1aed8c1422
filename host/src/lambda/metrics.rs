//! One CloudWatch Embedded Metric Format (EMF) record per invocation, printed to stdout as a
//! single JSON line, which Lambda forwards to CloudWatch Logs and CloudWatch turns into metrics.

use serde_json::{Value, json};

/// The metrics namespace.
pub const NAMESPACE: &str = "Crunch";

/// What one invocation did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvocationMetrics {
    /// Function name (the dimension).
    pub function: String,
    /// Job id (a property, not a dimension: ids are unbounded).
    pub job: String,
    /// Request id.
    pub request_id: String,
    /// Batches stored.
    pub batches: u64,
    /// Batches put back for retry.
    pub batches_retried: u64,
    /// Batches dead-lettered.
    pub batches_dead: u64,
    /// Items computed.
    pub items_ok: u64,
    /// Items that failed.
    pub items_failed: u64,
    /// Milliseconds inside kernels.
    pub kernel_ms: f64,
    /// Milliseconds of the whole invocation.
    pub duration_ms: f64,
    /// 1 on the first invocation of this process.
    pub cold_start: bool,
    /// 1 when the invocation stopped at its deadline with work left.
    pub stopped_at_deadline: bool,
    /// 1 when the invocation failed.
    pub errors: u64,
    /// Claim loops the invocation ran (one per vCPU by default).
    pub concurrency: u64,
    /// The most batches that ran at the same moment.
    pub peak_batches: u64,
}

impl InvocationMetrics {
    /// The EMF record, with `timestamp_ms` as `_aws.Timestamp`.
    pub fn to_emf(&self, timestamp_ms: u64) -> Value {
        let metrics = [
            ("Batches", "Count"),
            ("BatchesRetried", "Count"),
            ("BatchesDeadLettered", "Count"),
            ("ItemsOk", "Count"),
            ("ItemsFailed", "Count"),
            ("KernelMilliseconds", "Milliseconds"),
            ("DurationMilliseconds", "Milliseconds"),
            ("ColdStart", "Count"),
            ("StoppedAtDeadline", "Count"),
            ("Errors", "Count"),
            ("Concurrency", "Count"),
            ("PeakConcurrentBatches", "Count"),
        ];
        json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": metrics.iter().map(|(n, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
                }],
            },
            "FunctionName": self.function,
            "job": self.job,
            "requestId": self.request_id,
            "Batches": self.batches,
            "BatchesRetried": self.batches_retried,
            "BatchesDeadLettered": self.batches_dead,
            "ItemsOk": self.items_ok,
            "ItemsFailed": self.items_failed,
            "KernelMilliseconds": self.kernel_ms,
            "DurationMilliseconds": self.duration_ms,
            "ColdStart": u64::from(self.cold_start),
            "StoppedAtDeadline": u64::from(self.stopped_at_deadline),
            "Errors": self.errors,
            "Concurrency": self.concurrency,
            "PeakConcurrentBatches": self.peak_batches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_value_and_the_dimension_is_present() {
        let emf = InvocationMetrics {
            function: "f".into(),
            ..Default::default()
        }
        .to_emf(5);
        let directive = &emf["_aws"]["CloudWatchMetrics"][0];
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(
                emf[metric["Name"].as_str().unwrap()].is_number(),
                "{metric}"
            );
        }
        for dim in directive["Dimensions"][0].as_array().unwrap() {
            assert!(emf[dim.as_str().unwrap()].is_string());
        }
    }
}
