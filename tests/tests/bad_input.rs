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

/// `crunch run -k KERNEL -i INPUT -o OUTPUT EXTRA...` with the standard pack.
fn run_kernel(kernel: &str, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "-k", kernel, "-i", path(input), "-o", path(output)];
    args.extend_from_slice(extra);
    crunch(&args, &[])
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
    let results =
        crunch::codec::read_results(&output, crunch::codec::Format::Json).expect("results");
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
        let results =
            crunch::codec::read_results(&output, crunch::codec::Format::Json).expect("results");
        let t = results[0].as_ref().expect("percentiles");
        assert_eq!(t.shape, shape, "{param}");
    }
    let results =
        crunch::codec::read_results(&output, crunch::codec::Format::Json).expect("results");
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

#[test]
fn outputs_never_replace_the_input_nor_leave_a_partial_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("x.json");
    let text = "[[1, 2], [3]]";
    std::fs::write(&input, text).expect("write");
    // The same file, by its name and through a hard link.
    let link = dir.path().join("link.json");
    std::fs::hard_link(&input, &link).expect("hard link");
    for output in [&input, &link] {
        let out = run_kernel("norm_cdf", &input, &output, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is the input file"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(&input).expect("input"), text);
    }
    // Ragged results cannot be NPY: the old output stays whole, the error says what would hold
    // them, and no partial file is left behind.
    let output = dir.path().join("out.npy");
    std::fs::write(&output, b"earlier results").expect("write");
    let out = run_kernel("norm_cdf", &input, &output, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("NPY needs one shape, use .json or .crb"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&output).expect("output"), b"earlier results");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["link.json", "out.npy", "x.json"]);
}

#[test]
fn results_to_npy_write_the_item_errors_beside_them() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[100, 100, 1, 0.01, 0.2, 1], [100, 100, 1]]").expect("write");
    let env = [("CRUNCH_REDIS", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = crunch(&["submit", "-k", "black_scholes", "-i", path(&input)], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    drain(&redis.url(), &job, 1);
    let output = dir.path().join("greeks.npy");
    let out = crunch(&["results", &job, "-o", path(&output)], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let errors = dir.path().join("greeks.npy.errors.json");
    assert!(
        stderr(&out).contains(&format!("item errors written to {}", errors.display())),
        "{}",
        stderr(&out)
    );
    let errors: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&errors).expect("errors file")).expect("JSON");
    assert_eq!(errors["errors"][0]["item"], 1, "{errors}");
    assert_eq!(errors["errors"][0]["kind"], "invalid-input", "{errors}");
}

fn norm_cdf_job(dir: &Path, items: usize, values: usize) -> std::path::PathBuf {
    let rows: Vec<Vec<crunch::Tensor>> = (0..items)
        .map(|i| {
            vec![crunch::Tensor {
                shape: vec![values as u32],
                data: (0..values).map(|j| ((i + j) % 7) as f64 - 3.0).collect(),
            }]
        })
        .collect();
    let input = dir.join(format!("in-{items}x{values}.npy"));
    crunch::codec::write_items(&input, crunch::codec::Format::Npy, &rows).expect("input");
    input
}

#[test]
fn a_batch_whose_outputs_pass_128_mib_completes() {
    // 4096 items of 4100 values: 134 MB of results in one batch, past wasmtime's default
    // hostcall limit of 128 MiB, within the 1 GiB batch memory it is raised to.
    let dir = tempfile::tempdir().expect("tempdir");
    let input = norm_cdf_job(dir.path(), 4096, 4100);
    let output = dir.path().join("out.npy");
    let out = run_kernel(
        "norm_cdf",
        &input,
        &output,
        &["--batch-size", "4096", "--threads", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4096 ok, 0 failed"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("out.npy.errors.json").exists());
}

#[test]
fn results_over_the_call_limit_are_asked_for_in_halves_down_to_one_item() {
    use crunch::{Engine, Job, KernelPack, Limits, Tensor};
    let limits = Limits {
        max_result_bytes: Some(1 << 20),
        ..Limits::default()
    };
    let engine = Engine::new(limits).expect("engine");
    let pack =
        KernelPack::load(&engine, &crunch_tests::paths::component("crunch_kernels")).expect("pack");
    // 40 items of 10,000 values (80 KB of results each, 3.2 MB in all), one of 200,000 values
    // (1.6 MB: over the 1 MiB limit on its own).
    let mut items: Vec<Vec<Tensor>> = (0..40)
        .map(|i| {
            vec![Tensor {
                shape: vec![10_000],
                data: vec![f64::from(i) / 40.0; 10_000],
            }]
        })
        .collect();
    items[17] = vec![Tensor {
        shape: vec![200_000],
        data: vec![0.0; 200_000],
    }];
    let job = Job {
        kernel: "norm_cdf",
        params: &[],
        batch_time: limits.batch_time,
    };
    let outcome = crunch::run_batch(&pack, &job, 3, &items);
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let results = outcome.results.to_vec();
    for (i, r) in results.iter().enumerate() {
        if i == 17 {
            let e = r.as_ref().expect_err("item 17 is over the limit");
            assert_eq!(e.kind(), "batch-failed");
            assert!(
                e.message()
                    .contains("kernel `norm_cdf`, batch 3: the item's result is over the 1 MiB"),
                "{}",
                e.message()
            );
        } else {
            let t = r.as_ref().expect("computed");
            assert_eq!(t.data.len(), 10_000);
            assert_eq!(t.data[0].to_bits(), native_cdf(i).to_bits(), "item {i}");
        }
    }
}

/// norm_cdf of item `i`'s value, computed by the same kernel natively.
fn native_cdf(i: usize) -> f64 {
    let x = crunch_kernels::Tensor {
        shape: vec![],
        data: vec![i as f64 / 40.0],
    };
    let out = crunch_kernels::run("norm_cdf", &[], &[vec![x]]);
    out[0].as_ref().expect("native norm_cdf").data[0]
}

/// Runs hostile `kernel` over the JSON `items`, one item per batch; the output is JSON.
fn run_one_item_batches(
    kernel: &str,
    items: &str,
) -> (Output, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, items).expect("write");
    let output = dir.path().join("out.json");
    let out = Crunch::new().pack("crunch_hostile_kernels").run(&[
        "run",
        "-k",
        kernel,
        "-i",
        path(&input),
        "-o",
        path(&output),
        "--batch-size",
        "1",
    ]);
    (out, output, dir)
}

/// Raw bytes a terminal would act on: ESC, NUL, a right-to-left override.
fn assert_no_raw_controls(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\0') && !text.contains('\u{202e}'),
        "{what} holds raw control characters: {text:?}"
    );
}

#[test]
fn kernel_text_is_escaped_and_cut_short_before_it_is_printed() {
    // An error full of escapes, a 2 MiB error, a panic full of escapes.
    let (out, output, _dir) = run_one_item_batches("raw_text", "[[0], [2], [-1]]");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_raw_controls("stderr", &out.stderr);
    let err = stderr(&out);
    assert!(
        err.contains("\\u{1b}[31mred\\u{1b}[2J\\0nul\\u{202e}desrever"),
        "{err}"
    );
    assert!(err.contains("more bytes)"), "{err}");
    assert!(err.len() < 32 << 10, "{} bytes of stderr", err.len());
    // The output keeps what the kernel said, cut at 16 KiB.
    let results =
        crunch::codec::read_results(&output, crunch::codec::Format::Json).expect("results");
    let long = results[1]
        .as_ref()
        .expect_err("item 1 fails")
        .message()
        .to_string();
    assert!(
        long.len() < 17 << 10 && long.ends_with("more bytes)"),
        "{}",
        long.len()
    );
    let panic = results[2]
        .as_ref()
        .expect_err("item 2 fails")
        .message()
        .to_string();
    assert!(panic.contains("hostile kernel"), "{panic}");
}

#[test]
fn kernel_names_are_escaped_when_listed() {
    let out = Crunch::new()
        .pack("crunch_hostile_bad_names")
        .run(&["kernels"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_raw_controls("stdout", &out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("evil\\u{1b}[31mred"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_stack_overflow_says_so() {
    let (out, _, _dir) = run_one_item_batches("recurse_on_negative", "[[1], [-1]]");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kernel `recurse_on_negative`, batch 1: trapped: stack overflow"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_two_thread_worker_writes_its_disk_cache_without_a_warning() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let job = submit(&redis.url(), dir.path());
    let log = dir.path().join("worker.log");
    let worker = Crunch::new()
        .redis(&redis.url())
        .env("CRUNCH_CACHE_DIR", dir.path().join("cache"))
        .spawn_worker_with_stderr(
            &["--job", &job, "--exit-when-done", "--threads", "2"],
            std::fs::File::create(&log).expect("log"),
        );
    crunch_tests::cli::wait_success(worker, std::time::Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains("could not write the disk cache"), "{text}");
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        cached.len(),
        2,
        "one compiled pack and its checksum: {cached:?}"
    );
}
