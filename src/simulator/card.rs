//! The simulated card's key material: an SM2 key (the default, as cards issued since mid-2022
//! are) or an RSA key, and self-signed certificates that say "SIMULATOR" in their subject, kept
//! in one PEM file so that they survive restarts. It signs as such cards do: SM2 over SM3 with
//! the default user ID, answered as raw `r || s`; or RSA PKCS#1 v1.5 with SHA-1.

use crate::customs::cardsig::SM2_DEFAULT_ID;
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
use x509_cert::spki::{EncodePublicKey, SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};
use x509_cert::time::Validity;

/// Which kind of card the simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CardKind {
    /// SM2 with SM3: cards issued since mid-2022, most cards in use.
    #[default]
    Sm2,
    /// RSA with SHA-1: older cards.
    Rsa,
}

impl CardKind {
    pub fn parse(s: &str) -> Option<CardKind> {
        match s.to_ascii_lowercase().as_str() {
            "sm2" => Some(CardKind::Sm2),
            "rsa" => Some(CardKind::Rsa),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CardKind::Sm2 => "sm2",
            CardKind::Rsa => "rsa",
        }
    }
}

/// The card's private key.
enum Key {
    Rsa(Box<PrivateKey>),
    Sm2(Box<sm2::dsa::SigningKey>),
}

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
    key: Key,
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
    pub fn load_or_create(path: &Path, kind: CardKind) -> Result<Card, String> {
        if path.is_file() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return Card::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
        let card = Card::generate(kind)?;
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

    /// A new key and certificates (an RSA key takes a moment), valid for ten years.
    pub fn generate(kind: CardKind) -> Result<Card, String> {
        Card::generate_valid(kind, None)
    }

    /// A new card whose certificates end `days` days from now (negative: already expired), for
    /// testing how expiry is watched; `None`: ten years.
    pub fn generate_valid(kind: CardKind, days: Option<i64>) -> Result<Card, String> {
        let mut rng = getrandom::SysRng;
        let key = match kind {
            CardKind::Rsa => Key::Rsa(Box::new(
                PrivateKey::new(&mut rng, KEY_BITS).map_err(|e| e.to_string())?,
            )),
            CardKind::Sm2 => {
                let secret = random_sm2_key()?;
                Key::Sm2(Box::new(
                    sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret)
                        .map_err(|e| e.to_string())?,
                ))
            }
        };
        let serial = serial_of(&public_key_der(&key));
        let validity = validity(days)?;
        let sign_cert = self_signed(&key, SIGN_SUBJECT, serial, validity)?;
        let env_cert = self_signed(&key, ENV_SUBJECT, serial.wrapping_add(1), validity)?;
        Ok(Card {
            key,
            sign_cert,
            env_cert,
        })
    }

    pub fn kind(&self) -> CardKind {
        match self.key {
            Key::Rsa(_) => CardKind::Rsa,
            Key::Sm2(_) => CardKind::Sm2,
        }
    }

    fn to_pem(&self) -> Result<String, String> {
        let key = match &self.key {
            Key::Rsa(k) => k
                .to_pkcs8_der()
                .map_err(|e| e.to_string())?
                .as_bytes()
                .to_vec(),
            Key::Sm2(k) => sm2::SecretKey::from_bytes(&k.to_bytes())
                .map_err(|e| e.to_string())?
                .to_pkcs8_der()
                .map_err(|e| e.to_string())?
                .as_bytes()
                .to_vec(),
        };
        Ok([
            pem_block("PRIVATE KEY", &key),
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
        let key = match PrivateKey::from_pkcs8_der(&key) {
            Ok(rsa) => Key::Rsa(Box::new(rsa)),
            Err(_) => {
                let secret = sm2::SecretKey::from_pkcs8_der(&key)
                    .map_err(|e| format!("neither an RSA nor an SM2 key: {e}"))?;
                Key::Sm2(Box::new(
                    sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret)
                        .map_err(|e| e.to_string())?,
                ))
            }
        };
        Certificate::from_der(&sign_cert).map_err(|e| e.to_string())?;
        Ok(Card {
            key,
            sign_cert,
            env_cert,
        })
    }

    /// The certificate number: 8 hex digits derived from the public key (so it stays the same
    /// for the same key), which is also the signing certificate's serial.
    pub fn cert_no(&self) -> String {
        format!("{:08x}", serial_of(&public_key_der(&self.key)))
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

    /// The card's signature over `data`, base64: RSA PKCS#1 v1.5 with SHA-1, or SM2 over SM3
    /// with the default user ID as raw `r || s` (64 bytes), as SM2 cards answer.
    pub fn sign(&self, data: &[u8]) -> Result<String, String> {
        match &self.key {
            Key::Rsa(k) => k
                .pkcs1v15_sign::<Sha1>(data)
                .map(|s| B64.encode(s))
                .map_err(|e| e.to_string()),
            Key::Sm2(k) => {
                use sm2::dsa::signature::Signer;
                let sig: sm2::dsa::Signature = k.try_sign(data).map_err(|e| e.to_string())?;
                Ok(B64.encode(sig.to_bytes()))
            }
        }
    }

    /// A signature over a digest given by the caller (SHA-1 for RSA, the SM3 hash e for SM2).
    pub fn sign_digest(&self, digest: &[u8]) -> Result<String, String> {
        match &self.key {
            Key::Rsa(k) => {
                if digest.len() != 20 {
                    return Err(format!("a SHA-1 digest has 20 bytes, got {}", digest.len()));
                }
                k.pkcs1v15_sign_prehash::<Sha1>(digest)
                    .map(|s| B64.encode(s))
                    .map_err(|e| e.to_string())
            }
            Key::Sm2(k) => {
                use sm2::dsa::signature::hazmat::PrehashSigner;
                let sig: sm2::dsa::Signature = k.sign_prehash(digest).map_err(|e| e.to_string())?;
                Ok(B64.encode(sig.to_bytes()))
            }
        }
    }

    /// Verifies a base64 signature over `data`, with `cert_der` or this card's certificate.
    pub fn verify(
        &self,
        data: &[u8],
        signature_b64: &str,
        cert_der: Option<&[u8]>,
    ) -> Result<(), String> {
        let cert = crate::customs::cert::CertInfo::from_der(cert_der.unwrap_or(&self.sign_cert))
            .map_err(|e| format!("bad certificate: {e}"))?;
        crate::customs::cardsig::verify(&cert, data, signature_b64)
            .map_err(|e| format!("验证签名失败 ({e})"))
    }

    /// Validity of the signing certificate as the card reports it.
    pub fn validity(&self) -> Result<(String, String), String> {
        let cert = Certificate::from_der(&self.sign_cert).map_err(|e| e.to_string())?;
        let v = &cert.tbs_certificate().validity();
        Ok((v.not_before.to_string(), v.not_after.to_string()))
    }
}

/// A fresh SM2 private key from the OS's random source.
fn random_sm2_key() -> Result<sm2::SecretKey, String> {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
        // a value of 0 or at least the group order is rejected; draw again (p ~ 2^-32)
        if let Ok(key) = sm2::SecretKey::from_slice(&bytes) {
            return Ok(key);
        }
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

fn public_key_der(key: &Key) -> Vec<u8> {
    match key {
        Key::Rsa(k) => SubjectPublicKeyInfo::from_key(k.as_public_key())
            .and_then(|spki| spki.to_der().map_err(Into::into))
            .unwrap_or_default(),
        Key::Sm2(k) => k
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default(),
    }
}

/// 32 bits of the public key's SHA-1: the certificate number and serial.
fn serial_of(spki_der: &[u8]) -> u32 {
    let d = Sha1::digest(spki_der);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Ten years from now, or from a year before the end to `days` days from now.
fn validity(days: Option<i64>) -> Result<Validity, String> {
    let Some(days) = days else {
        return Validity::from_now(TEN_YEARS).map_err(|e| e.to_string());
    };
    let now = std::time::SystemTime::now();
    let shift = |d: i64| {
        let by = Duration::from_secs(d.unsigned_abs() * 86_400);
        if d >= 0 { now + by } else { now - by }
    };
    let time =
        |t: std::time::SystemTime| x509_cert::time::Time::try_from(t).map_err(|e| e.to_string());
    Ok(Validity::new(time(shift(days - 365))?, time(shift(days))?))
}

fn self_signed(
    key: &Key,
    subject: &str,
    serial: u32,
    validity: Validity,
) -> Result<Vec<u8>, String> {
    let name = Name::from_str(subject).map_err(|e| e.to_string())?;
    let serial = SerialNumber::from(serial);
    let cert = match key {
        Key::Rsa(k) => {
            let spki =
                SubjectPublicKeyInfo::from_key(k.as_public_key()).map_err(|e| e.to_string())?;
            let builder = CertificateBuilder::new(SelfSigned(name), serial, validity, spki)
                .map_err(|e| e.to_string())?;
            let signer: SigningKey<Sha1> = SigningKey::new((**k).clone());
            builder
                .build::<_, rsa::pkcs1v15::Signature>(&signer)
                .map_err(|e| e.to_string())?
        }
        Key::Sm2(k) => {
            let spki =
                SubjectPublicKeyInfo::from_key(k.verifying_key()).map_err(|e| e.to_string())?;
            let builder = CertificateBuilder::new(SelfSigned(name), serial, validity, spki)
                .map_err(|e| e.to_string())?;
            builder
                .build::<_, sm2::dsa::Signature>(k.as_ref())
                .map_err(|e| e.to_string())?
        }
    };
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
    fn an_sm2_card_signs_raw_r_s_that_verify_with_its_certificate() {
        let card = Card::generate(CardKind::Sm2).unwrap();
        let again = Card::from_pem(&card.to_pem().unwrap()).unwrap();
        assert_eq!(again.kind(), CardKind::Sm2);
        assert_eq!(card.cert_no(), again.cert_no());
        let sig = again.sign(b"hello").unwrap();
        assert_eq!(B64.decode(&sig).unwrap().len(), 64, "raw r || s");
        assert!(card.verify(b"hello", &sig, None).is_ok());
        assert!(card.verify(b"other", &sig, None).is_err());
        let info = crate::customs::cert::CertInfo::from_der(&card.sign_cert).unwrap();
        assert_eq!(info.algorithm, crate::customs::cert::Algorithm::Sm2);
        assert!(info.is_named(&card.cert_no()));
    }

    #[test]
    fn pem_round_trip_keeps_key_and_certificates() {
        let card = Card::generate(CardKind::Rsa).unwrap();
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
