//! Redis going away and coming back, and refusing: a worker rides out a restart of a persistent
//! redis-server that is still loading its data, outlives a 60 s outage, drains on SIGTERM; an
//! untrusted certificate or a user without permission fails at once, in one line that says
//! what to change.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crunch::data::codec::{self, Format};
use crunch_tests::cli::{
    Crunch, drain, ok_stdout, path, stderr, submit_values, wait_success, wait_until,
};
use crunch_tests::redis_server::{PersistentRedis, RedisServer};

/// Submits `batches` batches of one `burn` item each: item i burns `millis + i / 1000` ms (a
/// wall-clock time, the same on any CPU) and its result is its own value.
fn submit_burn(url: &str, batches: usize, millis: f64, extra: &[&str]) -> String {
    let values: Vec<f64> = (0..batches).map(|i| value(millis, i)).collect();
    submit_values(url, "crunch_hostile_kernels", "burn", &values, 1, extra)
}

fn value(millis: f64, i: usize) -> f64 {
    millis + i as f64 / 1000.0
}

/// The job's progress, or nothing while Redis cannot answer.
fn progress(url: &str, job: &str) -> Option<HashMap<String, String>> {
    let mut c = redis::Client::open(url).ok()?.get_connection().ok()?;
    redis::cmd("HGETALL")
        .arg(format!("crunch:{{{job}}}:progress"))
        .query(&mut c)
        .ok()
}

fn batches_done(url: &str, job: &str) -> u64 {
    progress(url, job)
        .and_then(|p| p.get("batches_done").and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The job is done, every batch counted once, every result its item's own value.
fn assert_done_once(url: &str, dir: &Path, job: &str, batches: usize, millis: f64) {
    let p = progress(url, job).expect("progress");
    assert_eq!(p["state"], "done", "{p:?}");
    assert_eq!(p["batches_done"], batches.to_string(), "{p:?}");
    assert_eq!(p["items_ok"], batches.to_string(), "{p:?}");
    let mut c = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connection");
    let counted: usize = redis::cmd("SCARD")
        .arg(format!("crunch:{{{job}}}:done"))
        .query(&mut c)
        .expect("scard");
    assert_eq!(counted, batches);
    let out = dir.join("out.json");
    ok_stdout(
        Crunch::new()
            .redis(url)
            .run(&["results", job, "-o", path(&out)]),
    );
    let results = codec::read_results(&out, Format::Json).expect("results");
    let values: Vec<f64> = results
        .iter()
        .map(|r| r.as_ref().expect("ok").data[0])
        .collect();
    let expected: Vec<f64> = (0..batches).map(|i| value(millis, i)).collect();
    assert_eq!(values, expected);
}

/// Waits for `child` to exit within `limit` (killing it and failing otherwise).
fn wait_exit(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("polling").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Runs `crunch ARGS` against `url`, failing the test if it does not end within 30 s.
fn run_bounded(url: &str, pack: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(crunch_tests::paths::crunch_bin());
    cmd.args(args)
        .env("CRUNCH_REDIS", url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(pack) = pack {
        cmd.env("CRUNCH_PACK", crunch_tests::paths::component(pack));
    }
    wait_exit(cmd.spawn().expect("crunch"), Duration::from_secs(30))
}

#[test]
fn a_worker_rides_out_a_restart_of_a_persistent_redis_that_is_still_loading() {
    let mut redis = PersistentRedis::start().expect("redis");
    let url = redis.url();
    let mut c = redis.connection().expect("connection");
    // A dataset that keeps Redis loading for about a second after a restart: 10,000 keys, each
    // delayed 100 us on load (key-load-delay, a sleep: the same on any CPU), in the AOF's RDB
    // base, where that delay applies.
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.set(format!("filler:{i}"), i).ignore();
    }
    pipe.query::<()>(&mut c).expect("filler");
    redis::cmd("BGREWRITEAOF")
        .query::<String>(&mut c)
        .expect("bgrewriteaof");
    wait_until("the AOF rewrite", Duration::from_secs(30), || {
        redis::cmd("INFO")
            .arg("persistence")
            .query::<String>(&mut c)
            .is_ok_and(|i| {
                i.contains("aof_rewrite_in_progress:0") && i.contains("aof_rewrite_scheduled:0")
            })
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let job = submit_burn(&url, 20, 150.0, &[]);
    let log = dir.path().join("worker.log");
    let worker = Crunch::new()
        .redis(&url)
        .spawn_worker_logging_to(&["--job", &job, "--exit-when-done", "--threads", "1"], &log);
    wait_until("three batches done", Duration::from_secs(60), || {
        batches_done(&url, &job) >= 3
    });
    // SIGKILL mid-job (every write was fsynced), then back with the data still loading.
    redis
        .restart(&[
            "--key-load-delay",
            "100",
            "--loading-process-events-interval-bytes",
            "1024",
        ])
        .expect("restart");
    wait_success(worker, Duration::from_secs(120));
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        log.contains("Redis is loading the dataset"),
        "the worker never met LOADING:\n{log}"
    );
    assert_done_once(&url, dir.path(), &job, 20, 150.0);
}

#[test]
fn a_worker_outlives_a_60_s_redis_outage_and_finishes_its_job() {
    let mut redis = PersistentRedis::start().expect("redis");
    let url = redis.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let job = submit_burn(&url, 20, 100.0, &[]);
    // Without --job: it finds the job through the index.
    let log = dir.path().join("worker.log");
    let mut worker = Crunch::new()
        .redis(&url)
        .spawn_worker_logging_to(&["--exit-when-done", "--threads", "2"], &log);
    wait_until("two batches done", Duration::from_secs(60), || {
        batches_done(&url, &job) >= 2
    });
    redis.kill();
    std::thread::sleep(Duration::from_secs(60));
    assert!(
        worker.try_wait().expect("polling").is_none(),
        "the worker gave up during the outage:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    redis.restart(&[]).expect("restart");
    wait_success(worker, Duration::from_secs(120));
    assert_done_once(&url, dir.path(), &job, 20, 100.0);
    // It said so while it waited, at a falling rate: not once per retry.
    let log = std::fs::read_to_string(&log).expect("log");
    let warnings = log.matches("Redis unavailable").count();
    assert!(
        (4..=40).contains(&warnings),
        "{warnings} warnings over a 60 s outage:\n{log}"
    );
}

#[test]
fn sigterm_drains_a_worker_which_exits_0_and_hands_back_what_it_did_not_start() {
    let redis = RedisServer::start().expect("redis");
    let url = redis.url();
    let dir = tempfile::tempdir().expect("tempdir");
    // One delivery allowed: a batch handed back must not count as one, or it would be
    // dead-lettered when claimed again.
    let job = submit_burn(&url, 6, 1000.0, &["--max-deliveries", "1"]);
    let log = dir.path().join("worker.log");
    let worker = Crunch::new()
        .redis(&url)
        .spawn_worker_logging_to(&["--job", &job, "--threads", "1"], &log);
    let mut c = redis.connection().expect("connection");
    let queue = format!("crunch:{{{job}}}:queue");
    let pending = |c: &mut redis::Connection| -> u64 {
        let summary: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
            .arg(&queue)
            .arg("workers")
            .query(c)
            .expect("xpending");
        summary.0
    };
    // One batch running and the next claimed behind it.
    wait_until("two claims held", Duration::from_secs(30), || {
        pending(&mut c) == 2
    });
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = wait_exit(worker, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(out.status.success(), "{:?}:\n{log}", out.status);
    assert!(log.contains("drained on request"), "{log}");
    assert_eq!(pending(&mut c), 0, "nothing left claimed:\n{log}");
    assert!(
        batches_done(&url, &job) >= 1,
        "the running batch was finished"
    );
    drain(&url, &job, 2);
    assert_done_once(&url, dir.path(), &job, 6, 1000.0);
    let p = progress(&url, &job).expect("progress");
    assert_eq!(p["batches_dead"], "0", "{p:?}");
}

#[test]
fn an_untrusted_certificate_fails_at_once_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _ca) = RedisServer::start_tls_acl(dir.path(), "crunch", "pw").expect("tls");
    // CRUNCH_REDIS_CA is not set: the system's roots do not know the test CA.
    let url = format!("rediss://crunch:pw@127.0.0.1:{}", server.port());
    for args in [&["jobs"][..], &["worker", "--threads", "1"][..]] {
        let out = run_bounded(&url, None, args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("CRUNCH_REDIS_CA") && err.contains("certificate"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_user_without_write_permission_fails_at_once_in_one_line() {
    let redis = RedisServer::start_with_args(&[
        "--user",
        "reader",
        "on",
        ">pw",
        "~crunch:*",
        "+@read",
        "+@connection",
    ])
    .expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let job = submit_burn(&redis.url(), 2, 1.0, &[]);
    let reader = format!("redis://reader:pw@127.0.0.1:{}", redis.port());
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[1]]").expect("input");
    for args in [
        &["submit", "-k", "burn", "-i", path(&input)][..],
        &["worker", "--job", &job, "--threads", "1"][..],
    ] {
        let out = run_bounded(&reader, Some("crunch_hostile_kernels"), args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}: {err}");
        // One line, besides the worker's banner.
        let lines: Vec<&str> = err
            .trim()
            .lines()
            .filter(|l| !l.starts_with("worker "))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            err.contains("NOPERM") && err.contains("ACL"),
            "{args:?}: {err}"
        );
        assert!(err.len() < 600, "{args:?}: {} bytes: {err}", err.len());
    }
    let p = progress(&redis.url(), &job).expect("progress");
    assert_eq!(p["state"], "queued", "nothing was claimed: {p:?}");
}

#[test]
fn a_job_redis_lost_is_reported_gone_and_its_worker_stops() {
    let redis = RedisServer::start().expect("redis");
    let url = redis.url();
    let job = submit_burn(&url, 30, 200.0, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("worker.log");
    let worker = Crunch::new()
        .redis(&url)
        .spawn_worker_logging_to(&["--job", &job, "--threads", "1"], &log);
    wait_until("a batch done", Duration::from_secs(30), || {
        batches_done(&url, &job) >= 1
    });
    // Redis loses everything (a restart without persistence, a flush).
    let mut c = redis.connection().expect("connection");
    redis::cmd("FLUSHALL")
        .query::<()>(&mut c)
        .expect("flushall");
    let out = wait_exit(worker, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(out.status.success(), "{:?}:\n{log}", out.status);
    assert!(log.contains("the job is gone"), "{log}");
    let status = Crunch::new().redis(&url).run(&["status", &job]);
    assert!(!status.status.success());
    assert!(
        stderr(&status).contains(&format!("no job `{job}`")),
        "{}",
        stderr(&status)
    );
}
