//! Property tests of the authentication schemes' parsers and verifiers (issue 32.4): `md5`,
//! `hmac` (x-mg), `httpsig` (RFC 9421 `Signature-Input` / `Signature`), `checksum` (the signed
//! body fields), `token`, RFC 9530 `Content-Digest`, the replay memory and the dispatch between
//! schemes, fed random header values and mutations of validly signed requests from the shared
//! harness (tests/common/fuzz.rs: a fixed seed, about 2 s or 20,000 cases per target, a failure
//! names the seed and the input; `FUZZ_SEED=<n>` explores elsewhere).
//!
//! Each must answer Ok or a well-formed error (never panic or hang), give the same answer to
//! the same request from the same state, never put the expected signature in its error, and
//! accept a mutated request only when what the scheme signs is unchanged: flipping a byte of the
//! signature or of a covered field, or moving bytes across the boundary of two signed fields,
//! makes verification fail. Last, the running binary answers a batch of fuzzed auth headers
//! with a 401 in JSON and keeps serving.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chinaport_proxy::auth::httpsig::{self, HttpSigScheme, SigningKey};
use chinaport_proxy::auth::mg::{self, MgAlg, MgScheme};
use chinaport_proxy::auth::replay::{Replay, ReplayCache};
use chinaport_proxy::auth::secret::MacAlg;
use chinaport_proxy::auth::{
    AuthError, Authenticated, Authenticator, ClientKey, Clients, RequestParts, Secret, checksum,
    digest, md5, token,
};
use chinaport_proxy::config::{
    AuthConfig, ChecksumAlgorithm, ChecksumConfig, ChecksumVariant, ClientConfig, HmacConfig,
    Scheme,
};
use common::fuzz::{Rng, json_value, mutate, run_cases};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

const NOW: u64 = 1_700_000_000_000;
const SKEW: u64 = 3000;
const SECRET: &str = "erp-shared-secret-42";
/// RFC 9421 B.1.4 test-key-ed25519.
const ED_PRIVATE: &str = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
const ED_PUBLIC: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";
/// RFC 9421 B.1.1 test-key-rsa.
const RSA_PRIVATE: &str = include_str!("vectors/rfc9421-test-key-rsa.pem");
const RSA_PUBLIC: &str = include_str!("vectors/rfc9421-test-key-rsa.pub.pem");

// ---- requests, and what the mutators do to them ----

/// A request as the schemes see it (`RequestParts`, owned).
#[derive(Clone, PartialEq)]
struct Req {
    method: String,
    path: String,
    query: String,
    authority: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl fmt::Debug for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}{:?} host={:?} headers={:?} body={:?}",
            self.method,
            self.path,
            self.query,
            self.authority,
            self.headers,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl Req {
    fn new(method: &str, path: &str, body: &[u8]) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            authority: "proxy.local:8780".into(),
            headers: vec![("host".into(), "proxy.local:8780".into())],
            body: body.to_vec(),
        }
    }
    fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            authority: &self.authority,
            headers: &self.headers,
            body: &self.body,
        }
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Replaces the first value of `name`, or adds it.
    fn set(&mut self, name: &str, value: String) {
        match self.headers.iter_mut().find(|(n, _)| n == name) {
            Some(h) => h.1 = value,
            None => self.headers.push((name.into(), value)),
        }
    }
    fn with(mut self, name: &str, value: impl Into<String>) -> Req {
        self.set(name, value.into());
        self
    }
}

/// A generated case: the valid request it was made from (none for random tokens), the
/// configuration variant it runs under, and the request.
#[derive(Debug)]
struct Case {
    from: Option<usize>,
    variant: usize,
    req: Req,
}

/// Header names the schemes read, and some they do not.
const NAMES: &[&str] = &[
    "x-timestamp",
    "x-signature",
    "x-mg-secretid",
    "x-mg-nonce",
    "x-mg-sign",
    "x-mg-alg",
    "x-mg-traceid",
    "content-digest",
    "signature-input",
    "signature",
    "content-type",
    "date",
    "x-auth-token-eport-sign",
    "x-other",
];

/// Pieces of header values that matter to the parsers: separators of structured fields,
/// parameters of `Signature-Input`, base64 and hex, numbers at the limits, non-ASCII.
const TOKENS: &[&str] = &[
    " ",
    "\t",
    "0",
    "1",
    "=",
    ":",
    ";",
    ",",
    "\"",
    "(",
    ")",
    "*",
    "?",
    "\\",
    "sig1",
    "sig2=",
    "=:",
    "::",
    "AAAA",
    "==",
    "-",
    "_",
    "+",
    "/",
    "\"@method\"",
    "\"@path\"",
    "\"@query-param\";name=\"x\"",
    "\"content-digest\"",
    ";created=1700000000",
    ";expires=0",
    ";keyid=\"erp\"",
    ";keyid=\"gw\"",
    ";alg=\"hmac-sha256\"",
    ";alg=\"ed25519\"",
    ";alg=\"rsa-pss-sha512\"",
    ";nonce=\"n\"",
    ";bs",
    ";sf",
    ";key=\"a\"",
    ";req",
    "sha-256=",
    "sha-512=",
    "99999999999999999999",
    "1700000000000",
    "-1",
    "0x1f",
    "é",
    "\u{0}",
    "订单",
    "%",
    "\u{7f}",
];

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A value of a few random tokens and characters.
fn random_value(rng: &mut Rng) -> String {
    let mut v = String::new();
    for _ in 0..rng.below(8) {
        if rng.below(3) == 0 {
            v.push(char::from(0x20 + rng.below(0x5f) as u8));
        } else {
            let t = *rng.pick(TOKENS);
            v.push_str(t);
        }
    }
    v
}

/// A request with random values in the headers `names` (and some others), and a random body.
fn random_request(rng: &mut Rng, names: &[&str]) -> Req {
    let method = *rng.pick(&["POST", "GET", "post", "PUT", ""]);
    let body = if rng.below(2) == 0 {
        json_value(rng, 4).into_bytes()
    } else {
        Vec::new()
    };
    let mut r = Req::new(method, "/rpc", &body);
    for _ in 0..1 + rng.below(6) {
        let name = if rng.below(4) == 0 {
            rng.pick(NAMES)
        } else {
            rng.pick(names)
        };
        r.headers.push((name.to_string(), random_value(rng)));
    }
    r
}

/// A few generic mutations: a header's value changed byte-wise, a header removed, repeated or
/// added, the body, method, path, query or host changed.
fn mutate_request(rng: &mut Rng, original: &Req) -> Req {
    let mut r = original.clone();
    for _ in 0..1 + rng.below(3) {
        match rng.below(10) {
            0..=3 if !r.headers.is_empty() => {
                let i = rng.below(r.headers.len());
                r.headers[i].1 = text(mutate(rng, r.headers[i].1.as_bytes(), TOKENS));
            }
            4 if !r.headers.is_empty() => {
                let i = rng.below(r.headers.len());
                r.headers.remove(i);
            }
            5 => {
                let name = if r.headers.is_empty() || rng.below(2) == 0 {
                    rng.pick(NAMES).to_string()
                } else {
                    r.headers[rng.below(r.headers.len())].0.clone()
                };
                let value = random_value(rng);
                let at = rng.below(r.headers.len() + 1);
                r.headers.insert(at, (name, value));
            }
            6 => r.body = mutate(rng, &r.body, TOKENS),
            7 => {
                r.method = if rng.below(2) == 0 {
                    rng.pick(&["POST", "post", "GET", "PoST", "POST ", "P"])
                        .to_string()
                } else {
                    text(mutate(rng, r.method.as_bytes(), TOKENS))
                }
            }
            8 => {
                if rng.below(2) == 0 {
                    r.path = text(mutate(rng, r.path.as_bytes(), TOKENS));
                } else {
                    r.query = text(mutate(rng, r.query.as_bytes(), TOKENS));
                }
            }
            _ => r.authority = text(mutate(rng, r.authority.as_bytes(), TOKENS)),
        }
    }
    r
}

/// `s` with one character replaced by another printable one.
fn flip_char(rng: &mut Rng, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return "x".into();
    }
    let i = rng.below(chars.len());
    let old = chars[i];
    let mut new = old;
    while new == old {
        new = char::from(0x21 + rng.below(0x5e) as u8);
    }
    chars[i] = new;
    chars.into_iter().collect()
}

/// `bytes` with one byte changed.
fn flip_byte(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if b.is_empty() {
        return vec![rng.next() as u8];
    }
    let i = rng.below(b.len());
    b[i] ^= 1 + rng.below(255) as u8;
    b
}

fn hex_case(rng: &mut Rng, bytes: &[u8]) -> String {
    chinaport_proxy::auth::hex(bytes, rng.below(2) == 0)
}

// ---- the properties every scheme shares ----

type Verdict = Result<Authenticated, AuthError>;

/// Tallies of a target's outcomes, so that a target that accepts nothing (or refuses nothing
/// for a bad signature) is noticed rather than passing vacuously.
#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    bad_signature: AtomicUsize,
    refused: AtomicUsize,
}

impl Tally {
    fn count(&self, v: &Verdict) {
        let c = match v {
            Ok(_) => &self.accepted,
            Err(AuthError::BadSignature) => &self.bad_signature,
            Err(_) => &self.refused,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    fn report(&self, name: &str) {
        let (a, b, r) = (
            self.accepted.load(Ordering::Relaxed),
            self.bad_signature.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        );
        eprintln!("{name}: {a} accepted, {b} bad signature, {r} refused otherwise");
        assert!(
            a > 0,
            "{name}: nothing accepted; the valid requests are not"
        );
        assert!(
            b > 0,
            "{name}: no bad signature; the flips do not reach the check"
        );
    }
}

/// One scheme's target: its valid requests, how to make random ones and targeted mutations of
/// valid ones, how to verify under a configuration variant, what its errors must not disclose
/// and what an accepted request may differ in from the one that was signed.
struct Target<'a> {
    name: &'static str,
    seed: u64,
    originals: Vec<Req>,
    /// The configuration variant a case of the original `i` runs under.
    variant: &'a dyn Fn(&mut Rng, usize) -> usize,
    random: &'a dyn Fn(&mut Rng) -> Req,
    targeted: &'a dyn Fn(&mut Rng, &Req) -> Req,
    verify: &'a dyn Fn(&Req, usize) -> Verdict,
    /// The expected signatures: an error never shows them.
    hidden: &'a dyn Fn(&Req, usize) -> Vec<String>,
    /// `Err(why)` when the accepted request (second) differs from the signed one (first) in
    /// what is signed.
    equivalent: &'a dyn Fn(&Req, &Req, usize) -> Result<(), String>,
    /// Further checks of each case's answer.
    also: &'a dyn Fn(&Case, &Verdict),
}

fn any_variant(_: &mut Rng, _: usize) -> usize {
    0
}

fn nothing_hidden(_: &Req, _: usize) -> Vec<String> {
    Vec::new()
}

fn nothing_more(_: &Case, _: &Verdict) {}

/// Checks that every original verifies, then runs the target's cases. Each must get the same
/// answer from the same state (a fresh scheme each time); an error that says something and
/// discloses none of `hidden`; and, when accepted, come from a valid request whose signed
/// content `equivalent` says is unchanged.
fn fuzz(t: Target<'_>) {
    for (i, o) in t.originals.iter().enumerate() {
        let mut rng = Rng(1);
        let variant = (t.variant)(&mut rng, i);
        (t.verify)(o, variant).unwrap_or_else(|e| panic!("{}: {o:?}: {e}", t.name));
    }
    let tally = Tally::default();
    let case_of = |rng: &mut Rng| {
        let i = rng.below(t.originals.len());
        let variant = (t.variant)(rng, i);
        let o = &t.originals[i];
        let (from, req) = match rng.below(16) {
            0..=1 => (None, (t.random)(rng)),
            2 => (Some(i), o.clone()),
            3..=9 => (Some(i), (t.targeted)(rng, o)),
            _ => (Some(i), mutate_request(rng, o)),
        };
        Case { from, variant, req }
    };
    run_cases(t.name, t.seed, case_of, |case| {
        let (r, variant) = (&case.req, case.variant);
        let (first, second) = ((t.verify)(r, variant), (t.verify)(r, variant));
        tally.count(&first);
        match (&first, &second) {
            (Ok(a), Ok(b)) => assert_eq!(a.client, b.client, "not deterministic"),
            (Err(a), Err(b)) => assert_eq!(a, b, "not deterministic"),
            _ => panic!("not deterministic: {first:?}, then {second:?}"),
        }
        match &first {
            Err(e) => {
                let said = e.to_string();
                assert!(!said.trim().is_empty(), "an empty error for {e:?}");
                for h in (t.hidden)(r, variant).iter().filter(|h| h.len() >= 8) {
                    assert!(
                        !said.to_ascii_lowercase().contains(&h.to_ascii_lowercase()),
                        "the error {said:?} discloses {h:?}"
                    );
                }
            }
            Ok(ok) => {
                let Some(i) = case.from else {
                    panic!("forged: random tokens accepted as {:?}", ok.client);
                };
                let o = &t.originals[i];
                if let Err(why) = (t.equivalent)(o, r, variant) {
                    panic!(
                        "forged: accepted as {:?} although {why}; signed: {o:?}",
                        ok.client
                    );
                }
            }
        }
        (t.also)(case, &first);
    });
    tally.report(t.name);
}

fn secret_clients() -> Clients {
    vec![
        ("erp".into(), ClientKey::Secret(Secret::new(SECRET))),
        (
            "other".into(),
            ClientKey::Secret(Secret::new("other-secret")),
        ),
        (
            "gw".into(),
            chinaport_proxy::auth::parse_public_key(ED_PUBLIC).unwrap(),
        ),
    ]
}

// ---- md5 ----

const MD5_NAMES: &[&str] = &["x-timestamp", "x-signature"];

fn md5_signed(method: &str, path: &str, ts: u64, body: &str) -> Req {
    let sig = md5::md5_signature(method, path, &ts.to_string(), body.as_bytes(), SECRET);
    Req::new(method, path, body.as_bytes())
        .with("x-timestamp", ts.to_string())
        .with("x-signature", sig)
        .with("content-type", "application/json")
}

fn md5_originals() -> Vec<Req> {
    vec![
        md5_signed(
            "POST",
            "/rpc",
            NOW,
            r#"{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"x"}}"#,
        ),
        // a path that ends in a digit, next to the timestamp in the signed string
        md5_signed("POST", "/api/orders/100", NOW - 1000, "{}"),
        md5_signed("GET", "/api/ceb/sign0", NOW + 2000, ""),
        md5_signed("POST", "/rpc", NOW, "9{\"订单\":1}"),
    ]
}

/// What an md5 request means: the method (upper-cased, as signed), path, timestamp, body and
/// signature. A different meaning behind the same signature is a forgery, even when the signed
/// string (the fields run together) is the same.
fn md5_meaning(r: &Req) -> Option<Md5Meaning> {
    let ts = r.header("x-timestamp")?.trim().parse().ok()?;
    let mut sig = [0u8; 16];
    let sig = chinaport_proxy::auth::decode_hex(r.header("x-signature")?.trim(), &mut sig)?;
    Some(Md5Meaning {
        method: r.method.to_ascii_uppercase(),
        path: r.path.clone(),
        timestamp: ts,
        body: r.body.clone(),
        signature: sig.to_vec(),
    })
}

#[derive(Debug, PartialEq)]
struct Md5Meaning {
    method: String,
    path: String,
    timestamp: u64,
    body: Vec<u8>,
    signature: Vec<u8>,
}

/// Moves a few bytes across the boundary of two fields that are signed run together (method
/// and path, path and timestamp, timestamp and body): the signed string stays the same.
fn md5_shift(rng: &mut Rng, o: &Req) -> Req {
    let mut r = o.clone();
    let mut ts = r.header("x-timestamp").unwrap_or_default().to_string();
    let k = 1 + rng.below(3);
    match rng.below(5) {
        0 if r.path.len() > k => {
            let tail = r.path.split_off(r.path.len() - k);
            ts.insert_str(0, &tail);
        }
        1 if ts.len() > k => {
            let head: String = ts.drain(..k).collect();
            r.path.push_str(&head);
        }
        2 if ts.len() > k => {
            let tail = ts.split_off(ts.len() - k);
            r.body.splice(0..0, tail.bytes());
        }
        3 if r.body.len() >= k && r.body[..k].is_ascii() => {
            let head: Vec<u8> = r.body.drain(..k).collect();
            ts.push_str(&String::from_utf8_lossy(&head));
        }
        _ if r.method.len() > 1 => {
            let last = r.method.split_off(r.method.len() - 1);
            r.path.insert_str(0, &last);
        }
        _ => {}
    }
    // a leading zero keeps a timestamp's value: what shifting a path's final 0 relies on
    if rng.below(2) == 0 && !ts.starts_with('0') {
        ts.insert(0, '0');
        r.path.push('0');
    }
    r.with("x-timestamp", ts)
}

/// The signature's bytes changed, bytes moved between signed fields, or one covered field
/// changed.
fn md5_targeted(rng: &mut Rng, o: &Req) -> Req {
    let mut r = o.clone();
    match rng.below(7) {
        0..=2 => {
            let mut sig = [0u8; 16];
            let raw = chinaport_proxy::auth::decode_hex(o.header("x-signature").unwrap(), &mut sig)
                .unwrap();
            let flipped = flip_byte(rng, raw);
            r.set("x-signature", hex_case(rng, &flipped));
        }
        3..=4 => return md5_shift(rng, o),
        _ => match rng.below(4) {
            0 => r.method = flip_char(rng, &r.method),
            1 => r.path = flip_char(rng, &r.path),
            2 => {
                let ts = flip_char(rng, r.header("x-timestamp").unwrap());
                r.set("x-timestamp", ts);
            }
            _ => r.body = flip_byte(rng, &r.body),
        },
    }
    r
}

#[test]
fn md5_never_panics_and_accepts_only_what_was_signed() {
    let clients = secret_clients();
    fuzz(Target {
        name: "md5",
        seed: 0x5eed_0d05,
        originals: md5_originals(),
        variant: &any_variant,
        random: &|rng| random_request(rng, MD5_NAMES),
        targeted: &md5_targeted,
        verify: &|r, _| md5::Md5Scheme::new(SKEW, 100).verify(&r.parts(), &clients, NOW),
        hidden: &|r, _| {
            let ts = r.header("x-timestamp").unwrap_or_default().trim();
            vec![md5::md5_signature(&r.method, &r.path, ts, &r.body, SECRET)]
        },
        equivalent: &|o, r, _| {
            if md5_meaning(o) == md5_meaning(r) {
                Ok(())
            } else {
                Err(format!("it means {:?}", md5_meaning(r)))
            }
        },
        also: &nothing_more,
    });
}

// ---- hmac (x-mg) ----

const MG_NAMES: &[&str] = &[
    "x-mg-secretid",
    "x-mg-nonce",
    "x-mg-sign",
    "x-mg-alg",
    "x-mg-traceid",
    "x-timestamp",
    "content-digest",
];

/// The four configurations: body digest required or not, responses signed or not.
fn mg_config(variant: usize) -> HmacConfig {
    HmacConfig {
        require_body_digest: variant & 1 != 0,
        sign_response: variant & 2 != 0,
    }
}

fn mg_originals() -> Vec<Req> {
    let secret = Secret::new(SECRET);
    let algs = [
        MgAlg::HmacMd5,
        MgAlg::HmacSha1,
        MgAlg::HmacSha256,
        MgAlg::HmacSha512,
    ];
    algs.iter()
        .enumerate()
        .map(|(i, alg)| {
            let nonce = format!("a1b2c3d4e5f6071{i}");
            let body = format!("{{\"n\":{i}}}");
            Req::new("POST", "/rpc", body.as_bytes())
                .with("x-mg-secretid", "erp")
                .with("x-mg-nonce", nonce.clone())
                .with("x-mg-alg", alg.code())
                .with("x-mg-sign", mg::mg_sign(*alg, "erp", &secret, &nonce))
                .with("x-mg-traceid", format!("trace-{i}"))
                .with("x-timestamp", NOW.to_string())
                .with(
                    "content-digest",
                    digest::content_digest("sha-256", body.as_bytes()).unwrap(),
                )
        })
        .collect()
}

/// What the x-mg signature covers: the client, the nonce, the algorithm and the signature.
fn mg_meaning(r: &Req) -> Option<(String, String, MgAlg, String)> {
    let h = |n: &str| r.header(n).map(|v| v.trim().to_string());
    Some((
        h("x-mg-secretid")?,
        h("x-mg-nonce")?,
        MgAlg::parse(r.header("x-mg-alg")?)?,
        h("x-mg-sign")?,
    ))
}

/// The signature's bytes changed, a covered header changed, or the (unsigned) body.
fn mg_targeted(rng: &mut Rng, o: &Req) -> Req {
    let mut r = o.clone();
    match rng.below(7) {
        0..=2 => {
            let raw = B64.decode(o.header("x-mg-sign").unwrap()).unwrap();
            r.set("x-mg-sign", B64.encode(flip_byte(rng, &raw)));
        }
        3..=5 => {
            let name = *rng.pick(&["x-mg-secretid", "x-mg-nonce", "x-mg-sign", "x-mg-alg"]);
            let value = if name == "x-mg-alg" {
                rng.pick(&["0", "1", "2", "3"]).to_string()
            } else {
                flip_char(rng, o.header(name).unwrap())
            };
            r.set(name, value);
        }
        _ => r.body = flip_byte(rng, &r.body),
    }
    r
}

/// What an x-mg request accepted under `variant` must also have: a digest that matches the
/// body, both headers when they are required.
fn mg_equivalent(o: &Req, r: &Req, variant: usize) -> Result<(), String> {
    if mg_meaning(o) != mg_meaning(r) {
        return Err(format!("it means {:?}", mg_meaning(r)));
    }
    if let Some(d) = r.header("content-digest") {
        digest::verify(d, &r.body).map_err(|e| format!("its digest: {e}"))?;
    }
    if mg_config(variant).require_body_digest
        && (r.header("x-timestamp").is_none() || r.header("content-digest").is_none())
    {
        return Err("the required body digest is missing".into());
    }
    Ok(())
}

#[test]
fn hmac_never_panics_and_accepts_only_what_was_signed() {
    let clients = secret_clients();
    let secret = Secret::new(SECRET);
    fuzz(Target {
        name: "hmac",
        seed: 0x5eed_00e6,
        originals: mg_originals(),
        variant: &|rng, _| rng.below(4),
        random: &|rng| random_request(rng, MG_NAMES),
        targeted: &mg_targeted,
        verify: &|r, variant| {
            MgScheme::new(SKEW, mg_config(variant), 100).verify(&r.parts(), &clients, NOW)
        },
        hidden: &|r, _| {
            let alg = r.header("x-mg-alg").and_then(MgAlg::parse);
            match (alg, r.header("x-mg-secretid"), r.header("x-mg-nonce")) {
                (Some(alg), Some(id), Some(nonce)) => {
                    vec![mg::mg_sign(alg, id.trim(), &secret, nonce.trim())]
                }
                _ => Vec::new(),
            }
        },
        equivalent: &mg_equivalent,
        also: &|case, verdict| {
            let r = &case.req;
            let failure = MgScheme::failure_headers(&r.parts());
            assert_eq!(failure[0], ("x-mg-code".to_string(), "401".to_string()));
            // an accepted request's response signature is one the caller can check
            let Ok(ok) = verdict else { return };
            assert_eq!(ok.trace_id.as_deref(), r.header("x-mg-traceid"));
            if mg_config(case.variant).sign_response {
                let h = |n: &str| {
                    let found = ok.response_headers.iter().find(|(k, _)| k == n);
                    found.map(|(_, v)| v.clone()).unwrap()
                };
                let alg = MgAlg::parse(&h("x-mg-alg")).unwrap();
                let (nonce, sign) = (h("x-mg-nonce"), h("x-mg-sign"));
                assert!(mg::mg_matches(alg, &ok.client, &secret, &nonce, &sign));
            }
        },
    });
}

// ---- httpsig (RFC 9421) ----

const HTTPSIG_NAMES: &[&str] = &["signature-input", "signature", "content-digest", "date"];

fn httpsig_clients() -> Clients {
    let mut c = secret_clients();
    c.push((
        "rsa".into(),
        chinaport_proxy::auth::parse_public_key(RSA_PUBLIC).unwrap(),
    ));
    c
}

fn httpsig_originals() -> Vec<Req> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let ed = ed25519_dalek::SigningKey::from_pkcs8_der(&B64.decode(ED_PRIVATE).unwrap()).unwrap();
    let rsa = chinaport_proxy::auth::keys::rsa_private(RSA_PRIVATE).unwrap();
    let keys = [
        ("erp", SigningKey::Hmac(Secret::new(SECRET))),
        ("gw", SigningKey::Ed25519(ed)),
        ("rsa", SigningKey::Rsa(Box::new(rsa))),
    ];
    let shapes: [(&[&str], &[u8], Option<&str>); 4] = [
        (
            &["@method", "@path", "@authority", "content-digest"],
            b"{\"hello\": \"world\"}",
            Some("n-1"),
        ),
        (
            &[
                "@method",
                "@authority",
                "@path",
                "@query",
                "content-type",
                "content-digest",
                "date",
            ],
            b"{}",
            None,
        ),
        (
            &["@target-uri", "@method", "@path", "@authority", "@scheme"],
            b"",
            Some("n-3"),
        ),
        (
            &["@request-target", "@method", "@path", "@authority", "date"],
            b"",
            None,
        ),
    ];
    let mut out = Vec::new();
    for (keyid, key) in &keys {
        for (components, body, nonce) in &shapes {
            let mut r = Req::new("POST", "/api/ceb/sign", body)
                .with("content-type", "application/json")
                .with("date", "Tue, 14 Nov 2023 22:13:20 GMT");
            r.query = "?x=1&Pet=dog".into();
            if !body.is_empty() {
                r.set(
                    "content-digest",
                    digest::content_digest("sha-512", body).unwrap(),
                );
            }
            let (input, sig) = httpsig::sign(
                &r.parts(),
                components,
                (NOW / 1000) as i64,
                Some(keyid),
                *nonce,
                key,
            )
            .unwrap();
            out.push(r.with("signature-input", input).with("signature", sig));
        }
    }
    out
}

/// What an RFC 9421 signature covers: the signature base (the covered components and the
/// parameters) and the signature's bytes; and, through the digest, the body.
fn httpsig_meaning(r: &Req) -> Result<(String, Vec<u8>), AuthError> {
    let input = r
        .header("signature-input")
        .ok_or(AuthError::MissingHeader("Signature-Input"))?;
    let sig = r
        .header("signature")
        .ok_or(AuthError::MissingHeader("Signature"))?;
    let parsed = httpsig::parse_headers(input, sig)?;
    let base = httpsig::signature_base(&parsed.inner, &r.parts())?;
    Ok((base, parsed.signature))
}

/// The signature's bytes changed, re-encoded as a byte sequence.
fn httpsig_flip_signature(rng: &mut Rng, o: &Req) -> Req {
    let sig = o.header("signature").unwrap();
    let b64 = sig.trim_start_matches("sig1=:").trim_end_matches(':');
    let raw = B64.decode(b64).unwrap();
    o.clone().with(
        "signature",
        format!("sig1=:{}:", B64.encode(flip_byte(rng, &raw))),
    )
}

/// One covered field or component changed, or the parameters of `Signature-Input`.
fn httpsig_flip_covered(rng: &mut Rng, o: &Req) -> Req {
    let mut r = o.clone();
    match rng.below(7) {
        0 => r.method = flip_char(rng, &r.method),
        1 => r.path = flip_char(rng, &r.path),
        2 => r.authority = flip_char(rng, &r.authority),
        3 => r.query = flip_char(rng, &r.query),
        4 => {
            let name = *rng.pick(&["content-type", "date", "content-digest"]);
            let v = flip_char(rng, r.header(name).unwrap_or_default());
            r.set(name, v);
        }
        5 => r.body = flip_byte(rng, &r.body),
        _ => {
            let input = r.header("signature-input").unwrap().to_string();
            let changed = match rng.below(4) {
                0 => input.replace(
                    &format!(";created={}", NOW / 1000),
                    &format!(";created={}", NOW / 1000 + 1),
                ),
                1 => input.replace(";nonce=\"n-", ";nonce=\"m-"),
                2 => input.replacen("\"@method\" ", "", 1),
                _ => format!("{input};expires={}", NOW / 1000 + 60),
            };
            r.set("signature-input", changed);
        }
    }
    r
}

/// Random values, sometimes in the shape of a real `Signature-Input`.
fn httpsig_random(rng: &mut Rng) -> Req {
    let mut r = random_request(rng, HTTPSIG_NAMES);
    if rng.below(2) == 0 {
        let input = format!(
            "sig1=({} \"@method\" \"@path\" \"@authority\"){};created={}",
            random_value(rng),
            random_value(rng),
            NOW / 1000
        );
        r.set("signature-input", input);
        r.set("signature", format!("sig1=:{}:", random_value(rng)));
    }
    r
}

#[test]
fn httpsig_never_panics_and_accepts_only_what_was_signed() {
    let clients = httpsig_clients();
    let secret = Secret::new(SECRET);
    fuzz(Target {
        name: "httpsig",
        seed: 0x5eed_9421,
        originals: httpsig_originals(),
        variant: &any_variant,
        random: &httpsig_random,
        targeted: &|rng, o| {
            if rng.below(2) == 0 {
                httpsig_flip_signature(rng, o)
            } else {
                httpsig_flip_covered(rng, o)
            }
        },
        verify: &|r, _| HttpSigScheme::new(SKEW, 100).verify(&r.parts(), &clients, NOW),
        // the HMAC it should have carried
        hidden: &|r, _| match httpsig_meaning(r) {
            Ok((base, _)) => {
                let mac = secret.mac(MacAlg::Sha256, &[base.as_bytes()]);
                vec![B64.encode(mac.as_bytes())]
            }
            Err(_) => Vec::new(),
        },
        equivalent: &|o, r, _| {
            let (was, is) = (httpsig_meaning(o), httpsig_meaning(r));
            if was != is {
                return Err(format!("its base and signature are {is:?}"));
            }
            if o.header("content-digest").is_some() && o.body != r.body {
                return Err("its body differs".into());
            }
            Ok(())
        },
        also: &nothing_more,
    });
}

// ---- checksum (sorted fields in the body) ----

fn checksum_config(variant: usize) -> ChecksumConfig {
    let (v, a) = match variant {
        0 => (ChecksumVariant::Pairs, ChecksumAlgorithm::Md5),
        1 => (ChecksumVariant::Pairs, ChecksumAlgorithm::HmacSha256),
        _ => (ChecksumVariant::Values, ChecksumAlgorithm::Md5),
    };
    ChecksumConfig {
        variant: v,
        algorithm: a,
        exclude: vec!["note".into()],
        ..ChecksumConfig::default()
    }
}

const CHECKSUM_VARIANTS: usize = 3;

/// Valid bodies, `CHECKSUM_VARIANTS` per shape (each signed under its variant).
fn checksum_originals() -> Vec<Req> {
    let secret = Secret::new(SECRET);
    let shapes = [
        json!({"_method": "cus-sec_SpcSignDataAsPEM", "args": {"inData": "x"},
               "timestamp": NOW, "nonce": "n-1"}),
        json!({"orderNo": "O-100", "amount": "143.64", "timestamp": (NOW / 1000).to_string(),
               "nonce": "n-2", "note": "not signed", "empty": "", "none": null}),
        json!({"gname": "订单", "list": [1, "x", {"b": true}], "timestamp": NOW - 2000,
               "nonce": "n-3"}),
    ];
    let mut out = Vec::new();
    for shape in &shapes {
        for variant in 0..CHECKSUM_VARIANTS {
            let mut obj = shape.as_object().unwrap().clone();
            let sig = checksum::sign(&obj, &checksum_config(variant), &secret);
            obj.insert("sign".into(), Value::String(sig));
            out.push(Req::new(
                "POST",
                "/rpc",
                Value::Object(obj).to_string().as_bytes(),
            ));
        }
    }
    out
}

/// What the checksum signs, computed here apart from the scheme's code: the signed fields
/// (neither `sign` nor an excluded one, no null or empty value) sorted by name, as
/// `name=value&…` (pairs) or the values run together (values); and the signature's bytes.
/// Moving text between fields without changing that string keeps the signature: the formats
/// have no unambiguous separator, which is why the scheme remembers the signature itself (M2).
fn checksum_meaning(r: &Req, variant: usize) -> Option<(String, Vec<u8>)> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&r.body) else {
        return None;
    };
    let mut fields: Vec<(&String, &Value)> = obj
        .iter()
        .filter(|(k, _)| *k != "sign" && *k != "note")
        .collect();
    fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut signed = String::new();
    for (k, v) in fields {
        let value = match v {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if checksum_config(variant).variant == ChecksumVariant::Pairs {
            signed.push_str(&format!("{k}={value}&"));
        } else {
            signed.push_str(&value);
        }
    }
    let sig = obj.get("sign")?.as_str()?.trim();
    let mut raw = vec![0u8; sig.len() / 2];
    let raw = chinaport_proxy::auth::decode_hex(sig, &mut raw)?.to_vec();
    Some((signed, raw))
}

fn with_body(o: &Req, obj: Map<String, Value>) -> Req {
    let mut r = o.clone();
    r.body = Value::Object(obj).to_string().into_bytes();
    r
}

/// One field of the body changed, added, removed or renamed; or the signature's hex.
fn checksum_flip(rng: &mut Rng, o: &Req) -> Req {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&o.body) else {
        return o.clone();
    };
    let keys: Vec<String> = obj.keys().cloned().collect();
    let key = rng.pick(&keys).clone();
    match rng.below(6) {
        0 => {
            let sig = obj["sign"].as_str().unwrap_or_default().to_string();
            let mut raw = vec![0u8; sig.len() / 2];
            if let Some(raw) = chinaport_proxy::auth::decode_hex(&sig, &mut raw) {
                let flipped = flip_byte(rng, raw);
                let flipped = hex_case(rng, &flipped);
                obj.insert("sign".into(), Value::String(flipped));
            }
        }
        1 => {
            let changed = match &obj[&key] {
                Value::String(s) => Value::String(flip_char(rng, s)),
                Value::Number(n) => json!(n.as_u64().unwrap_or(0).wrapping_add(1)),
                other => serde_json::from_str(&json_value(rng, 2)).unwrap_or(other.clone()),
            };
            obj.insert(key, changed);
        }
        2 => {
            obj.remove(&key);
        }
        3 => {
            if let Some(v) = obj.remove(&key) {
                obj.insert(flip_char(rng, &key), v);
            }
        }
        4 => {
            let v = serde_json::from_str(&json_value(rng, 2)).unwrap_or(Value::Null);
            obj.insert(rng.pick(common::fuzz::JSON_KEYS).to_string(), v);
        }
        _ => {
            // the same object laid out otherwise: equivalent, and accepted
            let mut r = o.clone();
            r.body = serde_json::to_vec_pretty(&Value::Object(obj)).unwrap();
            return r;
        }
    }
    with_body(o, obj)
}

/// A random JSON body, or an object of random fields with a random signature.
fn checksum_random(rng: &mut Rng) -> Req {
    let mut r = Req::new("POST", "/rpc", json_value(rng, 4).as_bytes());
    if rng.below(2) == 0 {
        let mut obj = Map::new();
        for _ in 0..rng.below(5) {
            let v = serde_json::from_str(&json_value(rng, 2)).unwrap_or(Value::Null);
            obj.insert(rng.pick(common::fuzz::JSON_KEYS).to_string(), v);
        }
        obj.insert("sign".into(), Value::String(random_value(rng)));
        r.body = Value::Object(obj).to_string().into_bytes();
    }
    r
}

#[test]
fn checksum_never_panics_and_accepts_only_what_was_signed() {
    let clients = secret_clients();
    let secret = Secret::new(SECRET);
    fuzz(Target {
        name: "checksum",
        seed: 0x5eed_c5c5,
        originals: checksum_originals(),
        variant: &|_, i| i % CHECKSUM_VARIANTS,
        random: &checksum_random,
        targeted: &|rng, o| {
            if rng.below(4) == 0 {
                let mut r = o.clone();
                r.body = mutate(rng, &o.body, TOKENS);
                r
            } else {
                checksum_flip(rng, o)
            }
        },
        verify: &|r, variant| {
            let scheme = checksum::ChecksumScheme::new(SKEW, checksum_config(variant), 100);
            scheme.verify(&r.parts(), &clients, NOW)
        },
        hidden: &|r, variant| match serde_json::from_slice::<Value>(&r.body) {
            Ok(Value::Object(obj)) => {
                vec![checksum::sign(&obj, &checksum_config(variant), &secret)]
            }
            _ => Vec::new(),
        },
        equivalent: &|o, r, variant| {
            let (was, is) = (checksum_meaning(o, variant), checksum_meaning(r, variant));
            if was != is {
                return Err(format!("it signs {is:?}"));
            }
            Ok(())
        },
        // what goes on is the body without its signature field
        also: &|_, verdict| {
            if let Ok(ok) = verdict {
                let body: Value = serde_json::from_slice(ok.body.as_deref().unwrap()).unwrap();
                assert!(body.is_object() && body.get("sign").is_none(), "{body}");
            }
        },
    });
}

// ---- token, Content-Digest ----

#[test]
fn the_token_is_accepted_only_when_it_is_a_secret() {
    let clients = secret_clients();
    let with_token =
        |v: &str| Req::new("POST", "/rpc/eport/signature", b"{}").with(token::HEADER, v);
    fuzz(Target {
        name: "token",
        seed: 0x5eed_7043,
        originals: vec![with_token(SECRET), with_token("other-secret")],
        variant: &any_variant,
        random: &|rng| with_token(&random_value(rng)),
        targeted: &|rng, o| {
            let given = o.header(token::HEADER).unwrap();
            if rng.below(2) == 0 {
                with_token(&flip_char(rng, given))
            } else {
                with_token(&text(mutate(rng, given.as_bytes(), TOKENS)))
            }
        },
        verify: &|r, _| token::TokenScheme::verify(&r.parts(), &clients),
        hidden: &|_, _| vec![SECRET.to_string(), "other-secret".to_string()],
        // the token signs nothing: it is accepted as it is, or not at all
        equivalent: &|o, r, _| {
            if o.header(token::HEADER) == r.header(token::HEADER) {
                Ok(())
            } else {
                Err(format!("its token is {:?}", r.header(token::HEADER)))
            }
        },
        also: &nothing_more,
    });
}

#[test]
fn a_content_digest_that_accepts_one_body_refuses_another() {
    let bodies: [&[u8]; 3] = [b"", b"{\"hello\": \"world\"}", "订单".as_bytes()];
    let valid: Vec<(usize, String)> = bodies
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            ["sha-256", "sha-512"]
                .map(|alg| (i, digest::content_digest(alg, b).unwrap()))
                .into_iter()
        })
        .collect();
    let accepted = AtomicUsize::new(0);
    run_cases(
        "content-digest",
        0x5eed_9530,
        |rng| {
            let (i, d) = rng.pick(&valid).clone();
            let header = match rng.below(4) {
                0 => random_value(rng),
                1 => {
                    let (_, other) = rng.pick(&valid);
                    format!("{d}, {other}")
                }
                _ => text(mutate(rng, d.as_bytes(), TOKENS)),
            };
            (i, header)
        },
        |(i, header)| {
            let body = bodies[*i];
            let first = digest::verify(header, body);
            assert_eq!(first, digest::verify(header, body), "not deterministic");
            match first {
                Ok(()) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let mut other = body.to_vec();
                    other.push(b' ');
                    assert!(
                        digest::verify(header, &other).is_err(),
                        "{header:?} accepts two bodies"
                    );
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        },
    );
    assert!(accepted.load(Ordering::Relaxed) > 0);
}

// ---- the replay memory, against a model ----

/// One call of `ReplayCache::remember`.
#[derive(Debug, Clone)]
struct Remember {
    client: &'static str,
    values: Vec<Vec<Vec<u8>>>,
    now: u64,
    expires: u64,
}

/// The rules of the replay memory, written plainly: per client, what is live (expiry not before
/// now) is refused as seen; more than the capacity is refused as full; otherwise every value is
/// kept until its expiry (never before now).
#[derive(Default)]
struct Model {
    live: HashMap<(&'static str, Vec<Vec<u8>>), u64>,
}

impl Model {
    fn remember(&mut self, call: &Remember, capacity: usize) -> Result<(), Replay> {
        self.live
            .retain(|(c, _), at| *c != call.client || *at >= call.now);
        let key = |v: &Vec<Vec<u8>>| (call.client, v.clone());
        if call.values.iter().any(|v| self.live.contains_key(&key(v))) {
            return Err(Replay::Seen);
        }
        let held = self.live.keys().filter(|(c, _)| *c == call.client).count();
        if held + call.values.len() > capacity {
            return Err(Replay::Full);
        }
        for v in &call.values {
            self.live.insert(key(v), call.expires.max(call.now));
        }
        Ok(())
    }
}

fn remember_calls(rng: &mut Rng) -> (usize, Vec<Remember>) {
    let capacity = 1 + rng.below(6);
    let mut now = 1_000u64;
    let parts: [&[u8]; 5] = [b"", b"a", b"ab", b"b", b"nonce"];
    let calls = (0..1 + rng.below(60))
        .map(|_| {
            // mostly forward, sometimes still, sometimes back (a clock set back)
            match rng.below(8) {
                0 => now = now.saturating_sub(rng.below(50) as u64),
                1 => {}
                _ => now += rng.below(40) as u64,
            }
            let values = (0..1 + rng.below(3))
                .map(|_| {
                    (0..1 + rng.below(2))
                        .map(|_| rng.pick(&parts).to_vec())
                        .collect()
                })
                .collect();
            Remember {
                client: ["a", "b", "c"][rng.below(3)],
                values,
                now,
                expires: (now + rng.below(100) as u64).saturating_sub(10),
            }
        })
        .collect();
    (capacity, calls)
}

#[test]
fn the_replay_memory_keeps_to_its_rules() {
    run_cases(
        "replay",
        0x5eed_4e9a,
        remember_calls,
        |(capacity, calls)| {
            let cache = ReplayCache::new(*capacity);
            let mut model = Model::default();
            for (n, call) in calls.iter().enumerate() {
                let values: Vec<Vec<&[u8]>> = call
                    .values
                    .iter()
                    .map(|v| v.iter().map(Vec::as_slice).collect())
                    .collect();
                let values: Vec<&[&[u8]]> = values.iter().map(Vec::as_slice).collect();
                let got = cache.remember(call.client, &values, call.now, call.expires);
                assert_eq!(got, model.remember(call, *capacity), "call {n}: {call:?}");
            }
        },
    );
}

// ---- the dispatch between schemes ----

fn all_schemes_config() -> AuthConfig {
    let client = |secret: &str, public_key: &str| ClientConfig {
        secret: secret.into(),
        public_key: public_key.into(),
        ..ClientConfig::default()
    };
    AuthConfig {
        scheme: vec![
            Scheme::Md5,
            Scheme::Hmac,
            Scheme::HttpSig,
            Scheme::Checksum,
            Scheme::Token,
        ],
        max_skew_ms: SKEW,
        checksum: checksum_config(0),
        clients: [
            ("erp".to_string(), client(SECRET, "")),
            ("gw".to_string(), client("", ED_PUBLIC)),
        ]
        .into(),
        ..AuthConfig::default()
    }
}

/// The headers of several valid requests of different schemes on one.
fn mixed(rng: &mut Rng, o: &Req, originals: &[Req]) -> Req {
    let mut r = o.clone();
    for _ in 0..1 + rng.below(3) {
        let other = rng.pick(originals);
        r.headers.push(rng.pick(&other.headers).clone());
    }
    r
}

#[test]
fn the_dispatch_between_schemes_never_panics_and_accepts_only_signed_requests() {
    let config = all_schemes_config();
    let mut originals = md5_originals();
    originals.extend(mg_originals());
    originals.extend(httpsig_originals().into_iter().take(8));
    originals.extend(checksum_originals().into_iter().step_by(CHECKSUM_VARIANTS));
    let authenticator = || Authenticator::from_config(&config).unwrap().unwrap();
    fuzz(Target {
        name: "dispatch",
        seed: 0x5eed_d15c,
        originals: originals.clone(),
        variant: &any_variant,
        random: &|rng| random_request(rng, NAMES),
        targeted: &|rng, o| mixed(rng, o, &originals),
        verify: &|r, _| authenticator().verify(&r.parts(), NOW),
        hidden: &nothing_hidden,
        // each scheme's own target judges what an accepted request may differ in
        equivalent: &|_, _, _| Ok(()),
        also: &|case, _| {
            let failure = authenticator().failure_headers(&case.req.parts());
            if let Some((n, v)) = failure.first() {
                assert_eq!((n.as_str(), v.as_str()), ("x-mg-code", "401"));
            }
        },
    });
}

// ---- the running binary ----

/// Requests signed now with a wrong secret, so that every scheme's parsing runs to the
/// signature check and nothing can pass.
fn wrongly_signed(now: u64) -> Vec<Req> {
    let wrong = Secret::new("not-the-secret");
    let body = r#"{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"x"}}"#;
    let md5 = md5::md5_signature("POST", "/rpc", &now.to_string(), body.as_bytes(), "nope");
    let base = Req::new("POST", "/rpc", body.as_bytes());
    let mut httpsig = base.clone().with(
        "content-digest",
        digest::content_digest("sha-256", body.as_bytes()).unwrap(),
    );
    let (input, sig) = httpsig::sign(
        &httpsig.parts(),
        &["@method", "@path", "@authority", "content-digest"],
        (now / 1000) as i64,
        Some("erp"),
        Some("n"),
        &SigningKey::Hmac(wrong.clone()),
    )
    .unwrap();
    httpsig = httpsig
        .with("signature-input", input)
        .with("signature", sig);
    let mut obj: Map<String, Value> = serde_json::from_str(body).unwrap();
    obj.insert("timestamp".into(), json!(now));
    obj.insert("nonce".into(), json!("n-1"));
    let sign = checksum::sign(&obj, &ChecksumConfig::default(), &wrong);
    obj.insert("sign".into(), json!(sign));
    let mut checksum = base.clone();
    checksum.body = Value::Object(obj).to_string().into_bytes();
    vec![
        base.clone()
            .with("x-timestamp", now.to_string())
            .with("x-signature", md5),
        base.clone()
            .with("x-mg-secretid", "erp")
            .with("x-mg-nonce", "n-1")
            .with("x-mg-alg", "2")
            .with(
                "x-mg-sign",
                mg::mg_sign(MgAlg::HmacSha256, "erp", &wrong, "n-1"),
            ),
        httpsig,
        checksum,
        base.with(token::HEADER, "not-the-secret"),
    ]
}

/// What an HTTP client can send as a header value: printable ASCII.
fn sendable(v: &str) -> String {
    v.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

#[test]
fn the_binary_answers_fuzzed_auth_headers_with_401_json_and_keeps_serving() {
    let sim = common::simulator();
    let overlay = json!({"auth": {
        "scheme": ["md5", "hmac", "httpsig", "checksum", "token"],
        "clients": {"erp": {"secret": SECRET}, "gw": {"public_key": ED_PUBLIC}}},
        "log": {"verbose": false}});
    let proxy = common::Proxy::start(&sim.url(), overlay);
    proxy.wait_healthy();
    let originals = wrongly_signed(common::now_ms());
    let (addr, statuses) = (proxy.addr, std::sync::Mutex::new(HashMap::new()));
    let n = run_cases(
        "binary",
        0x5eed_b1a7,
        |rng| {
            let mut case = if rng.below(3) == 0 {
                Case {
                    from: None,
                    variant: 0,
                    req: random_request(rng, NAMES),
                }
            } else {
                let i = rng.below(originals.len());
                Case {
                    from: Some(i),
                    variant: 0,
                    req: mutate_request(rng, &originals[i]),
                }
            };
            // the front's own refusals (framing, Host) are tested in tests/front.rs
            let r = &mut case.req;
            r.headers.retain(|(n, _)| n != "host" && !n.is_empty());
            for h in &mut r.headers {
                h.1 = sendable(&h.1);
            }
            case
        },
        |case| {
            let r = &case.req;
            let headers: Vec<(&str, &str)> = r
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let resp = common::request(addr, "POST", "/rpc", &headers, &r.body);
            *statuses.lock().unwrap().entry(resp.status).or_insert(0) += 1;
            assert_eq!(resp.status, 401, "{}", resp.text());
            let body = resp.json();
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.starts_with("authentication failed: "), "{body}");
            assert!(!error.contains(SECRET), "{body}");
        },
    );
    eprintln!("binary: {n} fuzzed requests, statuses {statuses:?}");
    // still serving: a validly signed request goes through to the card
    let ok = common::signed(
        proxy.addr,
        "POST",
        "/rpc",
        r#"{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"after the fuzz"}}"#,
        SECRET,
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(proxy.get("/health").status, 200);
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}
