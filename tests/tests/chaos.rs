//! Chaos, scripted and bounded: three workers drain a 2,000-batch job while a driver kills a
//! random worker with SIGKILL every half second (restarting it) and drops every worker's Redis
//! connection (CLIENT KILL) now and then. The job completes with every result present once and
//! exact counters.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crunch::data::codec::{self, Format};
use crunch_tests::cli::Crunch;
use crunch_tests::paths;
use crunch_tests::redis_server::RedisServer;

const BATCHES: usize = 2000;
const MIN_KILLS: usize = 20;

fn spawn_worker(redis: &str, job: &str) -> Child {
    Crunch::new()
        .redis(redis)
        .spawn_worker(&["--job", job, "--threads", "1"])
}

#[test]
fn killed_workers_and_dropped_connections_lose_nothing() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    // Each item keeps its worker busy for 50 ms (the burn kernel spins until that time has
    // passed, on any CPU); item i carries 50 + i/1e6 so that every result can be checked
    // against its position.
    let items: Vec<String> = (0..BATCHES)
        .map(|i| format!("[{}]", 50.0 + i as f64 * 1e-6))
        .collect();
    std::fs::write(&input, format!("[{}]", items.join(","))).expect("input");
    let out = Command::new(paths::crunch_bin())
        .args(["submit", "-k", "burn", "-i"])
        .arg(&input)
        .args([
            "--batch-size",
            "1",
            "--lease",
            "1",
            "--max-deliveries",
            "1000",
        ])
        .env("CRUNCH_REDIS", redis.url())
        .env("CRUNCH_PACK", paths::component("crunch_hostile_kernels"))
        .output()
        .expect("submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let mut conn = redis.connection().expect("driver connection");
    let progress = |conn: &mut redis::Connection| -> HashMap<String, String> {
        redis::cmd("HGETALL")
            .arg(format!("crunch:{{{job}}}:progress"))
            .query(conn)
            .expect("progress")
    };
    let mut workers: Vec<Child> = (0..3).map(|_| spawn_worker(&redis.url(), &job)).collect();
    let start = Instant::now();
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let (mut kills, mut client_kills, mut tick) = (0usize, 0usize, 0usize);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        tick += 1;
        let p = progress(&mut conn);
        if p["state"] == "done" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "chaos run did not finish: {p:?}"
        );
        if kills < MIN_KILLS {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let victim = (rng % 3) as usize;
            workers[victim].kill().expect("SIGKILL");
            workers[victim].wait().expect("reap");
            workers[victim] = spawn_worker(&redis.url(), &job);
            kills += 1;
            if tick % 3 == 0 {
                let n: u64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query(&mut conn)
                    .expect("client kill");
                client_kills += n as usize;
            }
        }
    }
    let elapsed = start.elapsed();
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert!(
        kills >= MIN_KILLS,
        "the job finished after only {kills} kills; make it longer"
    );

    let p = progress(&mut conn);
    assert_eq!(p["batches_done"], BATCHES.to_string());
    assert_eq!(p["items_ok"], BATCHES.to_string());
    assert_eq!(p["items_failed"], "0");
    assert_eq!(p.get("batches_dead").map(String::as_str), Some("0"));
    let counted: u64 = redis::cmd("SCARD")
        .arg(format!("crunch:{{{job}}}:done"))
        .query(&mut conn)
        .expect("scard");
    assert_eq!(counted, BATCHES as u64);
    let results_file = dir.path().join("out.crb");
    let out = Command::new(paths::crunch_bin())
        .args(["results", &job, "-o"])
        .arg(&results_file)
        .env("CRUNCH_REDIS", redis.url())
        .output()
        .expect("results");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = codec::read_results(&results_file, Format::Binary).expect("read results");
    assert_eq!(results.len(), BATCHES);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            r.as_ref().expect("ok").data,
            vec![50.0 + i as f64 * 1e-6],
            "item {i}"
        );
    }
    let reclaims = p.get("reclaims").cloned().unwrap_or_else(|| "0".into());
    println!(
        "chaos: {kills} worker kills (SIGKILL), {client_kills} Redis connections dropped, {reclaims} claims taken over, {:.1} s",
        elapsed.as_secs_f64()
    );
}
