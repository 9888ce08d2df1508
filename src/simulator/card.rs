//! The simulated card's key material: an RSA key and self-signed certificates that say
//! "SIMULATOR" in their subject, kept in one PEM file so that they survive restarts. It signs as RSA
//! cards do: PKCS#1 v1.5 with SHA-1.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::{PrivateKey, PublicKey};
use sha1::{Digest, Sha1};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use x509_cert::Certificate;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};
use x509_cert::time::Validity;

/// Real cards use 1024- or 2048-bit RSA keys.
const KEY_BITS: usize = 2048;
pub use crate::ukey::SIMULATOR_MARK;
const SIGN_SUBJECT: &str =
    "CN=chinaport-proxy UKey SIMULATOR - not valid at customs,OU=signing,O=SIMULATOR";
const ENV_SUBJECT: &str =
    "CN=chinaport-proxy UKey SIMULATOR - not valid at customs,OU=envelope,O=SIMULATOR";
const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The key and the two certificates (signing, envelope) of one simulated card.
pub struct Card {
    key: PrivateKey,
    sign_cert: Vec<u8>,
    env_cert: Vec<u8>,
}

/// A self-signed certificate with a fixed subject and no extensions.
struct SelfSigned(Name);

impl BuilderProfile for SelfSigned {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }
    fn get_subject(&self) -> Name {
        self.0.clone()
    }
    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(Vec::new())
    }
}

impl Card {
    /// Loads the card from `path`, or makes a new one and saves it there (written to a temporary
    /// file and renamed, so a half-written file is never read).
    pub fn load_or_create(path: &Path) -> Result<Card, String> {
        if path.is_file() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return Card::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
        let card = Card::generate()?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, card.to_pem()?)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot save the simulator key to {}: {e}", path.display()))?;
        // another process may have won the race: use what is on disk
        match std::fs::read_to_string(path) {
            Ok(text) => Card::from_pem(&text),
            Err(_) => Ok(card),
        }
    }

    /// A new key and certificates (takes a moment: RSA key generation).
    pub fn generate() -> Result<Card, String> {
        let mut rng = getrandom::SysRng;
        let key = PrivateKey::new(&mut rng, KEY_BITS).map_err(|e| e.to_string())?;
        let sign_cert = self_signed(&key, SIGN_SUBJECT, 1)?;
        let env_cert = self_signed(&key, ENV_SUBJECT, 2)?;
        Ok(Card {
            key,
            sign_cert,
            env_cert,
        })
    }

    fn to_pem(&self) -> Result<String, String> {
        let key = self.key.to_pkcs8_der().map_err(|e| e.to_string())?;
        Ok([
            pem_block("PRIVATE KEY", key.as_bytes()),
            pem_block("CERTIFICATE", &self.sign_cert),
            pem_block("CERTIFICATE", &self.env_cert),
        ]
        .concat())
    }

    fn from_pem(text: &str) -> Result<Card, String> {
        let blocks = pem_blocks(text)?;
        let [(k, key), (c1, sign_cert), (c2, env_cert)] = <[_; 3]>::try_from(blocks)
            .map_err(|_| "expected a private key and two certificates".to_string())?;
        if k != "PRIVATE KEY" || c1 != "CERTIFICATE" || c2 != "CERTIFICATE" {
            return Err("expected a private key and two certificates".into());
        }
        let key = PrivateKey::from_pkcs8_der(&key).map_err(|e| e.to_string())?;
        Certificate::from_der(&sign_cert).map_err(|e| e.to_string())?;
        Ok(Card {
            key,
            sign_cert,
            env_cert,
        })
    }

    /// The certificate number: the signing certificate's serial as 8 hex digits, derived from
    /// the public key so it stays the same for the same key.
    pub fn cert_no(&self) -> String {
        let spki = self.public_key_der();
        let digest = Sha1::digest(&spki);
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn public_key_der(&self) -> Vec<u8> {
        SubjectPublicKeyInfo::from_key(self.key.as_public_key())
            .and_then(|spki| spki.to_der().map_err(Into::into))
            .unwrap_or_default()
    }

    /// Signing certificate as base64 DER without PEM lines, as the card hands it out.
    pub fn sign_cert_b64(&self) -> String {
        B64.encode(&self.sign_cert)
    }

    pub fn env_cert_b64(&self) -> String {
        B64.encode(&self.env_cert)
    }

    pub fn sign_cert_der(&self) -> &[u8] {
        &self.sign_cert
    }

    /// PKCS#1 v1.5 signature with SHA-1 over `data`, base64.
    pub fn sign(&self, data: &[u8]) -> Result<String, String> {
        self.key
            .pkcs1v15_sign::<Sha1>(data)
            .map(|s| B64.encode(s))
            .map_err(|e| e.to_string())
    }

    /// PKCS#1 v1.5 signature over a SHA-1 digest given by the caller, base64.
    pub fn sign_digest(&self, digest: &[u8]) -> Result<String, String> {
        if digest.len() != 20 {
            return Err(format!("a SHA-1 digest has 20 bytes, got {}", digest.len()));
        }
        self.key
            .pkcs1v15_sign_prehash::<Sha1>(digest)
            .map(|s| B64.encode(s))
            .map_err(|e| e.to_string())
    }

    /// Verifies a base64 signature over `data`, with `cert_der` or this card's certificate.
    pub fn verify(
        &self,
        data: &[u8],
        signature_b64: &str,
        cert_der: Option<&[u8]>,
    ) -> Result<(), String> {
        let signature = B64
            .decode(signature_b64.trim())
            .map_err(|_| "signData is not base64".to_string())?;
        let public = match cert_der {
            Some(der) => public_key_of(der)?,
            None => self.key.to_public_key(),
        };
        public
            .pkcs1v15_verify::<Sha1>(data, &signature)
            .map_err(|_| "验证签名失败 (signature does not verify)".to_string())
    }

    /// Validity of the signing certificate as the card reports it.
    pub fn validity(&self) -> Result<(String, String), String> {
        let cert = Certificate::from_der(&self.sign_cert).map_err(|e| e.to_string())?;
        let v = &cert.tbs_certificate().validity();
        Ok((v.not_before.to_string(), v.not_after.to_string()))
    }
}

/// The RSA public key inside a certificate (DER).
pub fn public_key_of(cert_der: &[u8]) -> Result<PublicKey, String> {
    let cert = Certificate::from_der(cert_der).map_err(|e| format!("bad certificate: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    use rsa::pkcs8::DecodePublicKey;
    PublicKey::from_public_key_der(&spki).map_err(|e| format!("not an RSA certificate: {e}"))
}

fn self_signed(key: &PrivateKey, subject: &str, serial: u32) -> Result<Vec<u8>, String> {
    let name = Name::from_str(subject).map_err(|e| e.to_string())?;
    let spki = SubjectPublicKeyInfo::from_key(key.as_public_key()).map_err(|e| e.to_string())?;
    let validity = Validity::from_now(TEN_YEARS).map_err(|e| e.to_string())?;
    let builder =
        CertificateBuilder::new(SelfSigned(name), SerialNumber::from(serial), validity, spki)
            .map_err(|e| e.to_string())?;
    let signer: SigningKey<Sha1> = SigningKey::new(key.clone());
    let cert = builder
        .build::<_, rsa::pkcs1v15::Signature>(&signer)
        .map_err(|e| e.to_string())?;
    cert.to_der().map_err(|e| e.to_string())
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            let (label, b64) = current.take().ok_or("END without BEGIN")?;
            let der = B64
                .decode(b64)
                .map_err(|e| format!("bad base64 in {label}: {e}"))?;
            blocks.push((label, der));
        } else if let Some((_, b64)) = current.as_mut() {
            b64.push_str(line);
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_key_and_certificates() {
        let card = Card::generate().unwrap();
        let again = Card::from_pem(&card.to_pem().unwrap()).unwrap();
        assert_eq!(card.sign_cert, again.sign_cert);
        assert_eq!(card.cert_no(), again.cert_no());
        let sig = card.sign(b"hello").unwrap();
        assert_eq!(
            sig,
            again.sign(b"hello").unwrap(),
            "PKCS#1 v1.5 is deterministic"
        );
        // verifies with the certificate it hands out
        let pk = public_key_of(&again.sign_cert).unwrap();
        let raw = B64.decode(sig).unwrap();
        pk.pkcs1v15_verify::<Sha1>(b"hello", &raw).unwrap();
        assert!(
            card.verify(b"hello", &card.sign(b"hello").unwrap(), None)
                .is_ok()
        );
        assert!(
            card.verify(b"other", &card.sign(b"hello").unwrap(), None)
                .is_err()
        );
        // the digest form agrees with hashing by the key
        let d = Sha1::digest(b"hello");
        assert_eq!(card.sign_digest(&d).unwrap(), card.sign(b"hello").unwrap());
        // and the subject says what it is
        let cert = Certificate::from_der(&card.sign_cert).unwrap();
        assert!(
            cert.tbs_certificate()
                .subject()
                .to_string()
                .contains(SIMULATOR_MARK)
        );
    }
}
