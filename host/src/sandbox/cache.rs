//! Compiled kernel packs cached by digest: in memory (bounded, least recently used first out)
//! and on local disk (on Lambda, its /tmp), so a warm worker never recompiles a digest it has
//! seen and a restarted one loads it without compiling.
//!
//! A disk entry is the serialized compiled component plus the sha256 of those bytes; an entry
//! whose bytes do not match, or that this engine cannot load, is discarded and recompiled.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, anyhow, bail};

use crate::sandbox::engine::Engine;
use crate::sandbox::pack::{KernelPack, sha256_hex};

/// Packs kept compiled in memory.
pub const DEFAULT_MEMORY_ENTRIES: usize = 16;

/// Compiled packs kept on disk: past this many, the least recently used go when one is added.
pub const DISK_ENTRIES: usize = 32;

/// Where a pack came from, for callers that measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheHit {
    /// Already compiled in this process.
    Memory,
    /// Loaded from the disk cache without compiling.
    Disk,
    /// Compiled now.
    Compiled,
}

/// The cache.
pub struct PackCache {
    engine: Engine,
    dir: Option<PathBuf>,
    capacity: usize,
    entries: Mutex<VecDeque<(String, KernelPack)>>,
    /// One lock per digest being loaded: the first thread to miss loads it, the others wait
    /// and then find it in memory (single flight).
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl PackCache {
    /// A cache for `engine`, on disk in `dir` (none: memory only).
    pub fn new(engine: Engine, dir: Option<PathBuf>, capacity: usize) -> Self {
        Self {
            engine,
            dir,
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
            loading: Mutex::new(HashMap::new()),
        }
    }

    /// The engine packs are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The pack with `digest`: from memory, else from disk, else compiled from the bytes that
    /// `fetch` returns (checked against the digest). Threads that miss the same digest at once
    /// load it once: one loads, the others wait for it.
    pub fn get(
        &self,
        digest: &str,
        fetch: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<(KernelPack, CacheHit)> {
        if let Some(hit) = self.in_memory(digest)? {
            return Ok(hit);
        }
        let gate = Arc::clone(
            self.loading
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(digest.to_string())
                .or_default(),
        );
        let _loading = gate.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have loaded it while this one waited.
        let loaded = match self.in_memory(digest) {
            Ok(Some(hit)) => Ok(hit),
            Ok(None) => self.load(digest, fetch),
            Err(e) => Err(e),
        };
        self.loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
        loaded
    }

    /// The pack in the component file at `path`: by its digest from memory or disk, else
    /// compiled (and kept in both), so a command run again does not compile the same pack again.
    pub fn load_file(&self, path: &Path) -> Result<(KernelPack, CacheHit)> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading kernel pack {}", path.display()))?;
        let digest = sha256_hex(&bytes);
        self.get(&digest, || Ok(bytes))
            .with_context(|| format!("loading kernel pack {}", path.display()))
    }

    /// The pack with `digest` if it is in memory.
    fn in_memory(&self, digest: &str) -> Result<Option<(KernelPack, CacheHit)>> {
        Ok(self.lookup(digest)?.map(|pack| (pack, CacheHit::Memory)))
    }

    /// [`get`](Self::get)'s work once this thread holds the digest's loading lock and the pack
    /// is not in memory: from disk, else compiled.
    fn load(
        &self,
        digest: &str,
        fetch: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<(KernelPack, CacheHit)> {
        if let Some(pack) = self.load_from_disk(digest) {
            self.insert(digest, pack.clone())?;
            return Ok((pack, CacheHit::Disk));
        }
        let bytes = fetch()?;
        let actual = sha256_hex(&bytes);
        if actual != digest {
            bail!("kernel pack bytes have digest {actual}, expected {digest}");
        }
        let pack = KernelPack::from_bytes(&self.engine, &bytes)?;
        self.store_on_disk(digest, &pack);
        self.insert(digest, pack.clone())?;
        Ok((pack, CacheHit::Compiled))
    }

    fn lookup(&self, digest: &str) -> Result<Option<KernelPack>> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| anyhow!("pack cache poisoned"))?;
        let Some(i) = entries.iter().position(|(d, _)| d == digest) else {
            return Ok(None);
        };
        let entry = entries.remove(i).context("entry vanished")?;
        let pack = entry.1.clone();
        entries.push_back(entry);
        Ok(Some(pack))
    }

    fn insert(&self, digest: &str, pack: KernelPack) -> Result<()> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| anyhow!("pack cache poisoned"))?;
        entries.retain(|(d, _)| d != digest);
        entries.push_back((digest.to_string(), pack));
        while entries.len() > self.capacity {
            entries.pop_front();
        }
        Ok(())
    }

    /// The disk entry of `digest` for this engine (compiled code is engine-specific).
    fn paths(&self, digest: &str) -> Option<(PathBuf, PathBuf)> {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let dir = self.dir.as_ref()?;
        let mut hasher = DefaultHasher::new();
        self.engine
            .wasmtime()
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let name = format!(
            "{}-{:016x}",
            digest.trim_start_matches("sha256:"),
            hasher.finish()
        );
        Some((
            dir.join(format!("{name}.cwasm")),
            dir.join(format!("{name}.sha256")),
        ))
    }

    fn load_from_disk(&self, digest: &str) -> Option<KernelPack> {
        let (code, check) = self.paths(digest)?;
        let bytes = std::fs::read(&code).ok()?;
        let expected = std::fs::read_to_string(&check).ok()?;
        if sha256_hex(&bytes) != expected.trim() {
            tracing::warn!(path = %code.display(), "disk cache entry failed its integrity check; recompiling");
            let _ = std::fs::remove_file(&code);
            return None;
        }
        match KernelPack::from_serialized(&self.engine, &bytes, digest) {
            Ok(pack) => {
                // Its time says when it was last used, for pruning.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&code)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                Some(pack)
            }
            Err(e) => {
                tracing::warn!(path = %code.display(), "disk cache entry unusable ({e:#}); recompiling");
                let _ = std::fs::remove_file(&code);
                None
            }
        }
    }

    fn store_on_disk(&self, digest: &str, pack: &KernelPack) {
        let Some((code, check)) = self.paths(digest) else {
            return;
        };
        let write = || -> Result<()> {
            let bytes = pack.serialize()?;
            if let Some(dir) = code.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Each writer (two threads of one worker may compile the same digest at once) has
            // its own temporary files, renamed into place whole.
            let dir = code.parent().unwrap_or(Path::new("."));
            for (path, content) in [(&check, sha256_hex(&bytes).into_bytes()), (&code, bytes)] {
                let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
                std::io::Write::write_all(&mut tmp, &content)?;
                tmp.persist(path).map_err(|e| e.error)?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(path = %code.display(), "could not write the disk cache: {e:#}");
        }
        if let Some(dir) = code.parent() {
            prune(dir, DISK_ENTRIES);
        }
    }
}

/// Removes the least recently used compiled packs in `dir` beyond the `keep` most recent (by
/// their files' times, which a load refreshes), each with its checksum. Best effort: another
/// process may be pruning too.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut compiled: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let used = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
            path.extension()
                .is_some_and(|e| e == "cwasm")
                .then_some((used, path))
        })
        .collect();
    if compiled.len() <= keep {
        return;
    }
    compiled.sort();
    for (_, code) in &compiled[..compiled.len() - keep] {
        let _ = std::fs::remove_file(code);
        let _ = std::fs::remove_file(code.with_extension("sha256"));
    }
}
