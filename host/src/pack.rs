//! A kernel pack: one compiled component, pre-instantiated once against the engine's linker,
//! identified by the sha256 digest of its bytes.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::types::{KernelInfo, KernelPackPre};

/// A compiled kernel pack, ready to instantiate once per batch.
#[derive(Clone)]
pub struct KernelPack {
    engine: Engine,
    pre: KernelPackPre<crate::engine::BatchState>,
    digest: String,
    size: usize,
    kernels: Vec<KernelInfo>,
}

impl KernelPack {
    /// Reads and compiles the component at `path`.
    pub fn load(engine: &Engine, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading kernel pack {}", path.display()))?;
        Self::from_bytes(engine, &bytes)
            .with_context(|| format!("loading kernel pack {}", path.display()))
    }

    /// Compiles a component from its bytes, pre-instantiates it and asks it for its kernels.
    pub fn from_bytes(engine: &Engine, bytes: &[u8]) -> Result<Self> {
        let component = wasmtime::component::Component::new(engine.wasmtime(), bytes)
            .map_err(anyhow::Error::from)
            .context("compiling the component (is it a crunch:kernel component?)")?;
        Self::from_component(engine, component, sha256_hex(bytes), bytes.len())
    }

    /// A pack from compiled code that [`serialize`](Self::serialize) wrote for this engine.
    /// The caller vouches for the bytes (the disk cache checks their sha256 first).
    pub fn from_serialized(engine: &Engine, compiled: &[u8], digest: &str) -> Result<Self> {
        // SAFETY: `Component::deserialize` trusts its input to be code that this version of
        // wasmtime compiled; the disk cache only passes bytes it wrote itself, after checking
        // them against the sha256 it wrote beside them, and wasmtime checks the engine's
        // compatibility hash and version in the header.
        #[allow(unsafe_code)]
        let component =
            unsafe { wasmtime::component::Component::deserialize(engine.wasmtime(), compiled) }
                .map_err(anyhow::Error::from)
                .context("loading a compiled kernel pack")?;
        Self::from_component(engine, component, digest.to_string(), 0)
    }

    /// The compiled code, for the disk cache.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        self.pre
            .instance_pre()
            .component()
            .serialize()
            .map_err(anyhow::Error::from)
    }

    /// A pack from a component already compiled for `engine`, whose bytes have `digest`.
    pub(crate) fn from_component(
        engine: &Engine,
        component: wasmtime::component::Component,
        digest: String,
        size: usize,
    ) -> Result<Self> {
        let instance_pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("linking the component: it imports something the host does not grant")?;
        let pre = KernelPackPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export crunch:kernel/kernels@0.2.x")?;
        let mut pack = Self {
            engine: engine.clone(),
            pre,
            digest,
            size,
            kernels: Vec::new(),
        };
        pack.kernels = pack.list_from_instance()?;
        Ok(pack)
    }

    fn list_from_instance(&self) -> Result<Vec<KernelInfo>> {
        let mut store = self.engine.new_store(self.engine.limits().batch_time);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow!("instantiating the pack: {e:?}"))?;
        instance
            .crunch_kernel_kernels()
            .call_list_kernels(&mut store)
            .map_err(|e| anyhow!("calling `list-kernels` on the pack: {e:?}"))
    }

    /// The engine the pack was compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The pre-instantiated component.
    pub(crate) fn pre(&self) -> &KernelPackPre<crate::engine::BatchState> {
        &self.pre
    }

    /// `sha256:<hex>` of the component's bytes: the pack's identity.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The kernels the pack provides, as it reports them.
    pub fn kernels(&self) -> &[KernelInfo] {
        &self.kernels
    }

    /// Whether the pack has a kernel called `name`.
    pub fn has_kernel(&self, name: &str) -> bool {
        self.kernels.iter().any(|k| k.name == name)
    }
}

/// `sha256:` followed by the lowercase hex digest of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
