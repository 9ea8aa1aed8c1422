//! The kernel registry and hot swap: push a new pack version while a worker runs; the next job
//! uses it, the running job stays on its version, and nothing is rebuilt or restarted. Pushes
//! that must be refused are, with the reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crunch::data::codec::{self, Format};
use crunch_tests::cli::{Crunch, ok_stdout, path, progress, wait_until};
use crunch_tests::paths;
use crunch_tests::redis_server::RedisServer;

fn crunch(redis: &str, args: &[&str]) -> Output {
    Crunch::new().redis(redis).run(args)
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

fn component(name: &str) -> String {
    paths::component(name).display().to_string()
}

/// `count` portfolios of 500 scenarios x 4 assets, as JSON items [returns, weights].
fn portfolios(dir: &Path, count: usize) -> PathBuf {
    let items: Vec<String> = (0..count)
        .map(|p| {
            let returns: Vec<String> = (0..2000)
                .map(|i| format!("{:.5}", (((i * 7 + p * 13) % 101) as f64 - 50.0) / 1000.0))
                .collect();
            format!(
                r#"[{{"shape": [500, 4], "data": [{}]}}, [0.4, 0.3, 0.2, 0.1]]"#,
                returns.join(",")
            )
        })
        .collect();
    let file = dir.join(format!("portfolios-{count}.json"));
    std::fs::write(&file, format!("[{}]", items.join(","))).expect("write portfolios");
    file
}

#[test]
fn a_pushed_version_is_used_by_the_next_job_without_restarting_the_worker() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut worker: Child = Command::new(paths::crunch_bin())
        .args(["worker", "--threads", "1"])
        .env("CRUNCH_REDIS", redis.url())
        .env("CRUNCH_CACHE_DIR", dir.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    let pid = worker.id();

    let v1 = ok_stdout(crunch(
        &redis.url(),
        &[
            "kernel",
            "push",
            &component("crunch_example_risk_v1"),
            "--name",
            "risk",
        ],
    ));
    let big = portfolios(dir.path(), 300);
    let job1 = ok_stdout(crunch(
        &redis.url(),
        &[
            "submit",
            "--pack",
            "risk:latest",
            "-k",
            "var",
            "-i",
            path(&big),
            "--batch-size",
            "1",
        ],
    ));
    // Push v2 while job 1 is running on v1: the worker is paused (SIGSTOP) mid-job for the
    // push, so job 1 is certainly unfinished when it happens, then resumed (same process).
    wait_until("job 1 to start", Duration::from_secs(60), || {
        progress(&redis, &job1)["batches_done"] != "0"
    });
    signal(pid, "STOP");
    let v2 = ok_stdout(crunch(
        &redis.url(),
        &[
            "kernel",
            "push",
            &component("crunch_example_risk_v2"),
            "--name",
            "risk",
        ],
    ));
    assert_ne!(v1, v2);
    let state = progress(&redis, &job1)["state"].clone();
    let refused = crunch(&redis.url(), &["kernel", "rm", &v1]);
    signal(pid, "CONT");
    assert_eq!(
        state, "running",
        "job 1 must still be running when v2 is pushed"
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&format!("pinned by job {job1}")));

    let small = portfolios(dir.path(), 20);
    let job2 = ok_stdout(crunch(
        &redis.url(),
        &[
            "submit",
            "--pack",
            "risk:latest",
            "-k",
            "var",
            "-i",
            path(&small),
            "--batch-size",
            "5",
        ],
    ));
    for job in [&job1, &job2] {
        wait_until("the jobs to finish", Duration::from_secs(120), || {
            progress(&redis, job)["state"] == "done"
        });
    }
    assert!(
        worker.try_wait().expect("poll").is_none(),
        "the worker (pid {pid}) kept running throughout"
    );

    let shapes = |job: &str| -> Vec<Vec<u32>> {
        let out = dir.path().join(format!("{job}.crb"));
        ok_stdout(crunch(&redis.url(), &["results", job, "-o", path(&out)]));
        codec::read_results(&out, Format::Binary)
            .expect("results")
            .into_iter()
            .map(|r| r.expect("ok item").shape)
            .collect()
    };
    assert!(
        shapes(&job1).iter().all(|s| s == &[1]),
        "job 1 computed by v1 only ([VaR])"
    );
    assert!(
        shapes(&job2).iter().all(|s| s == &[2]),
        "job 2 computed by v2 ([VaR, ES])"
    );
    let ls = ok_stdout(crunch(&redis.url(), &["kernel", "ls"]));
    assert!(ls.contains("risk:latest") && ls.contains(&v2), "{ls}");
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn pushes_that_must_be_refused_are_refused_with_the_reason() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not wasm at all").expect("write");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let empty_component = dir.path().join("empty.wasm");
    std::fs::write(&empty_component, b"\0asm\x0d\0\x01\0").expect("write");
    let hostile = component("crunch_hostile_kernels");
    let standard = component("crunch_kernels");
    let cases: [(&str, &[&str], &str); 5] = [
        ("text file", &[path(&text)], "not WebAssembly"),
        (
            "core module",
            &[path(&core)],
            "core WebAssembly module, not a component",
        ),
        (
            "other world",
            &[path(&empty_component)],
            "does not export crunch:kernel/kernels@0.2.x",
        ),
        ("filesystem and sockets", &[&hostile], "wasi:filesystem"),
        (
            "too large",
            &[&standard, "--max-size", "1000"],
            "over the registry's limit of 1000 bytes",
        ),
    ];
    for (what, args, expected) in cases {
        let mut all = vec!["kernel", "push"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--name", "x"]);
        let out = crunch(&redis.url(), &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} was accepted");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }
    // Packs that pass every import check but list unusable kernels, or never list them.
    let bad_names = crunch(
        &redis.url(),
        &[
            "kernel",
            "push",
            &component("crunch_hostile_bad_names"),
            "--name",
            "x",
        ],
    );
    let err = String::from_utf8_lossy(&bad_names.stderr).to_string();
    assert!(!bad_names.status.success(), "bad names were accepted");
    for expected in [
        "the pack's kernel names are unusable",
        "kernel 9 has an empty name",
        "the name `echo` is given twice",
        "kernel 11's name `evil\\u{1b}[31mred\\u{1b}[2J\\0nul\\u{202e}desrever` holds control characters",
    ] {
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
    assert!(!err.contains('\u{1b}'), "raw escape in {err:?}");
    let endless = crunch(
        &redis.url(),
        &[
            "kernel",
            "push",
            &component("crunch_hostile_endless_list"),
            "--name",
            "x",
        ],
    );
    let err = String::from_utf8_lossy(&endless.stderr).to_string();
    assert!(
        !endless.status.success(),
        "an endless list-kernels was accepted"
    );
    assert!(
        err.contains(
            "calling `list-kernels` on the pack: it did not return within 5s and was interrupted"
        ),
        "{err}"
    );
    assert!(!err.contains("does not export"), "{err}");
    let hostile_err = String::from_utf8_lossy(
        &crunch(&redis.url(), &["kernel", "push", &hostile, "--name", "x"]).stderr,
    )
    .to_string();
    assert!(hostile_err.contains("wasi:sockets"), "{hostile_err}");
    assert!(
        ok_stdout(crunch(&redis.url(), &["kernel", "ls"]))
            .lines()
            .count()
            == 1,
        "nothing was stored"
    );
}
