//! The card's identity answers (#28): which reads describe the inserted card and cannot change
//! while it stays inserted, the per-connection cache of the frames the card gave for them, and
//! the copy of that cache that HTTP workers read without waiting for the UKey thread.
//!
//! The session (`session.rs`) owns the cache and decides when it is filled and dropped; the
//! UKey thread publishes each change into [`Published`], which `Ukey::call` reads, so that an
//! identity read is answered in microseconds even while the card works through a long queue.

use crate::sync::lock;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The reads whose answer describes the card itself and takes no argument (eport-protocol.md,
/// the method table): its certificate number, enterprise name, signing and envelope
/// certificates, and the validity of its own certificate (`SpcGetValidTimeFromCert` without
/// `cert`). Each answer stays the same while the same card stays inserted.
pub const METHODS: &[&str] = &[
    "cus-sec_SpcGetCertNo",
    "cus-sec_SpcGetSignCertAsPEM",
    "cus-sec_SpcGetEnvCertAsPEM",
    "cus-sec_SpcGetEntName",
    "cus-sec_SpcGetValidTimeFromCert",
];

/// The cache key of a call, when it is an identity read: one of [`METHODS`] with no argument
/// but the password (which the proxy injects). A call with any other argument (e.g.
/// `SpcGetValidTimeFromCert` given a `cert`) asks about something else and goes to the card.
pub fn key(method: &str, args: &Map<String, Value>) -> Option<&'static str> {
    let name = METHODS.iter().find(|m| **m == method).copied()?;
    args.keys().all(|k| k == "passwd").then_some(name)
}

/// Error codes meaning the card was pulled or the reader reset: whatever the cache says may
/// describe a card that is gone. `Err:Custom50070` (resetting the reader failed) and
/// `Err:Custom50200` (opening the reader failed) are the protocol notes' (lines 41 and 164);
/// a pulled card shows as `Result: false` with a message (line 42), which the notes do not
/// give a code for: the messages below are the client software's words for "no card".
pub const CARD_GONE_CODES: &[&str] = &["Err:Custom50070", "Err:Custom50200"];
const CARD_GONE_WORDS: &[&str] = &["未检测到卡", "未插", "拔出", "读卡器", "no card"];

/// Whether a reply's errors say the card was pulled or its reader reset.
pub fn card_gone(errors: &[String]) -> Option<String> {
    errors
        .iter()
        .find(|e| {
            CARD_GONE_CODES.iter().any(|c| e.contains(c))
                || CARD_GONE_WORDS.iter().any(|w| e.contains(w))
        })
        .cloned()
}

/// The certificate number in a cached `SpcGetCertNo` frame, or a signature's `Data[1]`, as
/// compared: trimmed, case folded (hex digits may come in either case).
pub fn normal_cert_no(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// The cache as HTTP workers see it: what the UKey thread last published, and a request from
/// a worker to drop it (a self-check failed) that the UKey thread picks up on its next turn.
#[derive(Debug, Default)]
pub struct Published {
    entries: Mutex<HashMap<&'static str, Arc<Value>>>,
    forget: Mutex<Option<String>>,
    forget_asked: AtomicBool,
}

impl Published {
    /// The card's frame for `key`, when cached.
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        lock(&self.entries).get(key).cloned()
    }

    pub fn put(&self, key: &'static str, frame: Arc<Value>) {
        lock(&self.entries).insert(key, frame);
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
    }

    /// The methods cached now, in a fixed order (for `/health`).
    pub fn methods(&self) -> Vec<&'static str> {
        let entries = lock(&self.entries);
        METHODS
            .iter()
            .filter(|m| entries.contains_key(*m))
            .copied()
            .collect()
    }

    /// Drops the cache now, and asks the UKey thread to drop its own.
    pub fn forget(&self, why: String) {
        self.clear();
        *lock(&self.forget) = Some(why);
        self.forget_asked.store(true, Ordering::SeqCst);
    }

    /// Whether a worker asked for the cache to be dropped and the UKey thread has not taken it.
    pub fn forget_pending(&self) -> bool {
        self.forget_asked.load(Ordering::SeqCst)
    }

    /// A worker's request to drop the cache, taken (by the UKey thread).
    pub fn take_forget(&self) -> Option<String> {
        if !self.forget_asked.swap(false, Ordering::SeqCst) {
            return None;
        }
        lock(&self.forget).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_argument_free_identity_reads_are_cached() {
        let none = Map::new();
        assert_eq!(
            key("cus-sec_SpcGetCertNo", &none),
            Some("cus-sec_SpcGetCertNo")
        );
        let Value::Object(pw) = json!({"passwd": "x"}) else {
            unreachable!()
        };
        assert!(key("cus-sec_SpcGetEntName", &pw).is_some());
        let Value::Object(cert) = json!({"cert": "MIIB"}) else {
            unreachable!()
        };
        assert!(key("cus-sec_SpcGetValidTimeFromCert", &cert).is_none());
        assert!(key("cus-sec_SpcSignDataAsPEM", &none).is_none());
    }

    #[test]
    fn card_gone_errors_are_recognised() {
        assert!(card_gone(&["Err:Custom50070".into()]).is_some());
        assert!(card_gone(&["打开读卡器失败 Err:Custom50200".into()]).is_some());
        assert!(card_gone(&["未检测到卡".into(), "Err:Base50000".into()]).is_some());
        assert!(card_gone(&["参数检查失败".into(), "Err:Base50000".into()]).is_none());
    }

    #[test]
    fn a_workers_forget_clears_at_once_and_is_taken_once() {
        let p = Published::default();
        p.put("cus-sec_SpcGetCertNo", Arc::new(json!({})));
        p.forget("self-check".into());
        assert!(p.get("cus-sec_SpcGetCertNo").is_none());
        assert_eq!(p.take_forget().as_deref(), Some("self-check"));
        assert_eq!(p.take_forget(), None);
    }
}
