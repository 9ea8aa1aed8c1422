//! A kernel pack: one compiled component, pre-instantiated once against the engine's linker,
//! identified by the sha256 digest of its bytes.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::data::text;
use crate::data::types::{KernelInfo, KernelPackPre, Tensor, WireData};
use crate::sandbox::engine::Engine;

/// The time `list-kernels` may take before the pack is refused (it only lists names).
pub const LIST_KERNELS_TIME: Duration = Duration::from_secs(5);

/// The interface a kernel pack exports, as the WIT contract (`wit/`) names it.
const KERNELS_INTERFACE: &str = "crunch:kernel/kernels@0.2.0";

/// Why a component could not become a kernel pack.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// It imports something the host does not grant.
    #[error("linking the component: it imports something the host does not grant: {0}")]
    Link(String),
    /// It does not export the kernels interface of this contract version.
    #[error("the component does not export crunch:kernel/kernels@0.2.x: {0}")]
    NotKernelPack(String),
    /// `list-kernels` trapped, ran out of time or memory.
    #[error("calling `list-kernels` on the pack: {0}")]
    ListKernels(String),
}

/// A compiled kernel pack, ready to instantiate once per batch.
#[derive(Clone)]
pub struct KernelPack {
    engine: Engine,
    pre: KernelPackPre<crate::sandbox::engine::BatchState>,
    /// The `run` export, called with the batch's lists lent ([`crate::data::types::PackedRef`]).
    run: wasmtime::component::ComponentExportIndex,
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
        Ok(Self::from_component(
            engine,
            component,
            sha256_hex(bytes),
            bytes.len(),
        )?)
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
        Ok(Self::from_component(
            engine,
            component,
            digest.to_string(),
            0,
        )?)
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
    ) -> Result<Self, PackError> {
        let instance_pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| PackError::Link(format!("{e:#}")))?;
        let pre = KernelPackPre::new(instance_pre)
            .map_err(|e| PackError::NotKernelPack(format!("{e:#}")))?;
        // Found as the generated bindings find it (they have checked its type).
        let run = component
            .get_export_index(None, KERNELS_INTERFACE)
            .and_then(|kernels| component.get_export_index(Some(&kernels), "run"))
            .ok_or_else(|| {
                PackError::NotKernelPack(format!("no `run` in its `{KERNELS_INTERFACE}` export"))
            })?;
        let mut pack = Self {
            engine: engine.clone(),
            pre,
            run,
            digest,
            size,
            kernels: Vec::new(),
        };
        pack.kernels = pack.list_from_instance()?;
        Ok(pack)
    }

    fn list_from_instance(&self) -> Result<Vec<KernelInfo>, PackError> {
        let limit = LIST_KERNELS_TIME.min(self.engine.limits().batch_time);
        let mut store = self.engine.new_store(limit);
        self.pre
            .instantiate(&mut store)
            .and_then(|instance| {
                instance
                    .crunch_kernel_kernels()
                    .call_list_kernels(&mut store)
            })
            .map_err(|e| {
                let reason = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::Interrupt) => {
                        format!("it did not return within {limit:?} and was interrupted")
                    }
                    _ if format!("{e:?}").contains("forcing trap when growing memory") => format!(
                        "it exceeded the memory limit of {} bytes",
                        self.engine.limits().memory_bytes
                    ),
                    _ => format!("it trapped: {e:#}"),
                };
                PackError::ListKernels(text::capped(reason))
            })
    }

    /// Asks the pack whether it takes a call of `kernel` with `params`, before any work is
    /// sent: an empty batch, which a pack that refuses the call itself (an unknown kernel, an
    /// unknown or malformed parameter) answers with one failure (see `wit/kernel.wit`). A pack
    /// that says nothing accepts the call; its items then fail one by one if it did not.
    pub fn check_call(&self, kernel: &str, params: &[(String, Tensor)]) -> Result<()> {
        let mut store = self.engine.new_store(LIST_KERNELS_TIME);
        let empty = WireData {
            count: 0,
            shapes: Vec::new(),
            data: Vec::new(),
        };
        let answer = self
            .pre
            .instantiate(&mut store)
            .and_then(|i| {
                i.crunch_kernel_kernels()
                    .call_run(&mut store, kernel, params, &empty)
            })
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("asking the pack whether kernel `{kernel}` takes these parameters")
            })?;
        match answer.failures.first() {
            None => Ok(()),
            Some(refusal) => {
                let reason = crate::data::types::ItemError::Kernel(refusal.error.clone());
                let reason = text::escaped(&reason.to_string(), text::ECHO_CHARS);
                anyhow::bail!("kernel `{kernel}` refuses the call: {reason}")
            }
        }
    }

    /// The engine the pack was compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The pre-instantiated component.
    pub(crate) fn pre(&self) -> &KernelPackPre<crate::sandbox::engine::BatchState> {
        &self.pre
    }

    /// The `run` export's index in the pack's instances.
    pub(crate) fn run_export(&self) -> &wasmtime::component::ComponentExportIndex {
        &self.run
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
