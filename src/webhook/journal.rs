//! The webhook journal: an append-only file of JSON lines, written before a response is sent, and
//! a marker file holding the `seq` of the last delivered line. Crash-only: a process killed at any
//! instant (Task Scheduler uses TerminateProcess) loses nothing written, and delivery resumes after
//! the marker, in order, at least once.
//!
//! The marker names a `seq`, not a byte offset, so compaction (rewriting the file without its
//! delivered head) is safe whenever it is interrupted. Writes are not fsync'ed: they survive the
//! process being killed (the OS has them), not a power cut.

use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Compact once this much delivered data sits at the head of the file.
const COMPACT_AFTER_BYTES: u64 = 1024 * 1024;

/// Which receiver a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audit,
    Failure,
    /// A customs receipt read by the transfer watcher (`webhook.receipt_url`, else the audit URL).
    Receipt,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Audit => "audit",
            Kind::Failure => "failure",
            Kind::Receipt => "receipt",
        }
    }
    fn parse(s: &str) -> Option<Kind> {
        match s {
            "audit" => Some(Kind::Audit),
            "failure" => Some(Kind::Failure),
            "receipt" => Some(Kind::Receipt),
            _ => None,
        }
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub kind: Kind,
    pub request_id: Option<String>,
    /// The webhook's JSON body, exactly as it will be sent.
    pub body: String,
}

impl Record {
    fn to_line(&self) -> String {
        let mut line = json!({
            "seq": self.seq,
            "kind": self.kind.as_str(),
            "request_id": self.request_id,
            "body": self.body,
        })
        .to_string();
        line.push('\n');
        line
    }

    fn from_line(line: &str) -> Option<Record> {
        let v: Value = serde_json::from_str(line).ok()?;
        Some(Record {
            seq: v.get("seq")?.as_u64()?,
            kind: Kind::parse(v.get("kind")?.as_str()?)?,
            request_id: v
                .get("request_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            body: v.get("body")?.as_str()?.to_owned(),
        })
    }
}

#[derive(Debug)]
pub enum JournalError {
    /// The journal reached its size cap; the record was not written.
    Full {
        max_bytes: u64,
    },
    Io(io::Error),
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalError::Full { max_bytes } => write!(
                f,
                "webhook journal is full ({max_bytes} bytes): the receiver has not accepted events for a long time"
            ),
            JournalError::Io(e) => write!(f, "webhook journal write failed: {e}"),
        }
    }
}

struct Writer {
    /// `None` only while compaction swaps the file.
    file: Option<File>,
    next_seq: u64,
    len: u64,
}

pub struct Journal {
    path: PathBuf,
    marker: PathBuf,
    max_bytes: u64,
    writer: Mutex<Writer>,
    delivered_seq: AtomicU64,
    /// Byte offset of the first undelivered line (kept by the sender).
    read_offset: AtomicU64,
    dropped: AtomicU64,
    full: AtomicBool,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, its marker beside it (`<path>.delivered`).
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let marker = PathBuf::from(format!("{}.delivered", path.display()));
        let delivered = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        // Find the last seq and where the undelivered part starts; drop a torn last line.
        let (mut last_seq, mut offset, mut good_len) = (delivered, None, 0u64);
        let mut reader = BufReader::new(&mut file);
        let mut line = String::new();
        let mut pos = 0u64;
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            if let Some(r) = Record::from_line(&line) {
                last_seq = last_seq.max(r.seq);
                if r.seq > delivered && offset.is_none() {
                    offset = Some(pos);
                }
            }
            pos += n as u64;
            good_len = pos;
        }
        drop(reader);
        if file.metadata()?.len() != good_len {
            // a line cut short by a kill mid-write was never acknowledged: drop it
            file.set_len(good_len)?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            marker,
            max_bytes,
            writer: Mutex::new(Writer {
                file: Some(file),
                next_seq: last_seq + 1,
                len: good_len,
            }),
            delivered_seq: AtomicU64::new(delivered),
            read_offset: AtomicU64::new(offset.unwrap_or(good_len)),
            dropped: AtomicU64::new(0),
            full: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; returns its seq. The lock is held for the file write only.
    pub fn append(
        &self,
        kind: Kind,
        request_id: Option<&str>,
        body: String,
    ) -> Result<u64, JournalError> {
        let mut w = self
            .writer
            .lock()
            .map_err(|_| JournalError::Io(io::Error::other("journal lock poisoned")))?;
        let record = Record {
            seq: w.next_seq,
            kind,
            request_id: request_id.map(str::to_owned),
            body,
        };
        let line = record.to_line();
        let undelivered = w
            .len
            .saturating_sub(self.read_offset.load(Ordering::SeqCst));
        if undelivered + line.len() as u64 > self.max_bytes {
            self.dropped.fetch_add(1, Ordering::SeqCst);
            if !self.full.swap(true, Ordering::SeqCst) {
                log::error!(
                    "{}; new events are dropped until it accepts again ({})",
                    JournalError::Full {
                        max_bytes: self.max_bytes
                    },
                    self.path.display()
                );
            }
            return Err(JournalError::Full {
                max_bytes: self.max_bytes,
            });
        }
        if self.full.swap(false, Ordering::SeqCst) {
            log::warn!("webhook journal has room again; events are recorded again");
        }
        let file = w
            .file
            .as_mut()
            .ok_or_else(|| JournalError::Io(io::Error::other("journal not open")))?;
        file.write_all(line.as_bytes()).map_err(JournalError::Io)?;
        w.len += line.len() as u64;
        w.next_seq += 1;
        Ok(record.seq)
    }

    /// Reads undelivered records, oldest first, at most `max` of them, with each one's byte
    /// length. Reads only whole lines.
    pub fn pending(&self, max: usize) -> io::Result<Vec<(Record, u64)>> {
        let offset = self.read_offset.load(Ordering::SeqCst);
        let delivered = self.delivered_seq.load(Ordering::SeqCst);
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::new(file);
        let mut out = Vec::new();
        let mut line = String::new();
        let mut skipped = 0u64;
        while out.len() < max {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            match Record::from_line(&line) {
                Some(r) if r.seq > delivered => {
                    // bytes passed over before it are delivered along with it
                    out.push((r, n as u64 + skipped));
                    skipped = 0;
                }
                // already delivered, or unreadable: pass over it with the next record
                _ => skipped += n as u64,
            }
        }
        if out.is_empty() && skipped > 0 {
            self.read_offset.fetch_add(skipped, Ordering::SeqCst);
        }
        Ok(out)
    }

    /// Records `seq` as delivered (or given up on) and moves past its `len` bytes. The marker is
    /// replaced atomically (write then rename).
    pub fn mark_delivered(&self, seq: u64, len: u64) -> io::Result<()> {
        let tmp = PathBuf::from(format!("{}.tmp", self.marker.display()));
        std::fs::write(&tmp, format!("{seq}\n"))?;
        std::fs::rename(&tmp, &self.marker)?;
        self.delivered_seq.store(seq, Ordering::SeqCst);
        self.read_offset.fetch_add(len, Ordering::SeqCst);
        self.compact_if_due()
    }

    /// Rewrites the file without its delivered head once that head is large.
    fn compact_if_due(&self) -> io::Result<()> {
        let offset = self.read_offset.load(Ordering::SeqCst);
        if offset < COMPACT_AFTER_BYTES {
            return Ok(());
        }
        let mut w = self
            .writer
            .lock()
            .map_err(|_| io::Error::other("journal lock poisoned"))?;
        if offset < w.len / 2 && offset < w.len {
            return Ok(()); // mostly undelivered: copying it now would be wasted work
        }
        let tmp = PathBuf::from(format!("{}.compact", self.path.display()));
        {
            let mut src = File::open(&self.path)?;
            src.seek(SeekFrom::Start(offset))?;
            let mut dst = File::create(&tmp)?;
            io::copy(&mut src, &mut dst)?;
        }
        // close our handle first: Windows will not replace a file that is open without sharing
        w.file = None;
        let renamed = std::fs::rename(&tmp, &self.path);
        w.file = Some(
            OpenOptions::new()
                .append(true)
                .read(true)
                .open(&self.path)?,
        );
        renamed?;
        w.len -= offset;
        self.read_offset.store(0, Ordering::SeqCst);
        log::debug!("webhook journal compacted ({offset} delivered bytes removed)");
        Ok(())
    }

    /// Undelivered events and bytes.
    pub fn backlog(&self) -> (u64, u64) {
        let (next, len) = self
            .writer
            .lock()
            .map(|w| (w.next_seq, w.len))
            .unwrap_or((0, 0));
        let delivered = self.delivered_seq.load(Ordering::SeqCst);
        let offset = self.read_offset.load(Ordering::SeqCst);
        (
            next.saturating_sub(delivered + 1),
            len.saturating_sub(offset),
        )
    }

    /// Events not recorded because the journal was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("webhooks.jsonl")
    }

    #[test]
    fn delivery_resumes_after_reopen_in_order() {
        let path = temp("resume");
        let j = Journal::open(&path, 1 << 20).unwrap();
        for i in 0..5 {
            j.append(
                Kind::Audit,
                Some(&format!("r{i}")),
                format!("{{\"n\":{i}}}"),
            )
            .unwrap();
        }
        let p = j.pending(10).unwrap();
        assert_eq!(p.len(), 5);
        j.mark_delivered(p[0].0.seq, p[0].1).unwrap();
        j.mark_delivered(p[1].0.seq, p[1].1).unwrap();
        assert_eq!(j.backlog().0, 3);
        drop(j);
        let j = Journal::open(&path, 1 << 20).unwrap();
        let p = j.pending(10).unwrap();
        let ids: Vec<_> = p
            .iter()
            .map(|(r, _)| r.request_id.clone().unwrap())
            .collect();
        assert_eq!(ids, ["r2", "r3", "r4"]);
        // new records continue the sequence
        assert_eq!(j.append(Kind::Failure, None, "{}".into()).unwrap(), 6);
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let path = temp("torn");
        let j = Journal::open(&path, 1 << 20).unwrap();
        j.append(Kind::Audit, None, "{}".into()).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"kind\":\"au").unwrap();
        drop(f);
        let j = Journal::open(&path, 1 << 20).unwrap();
        assert_eq!(j.pending(10).unwrap().len(), 1);
        assert_eq!(j.append(Kind::Audit, None, "{}".into()).unwrap(), 2);
        assert_eq!(j.pending(10).unwrap().len(), 2);
    }

    #[test]
    fn compaction_keeps_undelivered_records() {
        let path = temp("compact");
        let j = Journal::open(&path, 64 << 20).unwrap();
        let body = "x".repeat(1000);
        for _ in 0..1500 {
            j.append(Kind::Audit, None, format!("\"{body}\"")).unwrap();
        }
        let all = j.pending(2000).unwrap();
        for (r, len) in &all[..1400] {
            j.mark_delivered(r.seq, *len).unwrap();
        }
        assert!(
            std::fs::metadata(&path).unwrap().len() < 1_000_000,
            "compacted"
        );
        let rest = j.pending(2000).unwrap();
        assert_eq!(rest.len(), 100);
        assert_eq!(rest[0].0.seq, 1401);
        drop(j);
        let j = Journal::open(&path, 64 << 20).unwrap();
        assert_eq!(j.pending(2000).unwrap()[0].0.seq, 1401);
    }

    #[test]
    fn the_size_cap_refuses_and_says_so() {
        let path = temp("cap");
        let j = Journal::open(&path, 300).unwrap();
        let mut n = 0;
        while j.append(Kind::Audit, None, "\"0123456789\"".into()).is_ok() {
            n += 1;
        }
        assert!(n > 0 && j.dropped() == 1);
        let p = j.pending(100).unwrap();
        for (r, len) in p {
            j.mark_delivered(r.seq, len).unwrap();
        }
        assert!(
            j.append(Kind::Audit, None, "{}".into()).is_ok(),
            "room again"
        );
    }
}
