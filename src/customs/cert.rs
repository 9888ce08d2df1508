//! What the proxy reads from a card's certificate (base64 DER, as the card hands it out): its
//! algorithm (RSA or SM2, by the certificate's signature algorithm or key), serial, validity,
//! names and public key. Used by the self-check, the CEB verifier and the certificate endpoints.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

/// id-ecPublicKey; with the SM2 curve as its parameter, an SM2 key.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// The SM2 curve (GM/T 0003), and SM2-with-SM3 (GM/T 0006).
const SM2_CURVE: &str = "1.2.156.10197.1.301";
const SM3_WITH_SM2: &str = "1.2.156.10197.1.501";

/// The kind of card, told from its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rsa,
    Sm2,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rsa => "RSA",
            Algorithm::Sm2 => "SM2",
        }
    }
}

/// A certificate, parsed.
#[derive(Clone)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub algorithm: Algorithm,
    /// The serial number in lower-case hex, leading zeros removed.
    pub serial_hex: String,
    pub subject: String,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    /// The subjectPublicKeyInfo, DER (RSA keys), and the key's bit string (the SEC1 point of an
    /// SM2 key).
    pub spki_der: Vec<u8>,
    pub public_key_bits: Vec<u8>,
}

impl fmt::Debug for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CertInfo({} {} {})",
            self.algorithm.name(),
            self.serial_hex,
            self.subject
        )
    }
}

impl CertInfo {
    /// Parses a certificate given as base64 DER (PEM armour and line breaks are allowed).
    pub fn from_base64(text: &str) -> Result<CertInfo, String> {
        let der = B64
            .decode(bare_base64(text).as_bytes())
            .map_err(|_| "the certificate is not base64".to_string())?;
        CertInfo::from_der(&der)
    }

    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let cert =
            Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info();
        let key_oid = spki.algorithm.oid.to_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
            .map(|o| o.to_string());
        let sig_oid = cert.signature_algorithm().oid.to_string();
        let algorithm = if sig_oid == SM3_WITH_SM2
            || (key_oid == EC_PUBLIC_KEY && curve.as_deref() == Some(SM2_CURVE))
        {
            Algorithm::Sm2
        } else {
            Algorithm::Rsa
        };
        let serial = crate::encoding::hex(tbs.serial_number().as_bytes(), false);
        let validity = tbs.validity();
        Ok(CertInfo {
            der: der.to_vec(),
            algorithm,
            serial_hex: trim_hex(&serial),
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            not_before: validity.not_before.to_unix_duration().as_secs(),
            not_after: validity.not_after.to_unix_duration().as_secs(),
            spki_der: spki.to_der().map_err(|e| e.to_string())?,
            public_key_bits: spki.subject_public_key.raw_bytes().to_vec(),
        })
    }

    /// Whether `unix_s` lies within the certificate's validity.
    pub fn valid_at(&self, unix_s: u64) -> bool {
        self.not_before <= unix_s && unix_s <= self.not_after
    }

    /// Whether a KeyName (a certificate number) names this certificate: its serial in hex,
    /// case and leading zeros aside.
    pub fn is_named(&self, key_name: &str) -> bool {
        !key_name.trim().is_empty()
            && trim_hex(&key_name.trim().to_ascii_lowercase()) == self.serial_hex
    }
}

/// A certificate as the card hands it out, PEM armour and line breaks removed.
pub use crate::encoding::pem_body as bare_base64;

fn trim_hex(s: &str) -> String {
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}
