//! Signing micro-benchmark (not a test), in two parts:
//! - the request-signature schemes: the time for 1,000,000 sign + verify of a small request
//!   (`name`, `password`, `address`, as the sorted-field checksum library's own benchmark does;
//!   it publishes 2.5 s hand-written and 2.9 s by annotations, in Java) for md5, x-mg (each
//!   algorithm), checksum `pairs` and `values`, and httpsig (hmac-sha256, ed25519, rsa); the
//!   asymmetric ones are run fewer times and reported per operation. One core.
//! - the self-check: verifying a card's signature against its certificate for an RSA-2048 and
//!   an SM2 card, over a 179 source string of typical length.
//!
//! Run: `cargo bench --bench signing`. `BENCH_MILLION` sets the symmetric repetitions (default
//! 1,000,000), `BENCH_ITERATIONS` the others (default 2000).

use chinaport_proxy::auth::mg::{MgAlg, mg_sign};
use chinaport_proxy::auth::{RequestParts, checksum, constant_time_eq, httpsig, md5_signature};
use chinaport_proxy::config::ChecksumConfig;
use chinaport_proxy::customs::{cardsig, cert::CertInfo};
use chinaport_proxy::simulator::{Card, CardKind};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The checksum library's published time for 1,000,000 sign-and-verify, hand-written (Java).
const PUBLISHED_S: f64 = 2.5;

fn time(n: u32, mut one: impl FnMut(u32)) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        one(i);
    }
    start.elapsed()
}

fn report(name: &str, n: u32, took: Duration) {
    let per_million = took.as_secs_f64() * 1_000_000.0 / n as f64;
    println!(
        "  {name:<26} {per_million:>7.3} s per million  ({:>6.2} us each; {:>5.1}x the Java library's {PUBLISHED_S} s)",
        took.as_secs_f64() * 1e6 / n as f64,
        PUBLISHED_S / per_million
    );
}

fn schemes() {
    let million: u32 = std::env::var("BENCH_MILLION")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let few: u32 = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let secret = "erp-shared-secret-42";
    let body = br#"{"address":"Xiamen","name":"erp","password":"p@ss"}"#;
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).expect("object");
    println!("request-signature schemes: sign + verify of a small request");
    report(
        "md5",
        million,
        time(million, |i| {
            let ts = (1_700_000_000_000u64 + i as u64).to_string();
            let sig = md5_signature("POST", "/rpc", &ts, body, secret);
            let again = md5_signature("POST", "/rpc", &ts, black_box(body), secret);
            assert!(constant_time_eq(sig.as_bytes(), again.as_bytes()));
        }),
    );
    for (name, alg) in [
        ("x-mg hmac_md5", MgAlg::HmacMd5),
        ("x-mg hmac_sha1", MgAlg::HmacSha1),
        ("x-mg hmac_sha256", MgAlg::HmacSha256),
        ("x-mg hmac_sha512", MgAlg::HmacSha512),
    ] {
        report(
            name,
            million,
            time(million, |i| {
                let nonce = format!("n-{i}");
                let sig = mg_sign(alg, "erp", secret.as_bytes(), &nonce);
                let again = mg_sign(alg, "erp", secret.as_bytes(), black_box(&nonce));
                assert!(constant_time_eq(sig.as_bytes(), again.as_bytes()));
            }),
        );
    }
    for variant in ["pairs", "values"] {
        let cfg = ChecksumConfig {
            variant: variant.into(),
            ..ChecksumConfig::default()
        };
        report(
            &format!("checksum {variant}"),
            million,
            time(million, |_| {
                let sig = checksum::sign(&object, &cfg, secret);
                let again = checksum::sign(black_box(&object), &cfg, secret);
                assert!(constant_time_eq(sig.as_bytes(), again.as_bytes()));
            }),
        );
    }
    let headers: Vec<(String, String)> = Vec::new();
    let req = RequestParts {
        method: "POST",
        path: "/rpc",
        query: "",
        authority: "127.0.0.1:8780",
        headers: &headers,
        body,
    };
    let components = ["@method", "@path", "@authority"];
    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let rsa = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("RSA key");
    use chinaport_proxy::auth::ClientKey;
    let rounds = [
        (
            "httpsig hmac-sha256",
            million / 10,
            ClientKey::Secret(secret.as_bytes().to_vec()),
            httpsig::SigningKey::Hmac(secret.as_bytes().to_vec()),
            "hmac-sha256",
        ),
        (
            "httpsig ed25519",
            few * 10,
            ClientKey::Ed25519(ed.verifying_key()),
            httpsig::SigningKey::Ed25519(ed),
            "ed25519",
        ),
        (
            "httpsig rsa-v1_5-sha256",
            few / 4,
            ClientKey::Rsa(Box::new(rsa.to_public_key())),
            httpsig::SigningKey::Rsa(Box::new(rsa)),
            "rsa-v1_5-sha256",
        ),
    ];
    for (name, n, key, signing, alg) in rounds {
        let took = time(n, |_| {
            let signed = httpsig::sign(
                &req,
                &components,
                1_700_000_000,
                Some("erp"),
                None,
                &signing,
            )
            .expect("sign");
            let sig = httpsig::parse_headers(&signed.0, &signed.1).expect("parse");
            let base = signed_base(&req, &signed.0);
            httpsig::verify_signature(&key, Some(alg), base.as_bytes(), &sig.signature)
                .expect("verify");
        });
        report(name, n, took);
    }
}

/// The signature base of a `Signature-Input` value, as the verifier rebuilds it.
fn signed_base(req: &RequestParts<'_>, input: &str) -> String {
    let parsed = httpsig::parse_headers(input, "sig1=:AA==:").expect("parse");
    httpsig::signature_base(&parsed.inner, req).expect("base")
}

fn main() {
    schemes();
    let n: u32 = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let source = format!(
        "\"sessionID\":\"123456\"||\"payExchangeInfoHead\":\"{}\"||\"payExchangeInfoLists\":\"{}\"||\"serviceTime\":\"1756571640000\"",
        "{\"guid\":\"IYUU4A6D0D78893C739E004DA89918FC8DBB\",\"totalAmount\":143.64}".repeat(4),
        "[{\"orderNo\":\"cp477912536700681230\"}]".repeat(4)
    );
    println!(
        "self-check: verifying a card's signature against its certificate ({n} times, {} bytes signed)",
        source.len()
    );
    for kind in [CardKind::Rsa, CardKind::Sm2] {
        let card = Card::generate(kind).expect("card");
        let sig = card.sign(source.as_bytes()).expect("sign");
        let cert = CertInfo::from_der(card.sign_cert_der()).expect("certificate");
        let start = Instant::now();
        for _ in 0..n {
            cardsig::verify(&cert, source.as_bytes(), &sig).expect("verifies");
        }
        let per = start.elapsed() / n;
        let parse_start = Instant::now();
        for _ in 0..n {
            let _ = CertInfo::from_der(card.sign_cert_der()).expect("certificate");
        }
        println!(
            "  {:>4} card: {:>7.1} us per verification (+ {:.1} us to read the certificate)",
            kind.name(),
            per.as_secs_f64() * 1e6,
            (parse_start.elapsed() / n).as_secs_f64() * 1e6
        );
    }
}
