//! The invocation event: `{"job": "JOB"}`. Keys, never data. Read from the raw payload, so
//! that anything else (not JSON, not an object, another field, a key given twice, a bad id) is
//! refused with a short message that echoes at most a few dozen characters of it.

use serde::Deserialize;
use serde_json::Value;

use crate::data::text;
use crate::queue::store::keys::valid_job_id;

/// The most characters of the event's own text an error message echoes.
const ECHO: usize = 64;

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
    /// Not JSON at all.
    #[error("the event is not JSON ({0}); send {{\"job\": \"JOB\"}}")]
    NotJson(String),
    /// JSON, but not of the expected shape.
    #[error("the event must be a JSON object {{\"job\": \"JOB\"}}: {0}")]
    Malformed(String),
    /// The job id is not a valid id (shown escaped and cut short).
    #[error("`{0}` is not a valid job id (1 to 64 of A-Z a-z 0-9 _ -)")]
    BadJobId(String),
}

impl DrainEvent {
    /// Parses and checks an event from its raw payload.
    pub fn parse(payload: &[u8]) -> Result<Self, EventError> {
        let value: Value = serde_json::from_slice(payload)
            .map_err(|e| EventError::NotJson(text::escaped(&e.to_string(), 2 * ECHO)))?;
        let kind = match value {
            Value::Object(_) => None,
            Value::Array(_) => Some("a list"),
            Value::String(_) => Some("a string"),
            Value::Number(_) => Some("a number"),
            Value::Bool(_) => Some("a boolean"),
            Value::Null => Some("null"),
        };
        if let Some(kind) = kind {
            return Err(EventError::Malformed(format!("got {kind}")));
        }
        // Read again as the struct, which also refuses a field given twice.
        let event: DrainEvent = serde_json::from_slice(payload)
            .map_err(|e| EventError::Malformed(text::escaped(&e.to_string(), 2 * ECHO)))?;
        if !valid_job_id(&event.job) {
            return Err(EventError::BadJobId(text::escaped(&event.job, ECHO)));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_keys_and_refuses_the_rest() {
        assert_eq!(
            DrainEvent::parse(br#"{"job": "abc_1"}"#).unwrap().job,
            "abc_1"
        );
        for bad in [
            "null",
            "[]",
            r#"["abc"]"#,
            "{}",
            r#"{"job": 5}"#,
            r#"{"job": "a", "data": [1]}"#,
            r#"{"job": "a", "job": "b"}"#,
        ] {
            assert!(
                matches!(
                    DrainEvent::parse(bad.as_bytes()),
                    Err(EventError::Malformed(_))
                ),
                "{bad}"
            );
        }
        for bad in ["job=abc", "", "{\"job\": \"a\"", "\u{ff}"] {
            assert!(
                matches!(
                    DrainEvent::parse(bad.as_bytes()),
                    Err(EventError::NotJson(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            DrainEvent::parse(br#"{"job": "a}b"}"#),
            Err(EventError::BadJobId(_))
        ));
        assert!(matches!(
            DrainEvent::parse(br#"{"job": ""}"#),
            Err(EventError::BadJobId(_))
        ));
    }

    #[test]
    fn a_huge_id_or_field_is_not_echoed_in_full() {
        let id = "x".repeat(7 << 20);
        let err = DrainEvent::parse(format!(r#"{{"job": "{id}"}}"#).as_bytes()).unwrap_err();
        assert!(err.to_string().len() < 300, "{}", err.to_string().len());
        let field = "f".repeat(1 << 20);
        let err = DrainEvent::parse(format!(r#"{{"{field}": 1}}"#).as_bytes()).unwrap_err();
        assert!(err.to_string().len() < 300, "{}", err.to_string().len());
        let err = DrainEvent::parse(br#"{"job": "a\u001b[31m"}"#).unwrap_err();
        assert!(err.to_string().contains("a\\u{1b}[31m"), "{err}");
    }
}
