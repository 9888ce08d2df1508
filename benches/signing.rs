//! Signing micro-benchmark (not a test), in two parts:
//! - the request-signature schemes: the time for 1,000,000 of a client's sign and the proxy's
//!   check of a small request (`name`, `password`, `address`, as the sorted-field checksum
//!   library's own benchmark does; it publishes 2.5 s hand-written and 2.9 s by annotations, in
//!   Java) for md5, x-mg (each algorithm), checksum `pairs` and `values`, and httpsig
//!   (hmac-sha256, ed25519, rsa); the asymmetric ones are run fewer times and reported per
//!   operation. One core. Beside each symmetric scheme stands its floor: the compression blocks
//!   its sign and check must hash at the least (message padding counted, HMAC key blocks cached
//!   as the proxy caches them), at this build's measured cost of one block. No code of the
//!   scheme's can go below it; the goal of 0.3 s per million is judged against both.
//! - the self-check: verifying a card's signature against its certificate for an RSA-2048 and
//!   an SM2 card, over a 179 source string of typical length.
//!
//! Run: `cargo bench --bench signing`. `BENCH_MILLION` sets the symmetric repetitions (default
//! 1,000,000), `BENCH_ITERATIONS` the others (default 2000).

use chinaport_proxy::auth::mg::{MgAlg, mg_matches, mg_sign};
use chinaport_proxy::auth::{
    RequestParts, Secret, checksum, decode_hex, httpsig, md5_matches, md5_signature,
};
use chinaport_proxy::config::{ChecksumConfig, ChecksumVariant};
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

/// The hash functions under the schemes, with their block and length-field sizes.
#[derive(Clone, Copy)]
enum Hash {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Hash {
    /// Compression blocks to hash `len` bytes: the message, a 0x80 byte and the length field,
    /// padded to whole blocks.
    fn blocks(self, len: usize) -> usize {
        let (block, length_field) = match self {
            Hash::Sha512 => (128, 16),
            _ => (64, 8),
        };
        (len + 1 + length_field).div_ceil(block)
    }

    /// Blocks of one HMAC over `len` bytes with the key's two padded blocks already hashed (the
    /// cached key state): the inner hash of the message, the outer hash of the inner digest.
    fn hmac_blocks(self, len: usize) -> usize {
        let (block, out) = match self {
            Hash::Md5 => (64, 16),
            Hash::Sha1 => (64, 20),
            Hash::Sha256 => (64, 32),
            Hash::Sha512 => (128, 64),
        };
        self.blocks(block + len) - 1 + self.blocks(block + out) - 1
    }

    /// Seconds for one compression block in this build: a message that fits one block, hashed
    /// by the same crate the schemes use.
    fn block_seconds(self) -> f64 {
        use sha2::Digest;
        let n = 2_000_000u32;
        let one = [0x5au8; 40];
        let took = match self {
            Hash::Md5 => time(n, |_| {
                black_box(md5::Md5::digest(black_box(&one)));
            }),
            Hash::Sha1 => time(n, |_| {
                black_box(sha1::Sha1::digest(black_box(&one)));
            }),
            Hash::Sha256 => time(n, |_| {
                black_box(sha2::Sha256::digest(black_box(&one)));
            }),
            Hash::Sha512 => time(n, |_| {
                black_box(sha2::Sha512::digest(black_box(&one)));
            }),
        };
        took.as_secs_f64() / n as f64
    }
}

/// One scheme's result and its floor: the compression blocks a sign and a verify must hash at
/// the least (`blocks`, for the two together), at this build's measured cost of a block.
fn report_with_floor(name: &str, n: u32, took: Duration, hash: Hash, blocks: usize) {
    let per_million = took.as_secs_f64() * 1_000_000.0 / n as f64;
    let floor = hash.block_seconds() * blocks as f64 * 1_000_000.0;
    println!(
        "  {name:<26} {per_million:>7.3} s per million  (floor {floor:.3} s: {blocks} blocks; {:>4.1}x the Java library's {PUBLISHED_S} s; goal 0.3 s {})",
        PUBLISHED_S / per_million,
        if per_million <= 0.3 {
            "met"
        } else if floor > 0.3 {
            "below the floor"
        } else {
            "not met"
        }
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
    let secret_text = "erp-shared-secret-42";
    let secret = Secret::new(secret_text);
    let body = br#"{"address":"Xiamen","name":"erp","password":"p@ss"}"#;
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).expect("object");
    println!(
        "request-signature schemes: a client's sign + the proxy's check of a small request, on one core"
    );
    println!("  (floor: the hashing alone, with HMAC key states cached as the proxy caches them)");
    let ts_len = "1700000000000".len();
    let md5_len = "POST".len() + "/rpc".len() + ts_len + body.len() + secret_text.len();
    report_with_floor(
        "md5",
        million,
        time(million, |i| {
            let ts = (1_700_000_000_000u64 + i as u64).to_string();
            let sig = md5_signature("POST", "/rpc", &ts, body, secret_text);
            let mut given = [0u8; 16];
            let given = decode_hex(black_box(&sig), &mut given).expect("hex");
            assert!(md5_matches(
                "POST",
                "/rpc",
                &ts,
                body,
                secret.bytes(),
                given
            ));
        }),
        Hash::Md5,
        2 * Hash::Md5.blocks(md5_len),
    );
    for (name, alg, hash) in [
        ("x-mg hmac_md5", MgAlg::HmacMd5, Hash::Md5),
        ("x-mg hmac_sha1", MgAlg::HmacSha1, Hash::Sha1),
        ("x-mg hmac_sha256", MgAlg::HmacSha256, Hash::Sha256),
        ("x-mg hmac_sha512", MgAlg::HmacSha512, Hash::Sha512),
    ] {
        let mut nonce = String::with_capacity(16);
        let took = time(million, |i| {
            use std::fmt::Write;
            nonce.clear();
            let _ = write!(nonce, "n-{i:07}");
            let sig = mg_sign(alg, "erp", &secret, &nonce);
            assert!(mg_matches(alg, "erp", &secret, &nonce, black_box(&sig)));
        });
        let len = "n-0000000".len() + "erp".len() + secret_text.len();
        report_with_floor(name, million, took, hash, 2 * hash.hmac_blocks(len));
    }
    for &variant in ChecksumVariant::ALL {
        let cfg = ChecksumConfig {
            variant,
            ..ChecksumConfig::default()
        };
        let len = if variant == ChecksumVariant::Pairs {
            checksum::pairs_string(&object, &cfg.field, &cfg.exclude, secret_text).len()
        } else {
            secret_text.len() + "Xiamen".len() + "erp".len() + "p@ss".len()
        };
        report_with_floor(
            &format!("checksum {variant}"),
            million,
            time(million, |_| {
                let sig = checksum::sign(&object, &cfg, &secret);
                assert!(checksum::matches(black_box(&object), &cfg, &secret, &sig));
            }),
            Hash::Md5,
            2 * Hash::Md5.blocks(len),
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
            ClientKey::Secret(secret.clone()),
            httpsig::SigningKey::Hmac(secret.clone()),
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
        let sign = || {
            httpsig::sign(
                &req,
                &components,
                1_700_000_000,
                Some("erp"),
                None,
                &signing,
            )
            .expect("sign")
        };
        let took = time(n, |_| {
            let signed = sign();
            let sig = httpsig::parse_headers(&signed.0, &signed.1).expect("parse");
            let base = signed_base(&req, &signed.0);
            httpsig::verify_signature(&key, Some(alg), base.as_bytes(), &sig.signature)
                .expect("verify");
        });
        if alg == "hmac-sha256" {
            let signed = sign();
            let len = signed_base(&req, &signed.0).len();
            report_with_floor(
                name,
                n,
                took,
                Hash::Sha256,
                2 * Hash::Sha256.hmac_blocks(len),
            );
        } else {
            report(name, n, took);
        }
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
