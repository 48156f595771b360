//! Replacing a file so that no reader ever sees half of it: the new
//! contents go to a temporary file beside it, are flushed to disk, and are
//! renamed over it (a rename within one folder is atomic).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Mode for a file anyone may read, as `fs::write` would create it (the
/// umask still applies).
pub const READABLE: u32 = 0o666;

/// Mode for a secret (a private key): owner only, from the moment the file
/// exists.
pub const PRIVATE: u32 = 0o600;

/// Writes `contents` to `path` atomically; the file gets `mode` on Unix.
/// The folder must exist.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    stage(path, contents, mode)?.commit()
}

/// New contents for a file, written and flushed beside it, not yet in
/// place. Dropped without [`Staged::commit`], the temporary file is
/// removed and the old file stays as it was.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

/// Writes `contents` to a new temporary file beside `path`, created with
/// `mode` so that a key is never readable by others, not even for an
/// instant, and flushed to disk. Several files can be staged and then
/// committed in the order that keeps them consistent.
pub fn stage(path: &Path, contents: &[u8], mode: u32) -> io::Result<Staged> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    // Process id and a random part: two writers of one file never share a
    // temporary file, and one left by a crash never blocks the next write.
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let staged = Staged {
        tmp,
        path: path.to_owned(),
        committed: false,
    };
    let mut file = options.open(&staged.tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(staged)
}

impl Staged {
    /// Renames the new contents over the file.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write(&path, b"old", READABLE).unwrap();
        write(&path, b"new", READABLE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_staged_file_dropped_uncommitted_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write(&path, b"old", READABLE).unwrap();
        let staged = stage(&path, b"new", READABLE).unwrap();
        assert_eq!(leftovers(dir.path()).len(), 1);
        drop(staged);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("missing/f"), b"x", READABLE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        // A folder in the file's place: the rename fails after the write.
        let path = dir.path().join("d");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(write(&path, b"x", READABLE).is_err());
        assert!(leftovers(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_private_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write(&path, b"secret", PRIVATE).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
