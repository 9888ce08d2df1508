//! The card's certificate and the E-Port client software, looked after: the certificate
//! endpoints for both card kinds, expiry warnings once per threshold (and not again after a
//! restart), an expired certificate making `/health` 503, and restarting the client software on
//! `Err:Custom50070`, after failed reconnects and on demand, rate-limited, with a stand-in
//! command that records its runs.

mod common;

use chinaport_proxy::simulator::{CardKind, SimOptions, Simulator};
use common::receiver::Receiver;
use common::*;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn fresh_simulator(card: CardKind, cert_days: Option<i64>) -> Simulator {
    Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: None,
        card,
        cert_days,
    })
    .expect("simulator")
}

#[test]
fn the_certificate_endpoints_serve_both_card_kinds() {
    for (sim, algorithm) in [(simulator_sm2(), "SM2"), (simulator(), "RSA")] {
        let proxy = Proxy::start(&sim.url(), json!({}));
        proxy.wait_healthy();
        let r = proxy.get("/api/cert");
        assert_eq!(r.status, 200, "{}", r.text());
        let c = r.json();
        assert_eq!(c["algorithm"], algorithm);
        assert_eq!(c["cert_no"], sim.cert_no());
        assert_eq!(c["serial"], sim.cert_no().trim_start_matches('0'));
        assert_eq!(c["ent_name"], "UKey SIMULATOR (not valid at customs)");
        assert!(c["subject"].as_str().unwrap().contains("SIMULATOR"));
        assert!(c["not_after"].as_str().unwrap().ends_with('Z'));
        assert!(c["days_left"].as_i64().unwrap() > 3000);

        let r = proxy.get("/api/cert/sign.cer");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, sim.sign_cert_der());
        assert_eq!(
            r.header("Content-Disposition").unwrap(),
            format!("attachment; filename=\"{}.cer\"", sim.cert_no())
        );
        let env = proxy.get("/api/cert/env.cer");
        assert_eq!(env.status, 200);
        let dir = TempDir::new("cer");
        std::fs::write(dir.path().join("env.cer"), &env.body).unwrap();
        let out = Command::new("openssl")
            .args(["x509", "-inform", "DER", "-noout", "-subject", "-in"])
            .arg(dir.path().join("env.cer"))
            .output()
            .expect("openssl");
        assert!(String::from_utf8_lossy(&out.stdout).contains("envelope"));
        // not connected: 503 at once
        sim.faults().set_refuse(true);
        sim.drop_connections();
        wait_for(Duration::from_secs(10), "the disconnect", || {
            (proxy.get("/api/cert").status == 503).then_some(())
        });
        assert_eq!(proxy.get("/api/cert/sign.cer").status, 503);
    }
}

#[test]
fn an_expiring_certificate_is_announced_once_per_threshold_even_across_restarts() {
    let sim = fresh_simulator(CardKind::Sm2, Some(5));
    let rx = Receiver::start("");
    let mut config = Proxy::base_config(&sim.url());
    merge(
        &mut config,
        &json!({"webhook": {"failure_url": rx.url("/failure")}}),
    );
    let proxy = Proxy::start_with_config(&config);
    proxy.wait_healthy();
    let expiring = || {
        rx.of_kind("ukey_malfunction")
            .into_iter()
            .filter(|e| e.body["details"]["type"] == "cert_expiring")
            .collect::<Vec<_>>()
    };
    let first = wait_for(Duration::from_secs(10), "cert_expiring", || {
        let e = expiring();
        (!e.is_empty()).then_some(e)
    });
    // five days from when the card was made: 5 within that second, 4 after
    let days = first[0].body["details"]["days_left"].as_i64().unwrap();
    assert!((4..=5).contains(&days), "{days}");
    assert!(
        first[0].body["details"]["not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let health_days = proxy.get("/health").json()["days_left"].as_i64().unwrap();
    assert!((4..=5).contains(&health_days));
    proxy.wait_log(&format!("expires in {days} day(s)"), Duration::from_secs(5));
    // a restart looks again, and says nothing new
    let dir = proxy.stop_keep_dir();
    let proxy = Proxy::start_in(dir, &config);
    proxy.wait_healthy();
    proxy.wait_log("listening on", Duration::from_secs(5));
    // the signing certificate is read on connect: wait until /health knows its expiry
    wait_for(Duration::from_secs(10), "the certificate read", || {
        proxy.get("/health").json()["days_left"]
            .as_i64()
            .filter(|d| (4..=5).contains(d))
    });
    assert_eq!(proxy.rpc("cus-sec_SpcGetCertNo", json!({})).status, 200);
    // delivery is at least once: a kill between delivery and the journal's marker redelivers the
    // same event (same body and timestamp), which is not a second warning
    let distinct: std::collections::BTreeSet<String> =
        expiring().iter().map(|e| e.raw.clone()).collect();
    assert_eq!(distinct.len(), 1, "one warning per threshold: {distinct:?}");
}

#[test]
fn an_expired_certificate_makes_health_503_and_is_reported() {
    let sim = fresh_simulator(CardKind::Rsa, Some(-2));
    let rx = Receiver::start("");
    let proxy = Proxy::start(
        &sim.url(),
        json!({"webhook": {"failure_url": rx.url("/failure")}}),
    );
    let h = wait_for(Duration::from_secs(10), "health to say expired", || {
        let h = proxy.get("/health");
        (h.json()["certificate"]["expired"] == true).then_some(h)
    });
    assert_eq!(h.status, 503);
    assert!(h.json()["last_error"].as_str().unwrap().contains("expired"));
    wait_for(Duration::from_secs(10), "cert_expired", || {
        rx.of_kind("ukey_malfunction")
            .into_iter()
            .find(|e| e.body["details"]["type"] == "cert_expired")
    });
}

/// A stand-in for `SetAccessControl.exe -restart -i`: records each run's arguments.
fn recording_command(dir: &std::path::Path) -> (Vec<String>, std::path::PathBuf) {
    let runs = dir.join("runs.txt");
    let script = dir.join("restart.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@ tunables=${{GLIBC_TUNABLES-unset}}\" >> '{}'\necho restarted\n",
            runs.display()
        ),
    )
    .unwrap();
    (
        vec![
            "/bin/sh".into(),
            script.display().to_string(),
            "-restart".into(),
            "-i".into(),
        ],
        runs,
    )
}

fn runs(file: &std::path::Path) -> usize {
    std::fs::read_to_string(file)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn the_client_software_is_restarted_on_reader_errors_rate_limited_and_on_demand() {
    let sim = simulator();
    let rx = Receiver::start("");
    let dir = TempDir::new("restart");
    let (command, file) = recording_command(dir.path());
    let proxy = Proxy::start(
        &sim.url(),
        json!({"ukey": {"client_restart_command": command, "client_restart_min_interval_s": 3600},
               "webhook": {"failure_url": rx.url("/failure")}}),
    );
    proxy.wait_healthy();
    sim.faults().set_error(
        "cus-sec_SpcSignDataAsPEM",
        Some(vec!["Err:Custom50070".into()]),
    );
    for _ in 0..3 {
        assert_eq!(
            proxy
                .rpc("cus-sec_SpcSignDataAsPEM", json!({"inData": "x"}))
                .status,
            400
        );
    }
    wait_for(Duration::from_secs(10), "the restart", || {
        (runs(&file) == 1).then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        // the proxy's own malloc setting (src/memory.rs) is not handed to the client software
        "-restart -i tunables=unset"
    );
    let restarted = wait_for(Duration::from_secs(10), "client_restarted", || {
        rx.of_kind("ukey_malfunction")
            .into_iter()
            .find(|e| e.body["details"]["type"] == "client_restarted")
    });
    assert_eq!(restarted.body["details"]["restart"]["ok"], true);
    assert!(
        restarted.body["details"]["restart"]["reason"]
            .as_str()
            .unwrap()
            .contains("Err:Custom50070")
    );
    let health = proxy.get("/health").json();
    assert_eq!(health["client_restart"]["exit_code"], 0);
    assert_eq!(health["client_restart"]["output"], "restarted");
    // within the interval, more reader errors run nothing more
    assert_eq!(
        proxy
            .rpc("cus-sec_SpcSignDataAsPEM", json!({"inData": "x"}))
            .status,
        400
    );
    assert_eq!(runs(&file), 1);
    // on demand it runs now, and answers with the outcome
    let r = proxy.post("/api/ukey/restart", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["exit_code"], 0);
    assert_eq!(runs(&file), 2);
}

#[test]
fn failed_reconnects_restart_the_client_software() {
    let sim = simulator();
    let dir = TempDir::new("restart");
    let (command, file) = recording_command(dir.path());
    let proxy = Proxy::start(
        &sim.url(),
        // after the first failed attempt: counting N in a row is the session's unit tests'
        // (src/ukey/session.rs, fake clock); with 2 this test waited out a 2 s backoff
        json!({"ukey": {"client_restart_command": command, "client_restart_after_failures": 1,
                        "client_restart_min_interval_s": 0}}),
    );
    proxy.wait_healthy();
    sim.faults().set_refuse(true);
    sim.drop_connections();
    wait_for(
        Duration::from_secs(15),
        "a restart after a failed reconnect",
        || (runs(&file) >= 1).then_some(()),
    );
    assert!(proxy.log().contains("connection attempts in a row failed"));
}

#[test]
fn without_a_command_a_restart_on_demand_says_how_to_set_one() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let r = proxy.post("/api/ukey/restart", "");
    assert_eq!(r.status, 503);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("ukey.client_restart_command")
    );
}
