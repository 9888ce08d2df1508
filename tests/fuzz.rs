//! Property tests for the parsers of hostile input (issue 32.4): the XML parser and C14N, the CEB
//! verifier, and the JSON bodies of the customs endpoints, fed mutated and generated inputs from
//! a small deterministic PRNG for a bounded time each (about 2 s, or a case count, whichever comes
//! first). Each must answer Ok or a well-formed error, never panic or hang; what it accepts must
//! keep its own invariants (C14N is idempotent, a signed order's head and lists are JSON). A
//! failure prints the seed and the input, so it can be replayed; `FUZZ_SEED=<n>` explores other
//! inputs.

use chinaport_proxy::customs::{c14n, ceb, customs179};
use chinaport_proxy::http::{ceb as ceb_http, rpc};
use std::time::{Duration, Instant};

const BUDGET: Duration = Duration::from_secs(2);
const MAX_CASES: usize = 20_000;

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Runs `case` on generated inputs until the budget or the case count is spent; a panic names
/// the seed and the input.
fn run(name: &str, seed: u64, generate: impl Fn(&mut Rng) -> Vec<u8>, case: impl Fn(&[u8])) {
    // FUZZ_SEED=<n> explores elsewhere; the default keeps CI reproducible
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(seed, |s| seed ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut n = 0;
    while n < MAX_CASES && started.elapsed() < BUDGET {
        let input = generate(&mut rng);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&input)));
        if outcome.is_err() {
            panic!(
                "{name}: case {n} (seed {seed:#x}) panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        n += 1;
    }
    assert!(n >= 100, "{name}: only {n} cases in {BUDGET:?}");
    eprintln!("{name}: {n} cases in {:?}", started.elapsed());
}

const XML_TOKENS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "<a>",
    "</a>",
    "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">",
    "</ds:Signature>",
    "&amp;",
    "&#x0;",
    "&#xD800;",
    "&bogus;",
    "&",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?pi x?>",
    "<?xml version=\"1.0\"?>",
    "<!DOCTYPE a>",
    "xmlns=\"\"",
    " xmlns:p=\"urn:p\"",
    " a=\"1\"",
    " a='<'",
    "\r\n",
    "\r",
    "\u{feff}",
    "\u{10FFFF}",
    "订单",
    "\"",
    "'",
    "=",
    " ",
];

fn corpus() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir("tests/ceb_corpus")
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    docs.sort();
    docs
}

/// A corpus document with a few mutations: a byte changed, a token inserted, a slice cut or
/// repeated, or the text truncated.
fn mutate(rng: &mut Rng, docs: &[String]) -> Vec<u8> {
    let mut doc = rng.pick(docs).clone().into_bytes();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(doc.len() + 1);
        match rng.below(5) {
            0 if !doc.is_empty() => {
                let i = at.min(doc.len() - 1);
                doc[i] = rng.next() as u8;
            }
            1 => {
                let t = rng.pick(XML_TOKENS).as_bytes();
                doc.splice(at..at, t.iter().copied());
            }
            2 => {
                let end = (at + rng.below(64)).min(doc.len());
                doc.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(64)).min(doc.len());
                let piece: Vec<u8> = doc[at..end].to_vec();
                doc.splice(at..at, piece.iter().copied().cycle().take(piece.len() * 8));
            }
            _ => doc.truncate(at),
        }
    }
    doc
}

#[test]
fn the_xml_parser_and_c14n_never_panic_and_c14n_is_idempotent() {
    let docs = corpus();
    run(
        "c14n",
        0x5eed_c14e,
        |rng| mutate(rng, &docs),
        |input| {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            match c14n::parse(&c14n::normalise_line_ends(text)) {
                Ok(doc) => {
                    let once = c14n::canonicalize(&doc);
                    let again = c14n::parse(&once).expect("C14N output is well-formed");
                    assert_eq!(c14n::canonicalize(&again), once, "C14N is idempotent");
                }
                Err(e) => {
                    assert!(e.line >= 1 && e.column >= 1, "{e}");
                    assert!(!e.reason.is_empty());
                }
            }
        },
    );
}

#[test]
fn the_ceb_verifier_and_signer_never_panic() {
    let docs = corpus();
    // signed-shaped documents: the corpus with a signature inserted, then mutated
    let signed: Vec<String> = docs
        .iter()
        .filter_map(|d| {
            let u = ceb::Unsigned::prepare(d).ok()?;
            let digest = u.digest(&ceb::Form::RSA);
            Some(u.signed(&ceb::Form::RSA, &digest, "AAAA", "01", "MIIB"))
        })
        .collect();
    assert!(!signed.is_empty());
    run(
        "ceb",
        0x5eed_ceb0,
        |rng| mutate(rng, &signed),
        |input| {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            match ceb::verify(text, 1_700_000_000, Some(("01", b"not a cert"))) {
                Ok(v) => {
                    assert!(!v.valid(), "nothing here is signed by a card");
                    assert!(!v.errors.is_empty(), "an invalid answer says why");
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
            if let Ok(u) = ceb::Unsigned::prepare(text) {
                let digest = u.digest(&ceb::Form::SM2);
                u.canonical_signed_info(&ceb::Form::SM2, &digest)
                    .expect("SignedInfo of an accepted message canonicalises");
            }
        },
    );
}

/// A random JSON value, shallow or deep, with the awkward numbers and strings.
fn json_value(rng: &mut Rng, depth: usize) -> String {
    let leaf = |rng: &mut Rng| -> String {
        rng.pick(&[
            "null",
            "true",
            "0",
            "-1",
            "1e400",
            "123456789012345678901234567890",
            "143.64",
            "0.1",
            "\"\"",
            "\"143.640\"",
            "\"订单\"",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "\"a\\\"b\"",
            "{}",
            "[]",
            "9007199254740993",
            "-0.0",
            "1E-400",
        ])
        .to_string()
    };
    if depth == 0 || rng.below(3) == 0 {
        return leaf(rng);
    }
    if rng.below(2) == 0 {
        let items: Vec<String> = (0..rng.below(4))
            .map(|_| json_value(rng, depth - 1))
            .collect();
        format!("[{}]", items.join(","))
    } else {
        let keys = [
            "sessionID",
            "sessionId",
            "guid",
            "totalAmount",
            "orderNo",
            "goodsInfo",
            "gname",
            "_method",
            "args",
            "xml",
            "data",
            "x",
        ];
        let items: Vec<String> = (0..rng.below(4))
            .map(|_| format!("\"{}\":{}", rng.pick(&keys), json_value(rng, depth - 1)))
            .collect();
        format!("{{{}}}", items.join(","))
    }
}

/// A valid 179 order with one field replaced by a random value, or random JSON, or a
/// truncated or deeply nested body.
fn order_body(rng: &mut Rng) -> Vec<u8> {
    let order = r#"{"sessionID":"s","payExchangeInfoHead":{"guid":"a1","initalRequest":"r","initalResponse":"ok","ebpCode":"E","payCode":"P","payTransactionId":"T","totalAmount":143.64,"currency":"142","verDept":"3","payType":"4","tradingTime":"20250811185359","note":"n"},"payExchangeInfoLists":[{"orderNo":"O","goodsInfo":[{"gname":"g","itemLink":"https://x/y"}],"recpAccount":"1","recpCode":"","recpName":"n"}],"serviceTime":1756571640000}"#;
    match rng.below(4) {
        0 => json_value(rng, 6).into_bytes(),
        1 => {
            let fields = [
                "\"s\"",
                "143.64",
                "\"a1\"",
                "1756571640000",
                "\"O\"",
                "\"g\"",
            ];
            let f = rng.pick(&fields);
            order.replacen(f, &json_value(rng, 3), 1).into_bytes()
        }
        2 => {
            let d = 100 + rng.below(200);
            format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()
        }
        _ => {
            let cut = rng.below(order.len());
            order.as_bytes()[..cut].to_vec()
        }
    }
}

#[test]
fn the_customs_json_bodies_never_panic() {
    run(
        "customs179",
        0x5eed_0179,
        order_body,
        |input| match customs179::parse_order(input) {
            Ok(order) => {
                for part in [&order.head_json, &order.lists_json] {
                    serde_json::from_str::<serde_json::Value>(part)
                        .expect("what is signed is JSON");
                }
                let upload = order.upload_json("01", "sig");
                serde_json::from_str::<serde_json::Value>(&upload).expect("the upload is JSON");
            }
            Err(e) => assert!(!e.path.is_empty() && !e.reason.is_empty(), "{e}"),
        },
    );
    run(
        "rpc",
        0x5eed_0bc0,
        |rng| json_value(rng, 6).into_bytes(),
        |input| {
            if let Err(e) = rpc::parse_call(input) {
                assert!(!e.is_empty());
            }
        },
    );
    run(
        "ceb body",
        0x5eed_b0d7,
        |rng| json_value(rng, 6).into_bytes(),
        |input| {
            for content_type in ["application/json", "application/xml", ""] {
                if let Err(e) = ceb_http::message_of(input, content_type) {
                    assert!(!e.is_empty());
                }
            }
        },
    );
}
