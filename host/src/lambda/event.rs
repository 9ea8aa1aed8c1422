//! The invocation event: `{"job": "JOB"}`. Keys, never data.

use serde::Deserialize;

use crate::store::keys::valid_job_id;

/// What an invocation asks for: drain the batches of one job.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainEvent {
    /// The job id.
    pub job: String,
}

/// Why an event was refused (before anything is claimed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON of the expected shape.
    #[error("the event must be a JSON object {{\"job\": \"JOB\"}}: {0}")]
    Malformed(String),
    /// The job id is not a valid id.
    #[error("`{0}` is not a valid job id (1 to 64 of A-Z a-z 0-9 _ -)")]
    BadJobId(String),
}

impl DrainEvent {
    /// Parses and checks an event.
    pub fn parse(value: serde_json::Value) -> Result<Self, EventError> {
        let event: DrainEvent =
            serde_json::from_value(value).map_err(|e| EventError::Malformed(e.to_string()))?;
        if !valid_job_id(&event.job) {
            return Err(EventError::BadJobId(event.job));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_keys_and_refuses_the_rest() {
        assert_eq!(
            DrainEvent::parse(json!({"job": "abc_1"})).unwrap().job,
            "abc_1"
        );
        for bad in [
            json!(null),
            json!([]),
            json!({}),
            json!({"job": 5}),
            json!({"job": "a", "data": [1]}),
        ] {
            assert!(matches!(
                DrainEvent::parse(bad),
                Err(EventError::Malformed(_))
            ));
        }
        assert!(matches!(
            DrainEvent::parse(json!({"job": "a}b"})),
            Err(EventError::BadJobId(_))
        ));
        assert!(matches!(
            DrainEvent::parse(json!({"job": ""})),
            Err(EventError::BadJobId(_))
        ));
    }
}
