//! Redis as the job's home: the connection (single node or cluster, reconnecting with backoff),
//! the key layout, the job spec and the atomic scripts of protocol v1 (`docs/protocol.md`).

pub mod keys;
pub mod scripts;
pub mod spec;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use redis::ConnectionLike;

/// Connection failures retried before giving up.
const RECONNECT_ATTEMPTS: u32 = 8;

/// A Redis connection that reconnects with exponential backoff when the link drops.
///
/// `URL` is `redis://[user:password@]host:port[/db]`; `redis+cluster://host:port,host:port`
/// connects to a Redis Cluster through any of the given nodes.
pub struct Store {
    target: Target,
    conn: Option<Conn>,
    url: String,
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

impl Store {
    /// Parses `url` and connects.
    pub fn connect(url: &str) -> Result<Self> {
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
        };
        store.reconnect()?;
        Ok(store)
    }

    /// The URL without its password, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn reconnect(&mut self) -> Result<()> {
        let mut delay = Duration::from_millis(50);
        let mut last = None;
        for _ in 0..RECONNECT_ATTEMPTS {
            let attempt = match &self.target {
                Target::Single(c) => c.get_connection().map(Conn::Single),
                Target::Cluster(c) => c.get_connection().map(|c| Conn::Cluster(Box::new(c))),
            };
            match attempt {
                Ok(conn) => {
                    self.conn = Some(conn);
                    return Ok(());
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(url = %self.url, error = %e, "Redis connection failed; retrying in {delay:?}");
                    last = Some(e);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("connecting to Redis at {}", self.url));
                }
            }
        }
        match last {
            Some(e) => Err(e).with_context(|| {
                format!(
                    "connecting to Redis at {} (gave up after {RECONNECT_ATTEMPTS} attempts)",
                    self.url
                )
            }),
            None => bail!("connecting to Redis at {}", self.url),
        }
    }

    /// Runs `op`, reconnecting and retrying it when the connection drops. `op` must be safe to
    /// repeat: every write of the protocol is idempotent.
    pub fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.run_conn(|conn| op(conn.as_dyn()))
    }

    /// Sends a pipeline in one round trip (on a cluster, one per node), retrying like
    /// [`run`](Self::run). Every command of a pipeline here touches one job, so one slot. On a
    /// cluster, `ignore()` marks are not kept: read such pipelines as `()`.
    pub fn pipeline<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> Result<T> {
        self.run_conn(|conn| match conn {
            Conn::Single(c) => pipe.query(c),
            Conn::Cluster(c) => {
                let mut cluster_pipe = redis::cluster::cluster_pipe();
                for cmd in pipe.cmd_iter() {
                    cluster_pipe.add_command(cmd.clone());
                }
                cluster_pipe.query(c.as_mut())
            }
        })
    }

    fn run_conn<T>(&mut self, mut op: impl FnMut(&mut Conn) -> redis::RedisResult<T>) -> Result<T> {
        let mut retries = 0;
        loop {
            if self.conn.is_none() {
                self.reconnect()?;
            }
            let conn = self.conn.as_mut().context("no Redis connection")?;
            match op(conn) {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && retries < RECONNECT_ATTEMPTS => {
                    retries += 1;
                    tracing::warn!(url = %self.url, error = %e, "Redis connection lost; reconnecting");
                    self.conn = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A client for one node; for `rediss://`, `CRUNCH_REDIS_CA` may name a PEM file of the CA
/// to trust instead of the system's roots.
fn single_client(url: &str) -> Result<redis::Client> {
    let ca = std::env::var_os("CRUNCH_REDIS_CA");
    match ca {
        Some(ca) if url.starts_with("rediss://") => {
            let root_cert = std::fs::read(&ca).with_context(|| {
                format!(
                    "reading CRUNCH_REDIS_CA {}",
                    std::path::Path::new(&ca).display()
                )
            })?;
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

fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
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
