//! The webhook journal: an append-only file of JSON lines, written before a response is sent, and
//! a marker file holding the `seq` of the last delivered line (and the count of events refused
//! because the journal was full). Crash-only: a process killed at any instant (Task Scheduler
//! uses TerminateProcess) loses nothing written, and delivery resumes after the marker, in order,
//! at least once.
//!
//! The marker names a `seq`, not a byte offset, so compaction (rewriting the file without its
//! delivered head) is safe whenever it is interrupted. It is rewritten at most every
//! `MARKER_EVERY_EVENTS` deliveries or `MARKER_EVERY` (and when delivery goes idle), so a kill
//! re-sends at most that many already-delivered events: duplicates, never losses. Receivers drop
//! them by `X-Webhook-Seq`. Writes are not fsync'ed: they survive the process being killed (the OS
//! has them), not a power cut.
//!
//! Request threads take the writer lock for one `write` of one line. Compaction copies the
//! delivered-past part of the file without the lock, then takes it only to copy what was
//! appended meanwhile and swap the files.

use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
                "the webhook journal is full (webhook.journal_max_bytes = {max_bytes} bytes of undelivered events): the receiver has not accepted events for a long time"
            ),
            JournalError::Io(e) => write!(f, "webhook journal write failed: {e}"),
        }
    }
}

/// The marker is rewritten after this many deliveries at most...
pub const MARKER_EVERY_EVENTS: u64 = 64;
/// ...or once this much time has passed since a delivery it does not record yet.
pub const MARKER_EVERY: Duration = Duration::from_millis(200);

struct Writer {
    /// `None` only while compaction swaps the file.
    file: Option<File>,
    next_seq: u64,
    len: u64,
}

/// What the marker file on disk says, and what it does not say yet (the sender's alone).
struct MarkerState {
    written_seq: u64,
    written_dropped: u64,
    unwritten: u64,
    /// When the oldest delivery not on disk yet happened.
    dirty_since: Option<Instant>,
}

pub struct Journal {
    path: PathBuf,
    marker: PathBuf,
    max_bytes: u64,
    writer: Mutex<Writer>,
    /// `Writer::len`, readable without the lock (for the room check before a request is served).
    len: AtomicU64,
    /// Records appended since the journal was opened: the sender compares it before it sleeps.
    appended: AtomicU64,
    delivered_seq: AtomicU64,
    /// Byte offset of the first undelivered line (kept by the sender).
    read_offset: AtomicU64,
    /// Events refused because the journal was full, since the journal was created (persisted in
    /// the marker).
    dropped: AtomicU64,
    /// Refused since the journal last had room (for the log line when it has room again).
    dropped_while_full: AtomicU64,
    full: AtomicBool,
    /// When "full" was last logged (at most once per `FULL_LOG_EVERY`), and whether this
    /// episode's was (then its "room again" is logged too).
    full_logged: Mutex<(Option<Instant>, bool)>,
    marker_state: Mutex<MarkerState>,
}

/// The journal's full / room-again lines are logged at most this often (they flapped once per
/// event when large records were refused and small ones fitted).
const FULL_LOG_EVERY: Duration = Duration::from_secs(60);

/// The marker's two numbers: the last delivered seq, and events dropped. An old marker holds the
/// seq only.
fn read_marker(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut n = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    let seq = n.next().flatten().unwrap_or(0);
    let dropped = n.next().flatten().unwrap_or(0);
    (seq, dropped)
}

/// After a holder of the writer lock panicked mid-append: trust the file's length, and end a
/// torn line so that the next record starts on a line of its own (the fragment is skipped as
/// unreadable).
fn repair_writer(w: &mut Writer) {
    if let Some(file) = w.file.as_mut()
        && let Ok(meta) = file.metadata()
    {
        if meta.len() > w.len {
            let _ = file.write_all(b"\n");
            // the line may be whole with its seq taken: never hand that seq out twice
            w.next_seq += 1;
        }
        w.len = file.metadata().map(|m| m.len()).unwrap_or(meta.len());
    }
}

/// Copies `len` bytes from `src` to `dst` in 64 KiB steps, handing the core to any request
/// thread that is ready between them: copied in one system call, half a 64 MiB journal held the
/// core for milliseconds ahead of signed calls (benches/audit.rs).
fn copy_yielding(src: &mut File, dst: &mut File, mut len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while len > 0 {
        let step = len.min(buf.len() as u64) as usize;
        let n = src.read(&mut buf[..step])?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        len -= n as u64;
        std::thread::yield_now();
    }
    Ok(())
}

impl Journal {
    /// Opens (or creates) the journal at `path`, its marker beside it (`<path>.delivered`).
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let marker = PathBuf::from(format!("{}.delivered", path.display()));
        let (delivered, dropped) = read_marker(&marker);
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
            len: AtomicU64::new(good_len),
            appended: AtomicU64::new(0),
            delivered_seq: AtomicU64::new(delivered),
            read_offset: AtomicU64::new(offset.unwrap_or(good_len)),
            dropped: AtomicU64::new(dropped),
            dropped_while_full: AtomicU64::new(0),
            full: AtomicBool::new(false),
            full_logged: Mutex::new((None, false)),
            marker_state: Mutex::new(MarkerState {
                written_seq: delivered,
                written_dropped: dropped,
                unwritten: 0,
                dirty_since: None,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn undelivered_bytes(&self, len: u64) -> u64 {
        len.saturating_sub(self.read_offset.load(Ordering::SeqCst))
    }

    /// Whether a record of about `bytes` would fit now (checked before a request is served, so
    /// that one whose audit record cannot be kept is refused before the card is used).
    pub fn has_room_for(&self, bytes: u64) -> Result<(), JournalError> {
        let undelivered = self.undelivered_bytes(self.len.load(Ordering::SeqCst));
        if undelivered + bytes > self.max_bytes {
            self.refused();
            return Err(JournalError::Full {
                max_bytes: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Counts one refused event, and says so once when the journal becomes full.
    fn refused(&self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
        self.dropped_while_full.fetch_add(1, Ordering::SeqCst);
        if !self.full.swap(true, Ordering::SeqCst) && self.may_log_full() {
            self.dropped_while_full.store(1, Ordering::SeqCst);
            log::error!(
                "{}; requests that must be audited are refused with 507 until it has room again ({})",
                JournalError::Full {
                    max_bytes: self.max_bytes
                },
                self.path.display()
            );
        }
    }

    /// Whether "full" may be logged for the episode starting now (and if so, that it is).
    fn may_log_full(&self) -> bool {
        let mut logged = crate::sync::lock(&self.full_logged);
        let now = Instant::now();
        let may = logged
            .0
            .is_none_or(|t| now.duration_since(t) >= FULL_LOG_EVERY);
        if may {
            logged.0 = Some(now);
        }
        logged.1 = may;
        may
    }

    /// Appends one record; returns its seq. The lock is held for the file write only.
    pub fn append(
        &self,
        kind: Kind,
        request_id: Option<&str>,
        body: String,
    ) -> Result<u64, JournalError> {
        let mut w = crate::sync::lock_repair(&self.writer, repair_writer);
        let record = Record {
            seq: w.next_seq,
            kind,
            request_id: request_id.map(str::to_owned),
            body,
        };
        let line = record.to_line();
        let undelivered = self.undelivered_bytes(w.len);
        if undelivered + line.len() as u64 > self.max_bytes {
            drop(w);
            self.refused();
            return Err(JournalError::Full {
                max_bytes: self.max_bytes,
            });
        }
        // "room again" only below three quarters of the cap, so that the log says full / room
        // again once per episode, not once per event at the edge
        if self.full.load(Ordering::Relaxed)
            && (undelivered + line.len() as u64) < self.max_bytes / 4 * 3
            && self.full.swap(false, Ordering::SeqCst)
            && std::mem::take(&mut crate::sync::lock(&self.full_logged).1)
        {
            log::warn!(
                "webhook journal has room again; {} event(s) were refused while it was full",
                self.dropped_while_full.swap(0, Ordering::SeqCst)
            );
        }
        let file = w
            .file
            .as_mut()
            .ok_or_else(|| JournalError::Io(io::Error::other("journal not open")))?;
        file.write_all(line.as_bytes()).map_err(JournalError::Io)?;
        w.len += line.len() as u64;
        w.next_seq += 1;
        self.len.store(w.len, Ordering::SeqCst);
        self.appended.fetch_add(1, Ordering::SeqCst);
        Ok(record.seq)
    }

    /// Bytes not delivered yet, without taking the writer's lock.
    pub fn undelivered(&self) -> u64 {
        self.undelivered_bytes(self.len.load(Ordering::SeqCst))
    }

    /// The cap on undelivered bytes (`webhook.journal_max_bytes`).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// How many records were appended since the journal was opened.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::SeqCst)
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

    /// Records `seq` as delivered (or given up on) and moves past its `len` bytes. The marker on
    /// disk follows within `MARKER_EVERY_EVENTS` / `MARKER_EVERY` (see `flush_marker`).
    pub fn mark_delivered(&self, seq: u64, len: u64) -> io::Result<()> {
        self.delivered_seq.store(seq, Ordering::SeqCst);
        self.read_offset.fetch_add(len, Ordering::SeqCst);
        let due = {
            let mut m = crate::sync::lock(&self.marker_state);
            m.unwritten += 1;
            let since = *m.dirty_since.get_or_insert_with(Instant::now);
            m.unwritten >= MARKER_EVERY_EVENTS || since.elapsed() >= MARKER_EVERY
        };
        if due {
            self.flush_marker()?;
        }
        self.compact_if_due()
    }

    /// How long until the marker must be written (`None`: it says everything already). The
    /// sender wakes for it.
    pub fn marker_due_in(&self) -> Option<Duration> {
        let m = crate::sync::lock(&self.marker_state);
        if m.written_dropped != self.dropped.load(Ordering::SeqCst) {
            return Some(Duration::ZERO);
        }
        m.dirty_since
            .map(|since| MARKER_EVERY.saturating_sub(since.elapsed()))
    }

    /// Writes the marker if it is behind: atomically (write then rename).
    pub fn flush_marker(&self) -> io::Result<()> {
        let mut m = crate::sync::lock(&self.marker_state);
        let seq = self.delivered_seq.load(Ordering::SeqCst);
        let dropped = self.dropped.load(Ordering::SeqCst);
        if m.written_seq == seq && m.written_dropped == dropped {
            m.unwritten = 0;
            m.dirty_since = None;
            return Ok(());
        }
        let tmp = PathBuf::from(format!("{}.tmp", self.marker.display()));
        std::fs::write(&tmp, format!("{seq} {dropped}\n"))?;
        std::fs::rename(&tmp, &self.marker)?;
        m.written_seq = seq;
        m.written_dropped = dropped;
        m.unwritten = 0;
        m.dirty_since = None;
        Ok(())
    }

    /// Rewrites the file without its delivered head once that head is large. The bulk copy runs
    /// without the writer lock; appends made meanwhile are copied under it, then the files swap.
    fn compact_if_due(&self) -> io::Result<()> {
        let offset = self.read_offset.load(Ordering::SeqCst);
        if offset < COMPACT_AFTER_BYTES {
            return Ok(());
        }
        let snapshot = self.len.load(Ordering::SeqCst);
        if offset < snapshot / 2 {
            return Ok(()); // mostly undelivered: copying it now would be wasted work
        }
        let tmp = PathBuf::from(format!("{}.compact", self.path.display()));
        let mut src = File::open(&self.path)?;
        src.seek(SeekFrom::Start(offset))?;
        let mut dst = File::create(&tmp)?;
        copy_yielding(&mut src, &mut dst, snapshot - offset)?;
        let mut w = crate::sync::lock_repair(&self.writer, repair_writer);
        // what was appended since the snapshot (appends write under this lock, so the end of
        // the file is `w.len` now)
        io::copy(&mut src, &mut dst)?;
        drop(src);
        drop(dst);
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
        self.len.store(w.len, Ordering::SeqCst);
        self.read_offset.store(0, Ordering::SeqCst);
        drop(w);
        log::debug!("webhook journal compacted ({offset} delivered bytes removed)");
        Ok(())
    }

    /// Undelivered events and bytes.
    pub fn backlog(&self) -> (u64, u64) {
        let (next, len) = {
            let w = crate::sync::lock_repair(&self.writer, repair_writer);
            (w.next_seq, w.len)
        };
        let delivered = self.delivered_seq.load(Ordering::SeqCst);
        let offset = self.read_offset.load(Ordering::SeqCst);
        (
            next.saturating_sub(delivered + 1),
            len.saturating_sub(offset),
        )
    }

    /// Events not recorded because the journal was full (kept across restarts).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for Journal {
    /// A clean stop leaves the marker exact (only a kill leaves it behind, by the bound above).
    fn drop(&mut self) {
        if let Err(e) = self.flush_marker() {
            log::error!("webhooks: cannot update the journal marker: {e}");
        }
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
    #[test]
    fn the_marker_lags_by_at_most_its_bound_and_a_kill_only_repeats() {
        let path = temp("marker");
        let j = Journal::open(&path, 1 << 20).unwrap();
        for _ in 0..100 {
            j.append(Kind::Audit, None, "{}".into()).unwrap();
        }
        for (r, len) in j.pending(100).unwrap() {
            j.mark_delivered(r.seq, len).unwrap();
        }
        let marker = PathBuf::from(format!("{}.delivered", path.display()));
        let (on_disk, _) = read_marker(&marker);
        assert!(100 - on_disk < MARKER_EVERY_EVENTS, "marker at {on_disk}");
        // a kill now (no Drop) re-sends what the marker does not cover, and nothing else
        std::mem::forget(j);
        let j = Journal::open(&path, 1 << 20).unwrap();
        let again = j.pending(200).unwrap();
        assert_eq!(again.len() as u64, 100 - on_disk);
        assert!(again.iter().all(|(r, _)| r.seq > on_disk));
    }

    #[test]
    fn the_dropped_count_survives_a_restart() {
        let path = temp("dropped");
        let j = Journal::open(&path, 200).unwrap();
        while j.append(Kind::Audit, None, "\"0123456789\"".into()).is_ok() {}
        assert!(j.has_room_for(1000).is_err());
        assert_eq!(j.dropped(), 2);
        assert_eq!(j.marker_due_in(), Some(Duration::ZERO));
        j.flush_marker().unwrap();
        std::mem::forget(j);
        let j = Journal::open(&path, 200).unwrap();
        assert_eq!(j.dropped(), 2);
    }

    #[test]
    fn appends_made_while_compacting_are_kept() {
        let path = temp("compact-race");
        let j = std::sync::Arc::new(Journal::open(&path, 64 << 20).unwrap());
        let body = "y".repeat(1000);
        for _ in 0..1200 {
            j.append(Kind::Audit, None, format!("\"{body}\"")).unwrap();
        }
        let writer = {
            let j = j.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    j.append(Kind::Audit, None, "{}".into()).unwrap();
                }
            })
        };
        for (r, len) in j.pending(1200).unwrap() {
            j.mark_delivered(r.seq, len).unwrap();
        }
        writer.join().unwrap();
        let rest = j.pending(5000).unwrap();
        let seqs: Vec<u64> = rest.iter().map(|(r, _)| r.seq).collect();
        assert_eq!(seqs, (1201..=3200).collect::<Vec<_>>());
        assert!(
            std::fs::metadata(&path).unwrap().len() < 1_000_000,
            "compacted"
        );
    }
}
