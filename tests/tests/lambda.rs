//! The Lambda host: fan-out through cargo-lambda's emulator to the real bootstrap, a short
//! deadline that leaves work queued, JSON logs with EMF metrics, and errors sent to Sentry.

use std::collections::HashMap;
use std::process::Output;
use std::time::{Duration, Instant};

use crunch::lambda::{Handler, HandlerConfig};
use crunch::queue::store::Redis;
use crunch::queue::worker::Worker;
use crunch::{Engine, Limits};
use crunch_tests::cli::{Crunch, contracts_file, ok_stdout, path, progress, submit_values};
use crunch_tests::lambda_env::{Bootstrap, Emulator, FUNCTION, FakeHttp, ok_response};
use crunch_tests::redis_server::RedisServer;
use serde_json::Value;

fn crunch(redis: &str, pack: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    env.iter()
        .fold(Crunch::new().redis(redis).pack(pack), |c, (k, v)| {
            c.env(k, v)
        })
        .run(args)
}

fn wait_final(redis: &RedisServer, job: &str, limit: Duration) -> HashMap<String, String> {
    let start = Instant::now();
    loop {
        let p = progress(redis, job);
        if matches!(
            p.get("state").map(String::as_str),
            Some("done" | "done-with-failures" | "failed")
        ) {
            return p;
        }
        assert!(
            start.elapsed() < limit,
            "job {job} not finished after {limit:?}: {p:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// A private Redis, cargo-lambda's emulator, a directory, and the bootstrap connected to them
/// with `env` besides the usual.
struct LambdaSetup {
    redis: RedisServer,
    emulator: Emulator,
    dir: tempfile::TempDir,
    bootstrap: Bootstrap,
}

impl LambdaSetup {
    fn start(env: &[(&str, &str)]) -> Self {
        let redis = RedisServer::start().expect("redis");
        let emulator = Emulator::start().expect("emulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let bootstrap =
            Bootstrap::start(&emulator, &redis.url(), dir.path(), env).expect("bootstrap");
        Self {
            redis,
            emulator,
            dir,
            bootstrap,
        }
    }
}

#[test]
fn fan_out_through_the_emulator_matches_crunch_run() {
    let LambdaSetup {
        redis,
        emulator,
        dir,
        bootstrap,
    } = LambdaSetup::start(&[("CRUNCH_TIME_BUDGET_MS", "60000")]);
    let input = contracts_file(dir.path(), 2000);

    let local = dir.path().join("local.crb");
    ok_stdout(crunch(
        &redis.url(),
        "crunch_kernels",
        &[
            "run",
            "-k",
            "black_scholes",
            "-i",
            path(&input),
            "-o",
            path(&local),
        ],
        &[],
    ));
    let endpoint = emulator.endpoint();
    let out = crunch(
        &redis.url(),
        "crunch_kernels",
        &[
            "submit",
            "-k",
            "black_scholes",
            "-i",
            path(&input),
            "--batch-size",
            "50",
            "--lambda",
            FUNCTION,
            "--workers",
            "3",
            "--lambda-endpoint",
            &endpoint,
        ],
        &AWS_ENV,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let job = ok_stdout(out);
    assert!(stderr.contains("started 3 of 3 invocations"), "{stderr}");
    let p = wait_final(&redis, &job, Duration::from_secs(120));
    assert_eq!(
        (
            p["state"].as_str(),
            p["items_ok"].as_str(),
            p["batches_done"].as_str()
        ),
        ("done", "2000", "40")
    );
    let remote = dir.path().join("remote.crb");
    ok_stdout(crunch(
        &redis.url(),
        "crunch_kernels",
        &["results", &job, "-o", path(&remote)],
        &[],
    ));
    assert!(
        std::fs::read(&local).expect("local") == std::fs::read(&remote).expect("remote"),
        "results differ from crunch run"
    );

    // A synchronous invoke returns the small summary.
    let (status, body) = emulator
        .invoke(&format!("{{\"job\": \"{job}\"}}"))
        .expect("invoke");
    assert_eq!(status, 200, "{body}");
    let summary: Value = serde_json::from_str(&body).expect("response is JSON");
    assert!(body.len() < 1024, "{body}");
    assert_eq!(summary["drained"], true);
    assert_eq!(summary["job_state"], "done");

    // A malformed event is a clear Lambda error and claims nothing.
    let queued = ok_stdout(crunch(
        &redis.url(),
        "crunch_kernels",
        &["submit", "-k", "black_scholes", "-i", path(&input)],
        &[],
    ));
    for bad in [
        format!("{{\"job\": \"{queued}\", \"data\": [1, 2]}}"),
        "{\"jobs\": 1}".to_string(),
        "[1]".to_string(),
    ] {
        let (_, body) = emulator.invoke(&bad).expect("invoke");
        let error: Value = serde_json::from_str(&body).expect("error is JSON");
        assert_eq!(error["errorType"], "Crunch.InvalidEvent", "{body}");
        assert!(
            error["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("job")),
            "{body}"
        );
    }
    let p = progress(&redis, &queued);
    assert_eq!(
        (p["state"].as_str(), p["batches_done"].as_str()),
        ("queued", "0")
    );

    // Every line the bootstrap wrote is JSON; each invocation printed one valid EMF record.
    let log = bootstrap.log();
    let mut emf = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(aws) = record.get("_aws") {
            emf += 1;
            assert!(
                aws["Timestamp"]
                    .as_u64()
                    .is_some_and(|t| t > 1_600_000_000_000),
                "{line}"
            );
            let directive = &aws["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "Crunch");
            for dims in directive["Dimensions"].as_array().expect("Dimensions") {
                for d in dims.as_array().expect("dimension set") {
                    assert!(
                        record[d.as_str().expect("name")].is_string(),
                        "dimension {d} missing: {line}"
                    );
                }
            }
            for m in directive["Metrics"].as_array().expect("Metrics") {
                assert!(m["Name"].is_string() && m["Unit"].is_string(), "{m}");
                assert!(
                    record[m["Name"].as_str().expect("name")].is_number(),
                    "metric {m} missing: {line}"
                );
            }
        }
    }
    assert!(
        emf >= 7,
        "expected an EMF record per invocation, found {emf} in:\n{log}"
    );
    assert!(
        log.contains("\"requestId\"") && log.contains(&job),
        "logs carry request id and job"
    );
}

/// Submits `batches` batches of two `burn` items of `millis` ms each; returns the job id.
fn submit_burn(redis: &RedisServer, batches: usize, millis: u32) -> String {
    let values = vec![f64::from(millis); 2 * batches];
    submit_values(
        &redis.url(),
        "crunch_hostile_kernels",
        "burn",
        &values,
        2,
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_does_some_batches_and_leaves_the_rest() {
    let redis = RedisServer::start().expect("redis");
    // Ten batches of two items that each burn 150 ms (a wall-clock time, the same on any CPU).
    let job = submit_burn(&redis, 10, 150);

    let margin = Duration::from_millis(100);
    let config = HandlerConfig {
        redis_url: redis.url(),
        function_name: "test".into(),
        time_budget: None,
        margin,
        // Two claim loops whatever this machine has: the test's arithmetic counts on it.
        concurrency: 2,
    };
    let worker = Worker::new(Engine::new(Limits::default()).expect("engine"));
    let handler = std::sync::Arc::new(Handler::new(
        worker,
        Redis::connect(&redis.url()).expect("store"),
        config,
    ));
    let invoke = |job: &str, deadline: Duration| {
        let mut ctx = lambda_runtime::Context::default();
        ctx.request_id = format!("req-{}", deadline.as_millis());
        ctx.deadline = crunch::queue::jobs::now_ms() + deadline.as_millis() as u64;
        lambda_runtime::LambdaEvent::new(serde_json::json!({ "job": job }).to_string(), ctx)
    };
    // The deadline comes from a measured batch, not from a guess at this machine's speed: a
    // first one-batch job compiles the pack, a second one measures a whole warm invocation.
    let long = Duration::from_secs(120);
    let mut one_batch = Duration::ZERO;
    for _ in 0..2 {
        let warm_up = submit_burn(&redis, 1, 150);
        let started = Instant::now();
        let done = handler
            .clone()
            .handle(invoke(&warm_up, long))
            .await
            .result
            .expect("warm-up invocation");
        one_batch = started.elapsed();
        assert_eq!(
            (done.batches, done.job_state.as_str()),
            (1, "done"),
            "{done:?}"
        );
    }
    // Room for about three batches per claim loop: six of the ten.
    let first = handler
        .clone()
        .handle(invoke(&job, margin + one_batch.mul_f64(3.5)))
        .await
        .result
        .expect("first invocation");
    assert!(first.stopped_at_deadline && !first.drained, "{first:?}");
    assert!(first.batches >= 1 && first.batches < 10, "{first:?}");
    let p = progress(&redis, &job);
    assert_eq!(
        p["batches_done"],
        first.batches.to_string(),
        "only what the first did is counted"
    );

    let second = handler
        .clone()
        .handle(invoke(&job, long))
        .await
        .result
        .expect("second invocation");
    assert!(second.drained && !second.stopped_at_deadline, "{second:?}");
    assert_eq!(first.batches + second.batches, 10, "{first:?} {second:?}");
    let p = progress(&redis, &job);
    assert_eq!(
        (
            p["state"].as_str(),
            p["batches_done"].as_str(),
            p["items_ok"].as_str()
        ),
        ("done", "10", "20")
    );
    let mut c = redis.connection().expect("connection");
    let counted: u64 = redis::cmd("SCARD")
        .arg(format!("crunch:{{{job}}}:done"))
        .query(&mut c)
        .expect("scard");
    assert_eq!(counted, 10);
}

#[test]
fn a_trap_is_reported_to_sentry_with_job_batch_and_kernel() {
    let sentry = FakeHttp::start(ok_response).expect("fake sentry");
    let dsn = sentry.dsn();
    let LambdaSetup {
        redis,
        emulator,
        dir,
        bootstrap: _bootstrap,
    } = LambdaSetup::start(&[
        ("SENTRY_DSN", dsn.as_str()),
        ("CRUNCH_TIME_BUDGET_MS", "30000"),
    ]);
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[1], [2], [-1], [3]]").expect("input");
    let job = ok_stdout(crunch(
        &redis.url(),
        "crunch_hostile_kernels",
        &[
            "submit",
            "-k",
            "trap_on_negative",
            "-i",
            path(&input),
            "--batch-size",
            "2",
            "--max-deliveries",
            "1",
        ],
        &[],
    ));
    let (status, body) = emulator
        .invoke(&format!("{{\"job\": \"{job}\"}}"))
        .expect("invoke");
    assert_eq!(status, 200, "{body}");
    let summary: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(summary["batches_dead"], 1, "{body}");
    let start = Instant::now();
    loop {
        let requests = sentry.requests();
        if let Some(event) = requests
            .iter()
            .find(|r| r.contains("hostile kernel: negative input -1"))
        {
            assert!(
                event.contains(&job),
                "job missing from the Sentry event: {event}"
            );
            assert!(
                event.contains("trap_on_negative"),
                "kernel missing: {event}"
            );
            assert!(
                event.contains("\"batch\":\"1\""),
                "batch tag missing: {event}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no Sentry event arrived; got {requests:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn throttled_fan_out_backs_off_and_starts_every_worker() {
    let redis = RedisServer::start().expect("redis");
    // The first three invokes are throttled, as Lambda does at its concurrency limit.
    let lambda = FakeHttp::start(|n| {
        if n < 3 {
            let body = r#"{"message":"Rate Exceeded.","Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}"#;
            format!(
                "HTTP/1.1 429 Too Many Requests\r\nx-amzn-ErrorType: TooManyRequestsException\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
    })
    .expect("fake lambda");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 100);
    let endpoint = lambda.endpoint();
    let out = crunch(
        &redis.url(),
        "crunch_kernels",
        &[
            "submit",
            "-k",
            "black_scholes",
            "-i",
            path(&input),
            "--batch-size",
            "10",
            "--lambda",
            "crunch-fn",
            "--workers",
            "4",
            "--lambda-endpoint",
            &endpoint,
        ],
        &AWS_ENV,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let job = ok_stdout(out);
    assert!(
        stderr.contains("started 4 of 4 invocations of crunch-fn (3 retries"),
        "{stderr}"
    );
    let invokes = lambda.requests();
    assert_eq!(invokes.len(), 7, "3 throttled + 4 accepted");
    for request in &invokes {
        assert!(
            request.contains("/2015-03-31/functions/crunch-fn/invocations"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-amz-invocation-type: event"),
            "{request}"
        );
        assert!(
            request.ends_with(&format!("{{\"job\":\"{job}\"}}")),
            "the event carries the job id only: {request}"
        );
    }
}

#[test]
fn bad_events_are_refused_briefly_and_logged_once() {
    let redis = RedisServer::start().expect("redis");
    let emulator = Emulator::start().expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let bootstrap = Bootstrap::start(&emulator, &redis.url(), dir.path(), &[]).expect("bootstrap");
    let input = contracts_file(dir.path(), 10);
    let queued = ok_stdout(crunch(
        &redis.url(),
        "crunch_kernels",
        &["submit", "-k", "black_scholes", "-i", path(&input)],
        &[],
    ));
    let huge_id = "j".repeat(7 << 20);
    let events = [
        (format!("[\"{queued}\"]"), "got a list"),
        (format!("job={queued}"), "the event is not JSON"),
        (
            format!("{{\"job\": \"{queued}\", \"job\": \"{queued}\"}}"),
            "duplicate field `job`",
        ),
        (
            format!("{{\"job\": \"{huge_id}\"}}"),
            "is not a valid job id",
        ),
    ];
    for (event, expected) in &events {
        let (_, body) = emulator.invoke(event).expect("invoke");
        let error: Value = serde_json::from_str(&body).expect("error is JSON");
        assert_eq!(error["errorType"], "Crunch.InvalidEvent", "{body:.300}");
        let message = error["errorMessage"].as_str().expect("message");
        assert!(message.contains(expected), "{message:.300}");
        assert!(message.len() < 300, "{} bytes echoed", message.len());
    }
    let p = progress(&redis, &queued);
    assert_eq!(
        (p["state"].as_str(), p["batches_done"].as_str()),
        ("queued", "0"),
        "a refused event claims nothing"
    );
    // One error line per refused event, none of them long.
    let log = bootstrap.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert_eq!(errors.len(), events.len(), "{log:.4000}");
    assert!(log.len() < 64 << 10, "{} bytes of log", log.len());
}

fn submit_to_lambda(redis: &RedisServer, endpoint: &str, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 10);
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let home = home.display().to_string();
    let mut cmd = Crunch::new().redis(&redis.url()).pack("crunch_kernels");
    // Nothing of this machine's AWS setup: no variables, no profile files.
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") {
            cmd = cmd.env_remove(&key);
        }
    }
    cmd = cmd.env("HOME", &home);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.run(&[
        "submit",
        "-k",
        "black_scholes",
        "-i",
        path(&input),
        "--lambda",
        "crunch-fn",
        "--lambda-endpoint",
        endpoint,
    ])
}

#[test]
fn a_lambda_fan_out_without_credentials_or_region_fails_at_once_with_one_line() {
    let redis = RedisServer::start().expect("redis");
    let lambda = FakeHttp::start(ok_response).expect("fake lambda");
    for (env, expected) in [
        (
            &[("AWS_REGION", "us-east-1")][..],
            "no AWS credentials for invoking crunch-fn",
        ),
        (
            &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ][..],
            "no AWS region for invoking crunch-fn",
        ),
    ] {
        let out = submit_to_lambda(&redis, &lambda.endpoint(), env);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(expected),
            "{stderr}"
        );
        assert!(lines[0].len() < 500, "{stderr}");
    }
    assert!(lambda.requests().is_empty(), "nothing was invoked");
    let jobs = ok_stdout(crunch(&redis.url(), "crunch_kernels", &["jobs"], &[]));
    assert_eq!(jobs.lines().count(), 1, "nothing was submitted: {jobs}");
}

#[test]
fn an_invoke_error_other_than_throttling_is_not_retried() {
    let redis = RedisServer::start().expect("redis");
    let lambda = FakeHttp::start(|_| {
        let body = r#"{"Type":"User","message":"Function not found: arn:aws:lambda:us-east-1:1:function:crunch-fn"}"#;
        format!(
            "HTTP/1.1 404 Not Found\r\nx-amzn-ErrorType: ResourceNotFoundException\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    })
    .expect("fake lambda");
    let out = submit_to_lambda(&redis, &lambda.endpoint(), &AWS_ENV);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(lambda.requests().len(), 1, "tried once: {stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .expect("an error line");
    assert!(error.contains("Function not found"), "{stderr}");
    assert!(error.len() < 500, "{stderr}");
    assert!(
        stderr.contains("the job is queued and loses nothing"),
        "{stderr}"
    );
}

#[test]
fn with_two_vcpus_an_invocation_runs_two_batches_at_once() {
    // 3,538 MB buys two vCPUs' worth of CPU time: two claim loops.
    let LambdaSetup {
        redis,
        emulator,
        dir: _dir,
        bootstrap,
    } = LambdaSetup::start(&[
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3538"),
        ("CRUNCH_TIME_BUDGET_MS", "60000"),
    ]);
    // Eight batches that each burn 300 ms (wall-clock): two loops overlap on any CPU.
    let job = submit_burn(&redis, 8, 300);
    let (status, body) = emulator
        .invoke(&format!("{{\"job\": \"{job}\"}}"))
        .expect("invoke");
    assert_eq!(status, 200, "{body}");
    let summary: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(summary["concurrency"], 2, "{body}");
    assert_eq!(summary["peak_batches"], 2, "{body}");
    assert_eq!(
        (summary["batches"].as_u64(), summary["drained"].as_bool()),
        (Some(8), Some(true)),
        "{body}"
    );
    let p = progress(&redis, &job);
    assert_eq!(
        (p["state"].as_str(), p["items_ok"].as_str()),
        ("done", "16")
    );
    let log = bootstrap.log();
    let emf: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r.get("_aws").is_some() && r["job"] == job.as_str())
        .collect();
    assert_eq!(emf.len(), 1, "one EMF record per invocation:\n{log}");
    assert_eq!(
        (
            emf[0]["Concurrency"].as_u64(),
            emf[0]["PeakConcurrentBatches"].as_u64()
        ),
        (Some(2), Some(2)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_invocation_does_not_break_the_next() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("trap.json");
    std::fs::write(&input, "[[-1]]").expect("input");
    let trapping = ok_stdout(crunch(
        &redis.url(),
        "crunch_hostile_kernels",
        &["submit", "-k", "trap_on_negative", "-i", path(&input)],
        &[],
    ));
    let fine = submit_burn(&redis, 1, 1);
    // The error hook (Sentry's, in the bootstrap) panics on the trap.
    let worker = Worker::new(Engine::new(Limits::default()).expect("engine")).with_error_hook(
        Box::new(|failure| panic!("the error hook failed on {failure:?}")),
    );
    let config = HandlerConfig {
        redis_url: redis.url(),
        function_name: "test".into(),
        time_budget: None,
        margin: Duration::from_millis(100),
        concurrency: 1,
    };
    let handler = std::sync::Arc::new(Handler::new(
        worker,
        Redis::connect(&redis.url()).expect("store"),
        config,
    ));
    let invoke = |job: &str| {
        let mut ctx = lambda_runtime::Context::default();
        ctx.request_id = format!("req-{job}");
        ctx.deadline = crunch::queue::jobs::now_ms() + 60_000;
        lambda_runtime::LambdaEvent::new(serde_json::json!({ "job": job }).to_string(), ctx)
    };
    let first = handler.clone().handle(invoke(&trapping)).await.result;
    assert!(first.is_err(), "{first:?}");
    let second = handler
        .clone()
        .handle(invoke(&fine))
        .await
        .result
        .expect("the next invocation works");
    assert_eq!(
        (second.batches, second.job_state.as_str()),
        (1, "done"),
        "{second:?}"
    );
}
