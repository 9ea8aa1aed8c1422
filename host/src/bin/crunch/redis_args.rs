//! The `--redis` option shared by the subcommands that talk to Redis.

use anyhow::Result;
use clap::Args;
use crunch::queue::store::Redis;

/// Where the jobs live.
#[derive(Args, Debug, Clone)]
pub struct RedisArgs {
    /// Redis URL: redis://[user:password@]host:port[/db], or redis+cluster://host:port,host:port
    /// for a Redis Cluster.
    #[arg(
        long,
        env = "CRUNCH_REDIS",
        default_value = "redis://127.0.0.1:6379",
        value_name = "URL"
    )]
    pub redis: String,
}

impl RedisArgs {
    /// Connects, waiting a few seconds for Redis (retrying with backoff).
    pub fn connect(&self) -> Result<Redis> {
        Redis::connect(&self.redis)
    }
}
