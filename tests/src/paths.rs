//! Where the build puts the artefacts the tests run: the `crunch` binary and the components.

use std::path::{Path, PathBuf};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The cargo target directory: `$CARGO_TARGET_DIR`, else `target/` in the repository.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// A component built by `just build`, e.g. `crunch_kernels` or `crunch_hostile_kernels`.
pub fn component(name: &str) -> PathBuf {
    let path = target_dir()
        .join("wasm32-wasip2/component")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `just build` first (the tests use the real component)",
        path.display()
    );
    path
}

/// The `crunch` binary built by `just build`.
pub fn crunch_bin() -> PathBuf {
    let path = target_dir().join("release/crunch");
    assert!(
        path.exists(),
        "{} is missing: run `just build` first",
        path.display()
    );
    path
}
