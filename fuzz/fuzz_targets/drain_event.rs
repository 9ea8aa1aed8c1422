//! Fuzzes the Lambda event parser: any payload must parse to a valid job id or be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(event) = crunch::lambda::DrainEvent::parse(value)
    {
        assert!(crunch::store::keys::valid_job_id(&event.job));
    }
});
