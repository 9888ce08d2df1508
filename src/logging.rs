//! Logging set-up: env_logger at INFO (DEBUG with `log.verbose`, `RUST_LOG` overrides), to
//! standard error or to `log.file` with size-based rotation, with every line passed through the
//! secret masker before it is written. Panics are logged too, so that an unattended run (Task
//! Scheduler, no console) keeps a trace of them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A log file that rotates by size: `proxy.log` → `proxy.log.1` → … → `proxy.log.<keep>`.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    written: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file,
            written,
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        PathBuf::from(format!("{}.{n}", self.path.display()))
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(self.numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
            }
            // reopen after the rename: Windows does not let an open file be renamed away cleanly
            let placeholder = OpenOptions::new().append(true).open(&self.path)?;
            drop(std::mem::replace(&mut self.file, placeholder));
            std::fs::rename(&self.path, self.numbered(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            // a failed rotation must not stop logging: keep writing to the current file
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Initialises the global logger: to `file` (rotated) when given, else standard error.
pub fn init(verbose: bool, file: Option<(&Path, u64, usize)>) -> io::Result<()> {
    let default = if verbose { "debug" } else { "info" };
    let env = env_logger::Env::default().default_filter_or(format!(
        "chinaport_proxy={default},{}",
        if verbose { "info" } else { "warn" }
    ));
    let mut builder = env_logger::Builder::from_env(env);
    builder.format(|buf, record| {
        let line = crate::mask::global().mask_str(&record.args().to_string());
        writeln!(
            buf,
            "{} {:<5} {line}",
            buf.timestamp_millis(),
            record.level()
        )
    });
    if let Some((path, max_bytes, keep)) = file {
        let file = RotatingFile::open(path, max_bytes, keep)?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    let _ = builder.try_init();
    install_panic_hook();
    Ok(())
}

/// Panics are logged (masked) as well as printed, so that they reach the log file.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        log::error!("panic in thread {thread}: {info}");
        default(info);
    }));
}

/// Appends one line to `chinaport-proxy.log` next to the executable: where an administrator looks
/// when the proxy could not start far enough to know its own log file (an unreadable config).
pub fn early_error(message: &str) {
    let Some(dir) = crate::config::exe_dir() else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("chinaport-proxy.log"))
    {
        let _ = writeln!(
            f,
            "[unix time {now}] ERROR chinaport-proxy could not start: {message}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("proxy.log");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..10 {
            writeln!(f, "line {i:02} {}", "x".repeat(40)).unwrap();
        }
        f.flush().unwrap();
        let current = std::fs::read_to_string(&path).unwrap();
        let one = std::fs::read_to_string(dir.join("proxy.log.1")).unwrap();
        assert!(
            current.len() <= 100 && current.contains("line 09"),
            "{current}"
        );
        assert!(one.contains("line 07"), "{one}");
        assert!(dir.join("proxy.log.2").is_file());
        assert!(!dir.join("proxy.log.3").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
