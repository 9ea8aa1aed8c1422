//! Embeds the standard kernel pack: the component built from `guest/` (or the file named by
//! `CRUNCH_STANDARD_PACK`), with its sha256 digest, so that the Python package carries a
//! working engine and needs no file beside it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const PACK_FILE: &str = "crunch_kernels.wasm";

fn main() {
    println!("cargo::rerun-if-env-changed=CRUNCH_STANDARD_PACK");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = match std::env::var_os("CRUNCH_STANDARD_PACK") {
        Some(path) => PathBuf::from(path),
        None => build_component(),
    };
    println!("cargo::rerun-if-changed={}", source.display());
    let bytes = std::fs::read(&source)
        .unwrap_or_else(|e| panic!("reading the standard kernel pack {}: {e}", source.display()));
    std::fs::write(out_dir.join(PACK_FILE), &bytes).expect("writing the embedded pack");
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo::rustc-env=CRUNCH_STANDARD_PACK_DIGEST=sha256:{digest}");
}

/// Builds the standard pack the way `just build` does (profile `component`, target
/// `wasm32-wasip2`) into the workspace's target directory, and returns the component's path.
fn build_component() -> PathBuf {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let workspace = manifest_dir
        .parent()
        .expect("python/ sits in the workspace")
        .to_path_buf();
    for input in ["guest", "abi", "wit", "Cargo.lock"] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(input).display()
        );
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--profile",
            "component",
            "--target",
            "wasm32-wasip2",
        ])
        .args(["-p", "crunch-kernels", "--target-dir"])
        .arg(&target_dir);
    // What cargo, clippy or maturin set for this crate's own compilation must not leak into
    // the component's (another target, other flags).
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    // Cargo reads this script's stdout for directives: the nested build reports on stderr.
    command.stdout(std::io::stderr());
    let status = command
        .status()
        .expect("running cargo to build the standard kernel pack");
    assert!(
        status.success(),
        "building the standard kernel pack (cargo build -p crunch-kernels --target wasm32-wasip2) failed; is the wasm32-wasip2 target installed (`just setup`)?"
    );
    component_path(&target_dir)
}

fn component_path(target_dir: &Path) -> PathBuf {
    target_dir.join("wasm32-wasip2/component").join(PACK_FILE)
}
