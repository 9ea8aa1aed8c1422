//! Jobs through Redis (protocol v1) against a private redis-server: many batches over two
//! worker processes, a worker killed mid-batch, bad items and poison batches, TTLs, and a
//! Redis Cluster.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crunch::data::codec::{self, Format};
use crunch_tests::cli::{
    Crunch, contracts_file, drain, ok_stdout, path, progress, run_kernel, wait_success as wait,
};
use crunch_tests::paths;
use crunch_tests::redis_server::{RedisCluster, RedisServer};

fn crunch(redis: &str, args: &[&str]) -> Output {
    Crunch::new().redis(redis).pack("crunch_kernels").run(args)
}

fn spawn_worker(redis: &str, args: &[&str]) -> Child {
    Crunch::new().redis(redis).spawn_worker(args)
}

/// Submits the black_scholes items of `input` in batches of `batch_size`; returns the job.
fn submit(url: &str, input: &Path, batch_size: &str) -> String {
    ok_stdout(crunch(
        url,
        &[
            "submit",
            "-k",
            "black_scholes",
            "-i",
            path(input),
            "--batch-size",
            batch_size,
        ],
    ))
}

/// Submits, runs `workers` worker processes to completion, and returns (job, items/s).
fn run_job(redis: &RedisServer, input: &Path, workers: usize) -> (String, f64) {
    let job = submit(&redis.url(), input, "100");
    let start = Instant::now();
    let children: Vec<Child> = (0..workers)
        .map(|_| {
            spawn_worker(
                &redis.url(),
                &["--job", &job, "--exit-when-done", "--threads", "2"],
            )
        })
        .collect();
    for c in children {
        wait(c, Duration::from_secs(300));
    }
    let rate = 100_000.0 / start.elapsed().as_secs_f64();
    (job, rate)
}

#[test]
fn two_workers_compute_100k_items_once_in_order_like_crunch_run() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 100_000);
    let local = run_locally(dir.path(), &input);

    let (_, one_rate) = run_job(&redis, &input, 1);
    let (job, two_rate) = run_job(&redis, &input, 2);
    let p = progress(&redis, &job);
    assert_eq!(p["state"], "done");
    assert_eq!(p["batch_count"], "1000");
    assert_eq!(p["batches_done"], "1000");
    assert_eq!(p["items_ok"], "100000");
    assert_eq!(p["items_failed"], "0");
    let mut c = redis.connection().expect("connection");
    let counted: u64 = redis::cmd("SCARD")
        .arg(format!("crunch:{{{job}}}:done"))
        .query(&mut c)
        .expect("scard");
    assert_eq!(counted, 1000);

    assert!(
        local == results_bytes(&redis.url(), dir.path(), &job),
        "results through Redis differ from crunch run"
    );
    println!(
        "end to end through Redis: {one_rate:.0} items/s with one worker, {two_rate:.0} items/s with two"
    );
}

fn hostile(redis: &str, args: &[&str]) -> Output {
    Crunch::new()
        .redis(redis)
        .pack("crunch_hostile_kernels")
        .run(args)
}

fn pending(redis: &RedisServer, job: &str) -> u64 {
    let mut c = redis.connection().expect("connection");
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(format!("crunch:{{{job}}}:queue"))
        .arg("workers")
        .query(&mut c)
        .expect("xpending");
    match summary {
        redis::Value::Array(v) => match v.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

#[test]
fn a_worker_killed_mid_batch_loses_nothing() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    // Ten batches of two slow items (each burns 200 to 390 ms, on any CPU).
    let items: Vec<String> = (0..20).map(|i| format!("[{}]", 200 + 10 * i)).collect();
    std::fs::write(&input, format!("[{}]", items.join(","))).expect("input");
    let job = ok_stdout(hostile(
        &redis.url(),
        &[
            "submit",
            "-k",
            "burn",
            "-i",
            path(&input),
            "--batch-size",
            "2",
            "--lease",
            "1",
        ],
    ));

    let mut victim = spawn_worker(&redis.url(), &["--job", &job, "--threads", "1"]);
    let start = Instant::now();
    while pending(&redis, &job) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker never claimed a batch"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    victim.kill().expect("SIGKILL");
    victim.wait().expect("reap");
    assert!(
        pending(&redis, &job) > 0,
        "the killed worker's claim must be left pending"
    );

    drain(&redis.url(), &job, 2);
    let p = progress(&redis, &job);
    assert_eq!(p["state"], "done", "{p:?}");
    assert_eq!(p["batches_done"], "10");
    assert_eq!(p["items_ok"], "20");
    assert_eq!(p["items_failed"], "0");
    assert_eq!(pending(&redis, &job), 0);
    let out = dir.path().join("out.json");
    ok_stdout(hostile(&redis.url(), &["results", &job, "-o", path(&out)]));
    let results = codec::read_results(&out, Format::Json).expect("results");
    let values: Vec<f64> = results
        .iter()
        .map(|r| r.as_ref().expect("ok").data[0])
        .collect();
    let expected: Vec<f64> = (0..20).map(|i| (200 + 10 * i) as f64).collect();
    assert_eq!(values, expected);
}

#[test]
fn bad_items_and_poison_batches_end_the_job_with_failures() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    // Batch 0: fine. Batch 1: an item with no tensors (invalid input). Batch 2: traps always.
    std::fs::write(
        &input,
        r#"{"items": [[1], [2], [3], {"inputs": []}, [-1], [4]]}"#,
    )
    .expect("input");
    let job = ok_stdout(hostile(
        &redis.url(),
        &[
            "submit",
            "-k",
            "trap_on_negative",
            "-i",
            path(&input),
            "--batch-size",
            "2",
            "--max-deliveries",
            "2",
        ],
    ));
    drain(&redis.url(), &job, 2);

    let status = hostile(&redis.url(), &["status", &job]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(2), "{text}");
    assert!(text.contains("done-with-failures"), "{text}");
    assert!(
        text.contains("item 3: invalid-input: expected at least one tensor"),
        "{text}"
    );
    assert!(
        text.contains("dead     batch 2 after 2 deliveries"),
        "{text}"
    );
    assert!(text.contains("hostile kernel: negative input -1"), "{text}");
    let p = progress(&redis, &job);
    assert_eq!(
        (p["items_ok"].as_str(), p["items_failed"].as_str()),
        ("3", "3"),
        "{p:?}"
    );
    assert_eq!(p["batches_dead"], "1");

    // Every key of the finished job has a TTL.
    let mut c = redis.connection().expect("connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("crunch:{{{job}}}:*"))
        .query(&mut c)
        .expect("keys");
    assert!(keys.len() >= 8, "{keys:?}");
    for key in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut c).expect("ttl");
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

#[test]
fn results_written_twice_count_once() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 10);
    let job = ok_stdout(crunch(
        &redis.url(),
        &[
            "submit",
            "-k",
            "black_scholes",
            "-i",
            path(&input),
            "--batch-size",
            "5",
        ],
    ));
    drain(&redis.url(), &job, 1);
    let before = progress(&redis, &job);
    // Replay the completion of batch 0 as a late duplicate worker would.
    let mut c = redis.connection().expect("connection");
    let out: Vec<u8> = redis::cmd("GET")
        .arg(format!("crunch:{{{job}}}:out:0"))
        .query(&mut c)
        .expect("out");
    let keys = crunch::queue::store::keys::JobKeys::new(&job);
    let counted: i64 = crunch::queue::store::scripts::COMPLETE
        .key(keys.progress())
        .key(keys.done())
        .key(keys.output(0))
        .key(keys.errors())
        .key(keys.queue())
        .key(keys.dead())
        .key(keys.last_error())
        .arg(0)
        .arg("0-1")
        .arg(out)
        .arg(5)
        .arg(0)
        .arg("")
        .arg(60)
        .arg("workers")
        .arg("")
        .arg(1)
        .invoke(&mut c)
        .expect("complete");
    assert_eq!(counted, 0);
    assert_eq!(progress(&redis, &job), before);
}

/// Runs `input` through `crunch run` into `dir`/local.crb and returns its bytes.
fn run_locally(dir: &Path, input: &Path) -> Vec<u8> {
    let local = dir.join("local.crb");
    ok_stdout(run_kernel("black_scholes", input, &local, &[]));
    std::fs::read(&local).expect("local results")
}

/// Submits `input` in batches of `batch_size` on `url` and drains it with one worker; returns
/// the job.
fn run_to_the_end(url: &str, input: &Path, batch_size: &str) -> String {
    let job = submit(url, input, batch_size);
    wait(
        spawn_worker(url, &["--job", &job, "--exit-when-done", "--threads", "2"]),
        Duration::from_secs(120),
    );
    job
}

/// [`run_to_the_end`], then the job and its results' bytes.
fn run_through(url: &str, dir: &Path, input: &Path, batch_size: &str) -> (String, Vec<u8>) {
    let job = run_to_the_end(url, input, batch_size);
    let results = results_bytes(url, dir, &job);
    (job, results)
}

/// `crunch results` of `job`, as written to a .crb file in `dir`.
fn results_bytes(url: &str, dir: &Path, job: &str) -> Vec<u8> {
    let out = dir.join(format!("{job}.crb"));
    ok_stdout(crunch(url, &["results", job, "-o", path(&out)]));
    std::fs::read(&out).expect("results")
}

#[test]
fn batches_of_many_mib_are_read_in_parts_and_give_what_crunch_run_gives() {
    // 100,000 contracts in one batch: about 6 MB of input, which the worker reads from Redis in
    // parts of at most 4 MiB; in batches of 40,000 (about 2.4 MB), each read whole.
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 100_000);
    let local = run_locally(dir.path(), &input);
    let mut c = redis.connection().expect("connection");
    for (batch_size, in_parts) in [("100000", true), ("40000", false)] {
        let (job, remote) = run_through(&redis.url(), dir.path(), &input, batch_size);
        let len: usize = redis::cmd("STRLEN")
            .arg(format!("crunch:{{{job}}}:in:0"))
            .query(&mut c)
            .expect("strlen");
        assert_eq!(
            len > 4 << 20,
            in_parts,
            "batch 0 of {batch_size} holds {len} bytes"
        );
        assert!(
            local == remote,
            "batches of {batch_size}: results differ from crunch run"
        );
    }
}

#[test]
fn a_job_completes_on_a_three_master_cluster() {
    let cluster = RedisCluster::start().expect("cluster");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 500);
    let url = cluster.url();
    let job = run_to_the_end(&url, &input, "50");
    let status = crunch(&url, &["status", &job]);
    let text = ok_stdout(status);
    assert!(text.contains("state    done"), "{text}");
    let out: PathBuf = dir.path().join("out.crb");
    ok_stdout(crunch(&url, &["results", &job, "-o", path(&out)]));
    assert_eq!(
        codec::read_results(&out, Format::Binary)
            .expect("results")
            .len(),
        500
    );
    // A batch of about 6 MB, read in parts in one pipeline on the batch's node.
    let big = dir.path().join("big.crb");
    std::fs::rename(contracts_file(dir.path(), 100_000), &big).expect("rename");
    let local = run_locally(dir.path(), &big);
    assert!(
        local == run_through(&url, dir.path(), &big, "100000").1,
        "a batch read in parts on a cluster: results differ from crunch run"
    );
}

#[test]
fn tls_with_an_acl_user_limited_to_crunch_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, ca) =
        RedisServer::start_tls_acl(dir.path(), "crunch", "s3cret").expect("tls redis");
    let url = format!("rediss://crunch:s3cret@127.0.0.1:{}", server.port());
    let input = contracts_file(dir.path(), 40);
    let run = |args: &[&str]| {
        Command::new(paths::crunch_bin())
            .args(args)
            .env("CRUNCH_REDIS", &url)
            .env("CRUNCH_REDIS_CA", &ca)
            .env("CRUNCH_PACK", paths::component("crunch_kernels"))
            .output()
            .expect("crunch")
    };
    let job = ok_stdout(run(&[
        "submit",
        "-k",
        "black_scholes",
        "-i",
        path(&input),
        "--batch-size",
        "10",
    ]));
    let worker = Command::new(paths::crunch_bin())
        .args([
            "worker",
            "--job",
            &job,
            "--exit-when-done",
            "--threads",
            "1",
        ])
        .env("CRUNCH_REDIS", &url)
        .env("CRUNCH_REDIS_CA", &ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    wait(worker, Duration::from_secs(60));
    assert!(ok_stdout(run(&["status", &job])).contains("state    done"));
    // A wrong password is refused with a clear error, not retried forever.
    let bad = Command::new(paths::crunch_bin())
        .args(["jobs"])
        .env("CRUNCH_REDIS", url.replace("s3cret", "wrong"))
        .env("CRUNCH_REDIS_CA", &ca)
        .output()
        .expect("crunch");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("***") && !err.contains("wrong"), "{err}");
}

#[test]
fn a_changed_pack_fails_the_job_and_cancel_stops_one() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 20);
    let pack = dir.path().join("pack.wasm");
    std::fs::copy(paths::component("crunch_kernels"), &pack).expect("copy pack");
    let job = ok_stdout(crunch(
        &redis.url(),
        &[
            "submit",
            "-k",
            "black_scholes",
            "-i",
            path(&input),
            "--pack",
            path(&pack),
        ],
    ));
    // The file changes after submission: a worker that has not compiled the pinned digest
    // before (empty cache) must refuse it, not run other code.
    std::fs::copy(paths::component("crunch_hostile_kernels"), &pack).expect("swap pack");
    let worker = Command::new(paths::crunch_bin())
        .args([
            "worker",
            "--job",
            &job,
            "--exit-when-done",
            "--threads",
            "1",
        ])
        .env("CRUNCH_REDIS", redis.url())
        .env("CRUNCH_CACHE_DIR", dir.path().join("empty-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    wait(worker, Duration::from_secs(60));
    let status = crunch(&redis.url(), &["status", &job]);
    assert_eq!(status.status.code(), Some(2));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("state    failed") && text.contains("digest"),
        "{text}"
    );

    let job = ok_stdout(crunch(
        &redis.url(),
        &["submit", "-k", "black_scholes", "-i", path(&input)],
    ));
    assert!(ok_stdout(crunch(&redis.url(), &["jobs"])).contains(&job));
    assert!(ok_stdout(crunch(&redis.url(), &["cancel", &job])).contains("cancelled"));
    let status = crunch(&redis.url(), &["status", &job]);
    assert_eq!(status.status.code(), Some(2));
    let results = crunch(
        &redis.url(),
        &["results", &job, "-o", path(&dir.path().join("o.json"))],
    );
    assert!(!results.status.success());
    assert!(String::from_utf8_lossy(&results.stderr).contains("cancelled"));
}
