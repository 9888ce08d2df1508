//! The MD5 scheme of the original proxy: `X-Signature = hex(MD5(METHOD + PATH + TIMESTAMP + BODY +
//! SECRET))` with `X-Timestamp` in milliseconds, a time window either way, replay protection (the
//! original lacked it) and constant-time comparison.

use super::replay::ReplayCache;
use super::{
    AuthError, Authenticated, ClientKey, Clients, RequestParts, check_window, constant_time_eq,
    parse_ms, replay_error,
};
use md5::{Digest, Md5};

/// `hex(MD5(METHOD + PATH + TIMESTAMP + BODY + SECRET))`, lower-case; METHOD is upper-cased.
pub fn md5_signature(
    method: &str,
    path: &str,
    timestamp: &str,
    body: &[u8],
    secret: impl AsRef<[u8]>,
) -> String {
    super::hex(
        &digest(method, path, timestamp, body, secret.as_ref()),
        false,
    )
}

/// Whether `given` (16 bytes) is the signature of the request under `secret`, in constant time.
pub fn md5_matches(
    method: &str,
    path: &str,
    timestamp: &str,
    body: &[u8],
    secret: &[u8],
    given: &[u8],
) -> bool {
    constant_time_eq(given, &digest(method, path, timestamp, body, secret))
}

fn digest(method: &str, path: &str, timestamp: &str, body: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        h.update(method.to_ascii_uppercase().as_bytes());
    } else {
        h.update(method.as_bytes()); // the usual case: no copy
    }
    h.update(path.as_bytes());
    h.update(timestamp.as_bytes());
    h.update(body);
    h.update(secret);
    h.finalize().into()
}

/// Checks requests signed with the MD5 scheme, against every client secret.
pub struct Md5Scheme {
    max_skew_ms: u64,
    replay: ReplayCache,
}

impl Md5Scheme {
    /// `remembered`: signatures kept per client (`auth.max_remembered_per_client`).
    pub fn new(max_skew_ms: u64, remembered: usize) -> Md5Scheme {
        Md5Scheme {
            max_skew_ms,
            replay: ReplayCache::new(remembered),
        }
    }

    /// Whether the request carries this scheme's signature.
    pub fn applies(req: &RequestParts<'_>) -> bool {
        req.header("x-signature").is_some()
    }

    pub fn verify(
        &self,
        req: &RequestParts<'_>,
        clients: &Clients,
        now_ms: u64,
    ) -> Result<Authenticated, AuthError> {
        let timestamp = req
            .header("x-timestamp")
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let signature = req
            .header("x-signature")
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let timestamp = timestamp.ok_or(AuthError::MissingHeader("X-Timestamp"))?;
        let signature = signature.ok_or(AuthError::MissingHeader("X-Signature"))?;
        let ts = parse_ms(timestamp)?;
        // the method is signed run together with the path: a path that starts with `/` (as every
        // request target this server routes does) is where the method ends, so no letter of
        // the method can pass for the path's
        if !req.path.starts_with('/') {
            return Err(AuthError::Malformed(
                "request path",
                "the md5 scheme signs a path that starts with /".into(),
            ));
        }
        let mut given = [0u8; 16];
        let given = super::decode_hex(signature, &mut given).ok_or(AuthError::Malformed(
            "X-Signature",
            "expected 32 hex digits (MD5)".into(),
        ))?;
        check_window(ts, now_ms, self.max_skew_ms)?;
        // every client holding a shared secret may sign; the first that matches is the caller
        let client = clients
            .iter()
            .filter_map(|(id, key)| match key {
                ClientKey::Secret(s) => Some((id, s)),
                ClientKey::Ed25519(_) | ClientKey::Rsa(_) => None,
            })
            .find(|(_, secret)| {
                md5_matches(
                    req.method,
                    req.path,
                    timestamp,
                    req.body,
                    secret.bytes(),
                    given,
                )
            })
            .map(|(id, _)| id.clone())
            .ok_or(AuthError::BadSignature)?;
        // there is no nonce: the signature itself is remembered until its signed timestamp
        // leaves the window
        self.replay
            .remember(
                &client,
                &[&[given]],
                now_ms,
                ts.saturating_add(self.max_skew_ms),
            )
            .map_err(replay_error)?;
        Ok(Authenticated::client(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn clients() -> Clients {
        vec![(
            "default".to_string(),
            ClientKey::Secret(crate::auth::Secret::new(b"s3cret".to_vec())),
        )]
    }

    fn verify(
        scheme: &Md5Scheme,
        ts: Option<&str>,
        sig: Option<&str>,
        body: &str,
        now: u64,
    ) -> Result<Authenticated, AuthError> {
        let mut headers = Vec::new();
        if let Some(t) = ts {
            headers.push(("x-timestamp".to_string(), t.to_string()));
        }
        if let Some(s) = sig {
            headers.push(("x-signature".to_string(), s.to_string()));
        }
        let req = RequestParts::for_tests("POST", "/rpc", "", "h", &headers, body.as_bytes());
        scheme.verify(&req, &clients(), now)
    }

    fn sign(ts: u64, body: &str) -> String {
        md5_signature("POST", "/rpc", &ts.to_string(), body.as_bytes(), "s3cret")
    }

    #[test]
    fn accepts_once_then_rejects_replay_in_either_case() {
        let s = Md5Scheme::new(3000, 100);
        let sig = sign(NOW, "{}");
        let ts = NOW.to_string();
        assert_eq!(
            verify(&s, Some(&ts), Some(&sig), "{}", NOW).unwrap().client,
            "default"
        );
        let upper = sig.to_uppercase();
        assert_eq!(
            verify(&s, Some(&ts), Some(&upper), "{}", NOW + 10).unwrap_err(),
            AuthError::Replayed
        );
        let s = Md5Scheme::new(3000, 100);
        assert!(
            verify(&s, Some(&ts), Some(&upper), "{}", NOW).is_ok(),
            "upper-case hex"
        );
    }

    #[test]
    fn each_rule_has_its_reason() {
        let s = Md5Scheme::new(3000, 100);
        let ts = NOW.to_string();
        let sig = sign(NOW, "{}");
        let e = |ts: Option<&str>, sig: Option<&str>, body: &str, now: u64| {
            verify(&s, ts, sig, body, now).unwrap_err()
        };
        assert_eq!(
            e(None, Some(&sig), "{}", NOW),
            AuthError::MissingHeader("X-Timestamp")
        );
        assert_eq!(
            e(Some(&ts), None, "{}", NOW),
            AuthError::MissingHeader("X-Signature")
        );
        assert_eq!(
            e(Some("12a"), Some(&sig), "{}", NOW),
            AuthError::MalformedTimestamp
        );
        assert!(matches!(
            e(Some(&ts), Some("xyz"), "{}", NOW),
            AuthError::Malformed(..)
        ));
        assert!(matches!(
            e(Some(&ts), Some(&sig), "{}", NOW + 3001),
            AuthError::OutsideWindow { .. }
        ));
        assert!(matches!(
            e(Some(&ts), Some(&sig), "{}", NOW - 3001),
            AuthError::OutsideWindow { .. }
        ));
        assert_eq!(
            e(Some(&ts), Some(&sig), "{ }", NOW),
            AuthError::BadSignature
        );
        assert!(!AuthError::BadSignature.to_string().contains(&sig));
    }

    /// The signed string runs its fields together, so bytes moved across a boundary keep the
    /// signature: a leading zero kept the timestamp's value while the path lost its final 0,
    /// and a method's last letter could become the path's first (found by tests/fuzz_auth.rs).
    #[test]
    fn moving_bytes_between_signed_fields_is_refused() {
        let s = Md5Scheme::new(3000, 100);
        let ts = NOW.to_string();
        let sig = md5_signature("POST", "/api/orders/100", &ts, b"{}", "s3cret");
        let check = |method: &str, path: &str, ts: &str| {
            let headers = vec![
                ("x-timestamp".to_string(), ts.to_string()),
                ("x-signature".to_string(), sig.clone()),
            ];
            let req = RequestParts::for_tests(method, path, "", "h", &headers, b"{}");
            s.verify(&req, &clients(), NOW)
        };
        assert_eq!(
            check("POST", "/api/orders/10", &format!("0{ts}")).unwrap_err(),
            AuthError::MalformedTimestamp
        );
        assert!(matches!(
            check("POS", "T/api/orders/100", &ts).unwrap_err(),
            AuthError::Malformed("request path", _)
        ));
        assert_eq!(
            check("POST", "/api/orders/100", &ts).unwrap().client,
            "default"
        );
    }
}
