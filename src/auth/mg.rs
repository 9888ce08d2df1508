//! The `x-mg-*` gateway HMAC scheme (Tencent TSF gateway key-pair authentication):
//! `x-mg-sign = Base64(HMAC_alg(secretKey, nonce + secretId + secretKey))`, the algorithm from
//! `x-mg-alg` (0 md5, 1 sha1, 2 sha256, 3 sha512), the client from `x-mg-secretid`.
//!
//! The published form signs no method, path, body or time, so a nonce is accepted once per
//! client and remembered for 24 hours whatever else the request carries. `X-Timestamp` /
//! `Content-Digest` are checked when sent (required with `auth.hmac.require_body_digest`). They
//! are not covered by the signature: they guard against stale and corrupted requests, not
//! against someone who can rewrite headers, so they never shorten how long a nonce is kept (H3:
//! a fresh X-Timestamp once made a captured nonce pass again 6 s later).

use super::replay::ReplayCache;
use super::secret::{MacAlg, Secret, Tag};
use super::{
    AuthError, Authenticated, ClientKey, Clients, RequestParts, check_window, constant_time_eq,
    parse_ms, replay_error,
};
use crate::config::HmacConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// The `x-mg-alg` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgAlg {
    HmacMd5,
    HmacSha1,
    HmacSha256,
    HmacSha512,
}

impl MgAlg {
    pub fn parse(v: &str) -> Option<MgAlg> {
        match v.trim() {
            "0" => Some(MgAlg::HmacMd5),
            "1" => Some(MgAlg::HmacSha1),
            "2" => Some(MgAlg::HmacSha256),
            "3" => Some(MgAlg::HmacSha512),
            _ => None,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            MgAlg::HmacMd5 => "0",
            MgAlg::HmacSha1 => "1",
            MgAlg::HmacSha256 => "2",
            MgAlg::HmacSha512 => "3",
        }
    }
    fn mac(self) -> MacAlg {
        match self {
            MgAlg::HmacMd5 => MacAlg::Md5,
            MgAlg::HmacSha1 => MacAlg::Sha1,
            MgAlg::HmacSha256 => MacAlg::Sha256,
            MgAlg::HmacSha512 => MacAlg::Sha512,
        }
    }
}

/// `HMAC_alg(secretKey, nonce + secretId + secretKey)`, from the secret's cached key state.
fn mg_tag(alg: MgAlg, secret_id: &str, secret: &Secret, nonce: &str) -> Tag {
    secret.mac(
        alg.mac(),
        &[nonce.as_bytes(), secret_id.as_bytes(), secret.bytes()],
    )
}

/// `Base64(HMAC_alg(secretKey, nonce + secretId + secretKey))`; the key is the secret's bytes.
pub fn mg_sign(alg: MgAlg, secret_id: &str, secret: &Secret, nonce: &str) -> String {
    B64.encode(mg_tag(alg, secret_id, secret, nonce).as_bytes())
}

/// Whether `sign` is the request's signature, compared in constant time as base64 encoded on the
/// stack (88 characters hold the longest, HMAC-SHA512).
pub fn mg_matches(alg: MgAlg, secret_id: &str, secret: &Secret, nonce: &str, sign: &str) -> bool {
    let mut buf = [0u8; 88];
    let tag = mg_tag(alg, secret_id, secret, nonce);
    match B64.encode_slice(tag.as_bytes(), &mut buf) {
        Ok(n) => constant_time_eq(sign.as_bytes(), &buf[..n]),
        Err(_) => false,
    }
}

/// Nonces are kept this long (and at most `auth.max_remembered_per_client` of them per client):
/// nothing signed bounds a nonce's life, so this is the scheme's replay window.
pub const NONCE_KEEP_MS: u64 = 24 * 3600 * 1000;

pub struct MgScheme {
    max_skew_ms: u64,
    config: HmacConfig,
    nonces: ReplayCache,
}

impl MgScheme {
    /// `remembered`: nonces kept per client (`auth.max_remembered_per_client`).
    pub fn new(max_skew_ms: u64, config: HmacConfig, remembered: usize) -> MgScheme {
        MgScheme {
            max_skew_ms,
            config,
            nonces: ReplayCache::new(remembered),
        }
    }

    pub fn applies(req: &RequestParts<'_>) -> bool {
        req.header("x-mg-sign").is_some() || req.header("x-mg-secretid").is_some()
    }

    /// What a refused request's response still carries.
    pub fn failure_headers(req: &RequestParts<'_>) -> Vec<(String, String)> {
        let mut h = vec![("x-mg-code".to_string(), "401".to_string())];
        if let Some(t) = req.header("x-mg-traceid") {
            h.push(("x-mg-traceid".into(), t.to_string()));
        }
        h
    }

    pub fn verify(
        &self,
        req: &RequestParts<'_>,
        clients: &Clients,
        now_ms: u64,
    ) -> Result<Authenticated, AuthError> {
        let need = |name: &'static str| {
            req.header(name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or(AuthError::MissingHeader(name))
        };
        let secret_id = need("x-mg-secretid")?;
        let nonce = need("x-mg-nonce")?;
        let sign = need("x-mg-sign")?;
        let alg = MgAlg::parse(need("x-mg-alg")?).ok_or(AuthError::Malformed(
            "x-mg-alg",
            "expected 0 (hmac_md5), 1 (hmac_sha1), 2 (hmac_sha256) or 3 (hmac_sha512)".into(),
        ))?;
        if nonce.len() > 256 {
            return Err(AuthError::Malformed(
                "x-mg-nonce",
                "longer than 256 characters".into(),
            ));
        }
        let secret = clients
            .iter()
            .find(|(id, _)| id == secret_id)
            .and_then(|(_, key)| match key {
                ClientKey::Secret(s) => Some(s),
                ClientKey::Ed25519(_) | ClientKey::Rsa(_) => None,
            })
            .ok_or_else(|| AuthError::UnknownClient(secret_id.to_string()))?;
        let timestamp = req.header("x-timestamp").map(str::trim);
        let digest = req.header("content-digest");
        if self.config.require_body_digest {
            if timestamp.is_none() {
                return Err(AuthError::MissingHeader("X-Timestamp"));
            }
            if digest.is_none() {
                return Err(AuthError::MissingHeader("Content-Digest"));
            }
        }
        if let Some(ts) = timestamp {
            check_window(parse_ms(ts)?, now_ms, self.max_skew_ms)?;
        }
        if let Some(d) = digest {
            super::digest::verify(d, req.body)?;
        }
        if !mg_matches(alg, secret_id, secret, nonce, sign) {
            return Err(AuthError::BadSignature);
        }
        // the timestamp is not signed, so it cannot bound the nonce's life: always the full day
        self.nonces
            .remember(
                secret_id,
                &[&[nonce.as_bytes()]],
                now_ms,
                now_ms.saturating_add(NONCE_KEEP_MS),
            )
            .map_err(replay_error)?;

        let mut ok = Authenticated::client(secret_id.to_string());
        ok.trace_id = req.header("x-mg-traceid").map(str::to_owned);
        if let Some(t) = &ok.trace_id {
            ok.response_headers.push(("x-mg-traceid".into(), t.clone()));
        }
        if self.config.sign_response {
            let response_nonce = uuid::Uuid::new_v4().simple().to_string();
            let signature = mg_sign(alg, secret_id, secret, &response_nonce);
            ok.response_headers.extend([
                ("x-mg-nonce".to_string(), response_nonce),
                ("x-mg-alg".to_string(), alg.code().to_string()),
                ("x-mg-sign".to_string(), signature),
            ]);
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vectors() {
        let set1 = (
            "hKhATL/DHVXXXXgeROMrrQ==",
            "+t9tTMTXXXXUcE+RKOleg==",
            "D7pAR5fqXXXXx1yacuVzdO",
        );
        let set2 = ("sid-0001-demo", "MySecretKey_2024!", "a1b2c3d4e5f60718");
        let cases = [
            (set1, MgAlg::HmacMd5, "usyIqmnY4tUPkpnecjkCRQ=="),
            (set1, MgAlg::HmacSha1, "QM0fG22jVrDjzKFdZ2ex9xlQs4U="),
            (
                set1,
                MgAlg::HmacSha256,
                "vYw2uUjXrKCEs3lWTG9vb878AJzYT9Tf165GEU5g0mI=",
            ),
            (
                set1,
                MgAlg::HmacSha512,
                "okq8TEMu0RBgYM7OVugDsJEQFfVrxt0nDc1TjYh9Ewi8YrvxijOP4fVBetfXDf9xBmPi1d38P4HvGfqgnjVxyQ==",
            ),
            (set2, MgAlg::HmacMd5, "Q72iaIBSrW32nBSdXuIg5Q=="),
            (set2, MgAlg::HmacSha1, "EE6SB1u0JAP3ywHcTyC3EnWysao="),
            (
                set2,
                MgAlg::HmacSha256,
                "9GmJ2lWTlaB85ZibPsdyYteTaX+Z2z4cCRumli7OdFg=",
            ),
            (
                set2,
                MgAlg::HmacSha512,
                "D0nw1it+doVFVV1exJecheMxSM2u030B4wAV4HnD2OjmFCxn9+ZCtu4K4f44wVSS4dXreWUDLDpr3dLKvR3TgQ==",
            ),
        ];
        for ((id, key, nonce), alg, expected) in cases {
            assert_eq!(
                mg_sign(alg, id, &Secret::new(key.as_bytes()), nonce),
                expected,
                "{id} {alg:?}"
            );
        }
    }
}
