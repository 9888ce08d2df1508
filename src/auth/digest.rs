//! RFC 9530 `Content-Digest`: an SF Dictionary of algorithm → byte sequence, over the content bytes
//! as sent. `sha-256` and `sha-512` are checked; deprecated algorithms are refused.

use super::AuthError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256, Sha512};

/// `sha-256=:<base64>:` (or sha-512) for `body`.
pub fn content_digest(alg: &str, body: &[u8]) -> Option<String> {
    let raw = match alg {
        "sha-256" => Sha256::digest(body).to_vec(),
        "sha-512" => Sha512::digest(body).to_vec(),
        _ => return None,
    };
    Some(format!("{alg}=:{}:", B64.encode(raw)))
}

/// Verifies a `Content-Digest` value against the body. Every sha-256/sha-512 member must match,
/// and at least one must be present.
pub fn verify(header: &str, body: &[u8]) -> Result<(), AuthError> {
    let dict: sfv::Dictionary = sfv::Parser::new(header)
        .parse()
        .map_err(|e| AuthError::Malformed("Content-Digest", e.to_string()))?;
    let mut checked = 0;
    for (alg, entry) in &dict {
        let sfv::ListEntry::Item(item) = entry else {
            return Err(AuthError::Malformed("Content-Digest", "inner list".into()));
        };
        let Some(given) = item.bare_item.as_byte_sequence() else {
            return Err(AuthError::Malformed(
                "Content-Digest",
                format!("{} is not a byte sequence", alg.as_str()),
            ));
        };
        let expected = match alg.as_str() {
            "sha-256" => Sha256::digest(body).to_vec(),
            "sha-512" => Sha512::digest(body).to_vec(),
            _ => continue, // unknown or deprecated: not relied upon
        };
        if !super::constant_time_eq(given, &expected) {
            return Err(AuthError::BadDigest(format!("{} differs", alg.as_str())));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(AuthError::Unsupported(
            "Content-Digest algorithm: send sha-256 or sha-512".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9530_vectors() {
        let cases: [(&[u8], &str, &str); 3] = [
            (
                b"{\"hello\": \"world\"}",
                "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
                "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            ),
            (
                b"{\"hello\": \"world\"}\n",
                "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:",
                "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:",
            ),
            (
                b"",
                "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
                "sha-512=:z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==:",
            ),
        ];
        for (body, s256, s512) in cases {
            assert_eq!(content_digest("sha-256", body).unwrap(), s256);
            assert_eq!(content_digest("sha-512", body).unwrap(), s512);
            verify(s256, body).unwrap();
            verify(s512, body).unwrap();
            verify(&format!("{s256}, {s512}"), body).unwrap();
        }
        assert!(matches!(
            verify(
                "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
                b"{}"
            ),
            Err(AuthError::BadDigest(_))
        ));
        assert!(matches!(
            verify("md5=:AAAA:", b""),
            Err(AuthError::Unsupported(_))
        ));
        assert!(matches!(
            verify("sha-256=nope", b""),
            Err(AuthError::Malformed(..))
        ));
    }
}
