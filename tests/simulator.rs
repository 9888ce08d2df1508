//! The built-in UKey simulator: real signatures that verify with the certificate it hands out,
//! a certificate that survives restarts, its methods, its fault knobs, and `--simulate`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chinaport_proxy::simulator::{SimOptions, Simulator, card::public_key_of};
use common::*;
use serde_json::json;
use sha1::{Digest, Sha1};
use std::process::{Command, Stdio};
use std::time::Duration;

fn data_of(r: &Resp) -> Vec<String> {
    let j = r.json();
    j["_args"]["Data"]
        .as_array()
        .unwrap_or_else(|| panic!("no Data: {j}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

fn proxy_with_simulator() -> (Simulator, Proxy) {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    (sim, proxy)
}

#[test]
fn signatures_verify_with_the_certificate_it_hands_out() {
    let (_sim, proxy) = proxy_with_simulator();
    let text = "报关数据 Hello / & \"quoted\"";
    let cert_b64 = data_of(&proxy.rpc("cus-sec_SpcGetSignCertAsPEM", json!({})))[0].clone();
    let signed = data_of(&proxy.rpc("cus-sec_SpcSignDataAsPEM", json!({"inData": text})));
    let (signature, cert_no) = (&signed[0], &signed[1]);
    assert_eq!(
        cert_no,
        &data_of(&proxy.rpc("cus-sec_SpcGetCertNo", json!({})))[0]
    );

    // a Rust verifier: PKCS#1 v1.5 with SHA-1 under the certificate's public key
    let der = B64.decode(&cert_b64).expect("base64 DER certificate");
    let key = public_key_of(&der).expect("an RSA certificate");
    let raw = B64.decode(signature).unwrap();
    key.pkcs1v15_verify::<Sha1>(text.as_bytes(), &raw)
        .expect("signature verifies");
    assert!(key.pkcs1v15_verify::<Sha1>(b"tampered", &raw).is_err());

    // and openssl, an independent implementation
    let dir = TempDir::new("openssl");
    let pem = pem_certificate(&cert_b64);
    std::fs::write(dir.path().join("cert.pem"), pem).unwrap();
    std::fs::write(dir.path().join("data.txt"), text).unwrap();
    std::fs::write(dir.path().join("sig.bin"), &raw).unwrap();
    let pubkey = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(dir.path().join("cert.pem"))
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(pubkey.status.success(), "{pubkey:?}");
    std::fs::write(dir.path().join("pub.pem"), &pubkey.stdout).unwrap();
    let verify = Command::new("openssl")
        .args(["dgst", "-sha1", "-verify"])
        .arg(dir.path().join("pub.pem"))
        .arg("-signature")
        .arg(dir.path().join("sig.bin"))
        .arg(dir.path().join("data.txt"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(dir.path().join("cert.pem"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&subject.stdout).contains("SIMULATOR"));
}

#[test]
fn the_certificate_survives_a_restart() {
    let dir = TempDir::new("simkey");
    let key_file = dir.path().join("simulator-ukey.pem");
    let start = || {
        Simulator::start(SimOptions {
            listen: "127.0.0.1:0".into(),
            password: PASSWORD.into(),
            key_file: Some(key_file.clone()),
            ..SimOptions::default()
        })
        .unwrap()
    };
    let first = start();
    let (cert, no, sig) = (
        first.sign_cert_der(),
        first.cert_no(),
        first.signature_of("x"),
    );
    first.stop();
    assert!(key_file.is_file());
    let second = start();
    assert_eq!(second.sign_cert_der(), cert);
    assert_eq!(second.cert_no(), no);
    assert_eq!(second.signature_of("x"), sig);
}

#[test]
fn methods_answer_as_the_card_does() {
    let (sim, proxy) = proxy_with_simulator();
    let ent = data_of(&proxy.rpc("cus-sec_SpcGetEntName", json!({})));
    assert!(ent[0].contains("SIMULATOR"));
    let env = data_of(&proxy.rpc("cus-sec_SpcGetEnvCertAsPEM", json!({})));
    assert!(public_key_of(&B64.decode(&env[0]).unwrap()).is_ok());

    let digest = data_of(&proxy.rpc("cus-sec_SpcSHA1DigestAsPEM", json!({"szInfo": "abc"})));
    assert_eq!(digest[0], B64.encode(Sha1::digest(b"abc")));
    // signing the digest without hashing equals signing the data with hashing
    let nohash = data_of(&proxy.rpc(
        "cus-sec_SpcSignDataNoHashAsPEM",
        json!({"inData": digest[0]}),
    ));
    assert_eq!(nohash[0], sim.signature_of("abc"));

    let sig = sim.signature_of("abc");
    let ok = proxy.rpc(
        "cus-sec_SpcVerifySignData",
        json!({"inData": "abc", "signData": sig}),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(data_of(&ok)[0], "成功!");
    let cert = B64.encode(sim.sign_cert_der());
    let ok = proxy.rpc(
        "cus-sec_SpcVerifySignData",
        json!({"inData": "abc", "signData": sig, "certDataPEM": cert}),
    );
    assert_eq!(ok.status, 200);
    let bad = proxy.rpc(
        "cus-sec_SpcVerifySignData",
        json!({"inData": "abd", "signData": sig}),
    );
    assert_eq!(bad.status, 400);

    let valid = data_of(&proxy.rpc("cus-sec_SpcGetValidTimeFromCert", json!({})));
    let times: serde_json::Value = serde_json::from_str(&valid[0]).unwrap();
    assert!(times["szStartTime"].is_string() && times["szEndTime"].is_string());

    for (method, missing) in [
        ("cus-sec_SpcSignDataAsPEM", "inData"),
        ("cus-sec_SpcSHA1DigestAsPEM", "szInfo"),
    ] {
        let r = proxy.rpc(method, json!({}));
        assert_eq!(r.status, 400);
        assert!(
            r.json()["_args"]["Error"][0]
                .as_str()
                .unwrap()
                .contains(missing)
        );
    }
    let r = proxy.rpc("cus-sec_NoSuchMethod", json!({}));
    assert_eq!(r.status, 400);
}

#[test]
fn the_proxy_warns_when_it_talks_to_a_simulator() {
    let (_sim, proxy) = proxy_with_simulator();
    proxy.wait_log("is a SIMULATOR", Duration::from_secs(5));
}

#[test]
fn fault_knobs_work_through_rpc() {
    let (_sim, proxy) = proxy_with_simulator();
    let r = proxy.rpc(
        "sim-ctl_Faults",
        json!({"errors": {"cus-sec_SpcGetEntName": ["Err:Custom50070"]}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = proxy.rpc("cus-sec_SpcGetEntName", json!({}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["_args"]["Error"][0], "Err:Custom50070");
    assert_eq!(
        proxy.rpc("sim-ctl_Faults", json!({"clear": true})).status,
        200
    );
    assert_eq!(proxy.rpc("cus-sec_SpcGetEntName", json!({})).status, 200);

    // dropping on demand: the call that asks for it sees the connection go
    let r = proxy.rpc("sim-ctl_Drop", json!({}));
    // the card had the call when the socket went: 502 (#26.1)
    assert_eq!(r.status, 502);
    proxy.wait_log("UKey: reconnected", Duration::from_secs(10));
    proxy.wait_healthy();

    // drop after N requests
    assert_eq!(
        proxy.rpc("sim-ctl_Faults", json!({"drop_after": 2})).status,
        200
    );
    // (a call the card answers itself: the certificate number comes from the cache, #28)
    let digest = || proxy.rpc("cus-sec_SpcSHA1DigestAsPEM", json!({"szInfo": "x"}));
    assert_eq!(digest().status, 200);
    assert_eq!(digest().status, 502);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn simulate_flag_runs_proxy_and_simulator_in_one_process() {
    let sim_port = free_port();
    let config = json!({
        "server": {"host": "127.0.0.1", "port": "0"},
        "ukey": {"url": format!("ws://127.0.0.1:{sim_port}"), "password": "88888888"},
    });
    let dir = TempDir::new("simulate");
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .arg("--simulate")
        .arg("-config")
        .arg(&path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let port: u16 = wait_for(Duration::from_secs(20), "listening", || {
        let l = log.lock().unwrap().clone();
        let rest = l.split("listening on http://").nth(1)?;
        rest.split_whitespace()
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = wait_for(Duration::from_secs(10), "a signature", || {
        let r = request(
            addr,
            "POST",
            "/rpc",
            &[],
            br#"{"_method":"cus-sec_SpcSignDataAsPEM","args":{"inData":"Hello World"}}"#,
        );
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.json()["_args"]["Result"], true);
    let l = log.lock().unwrap().clone();
    assert!(l.contains("NOT valid at customs"), "{l}");
    assert!(
        dir.path().join("simulator-ukey-sm2.pem").is_file(),
        "the SM2 card's key kept next to the config"
    );
    let _ = child.kill();
    let _ = child.wait();
}
