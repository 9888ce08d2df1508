//! Checking what a card signed against its signing certificate, the way customs will: RSA
//! PKCS#1 v1.5 over SHA-1, or SM2 over SM3 with the default user ID `1234567812345678`
//! (GM/T 0009), the signature as raw `r || s` (what cards return) or DER.

use super::cert::{Algorithm, CertInfo};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt;

/// The default SM2 user ID (GM/T 0009) that cards and customs use.
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    NotBase64,
    /// The signature's shape does not fit the key (length, encoding).
    Malformed(String),
    /// The certificate's key cannot be used (not RSA, not an SM2 point).
    BadKey(String),
    /// Well-formed, but made with another key or over other data.
    Mismatch,
}

impl fmt::Display for SigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigError::NotBase64 => write!(f, "the signature is not base64"),
            SigError::Malformed(why) => write!(f, "the signature is malformed: {why}"),
            SigError::BadKey(why) => write!(f, "the certificate's public key is unusable: {why}"),
            SigError::Mismatch => write!(
                f,
                "the signature does not verify against the certificate's public key"
            ),
        }
    }
}

/// Verifies `signature_b64` over `data` with the certificate's key.
pub fn verify(cert: &CertInfo, data: &[u8], signature_b64: &str) -> Result<(), SigError> {
    let sig = B64
        .decode(signature_b64.trim())
        .map_err(|_| SigError::NotBase64)?;
    match cert.algorithm {
        Algorithm::Rsa => verify_rsa(cert, data, &sig),
        Algorithm::Sm2 => verify_sm2(cert, data, &sig),
    }
}

fn verify_rsa(cert: &CertInfo, data: &[u8], sig: &[u8]) -> Result<(), SigError> {
    use rsa::pkcs8::DecodePublicKey;
    let key = rsa::PublicKey::from_public_key_der(&cert.spki_der)
        .map_err(|e| SigError::BadKey(e.to_string()))?;
    key.pkcs1v15_verify::<sha1::Sha1>(data, sig)
        .map_err(|_| SigError::Mismatch)
}

fn verify_sm2(cert: &CertInfo, data: &[u8], sig: &[u8]) -> Result<(), SigError> {
    use sm2::dsa::signature::Verifier;
    let key = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DEFAULT_ID, &cert.public_key_bits)
        .map_err(|_| SigError::BadKey("not an SM2 public key".into()))?;
    let signature = match sig.len() {
        64 => sm2::dsa::Signature::from_slice(sig),
        _ => sm2::dsa::Signature::from_der(sig),
    }
    .map_err(|_| {
        SigError::Malformed(format!(
            "{} bytes, neither raw r||s (64 bytes) nor DER",
            sig.len()
        ))
    })?;
    key.verify(data, &signature).map_err(|_| SigError::Mismatch)
}
