//! The receipt watcher thread: polls the inbox (change notifications do not work on network
//! shares or under wine), reads a file once its size held across two polls, delivers each
//! receipt once as a signed `receipt` webhook through the journal, then moves the file to
//! `processed` (or deletes it). An unreadable file goes to `failed` and is reported once by the
//! failure webhook `receipt_unreadable`; it is never retried and never lost.

use super::Transfer;
use crate::webhook::Webhooks;
use crossbeam_channel::Receiver;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

pub fn spawn(
    transfer: Arc<Transfer>,
    webhooks: Webhooks,
    stop: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("transfer-inbox".into())
        .spawn(move || run(&transfer, &webhooks, &stop))
}

fn run(t: &Transfer, hooks: &Webhooks, stop: &Receiver<()>) {
    for dir in [&t.folders.processed, &t.folders.failed] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            log::error!("transfer: cannot create {}: {e}", dir.display());
        }
    }
    let mut last: HashMap<PathBuf, u64> = HashMap::new();
    let mut missing_logged = false;
    loop {
        match scan(&t.folders.inbox) {
            Ok(now) => {
                missing_logged = false;
                let mut next = HashMap::new();
                for (path, size) in now {
                    if last.get(&path) == Some(&size) {
                        handle(t, hooks, &path);
                    } else {
                        next.insert(path, size);
                    }
                }
                last = next;
            }
            Err(e) => {
                if !missing_logged {
                    log::warn!(
                        "transfer: cannot read the inbox {}: {e}",
                        t.folders.inbox.display()
                    );
                    missing_logged = true;
                }
            }
        }
        if !matches!(
            stop.recv_timeout(t.poll),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}

/// The candidate files and their sizes, sorted: `*.xml`, not dot-files (another writer's temp
/// files), not empty. Also the simulated transfer client's look at the outbox.
pub(crate) fn scan(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !name.to_ascii_lowercase().ends_with(".xml") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() && meta.len() > 0 {
            out.push((entry.path(), meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

fn handle(t: &Transfer, hooks: &Webhooks, path: &Path) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        // locked by the client on Windows, say: the next poll tries again
        Err(e) => {
            log::debug!("transfer: {name} not readable yet: {e}");
            return;
        }
    };
    match super::receipt::parse(&bytes, &name) {
        Ok(events) => {
            let mut delivered = 0;
            for ev in events {
                if ev.ids.iter().any(|id| t.store.seen(id)) {
                    continue;
                }
                // not journaled: the file stays in the inbox and is tried again next poll
                if let Err(e) = hooks.receipt(ev.body.clone()) {
                    log::error!("transfer: receipt {name} kept in the inbox: {e}");
                    return;
                }
                if let Err(e) = t.store.record_receipt(&ev.ids, &ev.body) {
                    log::error!("transfer: {e}");
                }
                delivered += 1;
            }
            log::info!("transfer: receipt {name}: {delivered} new event(s)");
            if t.delete_processed {
                if let Err(e) = std::fs::remove_file(path) {
                    log::error!("transfer: cannot delete {name}: {e}");
                }
            } else {
                move_to(path, &t.folders.processed);
            }
        }
        Err(why) => {
            let error = format!(
                "the receipt file {name} cannot be read: {why}; it was moved to {}",
                t.folders.failed.display()
            );
            log::error!("transfer: {error}");
            let moved = move_to(path, &t.folders.failed);
            hooks.failure_with(
                "receipt_unreadable",
                &error,
                "transfer.receipt",
                std::slice::from_ref(&why),
                None,
                json!({"file": name, "moved_to": moved.map(|p| p.display().to_string())}),
            );
        }
    }
}

/// Moves `path` into `dir` (copy and delete across volumes), under a fresh name if taken.
pub(crate) fn move_to(path: &Path, dir: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy().to_string();
    let mut target = dir.join(&name);
    if target.exists() {
        target = dir.join(format!("{}_{name}", crate::ukey::now_ms()));
    }
    let moved = std::fs::rename(path, &target)
        .or_else(|_| std::fs::copy(path, &target).and_then(|_| std::fs::remove_file(path)));
    match moved {
        Ok(()) => Some(target),
        Err(e) => {
            log::error!(
                "transfer: cannot move {} to {}: {e}",
                path.display(),
                dir.display()
            );
            None
        }
    }
}
