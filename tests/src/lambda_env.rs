//! The Lambda side of the tests: cargo-lambda's Runtime API emulator, the `bootstrap` process
//! connected to it, raw HTTP invokes, and a stand-in for Sentry's ingest endpoint.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths;
use crate::redis_server::free_port;

/// The function name the emulator gives a runtime started with `--only-lambda-apis`.
pub const FUNCTION: &str = "_";

fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{what} did not open port {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `cargo lambda watch --only-lambda-apis` on a free port.
pub struct Emulator {
    child: Child,
    port: u16,
}

impl Emulator {
    /// Starts the emulator (cargo-lambda must be installed: `just test-deps` puts it into
    /// target/py-env).
    pub fn start() -> Result<Self> {
        let port = free_port()?;
        let cargo_lambda = paths::cargo_lambda();
        let child = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(paths::repo_root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting `{} lambda watch` (run `just test-deps`)",
                    cargo_lambda.display()
                )
            })?;
        let emulator = Self { child, port };
        wait_for_port(port, "cargo lambda watch")?;
        Ok(emulator)
    }

    /// The Invoke API endpoint, for `--lambda-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Runtime API address, for `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        format!("http://127.0.0.1:{}/.rt", self.port)
    }

    /// A synchronous invoke of [`FUNCTION`]: the HTTP status and the body.
    pub fn invoke(&self, payload: &str) -> Result<(u16, String)> {
        let path = format!("/2015-03-31/functions/{FUNCTION}/invocations");
        http_post(self.port, &path, payload)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `bootstrap` binary connected to an emulator, its stdout (the JSON log) kept in a file.
pub struct Bootstrap {
    child: Child,
    log: PathBuf,
}

impl Bootstrap {
    /// Starts `target/release/bootstrap` against `emulator` and Redis at `redis`.
    pub fn start(
        emulator: &Emulator,
        redis: &str,
        dir: &Path,
        extra_env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_on_cpus(emulator, redis, dir, extra_env, None)
    }

    /// [`start`](Self::start), limited to the CPUs in `cpus` (a `taskset` list such as `0,1`)
    /// when given: a function with that many vCPUs.
    pub fn start_on_cpus(
        emulator: &Emulator,
        redis: &str,
        dir: &Path,
        extra_env: &[(&str, &str)],
        cpus: Option<&str>,
    ) -> Result<Self> {
        let log = dir.join(format!("bootstrap-{}.log", free_port()?));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let bin = paths::target_dir().join("release/bootstrap");
        let mut command = match cpus {
            Some(cpus) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["--cpu-list", cpus]).arg(&bin);
                taskset
            }
            None => Command::new(&bin),
        };
        let child = command
            .env("AWS_LAMBDA_RUNTIME_API", emulator.runtime_api())
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
            .env("CRUNCH_REDIS", redis)
            .envs(extra_env.iter().copied())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {} (run `just build`)", bin.display()))?;
        Ok(Self { child, log })
    }

    /// Everything the bootstrap has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 POST on loopback; returns the status and the body.
pub fn http_post(port: u16, path: &str, body: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, dechunk(&body)))
}

/// Joins a chunked transfer-encoded body (or returns it unchanged).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, tail)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 || tail.len() < n {
            return if n == 0 { out } else { body.to_string() };
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
}

/// A scripted HTTP endpoint on loopback: answers request N (from 0) with `respond(N)` and
/// keeps every request. Stands in for Sentry's ingest, or for a throttling Lambda API.
pub struct FakeHttp {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

/// A plain `200 {}` answer.
pub fn ok_response(_: usize) -> String {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_string()
}

impl FakeHttp {
    /// Starts listening on a free loopback port.
    pub fn start(respond: impl Fn(usize) -> String + Send + 'static) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::clone(&requests);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().flatten().enumerate() {
                if let Ok(text) = read_request(stream, &respond(n))
                    && let Ok(mut r) = store.lock()
                {
                    r.push(text);
                }
            }
        });
        Ok(Self { port, requests })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A Sentry DSN pointing at this endpoint.
    pub fn dsn(&self) -> String {
        format!("http://publickey@127.0.0.1:{}/42", self.port)
    }

    /// The requests received so far, lossily decoded.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn read_request(mut stream: TcpStream, response: &str) -> Result<String> {
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok());
                    if length.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    stream.write_all(response.as_bytes())?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}
