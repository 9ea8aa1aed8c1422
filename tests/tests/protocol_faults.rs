//! Faults found by reading the code, each made certain against a real redis-server (a proxy
//! in front of it loses a reply, or runs something just before a command lands): repeated
//! claims and submits after a lost reply, cancel racing the last batch, listing jobs under a
//! refusal, an idle worker among old jobs, a pack pinned by an unreadable job, threads meeting
//! a new digest at once, a batch the host cannot start.

use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crunch::queue::jobs::{self, SubmitOptions};
use crunch::queue::store::pool::StorePool;
use crunch::queue::store::queue::{Claim, Queue};
use crunch::queue::store::spec::JobState;
use crunch::queue::store::{Redis, scripts};
use crunch::queue::worker::{Deadline, Worker};
use crunch::sandbox::cache::{CacheHit, PackCache};
use crunch::{BatchError, Engine, KernelCall, KernelPack, Limits, Tensor, run_batch};
use crunch_tests::cli::{
    Crunch, drain, ok_stdout, path, progress, stderr, submit_values, wait_until,
};
use crunch_tests::fault_proxy::FaultProxy;
use crunch_tests::paths;
use crunch_tests::redis_server::RedisServer;

/// Submits one-item batches of `kernel` from the hostile pack; returns the job id.
fn submit(redis: &str, kernel: &str, values: &[f64], extra: &[&str]) -> String {
    submit_values(redis, "crunch_hostile_kernels", kernel, values, 1, extra)
}

fn pending(c: &mut redis::Connection, job: &str) -> u64 {
    let summary: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg(format!("crunch:{{{job}}}:queue"))
        .arg("workers")
        .query(c)
        .expect("xpending");
    summary.0
}

#[test]
fn a_claim_repeated_after_a_lost_reply_gets_the_batch_it_already_claimed() {
    let redis = RedisServer::start().expect("redis");
    let job = submit(&redis.url(), "echo", &[1.0, 2.0, 3.0, 4.0], &[]);
    let proxy = FaultProxy::start(redis.port()).expect("proxy");
    let mut store = Redis::connect(&proxy.url()).expect("store");
    store.run(|c| scripts::CLAIM.load(c)).expect("load");
    let mut direct = redis.connection().expect("connection");

    // Without a request id (the protocol's first form), Redis runs the claim, the reply is
    // lost, the store retries, and a second batch is claimed: the fault.
    proxy.lose_reply_to(b"without-id");
    let Claim::Batch(_) = store.claim(&job, "without-id", 60_000, "").expect("claim") else {
        panic!("nothing claimed");
    };
    assert!(proxy.fired());
    assert_eq!(pending(&mut direct, &job), 2, "the old form claims twice");

    // With a request id, the repeated claim returns the batch the lost reply named.
    proxy.lose_reply_to(b"with-id");
    let Claim::Batch(entry) = store.claim(&job, "with-id", 60_000, "7").expect("claim") else {
        panic!("nothing claimed");
    };
    assert!(proxy.fired());
    assert_eq!(pending(&mut direct, &job), 3, "one more claim, not two");
    let mine: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(format!("crunch:{{{job}}}:queue"))
        .arg("workers")
        .arg("-")
        .arg("+")
        .arg(10)
        .arg("with-id")
        .query(&mut direct)
        .expect("xpending");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].0, entry.entry);
    assert_eq!(entry.entry_deliveries, 1);
}

#[test]
fn a_submit_whose_reply_is_lost_queues_every_batch_once() {
    let redis = RedisServer::start().expect("redis");
    let proxy = FaultProxy::start(redis.port()).expect("proxy");
    let mut store = Redis::connect(&proxy.url()).expect("store");
    store.run(|c| scripts::ENQUEUE.load(c)).expect("load");
    let engine = Engine::new(Limits::default()).expect("engine");
    let pack =
        KernelPack::load(&engine, &paths::component("crunch_hostile_kernels")).expect("pack");
    let items: Vec<Vec<Tensor>> = (0..10)
        .map(|i| {
            vec![Tensor {
                shape: vec![1],
                data: vec![f64::from(i)],
            }]
        })
        .collect();
    let options = SubmitOptions {
        kernel: "echo".into(),
        params: Vec::new(),
        pack_path: paths::component("crunch_hostile_kernels")
            .display()
            .to_string(),
        batch_size: Some(1),
        ttl: Duration::from_secs(600),
        max_deliveries: 3,
        batch_time: Duration::from_secs(60),
        lease: None,
    };
    proxy.lose_reply_to(scripts::ENQUEUE.get_hash().as_bytes());
    let spec = jobs::submit(&mut store, &pack, &items, &options).expect("submit");
    assert!(proxy.fired(), "the queueing reply was lost once");
    let mut c = redis.connection().expect("connection");
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("crunch:{{{}}}:queue", spec.job))
        .arg("-")
        .arg("+")
        .query(&mut c)
        .expect("xrange");
    let batches: Vec<String> = entries
        .iter()
        .map(|(_, fields)| fields[0].1.clone())
        .collect();
    let expected: Vec<String> = (0..10).map(|b| b.to_string()).collect();
    assert_eq!(batches, expected, "each batch queued once, in order");
    drain(&redis.url(), &spec.job, 2);
    let p = progress(&redis, &spec.job);
    assert_eq!(
        (p["state"].as_str(), p["items_ok"].as_str()),
        ("done", "10")
    );
}

#[test]
fn cancel_never_overwrites_a_job_that_finishes_meanwhile() {
    let redis = RedisServer::start().expect("redis");
    let job = submit(&redis.url(), "echo", &[1.0], &[]);
    let proxy = FaultProxy::start(redis.port()).expect("proxy");
    let mut store = Redis::connect(&proxy.url()).expect("store");
    // The job's last batch completes just before cancel's write reaches Redis.
    let url = redis.url();
    let finishing = job.clone();
    proxy.before(b"cancelled", move || {
        let mut c = redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connection");
        redis::cmd("HSET")
            .arg(format!("crunch:{{{finishing}}}:progress"))
            .arg("state")
            .arg("done")
            .query::<()>(&mut c)
            .expect("finish");
    });
    let after = jobs::cancel(&mut store, &job).expect("cancel");
    assert!(proxy.fired());
    assert_eq!(after.state, JobState::Done);
    assert_eq!(progress(&redis, &job)["state"], "done");
    // A running job is still cancelled.
    let running = submit(&redis.url(), "echo", &[1.0], &[]);
    assert_eq!(
        jobs::cancel(&mut store, &running).expect("cancel").state,
        JobState::Cancelled
    );
}

#[test]
fn listing_jobs_drops_only_the_jobs_that_are_gone() {
    // `indexer` may read the job index and nothing else.
    let redis =
        RedisServer::start_with_args(&["--user", "indexer", "on", ">pw", "~crunch:jobs", "+@all"])
            .expect("redis");
    let live = submit(&redis.url(), "echo", &[1.0], &[]);
    let gone = "0000000000000dead";
    let mut c = redis.connection().expect("connection");
    redis::cmd("ZADD")
        .arg("crunch:jobs")
        .arg(1)
        .arg(gone)
        .query::<()>(&mut c)
        .expect("zadd");
    let indexed = |c: &mut redis::Connection, job: &str| -> bool {
        redis::cmd("ZSCORE")
            .arg("crunch:jobs")
            .arg(job)
            .query::<Option<f64>>(c)
            .expect("zscore")
            .is_some()
    };

    // Refused reading the live job: an error, and the job stays in the index.
    let indexer = format!("redis://indexer:pw@127.0.0.1:{}", redis.port());
    let out = Crunch::new().redis(&indexer).run(&["jobs"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("NOPERM"), "{}", stderr(&out));
    assert!(indexed(&mut c, &live), "a live job left the index");

    // The gone job leaves the index; the live one is listed.
    let listed = ok_stdout(Crunch::new().redis(&redis.url()).run(&["jobs"]));
    assert!(listed.contains(&live), "{listed}");
    assert!(!indexed(&mut c, gone));
    assert!(indexed(&mut c, &live));
}

/// Calls of each command since the last `CONFIG RESETSTAT`.
fn command_calls(c: &mut redis::Connection) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(c)
        .expect("info");
    info.lines()
        .filter_map(|l| {
            let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

#[test]
fn an_idle_worker_prunes_gone_jobs_and_pays_nothing_per_old_job() {
    let redis = RedisServer::start().expect("redis");
    let mut c = redis.connection().expect("connection");
    // 30 jobs gone with their TTL (ids left in the index) and 3 finished ones.
    for i in 0..30 {
        redis::cmd("ZADD")
            .arg("crunch:jobs")
            .arg(i)
            .arg(format!("00000000000gone{i:02}"))
            .query::<()>(&mut c)
            .expect("zadd");
    }
    for _ in 0..3 {
        let job = submit(&redis.url(), "echo", &[1.0, 2.0], &[]);
        drain(&redis.url(), &job, 1);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("worker.log");
    let mut worker = Crunch::new()
        .redis(&redis.url())
        .spawn_worker_logging_to(&["--threads", "2"], &log);
    wait_until("the gone jobs pruned", Duration::from_secs(30), || {
        redis::cmd("ZCARD")
            .arg("crunch:jobs")
            .query::<u64>(&mut c)
            .is_ok_and(|n| n == 3)
    });
    // Let the worker see each finished job once, then count what its idle polls cost.
    std::thread::sleep(Duration::from_secs(1));
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut c)
        .expect("resetstat");
    let started = Instant::now();
    let mut calls = command_calls(&mut c);
    while calls.get("zcard").copied().unwrap_or(0) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker stopped polling"
        );
        std::thread::sleep(Duration::from_millis(100));
        calls = command_calls(&mut c);
    }
    for per_job in ["evalsha", "eval", "hgetall", "exists", "hget"] {
        assert_eq!(
            calls.get(per_job),
            None,
            "an idle poll ran {per_job}: {calls:?}"
        );
    }
    // A new job is still found.
    let job = submit(&redis.url(), "echo", &[5.0], &[]);
    wait_until("the new job done", Duration::from_secs(30), || {
        progress(&redis, &job).get("state").map(String::as_str) == Some("done")
    });
    let _ = worker.kill();
    let _ = worker.wait();
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn removing_a_pack_is_refused_while_a_live_jobs_pin_cannot_be_read() {
    let redis = RedisServer::start().expect("redis");
    let pack = paths::component("crunch_kernels");
    let crunch = |args: &[&str]| Crunch::new().redis(&redis.url()).run(args);
    ok_stdout(crunch(&["kernel", "push", path(&pack), "--name", "h"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[100, 100, 1, 0.05, 0.2, 1]]").expect("input");
    let job = ok_stdout(crunch(&[
        "submit",
        "--pack",
        "h:latest",
        "-k",
        "black_scholes",
        "-i",
        path(&input),
    ]));
    let mut c = redis.connection().expect("connection");
    redis::cmd("HDEL")
        .arg(format!("crunch:{{{job}}}:spec"))
        .arg("pack_digest")
        .query::<()>(&mut c)
        .expect("hdel");
    let out = crunch(&["kernel", "rm", "h:latest"]);
    assert!(!out.status.success(), "removed a pack a live job may pin");
    assert!(
        stderr(&out).contains("refused") && stderr(&out).contains(&job),
        "{}",
        stderr(&out)
    );
    assert!(ok_stdout(crunch(&["kernel", "ls"])).contains("h:latest"));
}

#[test]
fn threads_meeting_a_new_digest_at_once_compile_it_once() {
    let engine = Engine::new(Limits::default()).expect("engine");
    let cache = PackCache::new(engine, None, 4);
    let bytes = std::fs::read(paths::component("crunch_hostile_kernels")).expect("pack");
    let digest = crunch::sandbox::pack::sha256_hex(&bytes);
    let fetches = AtomicUsize::new(0);
    let barrier = Barrier::new(4);
    let hits: Vec<CacheHit> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let (_, hit) = cache
                        .get(&digest, || {
                            fetches.fetch_add(1, Ordering::Relaxed);
                            Ok(bytes.clone())
                        })
                        .expect("get");
                    hit
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(fetches.load(Ordering::Relaxed), 1, "{hits:?}");
    assert_eq!(hits.iter().filter(|h| **h == CacheHit::Compiled).count(), 1);
    assert_eq!(hits.iter().filter(|h| **h == CacheHit::Memory).count(), 3);
}

#[test]
fn a_batch_the_host_cannot_start_is_handed_back_not_dead_lettered() {
    let redis = RedisServer::start().expect("redis");
    // One instance slot for the whole process.
    let engine = Engine::new(Limits {
        max_concurrent_batches: 1,
        ..Limits::default()
    })
    .expect("engine");
    let worker = Worker::new(engine.clone()).with_cache_dir(None);
    let pool = StorePool::new(&redis.url());
    // A first job gets the pack compiled into the worker's cache.
    let warm_up = submit(&redis.url(), "echo", &[0.0], &[]);
    worker.drain(&pool, &warm_up, 1, None).expect("warm-up");
    let job = submit(
        &redis.url(),
        "echo",
        &[1.0, 2.0],
        &["--max-deliveries", "1"],
    );

    // A batch that spins until its 4 s limit holds the only slot meanwhile.
    let pack =
        KernelPack::load(&engine, &paths::component("crunch_hostile_kernels")).expect("pack");
    let item = |v: f64| {
        vec![Tensor {
            shape: vec![1],
            data: vec![v],
        }]
    };
    let run = |kernel: &str, v: f64, limit: u64| {
        let call = KernelCall {
            kernel,
            params: &[],
            batch_time: Duration::from_secs(limit),
        };
        run_batch(&pack, &call, 0, &[item(v)])
    };
    std::thread::scope(|s| {
        let spinning = s.spawn(|| {
            loop {
                // Until it has the slot (the probe below may hold it for a moment).
                let outcome = run("spin_on_negative", -1.0, 4);
                if !matches!(outcome.error, Some(BatchError::Host { .. })) {
                    return outcome;
                }
            }
        });
        wait_until("the slot taken", Duration::from_secs(10), || {
            matches!(run("echo", 1.0, 1).error, Some(BatchError::Host { .. }))
        });
        // The worker cannot start the job's batches: not the kernel's fault, so nothing is
        // retried or dead-lettered; they go back to the queue.
        let deadline = Deadline {
            at: Instant::now() + Duration::from_secs(1),
            margin: Duration::ZERO,
        };
        let report = worker.drain(&pool, &job, 1, Some(deadline)).expect("drain");
        assert_eq!(
            (report.summary.batches, report.summary.dead),
            (0, 0),
            "{report:?}"
        );
        assert!(report.summary.released >= 1, "{report:?}");
        let p = progress(&redis, &job);
        assert_eq!(
            (p["batches_dead"].as_str(), p["state"].as_str()),
            ("0", "running")
        );
        assert!(matches!(
            spinning.join().expect("spinning").error,
            Some(BatchError::Timeout { .. })
        ));
    });

    let report = worker.drain(&pool, &job, 1, None).expect("drain");
    assert_eq!(report.summary.batches, 2, "{report:?}");
    let p = progress(&redis, &job);
    assert_eq!(
        (p["state"].as_str(), p["batches_dead"].as_str()),
        ("done", "0")
    );
    assert_eq!(worker.jobs_held(), 0, "a finished job's spec is let go");
}
