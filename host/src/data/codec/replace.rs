//! Output files replaced whole: written to a temporary file beside the target and put in its
//! place only once complete, so a failed write leaves the old file (or none), never a partial one.
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
    #[cfg(target_os = "linux")]
    if exchanged(temp.path(), path) {
        // The temporary name now holds the old file, which goes with it.
        return temp
            .close()
            .with_context(|| format!("removing the old {}", path.display()));
    }
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Swaps the files at `new` and `old` in one step, when `old` exists and the file system can:
/// readers of `old` see the old file or the new one, never neither. ext4 makes a rename over an
/// existing file wait for the new file's data to be placed on disk (its guard for programs that
/// replace files without syncing them), which took 26 ms for a 32 MB output; an exchange does not
/// wait, like the truncate-and-write of `numpy.save`.
#[cfg(target_os = "linux")]
fn exchanged(new: &Path, old: &Path) -> bool {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, new, CWD, old, RenameFlags::EXCHANGE).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_is_replaced_whole_or_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        // New, then over an existing file (swapped in on Linux), then a failed write.
        write_atomically(&path, |w| Ok(w.write_all(b"first")?)).unwrap();
        write_atomically(&path, |w| Ok(w.write_all(b"second, longer")?)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let err = write_atomically(&path, |w| {
            w.write_all(b"partial")?;
            anyhow::bail!("the writer failed")
        })
        .unwrap_err();
        assert!(err.to_string().contains("the writer failed"), "{err:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        // No temporary file (nor the old file under its name) is left behind.
        assert_eq!(names(dir.path()), ["out.npy"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }
}
