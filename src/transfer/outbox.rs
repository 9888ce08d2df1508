//! Writes one file into the outbox so that the client never sees half of it: a dot-named
//! `.tmp` file in the same folder (so the rename stays on one volume), flushed and synced, then
//! renamed to the final `.xml` name, never over an existing file.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum WriteError {
    /// The outbox folder does not exist.
    NoFolder(PathBuf),
    /// The outbox path names a file, not a folder.
    NotAFolder(PathBuf),
    /// The outbox folder cannot be looked at (a path through a file, no access, …).
    Unreachable(PathBuf, std::io::Error),
    /// The final name is taken by another file.
    Exists(PathBuf),
    /// Creating, writing, syncing or renaming failed (denied, disk full, …).
    Io(PathBuf, std::io::Error),
}

impl WriteError {
    /// The HTTP status that says it: the folder is wrong or out of reach (503, until the
    /// operator fixes it), the disk is full (507), the name is taken (409), else 500.
    pub fn status(&self) -> u16 {
        match self {
            WriteError::NoFolder(_) | WriteError::NotAFolder(_) | WriteError::Unreachable(..) => {
                503
            }
            WriteError::Exists(_) => 409,
            WriteError::Io(_, e) if e.kind() == std::io::ErrorKind::PermissionDenied => 503,
            WriteError::Io(_, e) if e.kind() == std::io::ErrorKind::StorageFull => 507,
            WriteError::Io(..) => 500,
        }
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::NoFolder(p) => write!(
                f,
                "the transfer outbox {} does not exist: create it or correct transfer.outbox",
                p.display()
            ),
            WriteError::NotAFolder(p) => write!(
                f,
                "the transfer outbox {} is a file, not a folder: correct transfer.outbox",
                p.display()
            ),
            WriteError::Unreachable(p, e) => write!(
                f,
                "the transfer outbox {} cannot be opened ({e}): correct transfer.outbox or the folder's permissions",
                p.display()
            ),
            WriteError::Exists(p) => write!(
                f,
                "{} already exists in the outbox and is not overwritten; send with \"resend\": true after the client took it",
                p.display()
            ),
            WriteError::Io(p, e) if e.kind() == std::io::ErrorKind::PermissionDenied => write!(
                f,
                "writing {} was denied ({e}); nothing was left in the outbox: let the proxy's user write to the folder",
                p.display()
            ),
            WriteError::Io(p, e) if e.kind() == std::io::ErrorKind::StorageFull => write!(
                f,
                "the disk is full: {} was not written ({e}); nothing was left in the outbox: free some space",
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
    write_with(dir, name, bytes, |from, to| std::fs::rename(from, to))
}

/// `write_atomically` with the last step given, so that a test can make it fail.
fn write_with(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    rename: impl Fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<PathBuf, WriteError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(WriteError::NotAFolder(dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(WriteError::NoFolder(dir.to_path_buf()));
        }
        Err(e) => return Err(WriteError::Unreachable(dir.to_path_buf(), e)),
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
        rename(&temp, &target)
    })();
    match result {
        Ok(()) => Ok(target),
        Err(e) => {
            // a temp file that could not even be created is NotFound here: nothing to undo
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
        assert!(matches!(
            write_atomically(&p, "b.xml", b"x"),
            Err(WriteError::NotAFolder(_))
        ));
        assert!(matches!(
            write_atomically(&p.join("sub"), "b.xml", b"x"),
            Err(WriteError::Unreachable(..))
        ));
        // the last step fails after the whole file was written: the temp file goes too
        let denied = write_with(&dir, "c.xml", b"<c/>", |_, _| {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        });
        let Err(e) = denied else {
            panic!("the failing rename was not reported")
        };
        assert_eq!(e.status(), 503);
        assert!(e.to_string().contains("denied"), "{e}");
        let full = write_with(&dir, "d.xml", b"<d/>", |_, _| {
            Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
        });
        assert_eq!(full.map_err(|e| e.status()).err(), Some(507));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
