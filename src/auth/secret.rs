//! A shared secret and its HMAC key states. HMAC hashes the key, padded to a block, before the
//! message and again before the outer hash; for a short request those two blocks are half the
//! work. Each state is computed once, on its first use, and cloned for every message after it
//! (the precomputation OpenSSL's `HMAC_CTX_copy` and Go's `hmac` reuse give).

use hmac::{Hmac, KeyInit, Mac};
use std::fmt;
use std::sync::OnceLock;

/// The hash under an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlg {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

/// A MAC, on the stack: verifying a request allocates nothing for it.
#[derive(Clone, Copy)]
pub struct Tag {
    bytes: [u8; 64],
    len: usize,
}

impl Tag {
    pub(crate) fn of(raw: &[u8]) -> Tag {
        let mut bytes = [0u8; 64];
        bytes[..raw.len()].copy_from_slice(raw);
        Tag {
            bytes,
            len: raw.len(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A client's shared secret. `Debug` never shows it.
#[derive(Clone, Default)]
pub struct Secret {
    bytes: Vec<u8>,
    /// About 700 bytes when all four are computed: boxed, so a key stays small to move.
    states: Box<KeyStates>,
}

#[derive(Clone, Default)]
struct KeyStates {
    md5: OnceLock<Hmac<md5::Md5>>,
    sha1: OnceLock<Hmac<sha1::Sha1>>,
    sha256: OnceLock<Hmac<sha2::Sha256>>,
    sha512: OnceLock<Hmac<sha2::Sha512>>,
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret {
            bytes: bytes.into(),
            ..Secret::default()
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// HMAC of the concatenation of `parts`, keyed with this secret.
    pub fn mac(&self, alg: MacAlg, parts: &[&[u8]]) -> Tag {
        let mut m = self.hmac(alg);
        for p in parts {
            m.update(p);
        }
        m.finish()
    }

    /// An HMAC keyed with this secret, to feed piece by piece.
    pub fn hmac(&self, alg: MacAlg) -> Hmacer {
        let (k, key) = (&self.states, self.bytes.as_slice());
        match alg {
            MacAlg::Md5 => Hmacer::Md5(keyed(&k.md5, key)),
            MacAlg::Sha1 => Hmacer::Sha1(keyed(&k.sha1, key)),
            MacAlg::Sha256 => Hmacer::Sha256(keyed(&k.sha256, key)),
            MacAlg::Sha512 => Hmacer::Sha512(keyed(&k.sha512, key)),
        }
    }
}

/// The cached key state, computed on first use. HMAC takes keys of any length and `hmac` never
/// refuses one. Were it to, the key stands in zero-padded to a block (what HMAC itself does with
/// a key that fits one): a key anyone could know, such as all zeros, would let MACs be forged.
fn keyed<M: Mac + KeyInit + Clone>(cell: &OnceLock<M>, key: &[u8]) -> M {
    cell.get_or_init(|| {
        <M as KeyInit>::new_from_slice(key).unwrap_or_else(|_| {
            let mut block = hmac::digest::Key::<M>::default();
            let n = key.len().min(block.len());
            block[..n].copy_from_slice(&key[..n]);
            <M as KeyInit>::new(&block)
        })
    })
    .clone()
}

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(***)")
    }
}

/// An HMAC in progress.
pub enum Hmacer {
    Md5(Hmac<md5::Md5>),
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl Hmacer {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hmacer::Md5(m) => m.update(data),
            Hmacer::Sha1(m) => m.update(data),
            Hmacer::Sha256(m) => m.update(data),
            Hmacer::Sha512(m) => m.update(data),
        }
    }

    pub fn finish(self) -> Tag {
        match self {
            Hmacer::Md5(m) => Tag::of(&m.finalize().into_bytes()),
            Hmacer::Sha1(m) => Tag::of(&m.finalize().into_bytes()),
            Hmacer::Sha256(m) => Tag::of(&m.finalize().into_bytes()),
            Hmacer::Sha512(m) => Tag::of(&m.finalize().into_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (HMAC-SHA-256/512) and RFC 2202 test case 2 (HMAC-MD5/SHA-1): the
    /// cached state gives the published MAC on first use and every use after it.
    #[test]
    fn published_vectors_on_first_and_later_use() {
        let key = Secret::new(b"Jefe".to_vec());
        let msg: &[&[u8]] = &[b"what do ya want ", b"for nothing?"];
        let cases = [
            (MacAlg::Md5, "750c783e6ab0b503eaa86e310a5db738"),
            (MacAlg::Sha1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            (
                MacAlg::Sha256,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                MacAlg::Sha512,
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ];
        for (alg, expected) in cases {
            for _ in 0..3 {
                assert_eq!(
                    crate::auth::hex(key.mac(alg, msg).as_bytes(), false),
                    expected,
                    "{alg:?}"
                );
            }
        }
        // a key longer than the block is hashed first (RFC 4231 test case 6)
        let long = Secret::new(vec![0xaa; 131]);
        assert_eq!(
            crate::auth::hex(
                long.mac(
                    MacAlg::Sha256,
                    &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
                )
                .as_bytes(),
                false
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(format!("{key:?}"), "Secret(***)");
    }
}
