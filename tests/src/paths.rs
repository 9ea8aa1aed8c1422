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

/// cargo-lambda, whose Runtime API emulator the Lambda tests run: `$CRUNCH_CARGO_LAMBDA` (`just
/// test` sets it), else the one `just test-deps` installs into `target/py-env`, else
/// `cargo-lambda` from `PATH`.
pub fn cargo_lambda() -> PathBuf {
    if let Some(path) = std::env::var_os("CRUNCH_CARGO_LAMBDA") {
        return PathBuf::from(path);
    }
    let in_env = target_dir().join("py-env/bin/cargo-lambda");
    if in_env.exists() {
        in_env
    } else {
        PathBuf::from("cargo-lambda")
    }
}
