//! The process's engines and kernel packs: one engine per memory limit and pool size, each
//! with a pack cache (in memory, and compiled on disk like the CLI's, so a new process does not
//! recompile), and the standard kernel pack embedded in the package.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use crunch::sandbox::cache::{self, PackCache};
use crunch::sandbox::pack::sha256_hex;
use crunch::{Engine, KernelPack, Limits};

use crate::per_process::PerProcess;

/// The standard kernel pack component (`guest/`), embedded at build time.
pub const STANDARD_PACK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crunch_kernels.wasm"));

/// `sha256:<hex>` of [`STANDARD_PACK`].
pub const STANDARD_DIGEST: &str = env!("CRUNCH_STANDARD_PACK_DIGEST");

/// Batches that may run at once in an engine unless more threads ask for more.
const MIN_SLOTS: u32 = 64;

/// Which pack a call runs.
#[derive(Clone, Debug)]
pub enum PackSource {
    /// The embedded standard pack.
    Standard,
    /// A component file.
    File(PathBuf),
    /// A component's bytes.
    Bytes(Vec<u8>),
}

/// An engine and what it has compiled.
pub struct EngineEntry {
    cache: PackCache,
    standard: OnceLock<Arc<KernelPack>>,
}

impl EngineEntry {
    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.cache.engine()
    }

    /// The pack `source` names, compiled for this engine (from the caches when it can be).
    pub fn pack(&self, source: &PackSource) -> Result<Arc<KernelPack>> {
        match source {
            PackSource::Standard => {
                if let Some(pack) = self.standard.get() {
                    return Ok(pack.clone());
                }
                let (pack, _) = self
                    .cache
                    .get(STANDARD_DIGEST, || Ok(STANDARD_PACK.to_vec()))
                    .context("loading the standard kernel pack")?;
                Ok(self.standard.get_or_init(|| Arc::new(pack)).clone())
            }
            PackSource::File(path) => Ok(Arc::new(self.cache.load_file(path)?.0)),
            PackSource::Bytes(bytes) => self.compiled(bytes.clone()),
        }
    }

    fn compiled(&self, bytes: Vec<u8>) -> Result<Arc<KernelPack>> {
        let digest = sha256_hex(&bytes);
        let (pack, _) = self.cache.get(&digest, || Ok(bytes))?;
        Ok(Arc::new(pack))
    }
}

/// The engine whose batches may use `memory_bytes` of linear memory, with room for `threads`
/// threads' batches at once; made on first use, then shared.
pub fn engine(memory_bytes: usize, threads: usize) -> Result<Arc<EngineEntry>> {
    static ENGINES: PerProcess<(usize, u32), EngineEntry> = PerProcess::new();
    let slots = u32::try_from(threads.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(MIN_SLOTS)
        .next_power_of_two();
    ENGINES.get_or_make((memory_bytes, slots), || {
        let engine = Engine::new(Limits {
            memory_bytes,
            max_concurrent_batches: slots,
            ..Limits::default()
        })?;
        Ok(EngineEntry {
            cache: PackCache::new(
                engine,
                crate::settings().cache_dir.clone(),
                cache::DEFAULT_MEMORY_ENTRIES,
            ),
            standard: OnceLock::new(),
        })
    })
}
