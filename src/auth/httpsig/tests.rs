//! RFC 9421 / eBay vectors (tests/vectors/signing.json) and a property test of the parser.

use super::*;
use crate::auth::{ClientKey, Secret};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use serde_json::Value;

const VECTORS: &str = include_str!("../../../tests/vectors/signing.json");

fn vector(name: &str) -> Value {
    let all: Vec<Value> = serde_json::from_str(VECTORS).unwrap();
    all.into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// RFC 9421 B.1.4 test-key-ed25519.
fn ed25519_signing() -> ed25519_dalek::SigningKey {
    let der = B64
        .decode("MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF")
        .unwrap();
    ed25519_dalek::SigningKey::from_pkcs8_der(&der).unwrap()
}

/// RFC 9421 B.1.5 test-shared-secret (the decoded bytes are the key).
fn shared_secret() -> Secret {
    Secret::new(
        B64.decode(
            "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==",
        )
        .unwrap(),
    )
}

/// HMAC-SHA256 straight from the `hmac` crate: the reference the cached key state is held to.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const B2_BODY: &[u8] = b"{\"hello\": \"world\"}";

/// The RFC 9421 B.2 test-request.
fn b2_headers() -> Vec<(String, String)> {
    headers(&[
        ("host", "example.com"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        (
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("content-length", "18"),
    ])
}

fn b2_request(h: &[(String, String)]) -> RequestParts<'_> {
    RequestParts::for_tests(
        "POST",
        "/foo",
        "?param=Value&Pet=dog",
        "example.com",
        h,
        B2_BODY,
    )
}

fn check(v: &Value, req: &RequestParts<'_>, key: &ClientKey, signing: Option<&SigningKey>) {
    let input = v["inputs"]["signature_input"].as_str().unwrap();
    let expected_sig = v["expected"]["signature"].as_str().unwrap();
    let parsed = parse_headers(input, expected_sig).unwrap();
    let base = signature_base(&parsed.inner, req).unwrap();
    assert_eq!(
        base,
        v["inputs"]["signature_base"].as_str().unwrap(),
        "{}",
        v["name"]
    );
    verify_signature(key, None, base.as_bytes(), &parsed.signature).unwrap();
    if let Some(sk) = signing {
        let sig = match sk {
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(base.as_bytes()).to_bytes().to_vec()
            }
            SigningKey::Hmac(s) => hmac_sha256(s.bytes(), base.as_bytes()),
            SigningKey::Rsa(k) => k.pkcs1v15_sign::<sha2::Sha256>(base.as_bytes()).unwrap(),
        };
        assert_eq!(sig, parsed.signature, "{} reproduces", v["name"]);
    }
    // any change to the base breaks it
    let mut tampered = base.clone().into_bytes();
    tampered[0] ^= 1;
    assert!(verify_signature(key, None, &tampered, &parsed.signature).is_err());
}

#[test]
fn rfc9421_b25_hmac_sha256() {
    let h = b2_headers();
    let secret = shared_secret();
    let v = vector("RFC9421-B.2.5-hmac-sha256");
    check(
        &v,
        &b2_request(&h),
        &ClientKey::Secret(secret.clone()),
        Some(&SigningKey::Hmac(secret.clone())),
    );
    // a trailing LF gives another signature (the base must end without one)
    let base = v["inputs"]["signature_base"].as_str().unwrap().to_string() + "\n";
    let mac = hmac_sha256(secret.bytes(), base.as_bytes());
    assert_eq!(
        B64.encode(mac),
        "+fep01MNDbkKBi26gY50tRwPw0QUF/5Tq9pGatYX9Pk="
    );
}

#[test]
fn rfc9421_b26_ed25519() {
    let h = b2_headers();
    let sk = ed25519_signing();
    let v = vector("RFC9421-B.2.6-ed25519");
    check(
        &v,
        &b2_request(&h),
        &ClientKey::Ed25519(sk.verifying_key()),
        Some(&SigningKey::Ed25519(sk.clone())),
    );
}

#[test]
fn ebay_readme_sample_and_profile_vectors() {
    let sk = ed25519_signing();
    let key = ClientKey::Ed25519(sk.verifying_key());
    let v = vector("eBay-verifier-README-sample-ed25519");
    let jwe = v["inputs"]["x-ebay-signature-key"].as_str().unwrap();
    let h = headers(&[
        ("content-type", "application/json"),
        (
            "content-digest",
            v["inputs"]["content-digest"].as_str().unwrap(),
        ),
        ("x-ebay-signature-key", jwe),
    ]);
    let req = RequestParts::for_tests(
        "POST",
        "/verifysignature",
        "",
        "localhost:8080",
        &h,
        B2_BODY,
    );
    check(&v, &req, &key, Some(&SigningKey::Ed25519(sk.clone())));
    // the whole policy accepts it at its own time: required components, digest, window
    let scheme = HttpSigScheme::new(3000, 1000);
    let clients = vec![("ebay".to_string(), key.clone())];
    let mut with_sig = h.clone();
    with_sig.push((
        "signature-input".into(),
        v["inputs"]["signature_input"].as_str().unwrap().into(),
    ));
    with_sig.push((
        "signature".into(),
        v["expected"]["signature"].as_str().unwrap().into(),
    ));
    let req = RequestParts::for_tests(
        "POST",
        "/verifysignature",
        "",
        "localhost:8080",
        &with_sig,
        B2_BODY,
    );
    assert_eq!(
        scheme
            .verify(&req, &clients, 1_659_651_955_000)
            .unwrap()
            .client,
        "ebay"
    );
    // with `localhost` alone the authority differs and it fails
    let req = RequestParts::for_tests(
        "POST",
        "/verifysignature",
        "",
        "localhost",
        &with_sig,
        B2_BODY,
    );
    assert_eq!(
        scheme
            .verify(&req, &clients, 1_659_651_955_000)
            .unwrap_err(),
        AuthError::BadSignature
    );

    let v = vector("eBay-profile-GET-no-body-ed25519 (own vector)");
    let jwe = v["inputs"]["x-ebay-signature-key"].as_str().unwrap();
    let h = headers(&[("x-ebay-signature-key", jwe)]);
    let req = RequestParts::for_tests(
        "GET",
        "/sell/finances/v1/payout",
        "?limit=20",
        "apiz.ebay.com",
        &h,
        b"",
    );
    check(&v, &req, &key, Some(&SigningKey::Ed25519(sk)));
}

fn signed_request_headers(
    created: i64,
    nonce: Option<&str>,
    components: &[&str],
    keyid: &str,
    key: &SigningKey,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut h = headers(&[
        ("host", "proxy.local:8780"),
        ("content-type", "application/json"),
    ]);
    h.push((
        "content-digest".into(),
        crate::auth::digest::content_digest("sha-256", body).unwrap(),
    ));
    let req = RequestParts::for_tests("POST", "/rpc", "", "proxy.local:8780", &h, body);
    let (input, sig) = sign(&req, components, created, Some(keyid), nonce, key).unwrap();
    h.push(("signature-input".into(), input));
    h.push(("signature".into(), sig));
    h
}

#[test]
fn policy_reasons() {
    let secret = Secret::new(b"erp-shared-secret".to_vec());
    let clients = vec![("erp".to_string(), ClientKey::Secret(secret.clone()))];
    let key = SigningKey::Hmac(secret);
    let now_s = 1_700_000_000i64;
    let now_ms = now_s as u64 * 1000;
    let body = br#"{"_method":"cus-sec_SpcGetCertNo"}"#;
    let all = ["@method", "@path", "@authority", "content-digest"];
    let run = |h: &[(String, String)], body: &[u8], now: u64, scheme: &HttpSigScheme| {
        let req = RequestParts::for_tests("POST", "/rpc", "", "proxy.local:8780", h, body);
        scheme.verify(&req, &clients, now)
    };
    let scheme = HttpSigScheme::new(3000, 1000);
    let ok = signed_request_headers(now_s, Some("n-1"), &all, "erp", &key, body);
    assert_eq!(run(&ok, body, now_ms, &scheme).unwrap().client, "erp");
    assert_eq!(
        run(&ok, body, now_ms, &scheme).unwrap_err(),
        AuthError::Replayed,
        "nonce once"
    );
    // body changed after signing: the digest no longer matches
    let other = br#"{"_method":"cus-sec_SpcSignDataAsPEM"}"#;
    assert!(matches!(
        run(&ok, other, now_ms, &HttpSigScheme::new(3000, 1000)),
        Err(AuthError::BadDigest(_))
    ));
    // stale
    let h = signed_request_headers(now_s - 60, None, &all, "erp", &key, body);
    assert!(matches!(
        run(&h, body, now_ms, &scheme),
        Err(AuthError::OutsideWindow { .. })
    ));
    // missing required components
    let h = signed_request_headers(
        now_s,
        None,
        &["@method", "@path", "content-digest"],
        "erp",
        &key,
        body,
    );
    assert_eq!(
        run(&h, body, now_ms, &scheme).unwrap_err(),
        AuthError::MissingComponent("@authority".into())
    );
    let h = signed_request_headers(
        now_s,
        None,
        &["@method", "@path", "@authority"],
        "erp",
        &key,
        body,
    );
    assert!(matches!(
        run(&h, body, now_ms, &scheme),
        Err(AuthError::MissingComponent(_))
    ));
    // unknown client, wrong key
    let h = signed_request_headers(now_s, None, &all, "nobody", &key, body);
    assert_eq!(
        run(&h, body, now_ms, &scheme).unwrap_err(),
        AuthError::UnknownClient("nobody".into())
    );
    let h = signed_request_headers(
        now_s,
        None,
        &all,
        "erp",
        &SigningKey::Hmac(Secret::new(b"wrong".to_vec())),
        body,
    );
    assert_eq!(
        run(&h, body, now_ms, &scheme).unwrap_err(),
        AuthError::BadSignature
    );
    // expired
    let mut h = signed_request_headers(now_s, None, &all, "erp", &key, body);
    for (n, v) in h.iter_mut() {
        if n == "signature-input" {
            *v = v.replace(";alg=", ";expires=1;alg=");
        }
    }
    assert!(matches!(
        run(&h, body, now_ms, &scheme),
        Err(AuthError::Expired | AuthError::BadSignature)
    ));
}

/// A small deterministic PRNG (xorshift) for the property test: no extra crate needed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn malformed_signature_input_never_panics_and_always_says_why() {
    let secret = Secret::new(b"k".to_vec());
    let clients = vec![("erp".to_string(), ClientKey::Secret(secret.clone()))];
    let body = b"{}";
    let now_s = 1_700_000_000i64;
    let valid = signed_request_headers(
        now_s,
        Some("abc"),
        &[
            "@method",
            "@path",
            "@authority",
            "content-digest",
            "content-type",
        ],
        "erp",
        &SigningKey::Hmac(secret),
        body,
    );
    let input = valid
        .iter()
        .find(|(n, _)| n == "signature-input")
        .unwrap()
        .1
        .clone();
    let alphabet: Vec<char> = "\"();=:,@ \t-_?*abcdefkeyidcreatednoncealg0123456789\\\u{1}é"
        .chars()
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let scheme = HttpSigScheme::new(3000, 1000);
    for _ in 0..20_000 {
        let mut chars: Vec<char> = input.chars().collect();
        for _ in 0..1 + rng.below(4) {
            match rng.below(3) {
                0 if !chars.is_empty() => {
                    let i = rng.below(chars.len());
                    chars.remove(i);
                }
                1 => {
                    let i = rng.below(chars.len() + 1);
                    chars.insert(i, alphabet[rng.below(alphabet.len())]);
                }
                _ if !chars.is_empty() => {
                    let i = rng.below(chars.len());
                    chars[i] = alphabet[rng.below(alphabet.len())];
                }
                _ => {}
            }
        }
        let mutated: String = chars.into_iter().collect();
        let mut h = valid.clone();
        for (n, v) in h.iter_mut() {
            if n == "signature-input" {
                *v = mutated.clone();
            }
        }
        let req = RequestParts::for_tests("POST", "/rpc", "?x=1", "proxy.local:8780", &h, body);
        if let Err(e) = scheme.verify(&req, &clients, now_s as u64 * 1000) {
            assert!(!e.to_string().is_empty());
        }
    }
}

/// RFC 9421 B.1.2 test-key-rsa-pss, public part (also eBay's README RSA test key).
const RSA_PSS_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----";

fn rsa_client() -> ClientKey {
    crate::auth::parse_public_key(RSA_PSS_PUBLIC).expect("the RFC's RSA key")
}

#[test]
fn rfc9421_b2_1_to_b2_3_rsa_pss_sha512_verify() {
    let key = rsa_client();
    for name in [
        "RFC9421-B.2.1-rsa-pss-sha512-verify-only",
        "RFC9421-B.2.2-rsa-pss-sha512-verify-only",
        "RFC9421-B.2.3-rsa-pss-sha512-verify-only",
    ] {
        let v = vector(name);
        let base = v["inputs"]["signature_base"].as_str().unwrap();
        let sig = B64
            .decode(v["inputs"]["signature"].as_str().unwrap())
            .unwrap();
        verify_signature(&key, Some("rsa-pss-sha512"), base.as_bytes(), &sig)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // without alg the key's type decides, and PSS is tried
        verify_signature(&key, None, base.as_bytes(), &sig).unwrap();
        // one changed byte of the base fails
        let mut other = base.as_bytes().to_vec();
        other[5] ^= 1;
        assert!(verify_signature(&key, Some("rsa-pss-sha512"), &other, &sig).is_err());
        // the wrong RSA algorithm fails, and an RSA key cannot pass for ed25519
        assert!(verify_signature(&key, Some("rsa-v1_5-sha256"), base.as_bytes(), &sig).is_err());
        assert!(verify_signature(&key, Some("ed25519"), base.as_bytes(), &sig).is_err());
    }
}

#[test]
fn ebay_profile_rsa_v1_5_sha256_verifies() {
    let v = vector("eBay-profile-POST-rsa-v1_5-sha256 (own vector)");
    let base = v["inputs"]["signature_base"].as_str().unwrap();
    let header = v["expected"]["signature"].as_str().unwrap();
    let b64 = header.trim_start_matches("sig1=:").trim_end_matches(':');
    let sig = B64.decode(b64).unwrap();
    let key = rsa_client();
    verify_signature(&key, Some("rsa-v1_5-sha256"), base.as_bytes(), &sig).unwrap();
    verify_signature(&key, None, base.as_bytes(), &sig).unwrap();
    assert!(verify_signature(&key, Some("rsa-pss-sha512"), base.as_bytes(), &sig).is_err());
}

#[test]
fn small_rsa_keys_are_refused() {
    // a 1024-bit SPKI
    let small = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDWzLDJcMDf7bWtOkQNF+UyYBNJkKt7/uT5ZNkCfJnzenNgq+BPEMm++j8ylJGczvppJBbDrlHsk2SbyZT+vr0tNkGlRz29HDK/bbdxVnho9j35cY57iYgMM8k64AfZX8xg1RlQItZrx/+k03P3G8g4TmCguzWqXrB6qzhZ5WvcaQIDAQAB";
    let e = crate::auth::parse_public_key(small).unwrap_err();
    assert!(e.contains("2048"), "{e}");
}
