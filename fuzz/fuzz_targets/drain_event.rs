//! Fuzzes the Lambda event parser: any payload must parse to a valid job id or be refused with
//! a short message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match crunch::lambda::DrainEvent::parse(data) {
        Ok(event) => assert!(crunch::queue::store::keys::valid_job_id(&event.job)),
        Err(e) => assert!(e.to_string().len() < 1024, "long error: {e}"),
    }
});
