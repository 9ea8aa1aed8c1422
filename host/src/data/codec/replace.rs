//! Output files replaced whole: written to a temporary file beside the target and renamed over
//! it only once complete, so a failed write leaves the old file (or none), never a partial one.
//! NPY results carry their item errors in `OUTPUT.errors.json` beside the array.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::data::wire::ResultRef;

/// Writes `path` through `write`, replacing it only when `write` succeeded.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".crunch-")
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut writer = BufWriter::new(temp.as_file());
    write(&mut writer)?;
    writer.flush()?;
    drop(writer);
    // The new file keeps the old one's permissions, or gets the usual rw-r--r--.
    let permissions = std::fs::metadata(path)
        .map(|old| old.permissions())
        .ok()
        .or_else(default_permissions);
    if let Some(permissions) = permissions {
        std::fs::set_permissions(temp.path(), permissions)?;
    }
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(unix)]
fn default_permissions() -> Option<std::fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn default_permissions() -> Option<std::fs::Permissions> {
    None
}

/// `OUTPUT.errors.json`, beside an NPY output.
pub fn errors_path(output: &Path) -> PathBuf {
    let mut path = output.as_os_str().to_owned();
    path.push(".errors.json");
    PathBuf::from(path)
}

/// Writes every failed item's index, kind and message to `OUTPUT.errors.json` and returns its
/// path; with no failures, removes a stale one left by an earlier run and returns `None`.
pub fn write_errors_beside<'a>(
    output: &Path,
    results: impl Iterator<Item = ResultRef<'a>>,
) -> Result<Option<PathBuf>> {
    let path = errors_path(output);
    let errors: Vec<_> = results
        .enumerate()
        .filter_map(|(i, r)| r.err().map(|e| (i, e)))
        .map(|(i, e)| serde_json::json!({ "item": i, "kind": e.kind(), "message": e.message() }))
        .collect();
    if errors.is_empty() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the stale {}", path.display()));
            }
            _ => return Ok(None),
        }
    }
    write_atomically(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, &serde_json::json!({ "errors": errors }))?;
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}
