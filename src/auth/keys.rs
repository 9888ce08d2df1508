//! RSA key material in the forms people have: private keys as PKCS#1 (`RSA PRIVATE KEY`) or
//! PKCS#8 (`PRIVATE KEY`, rsaEncryption or RSASSA-PSS), public keys as SPKI (`PUBLIC KEY`) or
//! PKCS#1 (`RSA PUBLIC KEY`, as RFC 9421 Appendix B.1.1 prints its test key), in PEM or as bare
//! base64 DER.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs1::der::Decode;
use rsa::pkcs8::ObjectIdentifier;
use rsa::{BoxedUint, PrivateKey, PublicKey};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// The label of a PEM block (`RSA PRIVATE KEY`), or "" for bare base64, and its DER bytes.
pub fn pem_or_base64(text: &str) -> Option<(String, Vec<u8>)> {
    let text = text.trim();
    let label = text
        .lines()
        .next()
        .and_then(|l| l.trim().strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .unwrap_or("")
        .to_string();
    let body = crate::encoding::pem_body(text);
    B64.decode(body.as_bytes()).ok().map(|der| (label, der))
}

/// An RSA private key, PKCS#1 or PKCS#8, PEM or base64 DER. The primes may be of unequal size
/// (RFC 9421's B.1.1 test key has a 1,088- and a 960-bit prime): the `rsa` crate's encoded-key
/// decoders refuse those, so the components are read here and imported with the wide-prime
/// policy, always (the policy must not depend on the secret factors' sizes; the cost is a
/// slower signature, which the `sign` command can afford).
pub fn rsa_private(text: &str) -> Result<PrivateKey, String> {
    let (label, der) =
        pem_or_base64(text).ok_or("not an RSA private key in PEM or base64 (PKCS#8 or PKCS#1)")?;
    let pkcs1 = match label.as_str() {
        "RSA PRIVATE KEY" => der,
        "PRIVATE KEY" | "" => match rsa::pkcs8::PrivateKeyInfoRef::from_der(&der) {
            Ok(info) => {
                let oid = info.algorithm.oid;
                if oid != RSA_ENCRYPTION && oid != RSASSA_PSS {
                    return Err(format!("a PKCS#8 key of algorithm {oid}, not RSA"));
                }
                info.private_key.as_bytes().to_vec()
            }
            Err(_) if label.is_empty() => der,
            Err(e) => return Err(format!("not a PKCS#8 private key: {e}")),
        },
        other => return Err(format!("a PEM {other:?}, not an RSA private key")),
    };
    let key = rsa::pkcs1::RsaPrivateKeyRef::from_der(&pkcs1)
        .map_err(|e| format!("not an RSA private key (PKCS#1 or PKCS#8): {e}"))?;
    if key.version() != rsa::pkcs1::Version::TwoPrime {
        return Err("multi-prime RSA keys are not supported".into());
    }
    let modulus = key.modulus.as_bytes();
    let bits = u32::try_from(modulus.len() * 8).map_err(|_| "RSA modulus too large")?;
    let uint = |bytes: &[u8], bits: u32| {
        BoxedUint::from_be_slice(bytes, bits).map_err(|_| "RSA key component too large".to_string())
    };
    let e = key.public_exponent.as_bytes();
    let e_bits = u32::try_from(e.len().max(1) * 8).map_err(|_| "RSA exponent too large")?;
    PrivateKey::from_components_with_wide_primes(
        uint(modulus, bits)?,
        uint(e, e_bits)?,
        uint(key.private_exponent.as_bytes(), bits)?,
        vec![
            uint(key.prime1.as_bytes(), bits)?,
            uint(key.prime2.as_bytes(), bits)?,
        ],
    )
    .map_err(|e| format!("an inconsistent RSA private key: {e}"))
}

/// An RSA public key, SPKI or PKCS#1, PEM or base64 DER.
pub fn rsa_public(text: &str) -> Result<PublicKey, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    let (label, der) = pem_or_base64(text).ok_or("not PEM or base64")?;
    match label.as_str() {
        "RSA PUBLIC KEY" => PublicKey::from_pkcs1_der(&der).map_err(|e| e.to_string()),
        "PUBLIC KEY" => PublicKey::from_public_key_der(&der).map_err(|e| e.to_string()),
        "" => PublicKey::from_public_key_der(&der)
            .or_else(|_| PublicKey::from_pkcs1_der(&der))
            .map_err(|e| e.to_string()),
        other => Err(format!("a PEM {other:?}, not a public key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;

    const B11_PRIVATE: &str = include_str!("../../tests/vectors/rfc9421-test-key-rsa.pem");
    const B11_PUBLIC: &str = include_str!("../../tests/vectors/rfc9421-test-key-rsa.pub.pem");

    /// RFC 9421 B.1.1 in both of its printed forms, and the public key in SPKI too.
    #[test]
    fn the_rfc_test_key_rsa_loads_in_every_form() {
        let private = rsa_private(B11_PRIVATE).unwrap();
        let public = rsa_public(B11_PUBLIC).unwrap();
        assert_eq!(private.n(), public.n());
        let (_, pkcs1) = pem_or_base64(B11_PUBLIC).unwrap();
        assert_eq!(rsa_public(&B64.encode(&pkcs1)).unwrap().n(), public.n());
        use rsa::pkcs8::EncodePublicKey;
        let spki = public.to_public_key_der().unwrap();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            B64.encode(spki.as_bytes())
        );
        assert_eq!(rsa_public(&pem).unwrap().n(), public.n());
        assert_eq!(
            rsa_public(&B64.encode(spki.as_bytes())).unwrap().n(),
            public.n()
        );
        assert!(rsa_private(B11_PUBLIC).is_err());
        assert!(
            rsa_public("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").is_err()
        );
    }

    /// RFC 9421 §4.3's `proxy_sig`, rsa-v1_5-sha256 with the B.1.1 key: PKCS#1 v1.5 is
    /// deterministic, so the published value is reproduced exactly, and verifies with the
    /// PKCS#1 public key.
    #[test]
    fn the_rfc_proxy_sig_is_reproduced_and_verified() {
        let base = concat!(
            "\"@method\": POST\n",
            "\"@authority\": origin.host.internal.example\n",
            "\"@path\": /foo\n",
            "\"content-digest\": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n",
            "\"content-type\": application/json\n",
            "\"content-length\": 18\n",
            "\"forwarded\": for=192.0.2.123;host=example.com;proto=https\n",
            "\"@signature-params\": (\"@method\" \"@authority\" \"@path\" \"content-digest\" \"content-type\" \"content-length\" \"forwarded\");created=1618884480;keyid=\"test-key-rsa\";alg=\"rsa-v1_5-sha256\";expires=1618884540"
        );
        let expected = "S6ZzPXSdAMOPjN/6KXfXWNO/f7V6cHm7BXYUh3YD/fRad4BCaRZxP+JH+8XY1I6+8Cy+CM5g92iHgxtRPz+MjniOaYmdkDcnL9cCpXJleXsOckpURl49GwiyUpZ10KHgOEe11sx3G2gxI8S0jnxQB+Pu68U9vVcasqOWAEObtNKKZd8tSFu7LB5YAv0RAGhB8tmpv7sFnIm9y+7X5kXQfi8NMaZaA8i2ZHwpBdg7a6CMfwnnrtflzvZdXAsD3LH2TwevU+/PBPv0B6NMNk93wUs/vfJvye+YuI87HU38lZHowtznbLVdp770I6VHR6WfgS9ddzirrswsE1w5o0LV/g==";
        let private = rsa_private(B11_PRIVATE).unwrap();
        let sig = private
            .pkcs1v15_sign::<sha2::Sha256>(base.as_bytes())
            .unwrap();
        assert_eq!(B64.encode(&sig), expected);
        let client = crate::auth::parse_public_key(B11_PUBLIC).unwrap();
        crate::auth::httpsig::verify_signature(
            &client,
            Some("rsa-v1_5-sha256"),
            base.as_bytes(),
            &B64.decode(expected).unwrap(),
        )
        .unwrap();
    }
}
