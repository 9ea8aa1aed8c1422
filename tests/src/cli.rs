//! Running the `crunch` binary from tests, and the checks the tests share.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crunch::Tensor;

use crate::paths;
use crate::redis_server::RedisServer;

/// A `crunch` command being put together.
pub struct Crunch {
    cmd: Command,
}

impl Default for Crunch {
    fn default() -> Self {
        Self::new()
    }
}

impl Crunch {
    /// `target/release/crunch`, caching compiled packs in the target directory rather than the
    /// user's cache (a test that is about the cache sets its own `CRUNCH_CACHE_DIR`).
    pub fn new() -> Self {
        Self::from_command(Command::new(paths::crunch_bin()))
    }

    /// [`Crunch::new`] pinned to CPU `cpu` (through `taskset`, with every thread it
    /// starts).
    pub fn on_cpu(cpu: usize) -> Self {
        let mut cmd = Command::new("taskset");
        cmd.arg("--cpu-list")
            .arg(cpu.to_string())
            .arg(paths::crunch_bin());
        Self::from_command(cmd)
    }

    fn from_command(mut cmd: Command) -> Self {
        cmd.env(
            "CRUNCH_CACHE_DIR",
            paths::target_dir().join("test-pack-cache"),
        );
        Self { cmd }
    }

    /// Talks to Redis at `url` (`CRUNCH_REDIS`).
    pub fn redis(self, url: &str) -> Self {
        self.env("CRUNCH_REDIS", url)
    }

    /// Uses the component `name` built by `just build` as its default pack (`CRUNCH_PACK`).
    pub fn pack(self, name: &str) -> Self {
        self.env("CRUNCH_PACK", paths::component(name))
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Runs `crunch ARGS` to completion.
    pub fn run(mut self, args: &[&str]) -> Output {
        self.cmd.args(args).output().expect("running crunch")
    }

    /// Starts `crunch worker ARGS` in the background, its stderr (the log) written to `log`.
    pub fn spawn_worker_logging_to(mut self, args: &[&str], log: &Path) -> Child {
        let file = std::fs::File::create(log).expect("creating the worker's log");
        self.cmd
            .arg("worker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting a worker")
    }

    /// Starts `crunch worker ARGS` in the background, output discarded.
    pub fn spawn_worker(self, args: &[&str]) -> Child {
        self.spawn_worker_with_stderr(args, Stdio::null())
    }

    /// Starts `crunch worker ARGS` in the background, its stderr (the log) to `stderr`.
    pub fn spawn_worker_with_stderr(mut self, args: &[&str], stderr: impl Into<Stdio>) -> Child {
        self.cmd
            .arg("worker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting a worker")
    }
}

/// Submits items of one value each (item i is `[values[i]]`) to `kernel` of the component
/// `pack`, `batch_size` items per batch, with `extra` arguments; returns the job id.
pub fn submit_values(
    redis: &str,
    pack: &str,
    kernel: &str,
    values: &[f64],
    batch_size: usize,
    extra: &[&str],
) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    let items: Vec<String> = values.iter().map(|v| format!("[{v}]")).collect();
    std::fs::write(&input, format!("[{}]", items.join(","))).expect("input");
    let batch_size = batch_size.to_string();
    let mut args = vec!["submit", "-k", kernel, "-i", path(&input)];
    args.extend_from_slice(&["--batch-size", &batch_size]);
    args.extend_from_slice(extra);
    ok_stdout(Crunch::new().redis(redis).pack(pack).run(&args))
}

/// The trimmed stdout of a successful run; panics with its stderr otherwise.
pub fn ok_stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "crunch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The stderr of a run.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as the `&str` an argument list wants.
pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Waits for `child` to exit successfully within `limit` (killing it and failing otherwise).
pub fn wait_success(mut child: Child, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("polling a child process") {
            assert!(status.success(), "child exited with {status}");
            return;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("child still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `crunch worker --job JOB --exit-when-done` against `redis` until the job is finished.
pub fn drain(redis: &str, job: &str, threads: u32) {
    let worker = Crunch::new().redis(redis).spawn_worker(&[
        "--job",
        job,
        "--exit-when-done",
        "--threads",
        &threads.to_string(),
    ]);
    wait_success(worker, Duration::from_secs(120));
}

/// Polls `done` until it holds, failing after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The progress hash of `job`.
pub fn progress(redis: &RedisServer, job: &str) -> HashMap<String, String> {
    let mut c = redis.connection().expect("connection");
    redis::cmd("HGETALL")
        .arg(format!("crunch:{{{job}}}:progress"))
        .query(&mut c)
        .expect("progress")
}

/// `count` black_scholes contracts (see [`contracts`]) written to `dir/in.crb`, for commands
/// that take an input file.
pub fn contracts_file(dir: &Path, count: usize) -> PathBuf {
    let input = dir.join("in.crb");
    crunch::data::codec::write_items(
        &input,
        crunch::data::codec::Format::Binary,
        &contracts(count),
    )
    .expect("writing the contracts file");
    input
}

/// `count` deterministic black_scholes contracts [S, K, T, r, sigma, is_call].
pub fn contracts(count: usize) -> Vec<Vec<Tensor>> {
    (0..count)
        .map(|i| {
            let f = i as f64;
            let s = 80.0 + (f * 0.37) % 40.0;
            let k = 90.0 + (f * 0.73) % 20.0;
            let t = 0.1 + (f * 0.011) % 2.0;
            let sigma = 0.1 + (f * 0.0037) % 0.5;
            vec![Tensor {
                shape: vec![6],
                data: vec![s, k, t, 0.02, sigma, (i % 2) as f64],
            }]
        })
        .collect()
}

/// `crunch ARGS` with the standard pack and the environment variables `env`.
pub fn crunch_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    env.iter()
        .fold(Crunch::new().pack("crunch_kernels"), |c, (k, v)| {
            c.env(k, v)
        })
        .run(args)
}

/// `crunch run -k KERNEL -i INPUT -o OUTPUT EXTRA...` with the standard pack.
pub fn run_kernel(kernel: &str, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "-k", kernel, "-i", path(input), "-o", path(output)];
    args.extend_from_slice(extra);
    crunch_with(&args, &[])
}

/// Submits six `norm_cdf` items in batches of two (written to `dir/in.json`) to Redis at
/// `redis`; returns the job id.
pub fn submit_six_items(redis: &str, dir: &Path) -> String {
    let input = dir.join("in.json");
    std::fs::write(&input, "[[1], [2], [3], [4], [5], [6]]").expect("write");
    let out = crunch_with(
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
