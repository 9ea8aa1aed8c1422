//! What the binaries (`crunch`, `bootstrap`, the Python package) take from the environment,
//! read in one place by [`Settings::from_env`]. The library itself reads no environment
//! variable: its constructors take these values.

use std::path::{Path, PathBuf};

/// Process-wide settings from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Where compiled packs are cached on disk: `CRUNCH_CACHE_DIR` (empty: no disk cache),
    /// else `/tmp/crunch-cache` on Lambda, else `$XDG_CACHE_HOME/crunch` or `~/.cache/crunch`.
    pub cache_dir: Option<PathBuf>,
    /// A PEM file of the CA to trust for `rediss://` instead of the system's roots
    /// (`CRUNCH_REDIS_CA`).
    pub redis_ca: Option<PathBuf>,
    /// Name the generated code in `/tmp/perf-PID.map` for `perf` (`CRUNCH_PERF_MAP=1`).
    pub perf_map: bool,
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name);
        Self {
            cache_dir: cache_dir(
                var("CRUNCH_CACHE_DIR").map(PathBuf::from),
                var("AWS_LAMBDA_FUNCTION_NAME").is_some(),
                var("XDG_CACHE_HOME").map(PathBuf::from),
                var("HOME").map(PathBuf::from),
            ),
            redis_ca: var("CRUNCH_REDIS_CA")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            perf_map: var("CRUNCH_PERF_MAP").is_some_and(|v| v == "1"),
        }
    }
}

/// The disk cache directory from what the environment says (see [`Settings::cache_dir`]).
fn cache_dir(
    configured: Option<PathBuf>,
    on_lambda: bool,
    xdg_cache: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(dir) = configured {
        return (!dir.as_os_str().is_empty()).then_some(dir);
    }
    if on_lambda {
        return Some(PathBuf::from("/tmp/crunch-cache"));
    }
    let base = xdg_cache.or_else(|| home.map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("crunch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_dir_follows_the_documented_order() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(cache_dir(p("/c"), true, p("/x"), p("/h")), p("/c"));
        assert_eq!(cache_dir(p(""), true, p("/x"), p("/h")), None);
        assert_eq!(
            cache_dir(None, true, p("/x"), p("/h")),
            p("/tmp/crunch-cache")
        );
        assert_eq!(cache_dir(None, false, p("/x"), p("/h")), p("/x/crunch"));
        assert_eq!(cache_dir(None, false, None, p("/h")), p("/h/.cache/crunch"));
        assert_eq!(cache_dir(None, false, None, None), None);
    }
}
