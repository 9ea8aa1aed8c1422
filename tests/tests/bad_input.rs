//! The bad-input matrix (docs/bad-input.md): malformed CLI input files and arguments, Redis
//! payloads, job specs and Lambda events. Each gets a clear error naming what is wrong, no
//! panic, and the rest of the job is not lost. What kernels hand back and what is written is in
//! `bad_output.rs`.

use std::collections::HashMap;
use std::path::Path;

use crunch::lambda::{DrainEvent, EventError};
use crunch_tests::cli::{
    crunch_with as crunch, drain, path, run_kernel, stderr, submit_six_items as submit,
};
use crunch_tests::redis_server::RedisServer;

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
            "expected float64 data ('<f8', or big-endian '>f8'), got <i8",
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
        (
            "short.npy",
            npy("<f8", false, "(2,)", &[0u8; 12]),
            "the data ends early: shape [2] needs 2 values",
        ),
        (
            "trailing.npy",
            npy("<f8", false, "(2,)", &[0u8; 19]),
            "3 unexpected bytes after the array",
        ),
        (
            "duplicate.json",
            br#"[[{"shape": [2], "shape": [1], "data": [1]}]]"#.to_vec(),
            "duplicate key `shape`",
        ),
        ("input.txt", b"1 2 3".to_vec(), "cannot tell the format of"),
    ];
    let output = dir.path().join("out.json");
    for (name, bytes, expected) in &cases {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).expect("write");
        let out = run_kernel("norm_cdf", &input, &output, &[]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{name}: expected {expected:?} in {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{name} panicked");
        assert!(
            !stderr(&out).contains("expected '<f8' data, got '<f8'"),
            "{name}: {}",
            stderr(&out)
        );
    }
    // The flag to name is the input's.
    let txt = dir.path().join("input.txt");
    let out = run_kernel("norm_cdf", &txt, &output, &[]);
    assert!(
        stderr(&out).contains("or pass --input-format json|npy|crb"),
        "{}",
        stderr(&out)
    );
    let out = crunch(
        &[
            "run",
            "-k",
            "norm_cdf",
            "-i",
            path(&dir.path().join("bool.json")),
            "-o",
            "out.txt",
        ],
        &[],
    );
    assert!(
        stderr(&out).contains("or pass --output-format json|npy|crb"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_big_endian_npy_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("big.npy");
    let values: Vec<u8> = [0.0f64, 1.0].iter().flat_map(|v| v.to_be_bytes()).collect();
    std::fs::write(&input, npy(">f8", false, "(2,)", &values)).expect("write");
    let output = dir.path().join("out.json");
    let out = run_kernel("norm_cdf", &input, &output, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results = crunch::data::codec::read_results(&output, crunch::data::codec::Format::Json)
        .expect("results");
    assert_eq!(results[0].as_ref().expect("ok").data, vec![0.5]);
    assert!((results[1].as_ref().expect("ok").data[0] - 0.8413447460685429).abs() < 1e-15);
}

#[test]
fn an_endless_crb_is_refused_at_its_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zero = dir.path().join("zero.crb");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    let output = dir.path().join("out.json");
    let out = run_kernel("norm_cdf", &zero, &output, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("not a Crunch binary file: the first 8 bytes are [0, 0, 0, 0, 0, 0, 0, 0]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_arguments_exit_1_with_clear_errors_and_run_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[1, 2]]").expect("write");
    let i = path(&input);
    let o = dir.path().join("o.json");
    let o = o.to_str().expect("path");
    let run = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["run", "-k", "percentile", "-i", i, "-o", o]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "run",
                "-k",
                "norm_cdf",
                "-i",
                "/nonexistent/in.json",
                "-o",
                o,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "opening input",
        ),
        (
            vec!["run", "-k", "no_such", "-i", i, "-o", o]
                .into_iter()
                .map(String::from)
                .collect(),
            "no kernel `no_such`",
        ),
        (run(&["-p", "q=ten"]), "not a number"),
        (
            run(&["-p", "q=50", "--pack", "/nonexistent.wasm"]),
            "reading kernel pack",
        ),
        (run(&["-p", "q=50", "--batch-size", "0"]), "batch-size"),
        (run(&["-p", "q=50", "--threads", "0"]), "threads"),
        (run(&["-p", "q="]), "has no value"),
        (run(&["-p", "q=50,,90"]), "entry 1 of `50,,90` is empty"),
        (run(&["-p", "q=[[5, 50], [90]]"]), "rows differ in length"),
        (
            run(&["-p", "q=50", "-p", "q=90"]),
            "parameter `q` is given twice",
        ),
        (
            run(&["-p", "q=50", "-p", "qq=1"]),
            "kernel `percentile` refuses the call: invalid-input: kernel `percentile` takes no parameter `qq` (it takes: q)",
        ),
        (
            run(&["-p", "q=50", "--time-limit=-1"]),
            "--time-limit must be a positive number",
        ),
        (
            run(&["-p", "q=50", "--time-limit", "1e300"]),
            "--time-limit must be at most 604800 seconds",
        ),
        (
            run(&["-p", "q=50", "--time-limit", "0.001"]),
            "--time-limit must be at least 0.01 seconds, got 0.001: time limits are counted in ticks of 10 ms",
        ),
        (run(&["-p", "q=50", "--memory-limit", "0"]), "memory-limit"),
        (
            vec!["run".to_string(), "--no-such-flag".to_string()],
            "--no-such-flag",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = crunch(&args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: expected {expected:?} in {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!Path::new(o).exists(), "{args:?} wrote an output");
    }
}

#[test]
fn bad_submit_arguments_exit_1_before_anything_is_written() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[1], [2]]").expect("write");
    let i = path(&input);
    for (extra, expected) in [
        (&["--ttl", "0"][..], "--ttl"),
        (
            &["--time-limit", "1e300"][..],
            "--time-limit must be at most",
        ),
        (&["--lease", "1e300"][..], "--lease must be at most"),
        (&["--lease", "0"][..], "--lease must be a positive number"),
        (&["-p", "q=1"][..], "kernel `norm_cdf` refuses the call"),
    ] {
        let mut args = vec!["submit", "-k", "norm_cdf", "-i", i];
        args.extend_from_slice(extra);
        let out = crunch(&args, &[("CRUNCH_REDIS", &redis.url())]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: expected {expected:?} in {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let jobs = crunch(&["jobs"], &[("CRUNCH_REDIS", &redis.url())]);
    assert_eq!(
        String::from_utf8_lossy(&jobs.stdout).lines().count(),
        1,
        "no job was written: {}",
        String::from_utf8_lossy(&jobs.stdout)
    );
}

#[test]
fn a_parameter_may_be_a_tensor_of_any_rank() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[1, 2, 3, 4, 5]]").expect("write");
    let output = dir.path().join("out.json");
    for (param, shape) in [
        ("q=[[0, 25], [75, 100]]", vec![2, 2]),
        ("q=50,", vec![1]),
        ("q=50", vec![]),
    ] {
        let out = crunch(
            &[
                "run",
                "-k",
                "percentile",
                "-p",
                param,
                "-i",
                path(&input),
                "-o",
                path(&output),
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{param}: {}", stderr(&out));
        let results = crunch::data::codec::read_results(&output, crunch::data::codec::Format::Json)
            .expect("results");
        let t = results[0].as_ref().expect("percentiles");
        assert_eq!(t.shape, shape, "{param}");
    }
    let results = crunch::data::codec::read_results(&output, crunch::data::codec::Format::Json)
        .expect("results");
    assert_eq!(results[0].as_ref().expect("ok").data, vec![3.0]);
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
    let out = run_kernel("black_scholes", &input, &output, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let results = crunch::data::codec::read_results(&output, crunch::data::codec::Format::Json)
        .expect("results");
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().expect_err("short record").kind(),
        crunch::ErrorKind::InvalidInput
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
        crunch::ErrorKind::Domain
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
        ("null", "{\"job\"", "got null"),
        ("[]", "{\"job\"", "got a list"),
        ("[\"JOB\"]", "{\"job\"", "got a list"),
        ("{}", "missing field `job`", ""),
        ("{\"job\": 5}", "invalid type", ""),
        (
            "{\"job\": \"a\", \"extra\": 1}",
            "unknown field `extra`",
            "",
        ),
        ("{\"jobs\": \"a\"}", "unknown field `jobs`", ""),
        (
            "{\"job\": \"a\", \"job\": \"b\"}",
            "duplicate field `job`",
            "",
        ),
    ];
    for (text, expected, also) in cases {
        let err = DrainEvent::parse(text.as_bytes()).expect_err(text);
        assert!(matches!(err, EventError::Malformed(_)), "{text}: {err:?}");
        assert!(err.to_string().contains(expected), "{text}: {err}");
        assert!(err.to_string().contains(also), "{text}: {err}");
    }
    for text in ["job=abc", "", "{\"job\": \"a\""] {
        let err = DrainEvent::parse(text.as_bytes()).expect_err(text);
        assert!(matches!(err, EventError::NotJson(_)), "{text}: {err:?}");
        assert!(
            err.to_string().starts_with("the event is not JSON"),
            "{err}"
        );
    }
    let long = "j".repeat(7 << 20);
    for bad_id in ["", "a}b", "x y", &"j".repeat(65), &long] {
        let event = serde_json::json!({ "job": bad_id }).to_string();
        let err = DrainEvent::parse(event.as_bytes()).expect_err(bad_id);
        assert!(matches!(err, EventError::BadJobId(_)), "{err:?}");
        assert!(
            err.to_string().len() < 200,
            "{} bytes",
            err.to_string().len()
        );
    }
}
