//! Fuzzes the Crunch binary decoder (input batches and results, as read from files and Redis):
//! any bytes must decode or fail with an error, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = crunch::codec::decode_items(data) {
        // What decodes re-encodes to the same bytes.
        assert_eq!(crunch::codec::encode_items(&items), data);
    }
    let _ = crunch::codec::decode_results(data);
});
