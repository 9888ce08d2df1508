//! Replays refused by every scheme, against the real binary: the reproductions of H3 (x-mg nonce
//! evicted, unsigned X-Timestamp), M1 (httpsig without a nonce), M2 (checksum `values` nonce
//! split) and L3 (one client filling the shared replay memory). Signatures are computed here with
//! the hash crates directly, not with the proxy's code.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chinaport_proxy::simulator::Simulator;
use common::*;
use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

const ERP: &str = "erp-secret-xyz";
const OTHER: &str = "other-secret-abc";

fn sign_body(data: &str) -> String {
    json!({"_method": "cus-sec_SpcSignDataAsPEM", "args": {"inData": data}}).to_string()
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn sha256_digest(body: &[u8]) -> String {
    format!(
        "sha-256=:{}:",
        B64.encode(<sha2::Sha256 as sha2::Digest>::digest(body))
    )
}

/// x-mg headers of client `id`: Base64(HMAC-SHA256(key, nonce + id + key)).
fn mg_headers(id: &str, key: &str, nonce: &str) -> Vec<(String, String)> {
    let sign = B64.encode(hmac_sha256(
        key.as_bytes(),
        format!("{nonce}{id}{key}").as_bytes(),
    ));
    vec![
        ("x-mg-secretid".into(), id.into()),
        ("x-mg-alg".into(), "2".into()),
        ("x-mg-nonce".into(), nonce.into()),
        ("x-mg-sign".into(), sign),
    ]
}

fn post(addr: SocketAddr, headers: &[(String, String)], body: &str) -> Resp {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    request(addr, "POST", "/rpc", &h, body.as_bytes())
}

fn with(mut h: Vec<(String, String)>, extra: &[(&str, String)]) -> Vec<(String, String)> {
    h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.clone())));
    h
}

/// What the card was asked to sign, in order.
fn signed_data(sim: &Simulator) -> Vec<String> {
    sim.received()
        .iter()
        .filter(|f| f["_method"] == "cus-sec_SpcSignDataAsPEM")
        .filter_map(|f| f["args"]["inData"].as_str().map(str::to_owned))
        .collect()
}

fn proxy(sim: &Simulator, auth: Value) -> Proxy {
    let p = Proxy::start(&sim.url(), json!({ "auth": auth }));
    p.wait_healthy();
    p
}

/// Waits until the wall clock is past `t_ms`: the windows under test are about time passing.
fn until_clock_past(t_ms: u64) {
    wait_for(Duration::from_secs(5), "the clock", || {
        (now_ms() > t_ms).then_some(())
    });
}

/// H3: a captured x-mg header set is refused later, with a fresh X-Timestamp, after another
/// client's call carrying X-Timestamp (which used to purge the nonces), and with a new body.
/// On 40b6e27 the replay after the 2 × max_skew_ms keep got 200 and the card signed it.
#[test]
fn h3_an_xmg_nonce_is_refused_for_the_whole_day_whatever_timestamp_comes_with_it() {
    let sim = simulator();
    let skew = 100;
    let p = proxy(
        &sim,
        json!({"scheme": "hmac", "max_skew_ms": skew,
               "clients": {"erp": {"secret": ERP}, "other": {"secret": OTHER}}}),
    );
    let captured = mg_headers("erp", ERP, "victim-nonce-1");
    let t0 = now_ms();
    let body = sign_body("pay 100 yuan");
    let r = post(
        p.addr,
        &with(
            captured.clone(),
            &[
                ("X-Timestamp", t0.to_string()),
                ("Content-Digest", sha256_digest(body.as_bytes())),
            ],
        ),
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // a victim without X-Timestamp ("kept 24 h")
    let captured2 = mg_headers("erp", ERP, "victim-nonce-2");
    assert_eq!(post(p.addr, &captured2, &body).status, 200);

    until_clock_past(t0 + 3 * skew);
    // another client's ordinary call with X-Timestamp (on 40b6e27 it purged every nonce)
    let r = post(
        p.addr,
        &with(
            mg_headers("other", OTHER, "other-1"),
            &[("X-Timestamp", now_ms().to_string())],
        ),
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let attack = sign_body("attacker chosen data");
    for headers in [&captured, &captured2] {
        let fresh = with(
            headers.clone(),
            &[
                ("X-Timestamp", now_ms().to_string()),
                ("Content-Digest", sha256_digest(attack.as_bytes())),
            ],
        );
        let r = post(p.addr, &fresh, &attack);
        assert_eq!(
            r.status,
            401,
            "replay with a fresh X-Timestamp: {}",
            r.text()
        );
        assert!(r.text().contains("replayed"), "{}", r.text());
        let r = post(p.addr, headers, &attack);
        assert_eq!(r.status, 401, "plain replay: {}", r.text());
    }
    assert!(
        !signed_data(&sim)
            .iter()
            .any(|d| d.contains("attacker chosen data")),
        "the card never signed the attacker's data"
    );
}

/// The signature base of an httpsig request over @method, @path, @authority, content-digest.
fn httpsig_headers(
    addr: SocketAddr,
    body: &str,
    created: u64,
    nonce: Option<&str>,
) -> Vec<(String, String)> {
    let digest = sha256_digest(body.as_bytes());
    let mut params = format!(
        "(\"@method\" \"@path\" \"@authority\" \"content-digest\");created={created};keyid=\"erp\";alg=\"hmac-sha256\""
    );
    if let Some(n) = nonce {
        params.push_str(&format!(";nonce=\"{n}\""));
    }
    let base = format!(
        "\"@method\": POST\n\"@path\": /rpc\n\"@authority\": {addr}\n\"content-digest\": {digest}\n\"@signature-params\": {params}"
    );
    let sig = B64.encode(hmac_sha256(ERP.as_bytes(), base.as_bytes()));
    vec![
        ("Content-Digest".into(), digest),
        ("Signature-Input".into(), format!("sig1={params}")),
        ("Signature".into(), format!("sig1=:{sig}:")),
    ]
}

/// M1: an httpsig request without `nonce` is accepted once; on 40b6e27 it got 200, 200, 200.
#[test]
fn m1_an_httpsig_request_without_nonce_is_accepted_once() {
    let sim = simulator();
    let p = proxy(
        &sim,
        json!({"scheme": "httpsig", "clients": {"erp": {"secret": ERP}}}),
    );
    let created = now_ms() / 1000;
    let body = sign_body("upload once");
    let h = httpsig_headers(p.addr, &body, created, None);
    let r = post(p.addr, &h, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..2 {
        let r = post(p.addr, &h, &body);
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.text().contains("replayed"), "{}", r.text());
    }
    // another request in the same second is not a replay
    let body2 = sign_body("a second, different call");
    let r = post(
        p.addr,
        &httpsig_headers(p.addr, &body2, created, None),
        &body2,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // with a nonce: once per nonce
    let h = httpsig_headers(p.addr, &body, created, Some("n-1"));
    assert_eq!(post(p.addr, &h, &body).status, 200);
    assert_eq!(post(p.addr, &h, &body).status, 401);
}

fn checksum_values_sign(secret: &str, fields: &serde_json::Map<String, Value>) -> String {
    // MD5(secret, then every value in name order: strings as they are, others as JSON)
    let mut h = Md5::new();
    h.update(secret.as_bytes());
    let mut names: Vec<&String> = fields.keys().collect();
    names.sort();
    for n in names {
        match &fields[n] {
            Value::String(s) => h.update(s.as_bytes()),
            Value::Null => {}
            v => h.update(v.to_string().as_bytes()),
        }
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<String>()
}

/// M2: moving the tail of the nonce into an added field keeps the same values string, so the
/// same `sign`; on 40b6e27 each of the three splits got 200 and a new card signature.
#[test]
fn m2_a_checksum_values_nonce_split_across_an_added_field_is_a_replay() {
    let sim = simulator();
    let p = proxy(
        &sim,
        json!({"scheme": "checksum", "clients": {"erp": {"secret": ERP}},
               "checksum": {"variant": "values"}}),
    );
    let ts = now_ms();
    let mut fields = json!({"_method": "cus-sec_SpcSignDataAsPEM",
        "args": {"inData": "pay 100 yuan"}, "nonce": "a1b2c3d4", "timestamp": ts});
    let obj = fields.as_object_mut().unwrap();
    let sign = checksum_values_sign(ERP, obj);
    obj.insert("sign".into(), Value::from(sign.clone()));
    let send = |v: &Value| request(p.addr, "POST", "/rpc", &[], v.to_string().as_bytes());
    let r = send(&fields);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(send(&fields).status, 401, "plain replay");
    for (nonce, tail) in [("a1b2c3d", "4"), ("a1b2c3", "d4"), ("a1b2c", "3d4")] {
        let mut split = fields.clone();
        split["nonce"] = nonce.into();
        split["nonce_"] = tail.into();
        let r = send(&split);
        assert_eq!(r.status, 401, "nonce split {nonce}+{tail}: {}", r.text());
    }
    // the signature's case does not make it new
    let mut lower = fields.clone();
    lower["sign"] = sign.to_lowercase().into();
    assert_eq!(send(&lower).status, 401);
    assert_eq!(signed_data(&sim).len(), 1, "the card signed once");
}

/// L3: a client that fills its share of the replay memory is refused; other clients are not
/// (on 40b6e27 one client's 100,000 md5 calls made everyone's next call 401 "too many signed
/// requests"; the share is made small here so the test stays fast).
#[test]
fn l3_one_client_filling_the_replay_memory_does_not_refuse_another() {
    let sim = simulator();
    let p = proxy(
        &sim,
        json!({"scheme": ["md5", "hmac"], "max_remembered_per_client": 20,
               "clients": {"flood": {"secret": OTHER}, "erp": {"secret": ERP}}}),
    );
    let mut client = Client::connect(p.addr);
    let t = now_ms();
    for k in 0..20 {
        let path = format!("/n{k}");
        let sig = receiver::md5_hex(&format!("GET{path}{t}{OTHER}"));
        let ts = t.to_string();
        let r = client
            .send(
                "GET",
                &path,
                &[("X-Timestamp", &ts), ("X-Signature", &sig)],
                b"",
            )
            .unwrap();
        assert_ne!(r.status, 401, "{k}: {}", r.text());
    }
    let sig = receiver::md5_hex(&format!("GET/n-full{t}{OTHER}"));
    let ts = t.to_string();
    let r = client
        .send(
            "GET",
            "/n-full",
            &[("X-Timestamp", &ts), ("X-Signature", &sig)],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("too many"), "{}", r.text());
    // erp, in the same window, through both schemes
    let r = signed(p.addr, "POST", "/rpc", &sign_body("erp md5"), ERP);
    assert_eq!(r.status, 200, "{}", r.text());
    for k in 0..20 {
        let r = post(p.addr, &mg_headers("flood", OTHER, &format!("f{k}")), "{}");
        assert_ne!(r.status, 401, "{k}: {}", r.text());
    }
    assert_eq!(
        post(p.addr, &mg_headers("flood", OTHER, "f-full"), "{}").status,
        401
    );
    let body = sign_body("erp x-mg");
    let r = post(p.addr, &mg_headers("erp", ERP, "erp-1"), &body);
    assert_eq!(r.status, 200, "{}", r.text());
}
