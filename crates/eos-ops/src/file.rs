//! Files written whole or not at all.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A file could not be written; nothing at `path` was changed.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", .path.display())]
pub struct WriteError {
    /// What failed: `creating a temporary file in`, `writing`, `syncing`.
    pub what: &'static str,
    /// The file, or the directory for the temporary file and the
    /// directory's sync.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Write `data` to `path` atomically with `mode` (on Unix): a temporary
/// file in the same directory, its mode set before any data is in it (a key
/// is never readable by others, not even for a moment), fsync of the file,
/// rename over `path`, fsync of the directory so the rename survives a
/// crash. A reader sees the old file or the new one, never part of either.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fail = |what, path: &Path| {
        let path = path.to_owned();
        move |source| WriteError { what, path, source }
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(fail("creating a temporary file in", &dir))?;
    set_mode(tmp.as_file(), mode).map_err(fail("writing", path))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(fail("writing", path))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .map_err(fail("writing", path))?;
    sync_dir(&dir).map_err(fail("syncing", &dir))
}

#[cfg(unix)]
fn set_mode(f: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_f: &std::fs::File, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_with_the_mode_and_leaves_nothing_else()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "old")?;
        write_atomic(&key, b"new key", 0o600)?;
        assert_eq!(std::fs::read_to_string(&key)?, "new key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, vec![std::ffi::OsString::from("key.pem")]);
        Ok(())
    }

    #[test]
    fn a_missing_directory_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("nope");
        let Err(e) = write_atomic(&missing.join("cert.pem"), b"x", 0o644) else {
            return Err("written into a missing directory".into());
        };
        assert_eq!(e.path, missing);
        assert!(
            e.to_string().starts_with("creating a temporary file in "),
            "{e}"
        );
        Ok(())
    }
}
