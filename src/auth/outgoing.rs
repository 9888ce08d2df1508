//! Signing outgoing calls with any of the schemes: webhooks (so receivers verify them with the code
//! they already have) and the `sign` command (for ERP developers testing by hand).

use super::httpsig::{self, SigningKey};
use super::mg::{MgAlg, mg_sign};
use super::{Scheme, Secret};
use crate::config::ChecksumConfig;
use serde_json::Value;

/// Key material for signing.
pub enum OutKey {
    Secret(Secret),
    Ed25519(ed25519_dalek::SigningKey),
    /// An RSA private key (httpsig rsa-v1_5-sha256).
    Rsa(Box<rsa::PrivateKey>),
}

pub struct Signer {
    pub scheme: Scheme,
    pub key: OutKey,
    /// x-mg-secretid / keyid.
    pub key_id: String,
    pub checksum: ChecksumConfig,
}

/// What to send: extra headers, and the body (changed only by `checksum`).
pub struct Signed {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Scheme, host[:port] and path?query of an http(s) URL.
fn split_url(url: &str) -> Result<(&str, &str, &str, &str), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let (authority, path_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path_query = path_query.split('#').next().unwrap_or("/");
    let (path, query) = match path_query.find('?') {
        Some(i) => (&path_query[..i], &path_query[i..]),
        None => (path_query, ""),
    };
    Ok((scheme, authority, path, query))
}

impl Signer {
    fn secret(&self) -> Result<&Secret, String> {
        match &self.key {
            OutKey::Secret(s) => Ok(s),
            OutKey::Ed25519(_) | OutKey::Rsa(_) => Err(format!(
                "the {} scheme signs with a shared secret",
                self.scheme.name()
            )),
        }
    }

    pub fn sign(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Signed, String> {
        let (url_scheme, authority, path, query) = split_url(url)?;
        let timestamp = now_ms.to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut headers = Vec::new();
        let mut body = body.to_vec();
        match self.scheme {
            Scheme::Md5 => {
                let sig = super::md5_signature(method, path, &timestamp, &body, self.secret()?);
                headers.push(("X-Timestamp".into(), timestamp));
                headers.push(("X-Signature".into(), sig));
            }
            Scheme::Hmac => {
                let secret = self.secret()?;
                let alg = MgAlg::HmacSha256;
                headers.push(("x-mg-secretid".into(), self.key_id.clone()));
                headers.push(("x-mg-alg".into(), alg.code().into()));
                headers.push(("x-mg-nonce".into(), nonce.clone()));
                headers.push((
                    "x-mg-sign".into(),
                    mg_sign(alg, &self.key_id, secret, &nonce),
                ));
                headers.push(("X-Timestamp".into(), timestamp));
                if let Some(d) = super::digest::content_digest("sha-256", &body) {
                    headers.push(("Content-Digest".into(), d));
                }
            }
            Scheme::HttpSig => {
                let key = match &self.key {
                    OutKey::Secret(s) => SigningKey::Hmac(s.clone()),
                    OutKey::Ed25519(k) => SigningKey::Ed25519(k.clone()),
                    OutKey::Rsa(k) => SigningKey::Rsa(k.clone()),
                };
                // the default port of the URL's scheme is omitted from @authority
                let authority = match url_scheme {
                    "https" => authority.strip_suffix(":443").unwrap_or(authority),
                    _ => authority.strip_suffix(":80").unwrap_or(authority),
                };
                let mut h: Vec<(String, String)> = vec![("host".into(), authority.to_string())];
                let mut components = vec!["@method", "@path", "@authority"];
                if !body.is_empty() {
                    let d = super::digest::content_digest("sha-256", &body).unwrap_or_default();
                    h.push(("content-digest".into(), d.clone()));
                    headers.push(("Content-Digest".into(), d));
                    components.push("content-digest");
                }
                let req = super::RequestParts {
                    method,
                    path,
                    query,
                    authority,
                    headers: &h,
                    body: &body,
                };
                let (input, sig) = httpsig::sign(
                    &req,
                    &components,
                    (now_ms / 1000) as i64,
                    Some(&self.key_id),
                    Some(&nonce),
                    &key,
                )
                .map_err(|e| e.to_string())?;
                headers.push(("Signature-Input".into(), input));
                headers.push(("Signature".into(), sig));
            }
            Scheme::Checksum => {
                let secret = self.secret()?;
                let mut obj = match serde_json::from_slice::<Value>(&body) {
                    Ok(Value::Object(o)) => o,
                    _ => return Err("the checksum scheme signs a JSON object body".into()),
                };
                obj.insert(self.checksum.timestamp_field.clone(), Value::from(now_ms));
                obj.insert(self.checksum.nonce_field.clone(), Value::from(nonce));
                obj.remove(&self.checksum.field);
                let sig = super::checksum::sign(&obj, &self.checksum, secret);
                obj.insert(self.checksum.field.clone(), Value::from(sig));
                body = Value::Object(obj).to_string().into_bytes();
            }
        }
        Ok(Signed { headers, body })
    }
}

/// An Ed25519 private key: PKCS#8 PEM, or base64 of the 32-byte seed or of the PKCS#8 DER.
/// An RSA private key, PKCS#8 or PKCS#1 PEM.
pub fn parse_rsa_private(text: &str) -> Result<rsa::PrivateKey, String> {
    super::keys::rsa_private(text)
}

pub fn parse_ed25519_private(text: &str) -> Result<ed25519_dalek::SigningKey, String> {
    use base64::Engine;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return ed25519_dalek::SigningKey::from_pkcs8_pem(text)
            .map_err(|e| format!("not an Ed25519 private key: {e}"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "not base64 or PEM".to_string())?;
    if let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
    }
    ed25519_dalek::SigningKey::from_pkcs8_der(&bytes)
        .map_err(|e| format!("not an Ed25519 private key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Authenticator, RequestParts};
    use crate::config::AuthConfig;

    /// Every scheme's outgoing signature is accepted by the verifier.
    #[test]
    fn each_scheme_round_trips() {
        let now = 1_700_000_000_123u64;
        for &scheme in Scheme::ALL {
            let mut config = AuthConfig {
                scheme: vec![scheme],
                ..AuthConfig::default()
            };
            config.clients.insert(
                "erp".into(),
                crate::config::ClientConfig {
                    secret: "shared-secret".into(),
                    ..Default::default()
                },
            );
            let auth = Authenticator::from_config(&config).unwrap().unwrap();
            let signer = Signer {
                scheme,
                key: OutKey::Secret(Secret::new("shared-secret")),
                key_id: "erp".into(),
                checksum: ChecksumConfig::default(),
            };
            let body = br#"{"_method":"cus-sec_SpcGetCertNo"}"#;
            let signed = signer
                .sign("POST", "http://127.0.0.1:8780/rpc?x=1", body, now)
                .unwrap();
            let mut headers: Vec<(String, String)> = signed
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            headers.push(("host".into(), "127.0.0.1:8780".into()));
            let req = RequestParts {
                method: "POST",
                path: "/rpc",
                query: "?x=1",
                authority: "127.0.0.1:8780",
                headers: &headers,
                body: &signed.body,
            };
            let ok = auth
                .verify(&req, now)
                .unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
            assert_eq!(ok.client, "erp", "{scheme:?}");
            assert_eq!(
                auth.verify(&req, now).unwrap_err(),
                crate::auth::AuthError::Replayed,
                "{scheme:?}"
            );
        }
    }
}
