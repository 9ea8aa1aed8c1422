//! Fuzzes the Crunch binary decoder (input batches and results, as read from files and Redis):
//! any bytes must decode or fail with an error, never panic or allocate without bound; the
//! stream reader (files, header first) must agree with the reader of bytes in memory (Redis).
#![no_main]

use crunch::data::codec::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let in_memory = codec::decode_items(data);
    if let Ok(items) = &in_memory {
        // What decodes re-encodes to the same bytes.
        assert_eq!(codec::encode_items(items), data);
    }
    for len in [Some(data.len() as u64), None] {
        let streamed = codec::read_items_from(data, Format::Binary, len);
        match (&in_memory, &streamed) {
            // Compared as bytes: NaN values are equal bit for bit, not as numbers.
            (Ok(a), Ok(b)) => assert_eq!(codec::encode_items(a), codec::encode_items(b)),
            (Err(_), Err(_)) => {}
            _ => panic!("the stream and memory readers disagree: {in_memory:?} / {streamed:?}"),
        }
    }
    let _ = codec::decode_results(data);
});
