//! Finds the kernel pack component: `--pack`/`CRUNCH_PACK`, else the standard pack installed
//! beside the binary or built in this repository.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

/// File name of the standard kernel pack component.
const STANDARD_PACK: &str = "crunch_kernels.wasm";

/// Which kernel pack to use.
#[derive(Args, Debug)]
pub struct PackArgs {
    /// Kernel pack: a component file (.wasm), or for `submit` a registry reference NAME[:TAG]
    /// or sha256:DIGEST (see `crunch kernel push`). Default: the standard pack beside the
    /// `crunch` binary, or the one `just build` puts in target/wasm32-wasip2/component/.
    #[arg(long, env = "CRUNCH_PACK", value_name = "PATH")]
    pub pack: Option<PathBuf>,
}

impl PackArgs {
    /// The registry reference given instead of a file, if any: a digest, or a NAME[:TAG] that
    /// is not an existing file.
    pub fn registry_reference(&self) -> Option<String> {
        let value = self.pack.as_ref()?.to_str()?;
        crunch::queue::pack_registry::is_reference(value).then(|| value.to_string())
    }

    /// The pack to load, or an error listing every place that was searched.
    pub fn resolve(&self) -> Result<PathBuf> {
        if let Some(path) = &self.pack {
            return Ok(path.clone());
        }
        let candidates = default_candidates();
        if let Some(found) = candidates.iter().find(|p| p.is_file()) {
            return Ok(found.clone());
        }
        let searched: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "no kernel pack found; pass --pack PATH or set CRUNCH_PACK (searched: {})",
            searched.join(", ")
        )
    }
}

fn default_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        out.push(dir.join(STANDARD_PACK));
        // target/release/crunch -> target/wasm32-wasip2/component/crunch_kernels.wasm
        if let Some(target) = dir.parent() {
            out.push(target.join("wasm32-wasip2/component").join(STANDARD_PACK));
        }
    }
    out.push(PathBuf::from("target/wasm32-wasip2/component").join(STANDARD_PACK));
    out
}
