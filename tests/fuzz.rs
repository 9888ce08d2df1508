//! Property tests for the parsers of hostile input (issue 32.4): the XML parser and C14N, the CEB
//! verifier, and the JSON bodies of the customs endpoints, fed mutated and generated inputs from
//! a small deterministic PRNG for a bounded time each (about 2 s, or a case count, whichever comes
//! first). Each must answer Ok or a well-formed error, never panic or hang; what it accepts must
//! keep its own invariants (C14N is idempotent, a signed order's head and lists are JSON). A
//! failure prints the seed and the input, so it can be replayed; `FUZZ_SEED=<n>` explores other
//! inputs.

// the harness alone: this target builds without the simulator that the rest of tests/common needs
#[path = "common/fuzz.rs"]
mod harness;

use chinaport_proxy::customs::{c14n, ceb, customs179};
use chinaport_proxy::http::{ceb as ceb_http, rpc};
use harness::{Rng, json_value, run};

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

/// A corpus document with a few mutations.
fn mutate(rng: &mut Rng, docs: &[String]) -> Vec<u8> {
    let doc = rng.pick(docs).clone();
    harness::mutate(rng, doc.as_bytes(), XML_TOKENS)
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
