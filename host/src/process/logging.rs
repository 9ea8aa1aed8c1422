//! The log filter both binaries read from `CRUNCH_LOG` (`info`, `warn,crunch=debug`, ...).

use tracing_subscriber::filter::{LevelFilter, Targets};

/// The filter named by `CRUNCH_LOG`, or `default` for every target when it is unset or does not
/// parse (directives are `LEVEL` or `TARGET=LEVEL`, comma-separated).
pub fn filter_from_env(default: LevelFilter) -> Targets {
    std::env::var("CRUNCH_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse_per_target() {
        let targets: Targets = "warn,crunch=debug".parse().unwrap();
        assert!(targets.would_enable("crunch::queue::worker", &tracing::Level::DEBUG));
        assert!(!targets.would_enable("redis", &tracing::Level::INFO));
    }
}
