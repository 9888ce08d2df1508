//! Outgoing TLS: webhooks and the customs upload reach an HTTPS receiver whose certificate is
//! signed by a company CA named in `webhook.ca_file`, and refuse (with a log line that says what
//! to do) a receiver whose certificate nobody vouches for. The certificates are made by the
//! OpenSSL command line and the receiver is Python's `ssl`: neither is the proxy's own code.

mod common;

use common::*;
use serde_json::json;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A test CA, a server certificate for 127.0.0.1 signed by it, and a self-signed one.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=chinaport test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("srv.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "srv.ext",
        ],
    );
    let mut bad = vec!["req", "-x509"];
    bad.extend(ec);
    bad.extend([
        "-keyout",
        "bad.key",
        "-out",
        "bad.pem",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
    ]);
    openssl(dir, &bad);
}

struct TlsReceiver {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
}

impl TlsReceiver {
    fn start(dir: &Path, cert: &str, key: &str, name: &str) -> TlsReceiver {
        let out = dir.join(format!("{name}.jsonl"));
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/tls_receiver.py"
            ))
            .arg(dir.join(cert))
            .arg(dir.join(key))
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        TlsReceiver {
            child,
            port: line.trim().parse().expect("the receiver's port"),
            out,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_company_ca_in_ca_file_is_trusted_and_an_unknown_certificate_is_refused_clearly() {
    let certs = TempDir::new("tls");
    certificates(certs.path());
    let good = TlsReceiver::start(certs.path(), "srv.pem", "srv.key", "good");
    let bad = TlsReceiver::start(certs.path(), "bad.pem", "bad.key", "bad");
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"webhook": {"audit_url": good.url("/audit"), "failure_url": bad.url("/failure"),
                           "ca_file": certs.path().join("ca.pem")},
               "customs": {"upload_url": good.url("/upload")}}),
    );
    proxy.wait_healthy();

    // the customs upload over TLS to the CA-signed receiver
    let r = proxy.post("/api/customs179", &order_179("tls", true));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["customs"]["code"], "10000");
    // the audit webhook too
    wait_for(Duration::from_secs(10), "the audit over TLS", || {
        good.received().contains("api_audit").then_some(())
    });
    assert!(good.received().contains("/upload"));

    // a failure webhook to the receiver nobody vouches for is refused, and the log says why
    sim.faults().set_error(
        "cus-sec_SpcGetEntName",
        Some(vec!["Err:Custom50070".into()]),
    );
    assert_eq!(proxy.rpc("cus-sec_SpcGetEntName", json!({})).status, 400);
    proxy.wait_log("is not trusted", Duration::from_secs(10));
    assert!(proxy.log().contains("webhook.ca_file"));
    assert_eq!(bad.received(), "", "nothing reached the untrusted receiver");
}

#[test]
fn a_customs_upload_to_an_untrusted_certificate_is_502_and_says_why() {
    let certs = TempDir::new("tls");
    certificates(certs.path());
    let bad = TlsReceiver::start(certs.path(), "bad.pem", "bad.key", "bad");
    let sim = simulator();
    let proxy = Proxy::start(
        &sim.url(),
        json!({"webhook": {"ca_file": certs.path().join("ca.pem")},
               "customs": {"upload_url": bad.url("/upload")}}),
    );
    proxy.wait_healthy();
    let r = proxy.post("/api/customs179", &order_179("tls", true));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.json()["error"].as_str().unwrap().contains("not trusted"),
        "{}",
        r.text()
    );
    assert!(
        r.json()["signValue"].is_string(),
        "the signed object is still in the answer"
    );
    assert_eq!(bad.received(), "");
}

#[test]
fn a_ca_file_that_is_not_pem_stops_the_start_naming_the_field() {
    let dir = TempDir::new("tls-bad");
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        json!({"webhook": {"ca_file": "ca.pem"}}).to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .args(["check-config", "-config"])
        .arg(dir.path().join("config.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("webhook.ca_file") && text.contains("no PEM certificate"),
        "{text}"
    );
}
