//! Fuzzes the job spec reader (a Redis hash any client can write): a valid spec with one field
//! replaced by fuzz data, and arbitrary field sets, must parse or fail with an error.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

const FIELDS: [&str; 14] = [
    "protocol", "job", "kernel", "pack_digest", "pack_path", "params", "batch_count", "item_count",
    "batch_size", "ttl_seconds", "max_deliveries", "batch_time_ms", "lease_ms", "created_ms",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let mut fields: HashMap<String, String> = [
        ("protocol", "1"), ("job", "j1"), ("kernel", "describe"), ("pack_digest", "sha256:00"),
        ("pack_path", ""), ("params", r#"{"q": {"shape": [2], "data": [5, 95]}}"#), ("batch_count", "3"),
        ("item_count", "10"), ("batch_size", "4"), ("ttl_seconds", "60"), ("max_deliveries", "3"),
        ("batch_time_ms", "1000"), ("lease_ms", "5000"), ("created_ms", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let value = String::from_utf8_lossy(rest).into_owned();
    if pick & 0x80 == 0 {
        fields.insert(FIELDS[pick as usize % FIELDS.len()].to_string(), value);
    } else {
        fields.remove(FIELDS[pick as usize % FIELDS.len()]);
        for pair in value.split('\n') {
            if let Some((k, v)) = pair.split_once('=') {
                fields.insert(k.to_string(), v.to_string());
            }
        }
    }
    if let Ok(spec) = crunch::queue::store::spec::JobSpec::from_fields(&fields) {
        // What parses writes back to fields that parse to the same spec.
        let again: HashMap<String, String> = spec
            .to_fields()
            .expect("a parsed spec serializes")
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(crunch::queue::store::spec::JobSpec::from_fields(&again).expect("round trip"), spec);
    }
});
