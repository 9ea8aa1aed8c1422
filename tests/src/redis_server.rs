//! Private `redis-server` processes for tests: one per test, on a free loopback port, with no
//! persistence; killed when dropped. Also a persistent one (AOF) that can be killed and
//! restarted with its data, and a three-master Redis Cluster.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running private `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it answers.
    pub fn start() -> Result<Self> {
        Self::start_with(&[], None)
    }

    /// Starts `redis-server` with extra arguments (for example `--user` ACL rules).
    pub fn start_with_args(extra: &[&str]) -> Result<Self> {
        Self::start_with(extra, None)
    }

    fn start_with(extra: &[&str], dir: Option<&Path>) -> Result<Self> {
        let server = Self::spawn(free_port()?, false, extra, dir)?;
        server.wait_ready()?;
        Ok(server)
    }

    /// Spawns `redis-server` on loopback `port` without persistence: plain TCP, or with `tls`
    /// TLS only (plain TCP off).
    fn spawn(port: u16, tls: bool, extra: &[&str], dir: Option<&Path>) -> Result<Self> {
        let port_arg = port.to_string();
        let listen = if tls {
            vec!["--port", "0", "--tls-port", &port_arg]
        } else {
            vec!["--port", &port_arg]
        };
        let mut cmd = Command::new("redis-server");
        cmd.args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        let child = cmd
            .spawn()
            .context("starting redis-server (is it installed? `apt-get install redis-server`)")?;
        Ok(Self { child, port })
    }

    /// Starts a TLS-only server (certificates made with `openssl` under `dir`, signed by a CA
    /// whose PEM is returned) that accepts only ACL user `user` with `password`, limited to
    /// Crunch's keys.
    pub fn start_tls_acl(
        dir: &Path,
        user: &str,
        password: &str,
    ) -> Result<(Self, std::path::PathBuf)> {
        let sh = |script: &str| -> Result<()> {
            let out = Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(dir)
                .output()?;
            if !out.status.success() {
                bail!("{script}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=crunch-test-ca -keyout ca.key -out ca.crt",
        )?;
        sh(
            "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr",
        )?;
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        sh(
            "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile san.ext -out server.crt",
        )?;
        let acl = format!(">{password}");
        let server = Self::spawn(
            free_port()?,
            true,
            &[
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.crt",
                "--tls-auth-clients",
                "no",
                "--user",
                "default",
                "off",
                "--user",
                user,
                "on",
                &acl,
                "~crunch:*",
                "+@all",
            ],
            Some(dir),
        )?;
        let port = server.port;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("TLS redis-server on port {port} did not open within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok((server, dir.join("ca.crt")))
    }

    fn wait_ready(&self) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "redis-server on port {} did not answer within 10 s",
            self.port
        )
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A plain connection for assertions.
    pub fn connection(&self) -> Result<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection()?)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A persistent `redis-server` (append-only file, fsync on every write) in its own directory:
/// killed, it comes back on the same port with every acknowledged write.
pub struct PersistentRedis {
    server: Option<RedisServer>,
    port: u16,
    dir: tempfile::TempDir,
}

impl PersistentRedis {
    /// Starts it and waits until it answers.
    pub fn start() -> Result<Self> {
        let mut redis = Self {
            server: None,
            port: free_port()?,
            dir: tempfile::tempdir()?,
        };
        redis.spawn(&[])?;
        redis.server.as_ref().context("no server")?.wait_ready()?;
        Ok(redis)
    }

    fn spawn(&mut self, extra: &[&str]) -> Result<()> {
        let mut args = vec!["--appendonly", "yes", "--appendfsync", "always"];
        args.extend_from_slice(extra);
        self.server = Some(RedisServer::spawn(
            self.port,
            false,
            &args,
            Some(self.dir.path()),
        )?);
        Ok(())
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection (fails while the server is down).
    pub fn connection(&self) -> Result<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection()?)
    }

    /// Kills the server with SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        self.server = None;
    }

    /// Starts the server again on the same port and data, with `extra` arguments, without
    /// waiting for it to load.
    pub fn restart(&mut self, extra: &[&str]) -> Result<()> {
        self.kill();
        self.spawn(extra)
    }
}

/// A three-master Redis Cluster on loopback ports.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them with `redis-cli --cluster create`.
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let nodes = (0..3)
            .map(|i| {
                let conf = format!("nodes-{i}.conf");
                RedisServer::start_with(
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--cluster-node-timeout",
                        "5000",
                    ],
                    Some(dir.path()),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn wait_ok(&self) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let ok = self.nodes.iter().all(|n| {
                n.connection()
                    .and_then(|mut c| {
                        Ok(redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c)?)
                    })
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the cluster did not reach cluster_state:ok within 20 s")
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}
