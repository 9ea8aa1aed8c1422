//! The kernel registry in Redis: packs stored content-addressed by sha256 after checking them,
//! human names and tags pointing at digests, and removal refused while a live job pins a pack.
//!
//! Keys (global, not per job): `crunch:kernels:blob:<hex>` (the component's bytes),
//! `crunch:kernels:meta:<hex>` (hash: name, size, pushed_ms, kernels) and `crunch:kernels:tags`
//! (hash: `NAME:TAG` -> `sha256:<hex>`).

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use wasmtime::component::Component;

use crate::data::text;
use crate::queue::jobs::{self, now_ms};
use crate::queue::store::Redis;
use crate::queue::store::keys::JobKeys;
use crate::sandbox::engine::Engine;
use crate::sandbox::pack::{KernelPack, PackError, sha256_hex};

/// The largest pack `push` accepts by default.
pub const DEFAULT_MAX_SIZE: usize = 16 << 20;

/// Interfaces a pack may import: what the host grants (and the sandbox serves empty).
const GRANTED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "crunch:kernel/types",
];

const TAGS: &str = "crunch:kernels:tags";

fn blob_key(digest: &str) -> String {
    format!(
        "crunch:kernels:blob:{}",
        digest.trim_start_matches("sha256:")
    )
}

fn meta_key(digest: &str) -> String {
    format!(
        "crunch:kernels:meta:{}",
        digest.trim_start_matches("sha256:")
    )
}

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Larger than the limit.
    #[error("the file is {size} bytes, over the registry's limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No WebAssembly header.
    #[error("the file is not WebAssembly (it does not start with \"\\0asm\")")]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "the file is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Imports something the host does not grant.
    #[error(
        "the component imports {0}, which the host does not grant (granted: wasi:cli, wasi:io, wasi:clocks, wasi:random)"
    )]
    ForbiddenImports(String),
    /// Not the crunch:kernel world.
    #[error("the component does not export crunch:kernel/kernels@0.2.x: {0}")]
    WrongWorld(String),
    /// Does not compile or instantiate.
    #[error("the component is invalid: {0}")]
    Invalid(String),
    /// `list-kernels` failed (trapped, timed out, ran out of memory).
    #[error("{0}")]
    ListKernels(String),
    /// Kernel names that are empty, given twice, or hold control characters.
    #[error("the pack's kernel names are unusable: {0}")]
    BadKernelNames(String),
}

/// A checked pack, ready to store.
#[derive(Clone, Debug)]
pub struct CheckedPack {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: usize,
    /// Kernel names the pack reports.
    pub kernels: Vec<String>,
}

/// Checks that `bytes` are a component of the crunch:kernel world that imports only what the
/// host grants, within `max_size`.
pub fn check(engine: &Engine, bytes: &[u8], max_size: usize) -> Result<CheckedPack, PushError> {
    if bytes.len() > max_size {
        return Err(PushError::TooLarge {
            size: bytes.len(),
            limit: max_size,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PushError::NotWasm);
    }
    // Core modules are version 1 (01 00 00 00); components have layer 1 in bytes 6..8.
    if bytes[6..8] != [1, 0] {
        return Err(PushError::CoreModule);
    }
    let component = Component::new(engine.wasmtime(), bytes)
        .map_err(|e| PushError::Invalid(format!("{e:#}")))?;
    let ty = component.component_type();
    let forbidden: Vec<String> = ty
        .imports(engine.wasmtime())
        .map(|(name, _)| name.to_string())
        .filter(|name| !GRANTED_IMPORTS.iter().any(|g| name.starts_with(g)))
        .collect();
    if !forbidden.is_empty() {
        return Err(PushError::ForbiddenImports(forbidden.join(", ")));
    }
    let exports: Vec<String> = ty
        .exports(engine.wasmtime())
        .map(|(name, _)| name.to_string())
        .collect();
    if !exports
        .iter()
        .any(|e| e.starts_with("crunch:kernel/kernels@0.2."))
    {
        let found = if exports.is_empty() {
            "it exports nothing".to_string()
        } else {
            format!("it exports {}", exports.join(", "))
        };
        return Err(PushError::WrongWorld(found));
    }
    // The component compiled above serves for the world check too: no second compile.
    let pack = KernelPack::from_component(engine, component, sha256_hex(bytes), bytes.len())
        .map_err(|e| match e {
            PackError::ListKernels(_) => PushError::ListKernels(e.to_string()),
            PackError::Link(m) => PushError::ForbiddenImports(m),
            PackError::NotKernelPack(m) => PushError::WrongWorld(m),
        })?;
    let names: Vec<&str> = pack.kernels().iter().map(|k| k.name.as_str()).collect();
    check_names(&names).map_err(PushError::BadKernelNames)?;
    Ok(CheckedPack {
        digest: pack.digest().to_string(),
        size: bytes.len(),
        kernels: pack.kernels().iter().map(|k| k.name.clone()).collect(),
    })
}

/// Kernel names must be non-empty, unique and free of control characters (and of the
/// invisible characters that reorder text), so that a job can name each and a terminal shows
/// each as it is. The error lists every problem.
fn check_names(names: &[&str]) -> Result<(), String> {
    let mut problems = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            problems.push(format!("kernel {i} has an empty name"));
        } else if name.chars().any(text::needs_escape) {
            problems.push(format!(
                "kernel {i}'s name `{}` holds control characters",
                text::escaped(name, 64)
            ));
        } else if names[..i].contains(name) {
            problems.push(format!(
                "the name `{}` is given twice",
                text::escaped(name, 64)
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Splits `NAME[:TAG]` (tag `latest` by default), checking both parts.
pub fn parse_name(reference: &str) -> Result<(String, String)> {
    let (name, tag) = reference.split_once(':').unwrap_or((reference, "latest"));
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    };
    ensure!(
        ok(name) && ok(tag),
        "`{reference}` is not NAME[:TAG] (letters, digits, `_`, `-`, `.`; at most 64 each)"
    );
    Ok((name.to_string(), tag.to_string()))
}

/// Whether `reference` is a digest (`sha256:` and 64 hex digits).
pub fn is_digest(reference: &str) -> bool {
    reference
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `value`, given where a pack is expected, names a pack in the registry rather than a
/// component file: a digest, or a NAME[:TAG] that does not look like a path (no `/`, no
/// `.wasm`) and is not an existing file.
pub fn is_reference(value: &str) -> bool {
    let looks_like_reference = is_digest(value)
        || (!value.contains('/') && !value.ends_with(".wasm") && parse_name(value).is_ok());
    looks_like_reference && !std::path::Path::new(value).exists()
}

/// Stores a checked pack and points `NAME:TAG` at it. Pushing the same bytes again is a no-op
/// for the blob; the tag moves.
pub fn push(
    store: &mut Redis,
    bytes: &[u8],
    checked: &CheckedPack,
    name: &str,
    tag: &str,
) -> Result<()> {
    let blob = blob_key(&checked.digest);
    store.run(|c| redis::cmd("SET").arg(&blob).arg(bytes).query::<()>(c))?;
    let kernels = serde_json::to_string(&checked.kernels)?;
    store.run(|c| {
        redis::cmd("HSET")
            .arg(meta_key(&checked.digest))
            .arg("name")
            .arg(name)
            .arg("size")
            .arg(checked.size)
            .arg("pushed_ms")
            .arg(now_ms())
            .arg("kernels")
            .arg(&kernels)
            .query::<()>(c)
    })?;
    store.run(|c| {
        redis::cmd("HSET")
            .arg(TAGS)
            .arg(format!("{name}:{tag}"))
            .arg(&checked.digest)
            .query::<()>(c)
    })?;
    Ok(())
}

/// The digest a reference (`NAME[:TAG]` or a digest) stands for.
pub fn resolve(store: &mut Redis, reference: &str) -> Result<String> {
    if is_digest(reference) {
        let exists: bool = store.run(|c| redis::cmd("EXISTS").arg(blob_key(reference)).query(c))?;
        ensure!(exists, "no kernel pack {reference} in the registry");
        return Ok(reference.to_string());
    }
    let (name, tag) = parse_name(reference)?;
    let digest: Option<String> = store.run(|c| {
        redis::cmd("HGET")
            .arg(TAGS)
            .arg(format!("{name}:{tag}"))
            .query(c)
    })?;
    digest.with_context(|| {
        format!("no kernel pack tagged {name}:{tag} in the registry (see `crunch kernel ls`)")
    })
}

/// The bytes of the pack with `digest`.
pub fn fetch(store: &mut Redis, digest: &str) -> Result<Vec<u8>> {
    let bytes: Option<Vec<u8>> = store.run(|c| redis::cmd("GET").arg(blob_key(digest)).query(c))?;
    bytes.with_context(|| format!("kernel pack {digest} is not in the registry (removed?)"))
}

/// One entry of `ls`.
#[derive(Clone, Debug)]
pub struct Listed {
    /// `NAME:TAG`.
    pub tag: String,
    /// The digest it points at.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Kernel names.
    pub kernels: Vec<String>,
}

/// Every tag with its pack, sorted by tag.
pub fn list(store: &mut Redis) -> Result<Vec<Listed>> {
    let tags: HashMap<String, String> = store.run(|c| redis::cmd("HGETALL").arg(TAGS).query(c))?;
    let mut out = Vec::new();
    for (tag, digest) in tags {
        let meta: HashMap<String, String> =
            store.run(|c| redis::cmd("HGETALL").arg(meta_key(&digest)).query(c))?;
        out.push(Listed {
            tag,
            digest,
            size: meta.get("size").and_then(|s| s.parse().ok()).unwrap_or(0),
            kernels: meta
                .get("kernels")
                .and_then(|k| serde_json::from_str(k).ok())
                .unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(out)
}

/// Points `NAME:TAG` at the pack `reference` resolves to.
pub fn tag(store: &mut Redis, reference: &str, new_tag: &str) -> Result<String> {
    let digest = resolve(store, reference)?;
    let (name, tag) = parse_name(new_tag)?;
    store.run(|c| {
        redis::cmd("HSET")
            .arg(TAGS)
            .arg(format!("{name}:{tag}"))
            .arg(&digest)
            .query::<()>(c)
    })?;
    Ok(digest)
}

/// Removes a tag; with a digest (or the last tag of a pack), the pack itself. Refused while a
/// job that is not finished pins the pack.
pub fn remove(store: &mut Redis, reference: &str) -> Result<String> {
    let digest = resolve(store, reference)?;
    for (job, progress) in jobs::list(store)? {
        if progress.is_final() {
            continue;
        }
        // A live job whose pin cannot be read might pin this pack: refuse rather than guess.
        let pinned: Option<String> = store.run(|c| {
            redis::cmd("HGET")
                .arg(JobKeys::new(&job).spec())
                .arg("pack_digest")
                .query(c)
        })?;
        match pinned {
            Some(pinned) if pinned != digest => {}
            Some(_) => bail!(
                "refused: kernel pack {digest} is pinned by job {job}, which is {}; cancel it or wait for it to finish",
                progress.state
            ),
            None => bail!(
                "refused: job {job} is {} but its spec names no pack (unreadable or expired), so it may pin {digest}; cancel it or wait for it to finish",
                progress.state
            ),
        }
    }
    let tags: HashMap<String, String> = store.run(|c| redis::cmd("HGETALL").arg(TAGS).query(c))?;
    let pointing: Vec<&String> = tags
        .iter()
        .filter(|(_, d)| **d == digest)
        .map(|(t, _)| t)
        .collect();
    if !is_digest(reference) {
        let (name, tag) = parse_name(reference)?;
        store.run(|c| {
            redis::cmd("HDEL")
                .arg(TAGS)
                .arg(format!("{name}:{tag}"))
                .query::<()>(c)
        })?;
        if pointing.len() > 1 {
            return Ok(format!(
                "removed tag {name}:{tag}; {digest} is still tagged"
            ));
        }
    } else {
        for t in &pointing {
            store.run(|c| redis::cmd("HDEL").arg(TAGS).arg(t.as_str()).query::<()>(c))?;
        }
    }
    // Two commands: the keys live in different cluster slots.
    store.run(|c| redis::cmd("DEL").arg(blob_key(&digest)).query::<()>(c))?;
    store.run(|c| redis::cmd("DEL").arg(meta_key(&digest)).query::<()>(c))?;
    Ok(format!("removed kernel pack {digest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_digests() {
        assert_eq!(parse_name("var").unwrap(), ("var".into(), "latest".into()));
        assert_eq!(parse_name("var:v2").unwrap(), ("var".into(), "v2".into()));
        assert!(parse_name("a b").is_err() && parse_name(":x").is_err());
        assert!(is_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_digest("sha256:xyz"));
    }

    #[test]
    fn kernel_names_must_be_usable() {
        assert!(check_names(&["a", "b"]).is_ok());
        let err = check_names(&["a", "", "a", "x\u{1b}[2J", "rtl\u{202e}"]).unwrap_err();
        assert!(err.contains("kernel 1 has an empty name"), "{err}");
        assert!(err.contains("`a` is given twice"), "{err}");
        assert!(err.contains("x\\u{1b}[2J"), "{err}");
        assert!(err.contains("rtl\\u{202e}"), "{err}");
    }
}
