//! Request authentication, MD5 scheme: `X-Signature = hex(MD5(METHOD + PATH + TIMESTAMP + BODY +
//! SECRET))` with `X-Timestamp` in milliseconds, a time window, replay protection and constant-time
//! comparison. Also signs outgoing webhooks the same way.

use md5::{Digest, Md5};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;

/// Signatures remembered at most; past that, new requests are refused until old ones expire
/// (refusing is safe, forgetting a live signature would reopen a replay).
pub const REPLAY_CAPACITY: usize = 100_000;

/// Why a request was not authenticated. The message says which rule failed, never the expected
/// signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    MissingTimestamp,
    MissingSignature,
    MalformedTimestamp,
    MalformedSignature,
    OutsideWindow { skew_ms: i128, max_skew_ms: u64 },
    BadSignature,
    Replayed,
    ReplayCacheFull,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingTimestamp => write!(f, "missing X-Timestamp header"),
            AuthError::MissingSignature => write!(f, "missing X-Signature header"),
            AuthError::MalformedTimestamp => {
                write!(
                    f,
                    "malformed X-Timestamp: expected milliseconds since the epoch"
                )
            }
            AuthError::MalformedSignature => {
                write!(f, "malformed X-Signature: expected 32 hex digits (MD5)")
            }
            AuthError::OutsideWindow {
                skew_ms,
                max_skew_ms,
            } => write!(
                f,
                "X-Timestamp is outside the allowed window: {skew_ms} ms from server time, at most {max_skew_ms} ms allowed"
            ),
            AuthError::BadSignature => write!(f, "bad signature"),
            AuthError::Replayed => write!(f, "replayed request: this signature was already used"),
            AuthError::ReplayCacheFull => write!(
                f,
                "too many signed requests in the time window; retry in a few seconds"
            ),
        }
    }
}

/// `hex(MD5(METHOD + PATH + TIMESTAMP + BODY + SECRET))`, lower-case.
pub fn md5_signature(
    method: &str,
    path: &str,
    timestamp: &str,
    body: &[u8],
    secret: &str,
) -> String {
    let mut h = Md5::new();
    h.update(method.to_ascii_uppercase().as_bytes());
    h.update(path.as_bytes());
    h.update(timestamp.as_bytes());
    h.update(body);
    h.update(secret.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Accepted signatures still inside the window, oldest first. Each is kept for twice the skew
/// window after it was accepted, which covers the rest of its timestamp's validity whatever side
/// of server time it was on.
#[derive(Default)]
struct ReplayCache {
    seen: HashSet<[u8; 16]>,
    order: VecDeque<([u8; 16], u64)>,
}

impl ReplayCache {
    /// Records `sig` at `now`; false when it was already there.
    fn insert(&mut self, sig: [u8; 16], now: u64, keep_ms: u64) -> Result<(), AuthError> {
        while let Some(&(old, at)) = self.order.front() {
            if now.saturating_sub(at) <= keep_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.contains(&sig) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= REPLAY_CAPACITY {
            return Err(AuthError::ReplayCacheFull);
        }
        self.seen.insert(sig);
        self.order.push_back((sig, now));
        Ok(())
    }
}

/// Checks MD5-signed requests.
pub struct Md5Auth {
    secret: String,
    max_skew_ms: u64,
    replay: Mutex<ReplayCache>,
}

impl Md5Auth {
    pub fn new(secret: &str, max_skew_ms: u64) -> Md5Auth {
        Md5Auth {
            secret: secret.to_string(),
            max_skew_ms,
            replay: Mutex::new(ReplayCache::default()),
        }
    }

    /// Verifies one request. `path` is without the query string; `now_ms` is server time.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), AuthError> {
        let timestamp = timestamp.map(str::trim).filter(|t| !t.is_empty());
        let signature = signature.map(str::trim).filter(|s| !s.is_empty());
        let timestamp = timestamp.ok_or(AuthError::MissingTimestamp)?;
        let signature = signature.ok_or(AuthError::MissingSignature)?;
        if timestamp.len() > 16 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::MalformedTimestamp);
        }
        let ts: u64 = timestamp
            .parse()
            .map_err(|_| AuthError::MalformedTimestamp)?;
        let given = decode_hex16(signature).ok_or(AuthError::MalformedSignature)?;
        let skew_ms = i128::from(ts) - i128::from(now_ms);
        if skew_ms.unsigned_abs() > u128::from(self.max_skew_ms) {
            return Err(AuthError::OutsideWindow {
                skew_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        let expected = md5_signature(method, path, timestamp, body, &self.secret);
        let expected = decode_hex16(&expected).ok_or(AuthError::BadSignature)?;
        if !constant_time_eq(&given, &expected) {
            return Err(AuthError::BadSignature);
        }
        let mut cache = self.replay.lock().map_err(|_| AuthError::ReplayCacheFull)?;
        cache.insert(given, now_ms, 2 * self.max_skew_ms)
    }
}

/// 32 hex digits (either case) to 16 bytes.
fn decode_hex16(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn sign(ts: u64, body: &str) -> String {
        md5_signature("POST", "/rpc", &ts.to_string(), body.as_bytes(), "s3cret")
    }

    #[test]
    fn known_vector() {
        // MD5("POST/rpc1700000000000{}s3cret")
        let expected: String = Md5::digest(b"POST/rpc1700000000000{}s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sign(NOW, "{}"), expected);
        assert_eq!(
            md5_signature("post", "/rpc", "1700000000000", b"{}", "s3cret"),
            expected
        );
    }

    #[test]
    fn accepts_once_then_rejects_replay() {
        let auth = Md5Auth::new("s3cret", 3000);
        let sig = sign(NOW, "{}");
        let ts = NOW.to_string();
        assert_eq!(
            auth.verify("POST", "/rpc", Some(&ts), Some(&sig), b"{}", NOW),
            Ok(())
        );
        assert_eq!(
            auth.verify("POST", "/rpc", Some(&ts), Some(&sig), b"{}", NOW + 10),
            Err(AuthError::Replayed)
        );
        // upper-case hex is the same signature, so a replay too
        let upper = sig.to_uppercase();
        assert_eq!(
            auth.verify("POST", "/rpc", Some(&ts), Some(&upper), b"{}", NOW + 10),
            Err(AuthError::Replayed)
        );
    }

    #[test]
    fn accepts_upper_case_hex() {
        let auth = Md5Auth::new("s3cret", 3000);
        let sig = sign(NOW, "{}").to_uppercase();
        let ts = NOW.to_string();
        assert_eq!(
            auth.verify("POST", "/rpc", Some(&ts), Some(&sig), b"{}", NOW),
            Ok(())
        );
    }

    #[test]
    fn each_rule_has_its_reason() {
        let auth = Md5Auth::new("s3cret", 3000);
        let ts = NOW.to_string();
        let sig = sign(NOW, "{}");
        let v = |ts: Option<&str>, sig: Option<&str>, body: &str, now: u64| {
            auth.verify("POST", "/rpc", ts, sig, body.as_bytes(), now)
        };
        assert_eq!(
            v(None, Some(&sig), "{}", NOW),
            Err(AuthError::MissingTimestamp)
        );
        assert_eq!(
            v(Some(&ts), None, "{}", NOW),
            Err(AuthError::MissingSignature)
        );
        assert_eq!(
            v(Some("12a"), Some(&sig), "{}", NOW),
            Err(AuthError::MalformedTimestamp)
        );
        assert_eq!(
            v(Some(&ts), Some("xyz"), "{}", NOW),
            Err(AuthError::MalformedSignature)
        );
        assert!(matches!(
            v(Some(&ts), Some(&sig), "{}", NOW + 3001),
            Err(AuthError::OutsideWindow { .. })
        ));
        assert!(matches!(
            v(Some(&ts), Some(&sig), "{}", NOW - 3001),
            Err(AuthError::OutsideWindow { .. })
        ));
        assert_eq!(
            v(Some(&ts), Some(&sig), "{ }", NOW),
            Err(AuthError::BadSignature)
        );
        let other = md5_signature("POST", "/rpc", &ts, b"{}", "other");
        assert_eq!(
            v(Some(&ts), Some(&other), "{}", NOW),
            Err(AuthError::BadSignature)
        );
        // the message never carries the expected signature
        let msg = AuthError::BadSignature.to_string();
        assert!(!msg.contains(&sig));
    }

    #[test]
    fn the_replay_cache_forgets_expired_and_is_bounded() {
        let mut cache = ReplayCache::default();
        cache.insert([1; 16], 0, 6000).unwrap();
        assert_eq!(cache.insert([1; 16], 6000, 6000), Err(AuthError::Replayed));
        // long after, it is gone (and the timestamp window rejects it anyway)
        cache.insert([1; 16], 6001, 6000).unwrap();
        assert_eq!(cache.seen.len(), 1);
        let mut cache = ReplayCache::default();
        for i in 0..REPLAY_CAPACITY {
            let mut sig = [0u8; 16];
            sig[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(sig, 0, 6000).unwrap();
        }
        assert_eq!(
            cache.insert([9; 16], 1, 6000),
            Err(AuthError::ReplayCacheFull)
        );
        cache.insert([9; 16], 6001, 6000).unwrap();
        assert_eq!(cache.seen.len(), 1);
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
