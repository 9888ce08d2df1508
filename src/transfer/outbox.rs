//! Writes one file into the outbox so that the client never sees half of it: a dot-named
//! `.tmp` file in the same folder (so the rename stays on one volume), flushed and synced, then
//! renamed to the final `.xml` name, never over an existing file.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum WriteError {
    /// The outbox folder does not exist (or is not a folder).
    NoFolder(PathBuf),
    /// The final name is taken by another file.
    Exists(PathBuf),
    /// Creating, writing, syncing or renaming failed (denied, disk full, …).
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::NoFolder(p) => write!(
                f,
                "the transfer outbox {} does not exist: create it or correct transfer.outbox",
                p.display()
            ),
            WriteError::Exists(p) => write!(
                f,
                "{} already exists in the outbox and is not overwritten; send with \"resend\": true after the client took it",
                p.display()
            ),
            WriteError::Io(p, e) => write!(
                f,
                "cannot write {} ({e}); nothing was left in the outbox: check the folder's permissions and free space",
                p.display()
            ),
        }
    }
}

/// Writes `bytes` as `dir/name`, atomically.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, WriteError> {
    if !dir.is_dir() {
        return Err(WriteError::NoFolder(dir.to_path_buf()));
    }
    let target = dir.join(name);
    if target.exists() {
        return Err(WriteError::Exists(target));
    }
    let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.write_all(bytes)?;
        f.flush()?;
        f.sync_all()?;
        drop(f);
        if target.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the final name appeared meanwhile",
            ));
        }
        std::fs::rename(&temp, &target)
    })();
    match result {
        Ok(()) => Ok(target),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(WriteError::Io(target, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_or_nothing() {
        let dir = std::env::temp_dir().join(format!("outbox-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = write_atomically(&dir, "a.xml", b"<a/>").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"<a/>");
        assert!(matches!(
            write_atomically(&dir, "a.xml", b"x"),
            Err(WriteError::Exists(_))
        ));
        assert!(matches!(
            write_atomically(&dir.join("nope"), "a.xml", b"x"),
            Err(WriteError::NoFolder(_))
        ));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
