//! `examples/python/crunch_client.py` (redis-py and NumPy only) submits a job by
//! docs/protocol.md, a Crunch worker runs it, and the script checks the numbers.

use std::process::{Command, Stdio};

use crunch_tests::paths;
use crunch_tests::redis_server::RedisServer;

/// The Python with redis-py and NumPy: `$CRUNCH_PYTHON` (set by `just test`), else python3.
fn python() -> String {
    std::env::var("CRUNCH_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn python_client_submits_and_checks_a_job() {
    let redis = RedisServer::start().expect("redis");
    let mut worker = Command::new(paths::crunch_bin())
        .args(["worker", "--threads", "2"])
        .env("CRUNCH_REDIS", redis.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    let script = paths::repo_root().join("examples/python/crunch_client.py");
    let out = Command::new(python())
        .arg(&script)
        .args(["--redis", &redis.url(), "--pack"])
        .arg(paths::component("crunch_kernels"))
        .output()
        .expect("running the Python example (set CRUNCH_PYTHON to a Python with redis and numpy)");
    let _ = worker.kill();
    let _ = worker.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2000 ok, 0 failed") && stdout.trim_end().ends_with("ok"),
        "{stdout}"
    );
    println!("{stdout}");
}
