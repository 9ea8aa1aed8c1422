//! `crunch report` of real jobs: a private redis-server, the standard pack, real `crunch
//! worker` processes; the report's figures are checked against the job's progress, and the page
//! against what it must hold (and must not fetch).

use std::collections::HashMap;
use std::time::Duration;

use crunch::Tensor;
use crunch_tests::cli::{
    Crunch, contracts, contracts_file, ok_stdout, path, progress, wait_success,
};
use crunch_tests::redis_server::RedisServer;
use serde_json::Value;

fn crunch(redis: &str, args: &[&str]) -> std::process::Output {
    Crunch::new().redis(redis).pack("crunch_kernels").run(args)
}

/// Submits `input` to black_scholes with `extra` options; the job id.
fn submit_black_scholes(redis: &RedisServer, input: &std::path::Path, extra: &[&str]) -> String {
    let args = [&["submit", "-k", "black_scholes", "-i", path(input)], extra].concat();
    ok_stdout(crunch(&redis.url(), &args))
}

/// 2000 contracts with a malformed item (five values, not six) every 250th.
fn input_with_bad_items(dir: &std::path::Path) -> std::path::PathBuf {
    let mut items = contracts(2000);
    for i in (7..items.len()).step_by(250) {
        items[i] = vec![Tensor {
            shape: vec![5],
            data: vec![1.0; 5],
        }];
    }
    let input = dir.join("in.crb");
    crunch::data::codec::write_items(&input, crunch::data::codec::Format::Binary, &items)
        .expect("input");
    input
}

fn number(p: &HashMap<String, String>, k: &str) -> u64 {
    p.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn a_report_of_a_real_job_matches_its_progress() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = input_with_bad_items(dir.path());
    let job = submit_black_scholes(&redis, &input, &["--batch-size", "100"]);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            Crunch::new().redis(&redis.url()).spawn_worker(&[
                "--job",
                &job,
                "--exit-when-done",
                "--threads",
                "1",
            ])
        })
        .collect();
    for w in workers {
        wait_success(w, Duration::from_secs(120));
    }
    let p = progress(&redis, &job);
    assert_eq!(p["state"], "done-with-failures");

    let html = dir.path().join("report.html");
    let out = crunch(
        &redis.url(),
        &["report", &job, "--output", path(&html), "--json"],
    );
    let report: Value = serde_json::from_str(&ok_stdout(out)).expect("report JSON");
    let n = |v: &Value| v.as_u64().expect("a number");
    assert_eq!(n(&report["items_ok"]), number(&p, "items_ok"));
    assert_eq!(n(&report["items_failed"]), number(&p, "items_failed"));
    assert_eq!(n(&report["items_failed"]), 8);
    assert_eq!(n(&report["batches_done"]), 20);
    // The workers' own records add up to the progress counters.
    let recorded = &report["recorded"];
    assert_eq!(
        n(&recorded["stored"]),
        number(&p, "batches_done") + number(&p, "batches_dead")
    );
    assert_eq!(n(&recorded["items_ok"]), number(&p, "items_ok"));
    assert_eq!(n(&recorded["items_failed"]), number(&p, "items_failed"));
    let records = report["records"].as_array().expect("records");
    assert_eq!(records.len(), 20);
    let mut batches: Vec<u64> = records.iter().map(|r| n(&r["batch"])).collect();
    batches.sort_unstable();
    assert_eq!(batches, (0..20).collect::<Vec<_>>());
    for r in records {
        assert!(n(&r["claimed_ms"]) <= n(&r["started_ms"]), "{r}");
        assert!(n(&r["started_ms"]) <= n(&r["finished_ms"]), "{r}");
        assert!(r["kernel_ms"].as_f64().expect("kernel ms") > 0.0, "{r}");
        assert_eq!(r["outcome"], "done");
    }
    // Two worker processes of one claim loop each (the first may take every batch).
    let workers = report["workers"].as_array().expect("workers");
    assert!((1..=2).contains(&workers.len()), "{workers:?}");
    let runs: u64 = workers.iter().map(|w| n(&w["runs"])).sum();
    assert_eq!(runs, 20);
    // The throughput curve holds every item.
    let wall = report["wall_s"].as_f64().expect("wall");
    let curve = report["throughput"].as_array().expect("throughput");
    let step = wall / curve.len() as f64;
    let items: f64 = curve
        .iter()
        .map(|p| p[1].as_f64().expect("rate") * step)
        .sum();
    assert!(
        (items - 2000.0).abs() < 1.0,
        "the curve holds {items} items"
    );
    assert_eq!(n(&report["failed_item_count"]), 8);
    assert_eq!(report["failed_items"][0]["item"], 7);
    assert!(
        report["plan"].is_null(),
        "a fixed batch size follows no plan"
    );

    let page = std::fs::read_to_string(&html).expect("the page");
    assert!(page.contains(&job) && page.contains("<svg") && page.contains("</html>"));
    assert!(
        page.contains("8 items failed"),
        "the page names the failures"
    );
    for fetch in ["<script", "src=", "href=", "@import", "url("] {
        assert!(
            !page.contains(fetch),
            "the page must fetch nothing: {fetch}"
        );
    }
}

#[test]
fn submit_auto_follows_a_measured_plan_and_the_report_shows_it() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 5000);
    let job = submit_black_scholes(&redis, &input, &["--sample-time", "0.1"]);
    let mut c = redis.connection().expect("connection");
    let spec: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("crunch:{{{job}}}:spec"))
        .query(&mut c)
        .expect("spec");
    let plan: Value = serde_json::from_str(&spec["plan"]).expect("the spec's plan");
    assert_eq!(
        plan["estimate"]["batch_size"].to_string(),
        spec["batch_size"]
    );
    assert_eq!(plan["sample"]["items"], 5000);
    assert!(plan["sample"]["item_s"].as_f64().expect("item_s") > 0.0);
    let worker =
        Crunch::new()
            .redis(&redis.url())
            .spawn_worker(&["--job", &job, "--exit-when-done"]);
    wait_success(worker, Duration::from_secs(120));
    let out = crunch(&redis.url(), &["report", &job, "--json"]);
    let report: Value = serde_json::from_str(&ok_stdout(out)).expect("report JSON");
    assert_eq!(report["plan"], plan);
    assert_eq!(report["items_ok"], 5000);
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("crunch:{{{job}}}:batches"))
        .query(&mut c)
        .expect("ttl");
    assert!(
        ttl > 0 && ttl <= 86_400,
        "the records live with the job: TTL {ttl}"
    );
}
