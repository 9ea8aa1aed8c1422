//! Redis as the job's home: the connection (single node or cluster), which waits out Redis
//! being down, loading or failing over and gives up at once on what no retry fixes, the key
//! layout, the job spec, and the protocol's atomic scripts and queue calls (`docs/protocol.md`).

mod error;
pub mod keys;
pub mod pool;
pub mod queue;
pub mod records;
pub mod scripts;
pub mod spec;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::ConnectionLike;

pub use error::StoreError;
use error::{Fault, fault, store_error};

/// How long a one-shot command (`crunch status`, `submit`...) waits for Redis by default.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(10);

/// First wait before a retry; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// While Redis stays away, a warning at its first failure, then after 1 s, 2 s, 4 s... of
/// outage, at most this far apart.
const MAX_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How long a [`Redis`] connection waits for the server to come back before giving up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// Give up once Redis has been unavailable this long (one-shot commands).
    For(Duration),
    /// Give up at this moment (a Lambda invocation's deadline).
    Until(Instant),
    /// Wait as long as it takes (long-lived workers), unless told to stop.
    Forever,
}

/// A Redis connection that reconnects with exponential backoff when the link drops or the
/// server cannot serve for now (loading its data after a restart, running a long script,
/// failing over), as long as its [`Patience`] lasts; errors no retry can fix (an untrusted
/// certificate, wrong credentials, a missing ACL permission) fail at once, in one line.
///
/// `URL` is `redis://[user:password@]host:port[/db]`; `redis+cluster://host:port,host:port`
/// connects to a Redis Cluster through any of the given nodes.
pub struct Redis {
    target: Target,
    conn: Option<Conn>,
    url: String,
    patience: Patience,
    stop: Option<Arc<AtomicBool>>,
}

enum Conn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Conn {
    fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Self::Single(c) => c,
            Self::Cluster(c) => c.as_mut(),
        }
    }
}

enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// An outage in progress: when it began, the next wait, when to log next.
struct Outage {
    began: Instant,
    delay: Duration,
    next_log: Instant,
    log_every: Duration,
}

impl Outage {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            began: now,
            delay: FIRST_RETRY_DELAY,
            next_log: now,
            log_every: Duration::from_secs(1),
        }
    }
}

impl Redis {
    /// Parses `url` and connects, waiting up to [`DEFAULT_PATIENCE`] for Redis.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, Patience::For(DEFAULT_PATIENCE))
    }

    /// Parses `url` and connects, waiting for Redis as `patience` says, now and later.
    pub fn connect_with(url: &str, patience: Patience) -> Result<Self> {
        Self::open(url, patience, None)
    }

    /// Parses `url` and connects, waiting for Redis as long as it takes, now and later, unless
    /// `stop` is set (then with [`StoreError::Stopped`]).
    pub fn connect_until_stopped(url: &str, stop: Arc<AtomicBool>) -> Result<Self> {
        Self::open(url, Patience::Forever, Some(stop))
    }

    fn open(url: &str, patience: Patience, stop: Option<Arc<AtomicBool>>) -> Result<Self> {
        let target = if let Some(nodes) = url.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
            Target::Cluster(
                redis::cluster::ClusterClient::new(nodes)
                    .with_context(|| format!("invalid Redis Cluster URL {}", redacted(url)))?,
            )
        } else {
            Target::Single(single_client(url)?)
        };
        let mut store = Self {
            target,
            conn: None,
            url: redacted(url),
            patience,
            stop,
        };
        store.run_conn(|_| Ok(()))?;
        Ok(store)
    }

    /// The URL without its password, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Changes how long later operations wait for Redis.
    pub fn set_patience(&mut self, patience: Patience) {
        self.patience = patience;
    }

    fn new_connection(&self) -> redis::RedisResult<Conn> {
        match &self.target {
            Target::Single(c) => c.get_connection().map(Conn::Single),
            Target::Cluster(c) => c.get_connection().map(|c| Conn::Cluster(Box::new(c))),
        }
    }

    /// Runs `op`, reconnecting and retrying it while Redis is unreachable or cannot serve for
    /// now. `op` must be safe to repeat: its first try may have been carried out with only the
    /// reply lost (every step of the protocol is; see `docs/protocol.md`).
    pub fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        Ok(self.run_conn(|conn| op(conn.as_dyn()))?)
    }

    /// Sends a pipeline in one round trip (on a cluster, one per node), retrying like
    /// [`run`](Self::run). Every command of a pipeline here touches one job, so one slot. On a
    /// cluster, `ignore()` marks are not kept: read such pipelines as `()`.
    pub fn pipeline<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> Result<T> {
        Ok(self.run_conn(|conn| match conn {
            Conn::Single(c) => pipe.query(c),
            Conn::Cluster(c) => {
                let mut cluster_pipe = redis::cluster::cluster_pipe();
                for cmd in pipe.cmd_iter() {
                    cluster_pipe.add_command(cmd.clone());
                }
                cluster_pipe.query(c.as_mut())
            }
        })?)
    }

    fn run_conn<T>(
        &mut self,
        mut op: impl FnMut(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut outage: Option<Outage> = None;
        loop {
            let attempt = match self.conn.as_mut() {
                Some(conn) => op(conn),
                None => self.new_connection().and_then(|mut conn| {
                    let result = op(&mut conn);
                    self.conn = Some(conn);
                    result
                }),
            };
            let error = match attempt {
                Ok(v) => {
                    if let Some(o) = outage
                        && o.began.elapsed() >= Duration::from_secs(1)
                    {
                        let secs = o.began.elapsed().as_secs_f64();
                        tracing::info!(url = %self.url, "Redis is back after {secs:.1} s");
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            match fault(&error) {
                Fault::Transient => {}
                Fault::Unfixable | Fault::Command => return Err(store_error(&self.url, &error)),
            }
            self.conn = None;
            let outage = outage.get_or_insert_with(Outage::new);
            self.wait(outage, &error)?;
        }
    }

    /// Sleeps before the next try, or gives up when patience has run out or the store was told
    /// to stop.
    fn wait(&self, outage: &mut Outage, error: &redis::RedisError) -> Result<(), StoreError> {
        let now = Instant::now();
        let waited = now - outage.began;
        let give_up_at = match self.patience {
            Patience::For(limit) => Some(outage.began + limit),
            Patience::Until(at) => Some(at),
            Patience::Forever => None,
        };
        if give_up_at.is_some_and(|at| now >= at) {
            return Err(StoreError::Unavailable {
                url: self.url.clone(),
                waited,
                last: error.to_string(),
            });
        }
        if now >= outage.next_log {
            let secs = waited.as_secs_f64();
            tracing::warn!(url = %self.url, error = %error, "Redis unavailable ({secs:.1} s so far); retrying");
            outage.next_log = outage.began + outage.log_every;
            outage.log_every = (outage.log_every * 2).min(MAX_LOG_INTERVAL);
            while outage.next_log <= now {
                outage.next_log += outage.log_every;
            }
        }
        let mut sleep_until = now + outage.delay;
        if let Some(at) = give_up_at {
            sleep_until = sleep_until.min(at);
        }
        outage.delay = (outage.delay * 2).min(MAX_RETRY_DELAY);
        // Sleep in short steps, so that a stop request is seen soon.
        loop {
            if self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                return Err(StoreError::Stopped {
                    url: self.url.clone(),
                });
            }
            let left = sleep_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// The CA that `rediss://` connections trust instead of the system's roots, if the binary set
/// one ([`trust_redis_ca`]).
static REDIS_CA: std::sync::RwLock<Option<std::path::PathBuf>> = std::sync::RwLock::new(None);

/// Makes every later `rediss://` connection of this process trust the CA in the PEM file `ca`
/// instead of the system's roots (`None`: the system's roots). The binaries call it with
/// `CRUNCH_REDIS_CA` ([`crate::process::settings::Settings`]).
pub fn trust_redis_ca(ca: Option<std::path::PathBuf>) {
    *REDIS_CA
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = ca;
}

/// A client for one node; for `rediss://`, trusting the CA set by [`trust_redis_ca`].
fn single_client(url: &str) -> Result<redis::Client> {
    let ca = REDIS_CA
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match ca {
        Some(ca) if url.starts_with("rediss://") => {
            let root_cert = std::fs::read(&ca)
                .with_context(|| format!("reading CRUNCH_REDIS_CA {}", ca.display()))?;
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
            .with_context(|| format!("invalid Redis URL {}", redacted(url)))
        }
        _ => {
            redis::Client::open(url).with_context(|| format!("invalid Redis URL {}", redacted(url)))
        }
    }
}

/// Installs ring as the process's TLS crypto provider (for `rediss://` and HTTPS clients).
/// Two providers are compiled in (the AWS SDK brings aws-lc-rs), so rustls cannot pick one by
/// itself; call this once at start. Calling it again is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `url` with any password replaced by `***`.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redacted("redis://h:1"), "redis://h:1");
    }
}
