//! The bad-input matrix (docs/bad-input.md): malformed CLI input files, Redis payloads, job
//! specs and Lambda events. Each gets a clear error naming what is wrong, no panic, and the rest
//! of the job is not lost.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use crunch::lambda::{DrainEvent, EventError};
use crunch_tests::cli::{Crunch, drain, path, stderr};
use crunch_tests::redis_server::RedisServer;

fn crunch(args: &[&str], env: &[(&str, &str)]) -> Output {
    env.iter()
        .fold(Crunch::new().pack("crunch_kernels"), |c, (k, v)| {
            c.env(k, v)
        })
        .run(args)
}

fn crb(version: u32, count: u64, body: &[u8]) -> Vec<u8> {
    let mut b = b"CRNCHBIN".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&count.to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// One item: one tensor of shape [2] holding 1.0 and 2.0.
fn crb_item() -> Vec<u8> {
    let mut b = vec![0u8];
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&1.0f64.to_le_bytes());
    b.extend_from_slice(&2.0f64.to_le_bytes());
    b
}

fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn malformed_input_files_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = crb_item();
    let mut absurd_shape = vec![0u8];
    absurd_shape.extend_from_slice(&1u32.to_le_bytes());
    absurd_shape.extend_from_slice(&3u32.to_le_bytes());
    for d in [u32::MAX, u32::MAX, u32::MAX] {
        absurd_shape.extend_from_slice(&d.to_le_bytes());
    }
    let mut trailing = crb(1, 1, &good);
    trailing.extend_from_slice(b"xx");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.crb",
            crb(1, 1, &good[..good.len() - 3]),
            "truncated",
        ),
        (
            "magic.crb",
            b"NOTCRUNCH-AT-ALL-000000000".to_vec(),
            "not a Crunch binary",
        ),
        (
            "version.crb",
            crb(7, 1, &good),
            "unsupported Crunch binary version 7",
        ),
        ("count.crb", crb(1, u64::MAX, &good), "header claims"),
        ("shape.crb", crb(1, 1, &absurd_shape), "item 0"),
        (
            "trailing.crb",
            trailing,
            "unexpected bytes after the last item",
        ),
        ("tag.crb", crb(1, 1, &[9, 0, 0, 0, 0]), "unknown tag 9"),
        (
            "syntax.json",
            b"{\"items\": [[1, 2]".to_vec(),
            "not valid JSON",
        ),
        (
            "lengths.json",
            br#"[[{"shape": [2, 2], "data": [1, 2, 3]}]]"#.to_vec(),
            "needs 4 values",
        ),
        (
            "bool.json",
            b"[[1, true]]".to_vec(),
            "expected a number, got a boolean",
        ),
        (
            "string.json",
            br#"[[1, "two"]]"#.to_vec(),
            "expected a number, got the string",
        ),
        ("scalar.json", b"42".to_vec(), "expected a list of items"),
        (
            "negdim.json",
            br#"[[{"shape": [-1], "data": []}]]"#.to_vec(),
            "shape entries must be integers",
        ),
        (
            "hugedim.json",
            br#"[[{"shape": [4294967295, 4294967295, 4294967295], "data": [1]}]]"#.to_vec(),
            "item 0",
        ),
        (
            "garbage.npy",
            b"\x93NUMPY garbage".to_vec(),
            "not a valid .npy",
        ),
        (
            "int.npy",
            npy("<i8", false, "(2,)", &[0u8; 16]),
            "expected little-endian float64",
        ),
        (
            "fortran.npy",
            npy("<f8", true, "(2, 2)", &[0u8; 32]),
            "Fortran-ordered",
        ),
        (
            "zero-d.npy",
            npy("<f8", false, "()", &[0u8; 8]),
            "0-d array",
        ),
        ("input.txt", b"1 2 3".to_vec(), "cannot tell the format"),
    ];
    let output = dir.path().join("out.json");
    for (name, bytes, expected) in &cases {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).expect("write");
        let out = crunch(
            &[
                "run",
                "-k",
                "norm_cdf",
                "-i",
                path(&input),
                "-o",
                path(&output),
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{name}: expected {expected:?} in {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{name} panicked");
    }
}

#[test]
fn bad_arguments_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[1, 2]]").expect("write");
    let i = path(&input);
    let o = dir.path().join("o.json");
    let o = o.to_str().expect("path");
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "run",
                "-k",
                "norm_cdf",
                "-i",
                "/nonexistent/in.json",
                "-o",
                o,
            ],
            "opening input",
        ),
        (
            &["run", "-k", "no_such", "-i", i, "-o", o],
            "no kernel `no_such`",
        ),
        (
            &["run", "-k", "percentile", "-p", "q=ten", "-i", i, "-o", o],
            "not a number",
        ),
        (
            &[
                "run",
                "-k",
                "norm_cdf",
                "-i",
                i,
                "-o",
                o,
                "--pack",
                "/nonexistent.wasm",
            ],
            "reading kernel pack",
        ),
        (
            &[
                "run",
                "-k",
                "norm_cdf",
                "-i",
                i,
                "-o",
                o,
                "--batch-size",
                "0",
            ],
            "batch-size",
        ),
        (
            &["run", "-k", "norm_cdf", "-i", i, "-o", o, "--time-limit=-1"],
            "--time-limit must be a positive number",
        ),
    ];
    for (args, expected) in cases {
        let out = crunch(args, &[]);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn bad_items_fail_alone_and_non_finite_values_propagate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(
        &input,
        r#"[[100, 100, 1, 0.01, 0.2, 1], [100, 100, 1], ["NaN", 100, 1, 0.01, 0.2, 1], [100, 100, 1, 0.01, "Infinity", 1], [100, 100, 1, 0.01, 0.2, 3]]"#,
    )
    .expect("write");
    let output = dir.path().join("out.json");
    let out = crunch(
        &[
            "run",
            "-k",
            "black_scholes",
            "-i",
            path(&input),
            "-o",
            path(&output),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let results =
        crunch::codec::read_results(&output, crunch::codec::Format::Json).expect("results");
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().expect_err("short record").kind(),
        "invalid-input"
    );
    assert!(
        results[2]
            .as_ref()
            .expect("NaN propagates")
            .data
            .iter()
            .all(|v| v.is_nan())
    );
    assert_eq!(
        results[3].as_ref().expect_err("infinite sigma").kind(),
        "domain"
    );
    assert!(
        results[4]
            .as_ref()
            .expect_err("is_call 3")
            .message()
            .contains("is_call")
    );
}

fn progress(conn: &mut redis::Connection, job: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(format!("crunch:{{{job}}}:progress"))
        .query(conn)
        .expect("progress")
}

fn submit(redis: &str, dir: &Path) -> String {
    let input = dir.join("in.json");
    std::fs::write(&input, "[[1], [2], [3], [4], [5], [6]]").expect("write");
    let out = crunch(
        &[
            "submit",
            "-k",
            "norm_cdf",
            "-i",
            path(&input),
            "--batch-size",
            "2",
        ],
        &[("CRUNCH_REDIS", redis)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn bad_redis_payloads_dead_letter_their_batch_only() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = redis.connection().expect("connection");
    let job = submit(&redis.url(), dir.path());
    let _: () = redis::cmd("SET")
        .arg(format!("crunch:{{{job}}}:in:0"))
        .arg(&b"CRNCHBIN\x01\0\0\0"[..])
        .query(&mut conn)
        .expect("corrupt");
    let _: () = redis::cmd("DEL")
        .arg(format!("crunch:{{{job}}}:in:1"))
        .query(&mut conn)
        .expect("delete");
    drain(&redis.url(), &job, 1);
    let p = progress(&mut conn, &job);
    assert_eq!(
        (
            p["state"].as_str(),
            p["batches_dead"].as_str(),
            p["items_ok"].as_str()
        ),
        ("done-with-failures", "2", "2"),
        "{p:?}"
    );
    let status = crunch(&["status", &job], &[("CRUNCH_REDIS", &redis.url())]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("batch 0") && text.contains("malformed"),
        "{text}"
    );
    assert!(
        text.contains("batch 1") && text.contains("missing"),
        "{text}"
    );
}

#[test]
fn unreadable_job_specs_fail_their_job_with_the_reason() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = redis.connection().expect("connection");
    for (field, value, expected) in [
        ("protocol", "9", "protocol 9"),
        ("batch_count", "many", "batch_count"),
        ("params", "{not json", "params"),
    ] {
        let job = submit(&redis.url(), dir.path());
        let _: () = redis::cmd("HSET")
            .arg(format!("crunch:{{{job}}}:spec"))
            .arg(field)
            .arg(value)
            .query(&mut conn)
            .expect("corrupt spec");
        drain(&redis.url(), &job, 1);
        let p = progress(&mut conn, &job);
        assert_eq!(p["state"], "failed", "{field}: {p:?}");
        assert!(p["error"].contains(expected), "{field}: {}", p["error"]);
    }
}

#[test]
fn malformed_lambda_events_are_refused() {
    let cases = [
        ("null", "{\"job\""),
        ("[]", "{\"job\""),
        ("{}", "missing field `job`"),
        ("{\"job\": 5}", "invalid type"),
        ("{\"job\": \"a\", \"extra\": 1}", "unknown field `extra`"),
        ("{\"jobs\": \"a\"}", "unknown field `jobs`"),
    ];
    for (text, expected) in cases {
        let value: serde_json::Value = serde_json::from_str(text).expect("test JSON");
        let err = DrainEvent::parse(value).expect_err(text);
        assert!(matches!(err, EventError::Malformed(_)), "{text}: {err:?}");
        assert!(err.to_string().contains(expected), "{text}: {err}");
    }
    for bad_id in ["", "a}b", "x y", &"j".repeat(65)] {
        let err = DrainEvent::parse(serde_json::json!({ "job": bad_id })).expect_err(bad_id);
        assert!(matches!(err, EventError::BadJobId(_)), "{bad_id}: {err:?}");
    }
}
