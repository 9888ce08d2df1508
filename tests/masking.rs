//! Secrets never leave through what a caller reads back, the log, the start-up error or
//! check-config: M4 (the masker as a password oracle), L1 (unusual passwords in the verbose
//! log), L2 (a numeric password in the start-up error), L9 (webhook URL credentials).

mod common;

use chinaport_proxy::simulator::{CardKind, SimOptions, Simulator};
use common::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const APP_SECRET: &str = "webhook-app-secret-77";
const MASK: &str = "***MASKED***";

fn simulator_with_password(password: &str) -> Simulator {
    Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: password.into(),
        key_file: Some(shared_key_file()),
        card: CardKind::Rsa,
        cert_days: None,
    })
    .unwrap()
}

/// M4: a caller's `_method` holding the card password or the app secret among guesses comes
/// back exactly as sent, as one holding none does: nothing tells which guess was right. On
/// 40b6e27 the right one came back as ***MASKED***.
#[test]
fn m4_an_echoed_guess_is_never_masked_so_it_tells_nothing() {
    let sim = simulator();
    let p = Proxy::start(&sim.url(), json!({"auth": {"app_secret": APP_SECRET}}));
    p.wait_healthy();
    for guesses in [
        format!("g1 {PASSWORD}x g2"),
        format!("g1 {PASSWORD} g2"),
        format!("g1 {APP_SECRET} g2"),
    ] {
        let body = json!({"_method": guesses, "args": {}}).to_string();
        let r = signed(p.addr, "POST", "/rpc", &body, APP_SECRET);
        let text = r.text();
        assert!(!text.contains(MASK), "{guesses}: {text}");
        assert_eq!(r.json()["_method"], guesses.as_str(), "{text}");
    }
}

/// L1: at verbose level, a password with `"` and `\`, or of fewer than 4 characters, is not in
/// the log in any form (on 40b6e27 every `UKey <-` line held `"passwd":"Pa\"ss\\w0rd"`).
#[test]
fn l1_unusual_passwords_are_masked_in_the_verbose_log() {
    for password in ["Pa\"ss\\w0rd", "123"] {
        let sim = simulator_with_password(password);
        let p = Proxy::start(&sim.url(), json!({"ukey": {"password": password}}));
        p.wait_healthy();
        let r = p.rpc("cus-sec_SpcSignDataAsPEM", json!({"inData": "l1"}));
        assert_eq!(r.status, 200, "{}", r.text());
        p.wait_log("UKey ->", Duration::from_secs(5));
        let log = p.log();
        let escaped = serde_json::to_string(password).unwrap();
        assert!(log.contains("UKey <-"), "verbose frames are logged");
        // "123" may well occur in a timestamp or a port: for it, the frame's field is what counts
        let anywhere = password.len() >= 4 && log.contains(password);
        assert!(
            !log.contains(&format!("\"passwd\":{escaped}")) && !anywhere,
            "{password}: {log}"
        );
        assert!(log.contains(&format!("\"passwd\":\"{MASK}\"")), "{log}");
    }
}

/// L2: a password given as a number is refused without printing it, by check-config and by
/// a start (which also writes the error next to the executable). On 40b6e27 both printed
/// "invalid type: integer `87654321`".
#[test]
fn l2_a_numeric_secret_is_not_printed_in_the_error() {
    let dir = TempDir::new("l2");
    let exe = dir.path().join("chinaport-proxy");
    std::fs::copy(env!("CARGO_BIN_EXE_chinaport-proxy"), &exe).unwrap();
    let config = dir.path().join("config.json");
    for text in [
        r#"{"ukey":{"password":87654321}}"#,
        r#"{"auth":{"clients":{"erp":{"secret":87654321}}}}"#,
    ] {
        std::fs::write(&config, text).unwrap();
        for args in [vec!["check-config", "-config"], vec!["-config"]] {
            let out = wait_for(
                Duration::from_secs(10),
                "the copied exe",
                || match Command::new(&exe).args(&args).arg(&config).output() {
                    Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => None,
                    other => Some(other.unwrap()),
                },
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(
                err.contains("double quotes") && !err.contains("87654321"),
                "{err}"
            );
        }
    }
    let early = dir.path().join("chinaport-proxy.log");
    let logged = std::fs::read_to_string(&early).unwrap_or_default();
    assert!(
        !logged.is_empty() && !logged.contains("87654321"),
        "{logged}"
    );
}

/// L9: the user information of a webhook URL is masked by check-config and in the log of a
/// failing delivery (on 40b6e27 both showed http://admin:hunter2@…).
#[test]
fn l9_webhook_url_credentials_are_masked() {
    let url = "http://admin:hunter2@127.0.0.1:9/audit";
    let dir = TempDir::new("l9");
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"webhook": {"audit_url": url}}).to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .args(["check-config", "-config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("http://***MASKED***@127.0.0.1:9/audit"),
        "{text}"
    );

    let sim = simulator();
    let p = Proxy::start(
        &sim.url(),
        json!({"auth": {"app_secret": APP_SECRET}, "webhook": {"audit_url": url}}),
    );
    p.wait_healthy();
    let r = signed(
        p.addr,
        "POST",
        "/rpc",
        r#"{"_method":"cus-sec_SpcGetCertNo"}"#,
        APP_SECRET,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    p.wait_log("webhooks: delivery failed", Duration::from_secs(10));
    let log = p.log();
    assert!(!log.contains("hunter2"), "{log}");
}
