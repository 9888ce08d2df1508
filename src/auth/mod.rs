//! Request authentication: the four signature schemes (`md5`, `hmac` x-mg gateway headers,
//! `httpsig` RFC 9421 with RFC 9530 digests, `checksum` sorted fields in the body), the Java
//! signer's bearer `token`, the client key material they check against, and signing of outgoing
//! calls (webhooks, the `sign` command).

pub mod checksum;
pub mod digest;
pub mod exposure;
pub mod httpsig;
pub mod keys;
pub mod md5;
pub mod mg;
pub mod outgoing;
pub mod replay;
pub mod secret;
pub mod token;

use crate::config::AuthConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt;

pub use crate::config::Scheme;
pub use md5::{md5_matches, md5_signature};
pub use secret::Secret;

pub use crate::ct::constant_time_eq;
pub use crate::encoding::{decode_hex, hex};

/// A client's key material.
#[derive(Clone)]
pub enum ClientKey {
    /// A shared secret (md5, hmac, httpsig hmac-sha256, checksum).
    Secret(Secret),
    /// An Ed25519 public key (httpsig ed25519).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// An RSA public key of at least 2048 bits (httpsig rsa-v1_5-sha256, rsa-pss-sha512).
    Rsa(Box<rsa::PublicKey>),
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::Secret(_) => write!(f, "Secret(***)"),
            ClientKey::Ed25519(k) => write!(f, "Ed25519({})", B64.encode(k.as_bytes())),
            ClientKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts;
                write!(f, "Rsa({} bits)", k.size() * 8)
            }
        }
    }
}

/// Every client, by id. `auth.app_secret` is the client `default`.
pub type Clients = Vec<(String, ClientKey)>;

/// The id under which `auth.app_secret` is known.
pub const DEFAULT_CLIENT: &str = "default";

/// The parts of a request the schemes look at.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
    /// With its leading `?`, or empty.
    pub query: &'a str,
    /// The `Host` header, as sent.
    pub authority: &'a str,
    /// Lower-cased names, in order, repeated fields as they came.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl<'a> RequestParts<'a> {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_values(&self, name: &str) -> Vec<&'a str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[cfg(test)]
    pub fn for_tests(
        method: &'a str,
        path: &'a str,
        query: &'a str,
        authority: &'a str,
        headers: &'a [(String, String)],
        body: &'a [u8],
    ) -> RequestParts<'a> {
        RequestParts {
            method,
            path,
            query,
            authority,
            headers,
            body,
        }
    }
}

/// Who a request came from, and what the scheme wants changed about its handling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Authenticated {
    pub client: String,
    pub scheme: Option<Scheme>,
    /// The caller's trace id (`x-mg-traceid`), used in logs and audit.
    pub trace_id: Option<String>,
    /// The body to hand on, when the scheme changed it (checksum removes its signature field).
    pub body: Option<Vec<u8>>,
    /// Headers to add to the response (x-mg-code, x-mg-traceid, a response signature).
    pub response_headers: Vec<(String, String)>,
}

impl Authenticated {
    pub fn client(id: String) -> Authenticated {
        Authenticated {
            client: id,
            ..Authenticated::default()
        }
    }
}

/// Why a request was not authenticated. The message says which rule failed, never the expected
/// signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials of any accepted scheme.
    NoCredentials(String),
    MissingHeader(&'static str),
    Malformed(&'static str, String),
    MalformedTimestamp,
    OutsideWindow {
        skew_ms: i128,
        max_skew_ms: u64,
    },
    Expired,
    BadSignature,
    BadDigest(String),
    Replayed,
    ReplayCacheFull,
    UnknownClient(String),
    Unsupported(String),
    MissingComponent(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NoCredentials(expected) => {
                write!(f, "no credentials; expected {expected}")
            }
            AuthError::MissingHeader(h) => write!(f, "missing {h} header"),
            AuthError::Malformed(what, why) => write!(f, "malformed {what}: {why}"),
            AuthError::MalformedTimestamp => {
                write!(
                    f,
                    "malformed X-Timestamp: expected milliseconds since the epoch, digits without a leading 0"
                )
            }
            AuthError::OutsideWindow {
                skew_ms,
                max_skew_ms,
            } => write!(
                f,
                "timestamp is outside the allowed window: {skew_ms} ms from server time, at most {max_skew_ms} ms allowed"
            ),
            AuthError::Expired => write!(f, "signature has expired"),
            AuthError::BadSignature => write!(f, "bad signature"),
            AuthError::BadDigest(why) => write!(f, "content digest does not match the body: {why}"),
            AuthError::Replayed => {
                write!(
                    f,
                    "replayed request: this signature or nonce was already used"
                )
            }
            AuthError::ReplayCacheFull => write!(
                f,
                "too many signed requests in the time window; retry in a few seconds"
            ),
            AuthError::UnknownClient(id) => write!(f, "unknown client id {id:?}"),
            AuthError::Unsupported(what) => write!(f, "unsupported {what}"),
            AuthError::MissingComponent(c) => {
                write!(f, "the signature must cover {c}")
            }
        }
    }
}

// ---- rules every scheme shares: timestamps, the window, replays ----

/// Milliseconds since the epoch, digits only and none leading with 0: md5 signs the timestamp
/// run together with the path, so a leading zero (which keeps the value) would let a path's final
/// 0 move into it under the same signature.
pub fn parse_ms(timestamp: &str) -> Result<u64, AuthError> {
    if timestamp.is_empty()
        || timestamp.len() > 16
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
        || (timestamp.len() > 1 && timestamp.starts_with('0'))
    {
        return Err(AuthError::MalformedTimestamp);
    }
    timestamp.parse().map_err(|_| AuthError::MalformedTimestamp)
}

/// `ts` within `max_skew_ms` of `now`, either way.
pub fn check_window(ts_ms: u64, now_ms: u64, max_skew_ms: u64) -> Result<(), AuthError> {
    let skew_ms = i128::from(ts_ms) - i128::from(now_ms);
    if skew_ms.unsigned_abs() > u128::from(max_skew_ms) {
        return Err(AuthError::OutsideWindow {
            skew_ms,
            max_skew_ms,
        });
    }
    Ok(())
}

pub fn replay_error(r: replay::Replay) -> AuthError {
    match r {
        replay::Replay::Seen => AuthError::Replayed,
        replay::Replay::Full => AuthError::ReplayCacheFull,
    }
}

/// What a request of each scheme must carry, for the "no credentials" error.
impl Scheme {
    fn credentials(self) -> &'static str {
        match self {
            Scheme::Md5 => "X-Timestamp and X-Signature (md5)",
            Scheme::Hmac => "x-mg-secretid, x-mg-nonce, x-mg-sign (hmac)",
            Scheme::HttpSig => "Signature-Input and Signature (httpsig)",
            Scheme::Checksum => "a signature field in the JSON body (checksum)",
            Scheme::Token => "x-auth-token-eport-sign (token)",
        }
    }
}

/// Parses key material: a secret string, or an Ed25519 public key in PEM (SPKI) or base64 (32 raw
/// bytes or SPKI DER).
pub fn parse_ed25519_public(text: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return ed25519_dalek::VerifyingKey::from_public_key_pem(text)
            .map_err(|e| format!("not an Ed25519 public key in PEM: {e}"));
    }
    let bytes = B64
        .decode(text)
        .map_err(|_| "not base64 or PEM".to_string())?;
    if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map_err(|e| format!("not an Ed25519 public key: {e}"));
    }
    ed25519_dalek::VerifyingKey::from_public_key_der(&bytes)
        .map_err(|e| format!("not an Ed25519 public key (32 bytes or SPKI DER): {e}"))
}

/// A public key: Ed25519 (PEM, or base64 of the 32 bytes or of the SPKI DER), or RSA (SPKI or
/// PKCS#1, PEM or base64, at least 2048 bits). The key's type decides which algorithms it may
/// sign with.
pub fn parse_public_key(text: &str) -> Result<ClientKey, String> {
    if let Ok(k) = parse_ed25519_public(text) {
        return Ok(ClientKey::Ed25519(k));
    }
    use rsa::traits::PublicKeyParts;
    let key = keys::rsa_public(text).map_err(|_| {
        "neither an Ed25519 nor an RSA public key (SPKI \"PUBLIC KEY\" or PKCS#1 \"RSA PUBLIC KEY\", PEM or base64)".to_string()
    })?;
    if key.size() * 8 < 2048 {
        return Err(format!(
            "an RSA key of {} bits; at least 2048 are needed",
            key.size() * 8
        ));
    }
    Ok(ClientKey::Rsa(Box::new(key)))
}

/// Every client of the configuration with its decoded key material; `app_secret` is the client
/// `default`. An error names the client and what is wrong with its key.
pub fn clients_of(config: &AuthConfig) -> Result<Clients, String> {
    let mut out = Vec::new();
    if !config.app_secret.is_empty() {
        out.push((
            DEFAULT_CLIENT.to_string(),
            ClientKey::Secret(Secret::new(config.app_secret.as_bytes())),
        ));
    }
    for (id, c) in &config.clients {
        let given = [
            !c.secret.is_empty(),
            !c.secret_base64.is_empty(),
            !c.public_key.is_empty(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(format!(
                "client {id:?}: give exactly one of secret, secret_base64, public_key"
            ));
        }
        let key = if !c.secret.is_empty() {
            ClientKey::Secret(Secret::new(c.secret.as_bytes()))
        } else if !c.secret_base64.is_empty() {
            let bytes = B64
                .decode(c.secret_base64.trim())
                .map_err(|_| format!("client {id:?}: secret_base64 is not base64"))?;
            ClientKey::Secret(Secret::new(bytes))
        } else {
            parse_public_key(&c.public_key)
                .map_err(|e| format!("client {id:?}: public_key: {e}"))?
        };
        out.push((id.clone(), key));
    }
    Ok(out)
}

/// Checks requests against the configured schemes and clients.
pub struct Authenticator {
    schemes: Vec<Scheme>,
    clients: Clients,
    md5: md5::Md5Scheme,
    mg: mg::MgScheme,
    httpsig: httpsig::HttpSigScheme,
    checksum: checksum::ChecksumScheme,
}

impl Authenticator {
    /// `None` when authentication is off (no secret and no client).
    pub fn from_config(config: &AuthConfig) -> Result<Option<Authenticator>, String> {
        let clients = clients_of(config)?;
        if clients.is_empty() {
            return Ok(None);
        }
        let kept = config.max_remembered_per_client;
        Ok(Some(Authenticator {
            schemes: config.schemes().to_vec(),
            clients,
            md5: md5::Md5Scheme::new(config.max_skew_ms, kept),
            mg: mg::MgScheme::new(config.max_skew_ms, config.hmac.clone(), kept),
            httpsig: httpsig::HttpSigScheme::new(config.max_skew_ms, kept),
            checksum: checksum::ChecksumScheme::new(
                config.max_skew_ms,
                config.checksum.clone(),
                kept,
            ),
        }))
    }

    pub fn schemes(&self) -> &[Scheme] {
        &self.schemes
    }

    /// Verifies a request. With one scheme configured, that scheme judges it (and says exactly
    /// what is missing); with several, the one whose signature the request carries, looked for
    /// from the most specific headers to the least (x-mg, Signature-Input, X-Signature, a body
    /// field: an x-mg request may also carry X-Timestamp).
    pub fn verify(&self, req: &RequestParts<'_>, now_ms: u64) -> Result<Authenticated, AuthError> {
        let chosen = match self.schemes.as_slice() {
            [only] => Some(*only),
            // the token's own header first: it is the most specific of all
            _ => [
                Scheme::Token,
                Scheme::Hmac,
                Scheme::HttpSig,
                Scheme::Md5,
                Scheme::Checksum,
            ]
            .into_iter()
            .filter(|s| self.schemes.contains(s))
            .find(|s| match s {
                Scheme::Token => token::TokenScheme::applies(req),
                Scheme::Md5 => md5::Md5Scheme::applies(req),
                Scheme::Hmac => mg::MgScheme::applies(req),
                Scheme::HttpSig => httpsig::HttpSigScheme::applies(req),
                Scheme::Checksum => self.checksum.applies(req),
            }),
        };
        let Some(scheme) = chosen else {
            return Err(AuthError::NoCredentials(
                self.schemes
                    .iter()
                    .map(|s| s.credentials())
                    .collect::<Vec<_>>()
                    .join(", or "),
            ));
        };
        let mut ok = match scheme {
            Scheme::Md5 => self.md5.verify(req, &self.clients, now_ms),
            Scheme::Hmac => self.mg.verify(req, &self.clients, now_ms),
            Scheme::HttpSig => self.httpsig.verify(req, &self.clients, now_ms),
            Scheme::Checksum => self.checksum.verify(req, &self.clients, now_ms),
            Scheme::Token => token::TokenScheme::verify(req, &self.clients),
        }?;
        ok.scheme = Some(scheme);
        Ok(ok)
    }

    /// Headers the response carries on failure too (x-mg-code, the trace id echoed).
    pub fn failure_headers(&self, req: &RequestParts<'_>) -> Vec<(String, String)> {
        if self.schemes.contains(&Scheme::Hmac) && mg::MgScheme::applies(req) {
            mg::MgScheme::failure_headers(req)
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_in_every_form() {
        // RFC 9421 B.1.4 test-key-ed25519
        let spki = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{spki}\n-----END PUBLIC KEY-----\n");
        let a = parse_ed25519_public(spki).unwrap();
        let b = parse_ed25519_public(&pem).unwrap();
        let c = parse_ed25519_public(&B64.encode(a.as_bytes())).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(parse_ed25519_public("not a key").is_err());
        assert!(parse_ed25519_public("AAAA").is_err());
    }

    #[test]
    fn client_keys_are_parsed_and_bad_ones_named() {
        let parse = |text: &str| {
            let c = crate::config::parse(text.as_bytes(), std::path::Path::new("c.json")).unwrap();
            clients_of(&c.auth)
        };
        let ok = parse(
            r#"{"auth":{"scheme":["md5","httpsig"],"clients":{
            "erp":{"secret":"s"},
            "gw":{"public_key":"MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs="}}}}"#,
        );
        assert_eq!(ok.unwrap().len(), 2);
        let e = parse(r#"{"auth":{"clients":{"erp-7":{"public_key":"nope"}}}}"#).unwrap_err();
        assert!(e.contains("erp-7") && e.contains("public_key"), "{e}");
        let e = parse(r#"{"auth":{"clients":{"x":{"secret":"a","public_key":"b"}}}}"#).unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
    }
}
