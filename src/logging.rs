//! Logging set-up: env_logger at INFO (DEBUG with `log.verbose`, `RUST_LOG` overrides), to
//! standard error or to `log.file` with size-based rotation, with every line passed through the
//! secret masker before it is written, then made one line (control characters escaped, so that
//! text a caller chose cannot forge a line) and capped in length. Panics are logged too, so that
//! an unattended run (Task Scheduler, no console) keeps a trace of them. `LineGate` bounds the
//! lines unauthenticated traffic may write, so that a flood cannot rotate the history away.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// No log line is longer than this (bytes of its message; a longer one is cut and says so).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// `text` as one line of at most `max_bytes` bytes (plus the note saying how much was cut):
/// CR, LF, tab and every other control character escaped (`\n`, `\u{1b}`), so that text a caller
/// chose (a `_method`, a path, a trace id) can neither start a forged log line nor hide one.
pub fn clean(text: &str, max_bytes: usize) -> Cow<'_, str> {
    let fits = text.len() <= max_bytes;
    if fits && !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max_bytes) + 32);
    let mut taken = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let escaped: Cow<'_, str> = match c {
            '\n' => "\\n".into(),
            '\r' => "\\r".into(),
            '\t' => "\\t".into(),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32).into(),
            c => Cow::Borrowed(&*c.encode_utf8(&mut buf)),
        };
        if out.len() + escaped.len() > max_bytes {
            break;
        }
        out.push_str(&escaped);
        taken += c.len_utf8();
    }
    if taken < text.len() {
        out.push_str(&format!("…({} more bytes)", text.len() - taken));
    }
    Cow::Owned(out)
}

/// A token bucket for log lines about requests nobody authenticated: up to `burst` at once, then
/// `per_second`; the rest are counted and the count is logged as one "suppressed" line when
/// lines are admitted again.
pub struct LineGate {
    burst: f64,
    per_second: f64,
    state: Mutex<GateState>,
}

struct GateState {
    tokens: f64,
    at: Option<Instant>,
    suppressed: u64,
    since: Option<Instant>,
}

/// What `LineGate::admit` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Log the line; first say that `n` lines were suppressed over `for_s` seconds (when n > 0).
    Log { suppressed: u64, for_s: u64 },
    /// Do not log it (it is counted).
    Suppress,
}

impl LineGate {
    pub const fn new(burst: u32, per_second: u32) -> LineGate {
        LineGate {
            burst: burst as f64,
            per_second: per_second as f64,
            state: Mutex::new(GateState {
                tokens: burst as f64,
                at: None,
                suppressed: 0,
                since: None,
            }),
        }
    }

    pub fn admit(&self, now: Instant) -> Admit {
        let mut s = crate::sync::lock(&self.state);
        let elapsed =
            s.at.map(|t| now.saturating_duration_since(t))
                .unwrap_or_default();
        s.tokens = (s.tokens + elapsed.as_secs_f64() * self.per_second).min(self.burst);
        s.at = Some(now);
        if s.tokens < 1.0 {
            s.suppressed += 1;
            s.since.get_or_insert(now);
            return Admit::Suppress;
        }
        s.tokens -= 1.0;
        let suppressed = std::mem::take(&mut s.suppressed);
        let for_s = s
            .since
            .take()
            .map(|t| now.saturating_duration_since(t).as_secs().max(1))
            .unwrap_or(0);
        Admit::Log { suppressed, for_s }
    }
}

/// The gate for lines about unauthenticated requests (access lines, failed authentications):
/// 50 at once, then 10 a second; an unauthenticated flood writes about 1 KB a second.
pub static UNAUTHENTICATED: LineGate = LineGate::new(50, 10);

/// Runs `log_it` if the unauthenticated-lines gate admits one more line, after a line saying
/// how many were suppressed before it.
pub fn gated(log_it: impl FnOnce()) {
    match UNAUTHENTICATED.admit(Instant::now()) {
        Admit::Suppress => {}
        Admit::Log { suppressed, for_s } => {
            if suppressed > 0 {
                log::warn!(
                    "suppressed {suppressed} log line(s) about unauthenticated requests in the last {for_s} s (at most {} a second are logged)",
                    UNAUTHENTICATED.per_second
                );
            }
            log_it();
        }
    }
}

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
        let line = clean(&line, MAX_LINE_BYTES);
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
    use std::time::Duration;

    #[test]
    fn clean_escapes_control_characters_and_caps_length() {
        assert_eq!(clean("plain", 100), "plain");
        assert_eq!(
            clean("x\n2026-12-02T00:00:00.000Z ERROR forged\r\u{1b}[1m", 100),
            "x\\n2026-12-02T00:00:00.000Z ERROR forged\\r\\u{1b}[1m"
        );
        let long = "é".repeat(100);
        let cut = clean(&long, 11);
        assert_eq!(cut, format!("{}…(190 more bytes)", "é".repeat(5)));
    }

    #[test]
    fn the_gate_admits_a_burst_then_a_rate_and_counts_the_rest() {
        let gate = LineGate::new(3, 2);
        let t0 = Instant::now();
        let admitted = (0..10)
            .filter(|_| gate.admit(t0) != Admit::Suppress)
            .count();
        assert_eq!(admitted, 3);
        // a second later: two more tokens, and the first line reports the 7 suppressed
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            gate.admit(t1),
            Admit::Log {
                suppressed: 7,
                for_s: 1
            }
        );
        assert_eq!(
            gate.admit(t1),
            Admit::Log {
                suppressed: 0,
                for_s: 0
            }
        );
        assert_eq!(gate.admit(t1), Admit::Suppress);
    }

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
