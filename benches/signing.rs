//! Signing micro-benchmark (not a test): what the self-check costs per signature, verifying a
//! card's signature against its certificate for an RSA-2048 and an SM2 card, over a 179 source
//! string of typical length.
//!
//! Run: `cargo bench --bench signing`. `BENCH_ITERATIONS` sets the repetitions (default 2000).

use chinaport_proxy::customs::{cardsig, cert::CertInfo};
use chinaport_proxy::simulator::{Card, CardKind};
use std::time::Instant;

fn main() {
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
