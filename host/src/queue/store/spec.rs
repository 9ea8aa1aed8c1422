//! The job spec (`crunch:{JOB}:spec`, a hash of strings) and the job's progress counters.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::data::types::Tensor;

/// Protocol version written in every spec; workers refuse other major versions.
pub const PROTOCOL: &str = "1";

/// Everything a worker needs to run a job's batches.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// The job id.
    pub job: String,
    /// Kernel name within the pack.
    pub kernel: String,
    /// `sha256:<hex>` of the pack component; workers check it before running.
    pub pack_digest: String,
    /// Where workers read the pack (until the registry exists): a path both sides can read.
    pub pack_path: String,
    /// Named parameters, the same for every batch.
    pub params: Vec<(String, Tensor)>,
    /// Number of batches (`0..batch_count`).
    pub batch_count: u64,
    /// Number of items over all batches.
    pub item_count: u64,
    /// Items per batch (the last may hold fewer).
    pub batch_size: u64,
    /// Seconds every key of the job lives.
    pub ttl_seconds: u64,
    /// Deliveries after which a failing batch goes to the dead-letter stream.
    pub max_deliveries: u64,
    /// Wall-clock limit of one batch, in ms.
    pub batch_time_ms: u64,
    /// A claim idle this long (ms) is taken over by another worker.
    pub lease_ms: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// The plan the batch size follows (JSON, see [`SpecPlan`](crate::plan::SpecPlan)), when
    /// `crunch submit --batch-size auto` measured one; optional.
    pub plan: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct JsonTensor {
    shape: Vec<u32>,
    data: Vec<f64>,
}

impl JobSpec {
    /// The spec as hash fields.
    pub fn to_fields(&self) -> Result<Vec<(&'static str, String)>> {
        let params: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|(k, t)| {
                let json = JsonTensor {
                    shape: t.shape.clone(),
                    data: t.data.clone(),
                };
                Ok((k.clone(), serde_json::to_value(json)?))
            })
            .collect::<Result<_>>()?;
        let mut fields = vec![
            ("protocol", PROTOCOL.to_string()),
            ("job", self.job.clone()),
            ("kernel", self.kernel.clone()),
            ("pack_digest", self.pack_digest.clone()),
            ("pack_path", self.pack_path.clone()),
            ("params", serde_json::Value::Object(params).to_string()),
            ("batch_count", self.batch_count.to_string()),
            ("item_count", self.item_count.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("ttl_seconds", self.ttl_seconds.to_string()),
            ("max_deliveries", self.max_deliveries.to_string()),
            ("batch_time_ms", self.batch_time_ms.to_string()),
            ("lease_ms", self.lease_ms.to_string()),
            ("created_ms", self.created_ms.to_string()),
        ];
        if let Some(plan) = &self.plan {
            fields.push(("plan", plan.clone()));
        }
        Ok(fields)
    }

    /// Reads a spec back from its hash fields; every missing or malformed field is named.
    pub fn from_fields(fields: &HashMap<String, String>) -> Result<Self> {
        let text = |name: &str| -> Result<String> {
            fields
                .get(name)
                .cloned()
                .with_context(|| format!("job spec has no `{name}` field"))
        };
        let number = |name: &str| -> Result<u64> {
            let v = text(name)?;
            v.parse()
                .with_context(|| format!("job spec field `{name}` is not a whole number: {v:?}"))
        };
        let protocol = text("protocol")?;
        if protocol.split('.').next() != Some(PROTOCOL) {
            bail!("job spec uses protocol {protocol}; this build speaks {PROTOCOL}");
        }
        let params_text = text("params")?;
        let params = match crate::data::strict_json::from_str(&params_text) {
            Ok(serde_json::Value::Object(params)) => params,
            Ok(_) => bail!("job spec field `params` is not a JSON object"),
            Err(e) => {
                return Err(e).context("job spec field `params` is not a JSON object");
            }
        };
        let params = params
            .into_iter()
            .map(|(k, v)| {
                let t: JsonTensor = serde_json::from_value(v)
                    .with_context(|| format!("parameter `{k}` is not a {{shape, data}} tensor"))?;
                let tensor = Tensor::checked(t.shape, t.data)
                    .map_err(|e| anyhow::anyhow!("parameter `{k}`: {e}"))?;
                Ok((k, tensor))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            job: text("job")?,
            kernel: text("kernel")?,
            pack_digest: text("pack_digest")?,
            pack_path: text("pack_path")?,
            params,
            batch_count: number("batch_count")?,
            item_count: number("item_count")?,
            batch_size: number("batch_size")?,
            ttl_seconds: number("ttl_seconds")?,
            max_deliveries: number("max_deliveries")?,
            batch_time_ms: number("batch_time_ms")?,
            lease_ms: number("lease_ms")?,
            created_ms: number("created_ms")?,
            plan: fields.get("plan").cloned(),
        })
    }
}

/// Where a job stands: the `state` field of `crunch:{JOB}:progress`, spelled one way wherever
/// it is written (Redis, the scripts, JSON, messages): `submitting`, `queued`, `running`,
/// `done`, `done-with-failures`, `failed` or `cancelled`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// The client is still writing the job's batches.
    Submitting,
    /// Every batch is queued; no worker has claimed one yet.
    Queued,
    /// Workers are taking its batches.
    Running,
    /// Every item has a result.
    Done,
    /// Every batch is accounted for, some items (or dead-lettered batches) failed.
    DoneWithFailures,
    /// The job could not be run at all (its `error` says why).
    Failed,
    /// Cancelled: workers take no more of its batches.
    Cancelled,
    /// The progress holds no state this version knows.
    #[default]
    Unknown,
}

impl JobState {
    /// Every state.
    pub const ALL: [Self; 8] = [
        Self::Submitting,
        Self::Queued,
        Self::Running,
        Self::Done,
        Self::DoneWithFailures,
        Self::Failed,
        Self::Cancelled,
        Self::Unknown,
    ];

    /// The state's one spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitting => "submitting",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::DoneWithFailures => "done-with-failures",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }

    /// The state spelled `text`; [`Unknown`](Self::Unknown) for any other text.
    pub fn parse(text: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .unwrap_or(Self::Unknown)
    }

    /// Whether a job in this state will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Done | Self::DoneWithFailures | Self::Failed | Self::Cancelled
        )
    }

    /// Whether workers take the batches of a job in this state.
    pub fn is_runnable(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's state and counters (`crunch:{JOB}:progress`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Where the job stands.
    pub state: JobState,
    /// Batches whose result is stored.
    pub batches_done: u64,
    /// Batches that went to the dead-letter stream.
    pub batches_dead: u64,
    /// Total batches.
    pub batch_count: u64,
    /// Items with a result.
    pub items_ok: u64,
    /// Items with an error (including every item of a dead batch).
    pub items_failed: u64,
    /// Total items.
    pub item_count: u64,
    /// Why the job failed, when `state` is `failed`.
    pub error: Option<String>,
}

impl Progress {
    /// Reads the counters from the progress hash.
    pub fn from_fields(fields: &HashMap<String, String>) -> Self {
        let n = |k: &str| fields.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Self {
            state: fields
                .get("state")
                .map_or(JobState::Unknown, |s| JobState::parse(s)),
            batches_done: n("batches_done"),
            batches_dead: n("batches_dead"),
            batch_count: n("batch_count"),
            items_ok: n("items_ok"),
            items_failed: n("items_failed"),
            item_count: n("item_count"),
            error: fields.get("error").cloned(),
        }
    }

    /// Whether the job will not change any more.
    pub fn is_final(&self) -> bool {
        self.state.is_final()
    }

    /// Whether workers should take the job's batches.
    pub fn is_runnable(&self) -> bool {
        self.state.is_runnable()
    }

    /// Whether the job finished with every item computed.
    pub fn is_success(&self) -> bool {
        self.state == JobState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_have_one_spelling() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), state);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(serde_json::from_str::<JobState>(&json).unwrap(), state);
        }
        assert_eq!(JobState::parse("gone"), JobState::Unknown);
    }

    #[test]
    fn spec_round_trips_and_names_bad_fields() {
        let spec = JobSpec {
            job: "j1".into(),
            kernel: "percentile".into(),
            pack_digest: "sha256:00".into(),
            pack_path: "/p.wasm".into(),
            params: vec![(
                "q".into(),
                Tensor {
                    shape: vec![2],
                    data: vec![5.0, 95.0],
                },
            )],
            batch_count: 3,
            item_count: 10,
            batch_size: 4,
            ttl_seconds: 60,
            max_deliveries: 3,
            batch_time_ms: 1000,
            lease_ms: 5000,
            created_ms: 1,
            plan: Some("{}".into()),
        };
        let mut fields: HashMap<String, String> = spec
            .to_fields()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(JobSpec::from_fields(&fields).unwrap(), spec);
        fields.insert("batch_count".into(), "many".into());
        let err = JobSpec::from_fields(&fields).unwrap_err().to_string();
        assert!(err.contains("batch_count"), "{err}");
        fields.remove("kernel");
        assert!(
            JobSpec::from_fields(&fields)
                .unwrap_err()
                .to_string()
                .contains("kernel")
        );
    }
}
