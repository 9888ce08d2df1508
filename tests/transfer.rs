//! Issue 27 against the real binary and the simulator card: `POST /api/ceb/send` writes one
//! complete, signed file into the outbox (bare or in a DXP envelope, judged by python's base64
//! and xmlsec1), once per guid; the receipt watcher turns inbox files (fixtures in
//! tests/receipts/, each citing its source) into signed `receipt` webhooks, once each.

mod common;

use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "test-app-secret-9f2";

fn cert_pem(sim: &chinaport_proxy::simulator::Simulator) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(sim.sign_cert_der());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn xmlsec_verifies(dir: &Path, doc: &Path, cert: &str) -> bool {
    let pem = dir.join("cert.pem");
    std::fs::write(&pem, cert).unwrap();
    Command::new("xmlsec1")
        .args(["--verify", "--pubkey-cert-pem"])
        .arg(&pem)
        .arg(doc)
        .output()
        .expect("xmlsec1 (.ci/run installs it)")
        .status
        .success()
}

/// The files in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn send(proxy: &Proxy, body: &[u8], content_type: &str) -> Resp {
    request(
        proxy.addr,
        "POST",
        "/api/ceb/send",
        &[("Content-Type", content_type)],
        body,
    )
}

#[test]
fn send_writes_one_complete_signed_file_per_guid_bare_and_in_a_dxp_envelope() {
    let sim = simulator();
    let cert = cert_pem(&sim);
    let work = TempDir::new("transfer-send");
    // a Windows-like folder with Chinese characters and a space, found through the client's own
    // settings file (transfer.client_settings: "auto", %LOCALAPPDATA%)
    let outbox = work.path().join("ImpPath").join("跨境 进口").join("OutBox");
    std::fs::create_dir_all(&outbox).unwrap();
    let settings = work.path().join("SIC").join("UserSetting");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("DFWJobSettings.xml"),
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Settings><FormSettings><FormSetting Key=\"CEB\">\
             <SubFormSetting FormId=\"IMPCEB\" OutBox=\"{}\" InBox=\"{}\"/></FormSetting></FormSettings></Settings>",
            outbox.display(),
            work.path().join("InBox").display()
        ),
    )
    .unwrap();
    let mut config = Proxy::base_config(&sim.url());
    merge(
        &mut config,
        &json!({"transfer": {"client_settings": "auto"}}),
    );
    let local_app_data = work.path().display().to_string();
    let proxy = Proxy::start_with_env(
        TempDir::new("proxy"),
        &config,
        &[("LOCALAPPDATA", &local_app_data)],
    );
    proxy.wait_healthy();

    let message = std::fs::read("tests/ceb_corpus/ceb311.xml").unwrap();
    let r = send(&proxy, &message, "application/xml");
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json();
    let guid = "4CDE1CFD-EDED-46B1-946C-B8022E42FC94";
    assert_eq!(first["guid"], guid);
    assert_eq!(first["msg_type"], "CEB311Message");
    assert_eq!(first["keys"]["orderNo"], "cp477912536700681230");
    let name = format!("CEB311Message_{guid}.xml");
    assert_eq!(first["file"], name.as_str());
    // exactly the final file: no temporary left beside it
    assert_eq!(files(&outbox), vec![name.clone()]);
    let written = outbox.join(&name);
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(text.contains(&format!("<ds:KeyName>{}</ds:KeyName>", sim.cert_no())));
    assert!(xmlsec_verifies(work.path(), &written, &cert), "{text}");

    // the same guid again: the first answer, nothing written
    let again = send(&proxy, &message, "application/xml");
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), first);
    assert_eq!(files(&outbox).len(), 1);

    // unless resend: a second file with the attempt in its name
    let body =
        json!({"xml": String::from_utf8(message.clone()).unwrap(), "resend": true}).to_string();
    let resent = send(&proxy, body.as_bytes(), "application/json");
    assert_eq!(resent.status, 200, "{}", resent.text());
    assert_eq!(
        resent.json()["file"],
        format!("CEB311Message_{guid}_t-2.xml")
    );
    assert_eq!(files(&outbox).len(), 2);

    // not a CEB message: 400, nothing written
    let bad = send(&proxy, b"<Order/>", "application/xml");
    assert_eq!(bad.status, 400);
    assert_eq!(files(&outbox).len(), 2);

    // the DXP envelope, judged by python's base64 and xmlsec1
    let outbox2 = work.path().join("dxp out");
    std::fs::create_dir_all(&outbox2).unwrap();
    let proxy2 = Proxy::start(
        &sim.url(),
        json!({"transfer": {"outbox": outbox2.display().to_string(), "envelope": "dxp", "dxp_id": "DXPENT0000012345"}}),
    );
    proxy2.wait_healthy();
    let inventory = std::fs::read("tests/ceb_corpus/ceb621-crlf.xml").unwrap();
    let r = send(&proxy2, &inventory, "application/xml");
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    let cop = answer["CopMsgId"].as_str().unwrap().to_string();
    assert_eq!(cop, cop.to_uppercase());
    let file = outbox2.join(answer["file"].as_str().unwrap());
    assert_eq!(files(&outbox2).len(), 1);
    let script = "import sys,base64,xml.etree.ElementTree as E\n\
        ns={'d':'http://www.chinaport.gov.cn/dxp'}\n\
        r=E.parse(sys.argv[1]).getroot()\n\
        assert r.tag=='{http://www.chinaport.gov.cn/dxp}DxpMsg'\n\
        t=r.find('d:TransInfo',ns)\n\
        print(t.find('d:CopMsgId',ns).text, t.find('d:SenderId',ns).text, t.find('d:ReceiverIds/d:ReceiverId',ns).text, t.find('d:MsgType',ns).text)\n\
        open(sys.argv[2],'wb').write(base64.b64decode(r.find('d:Data',ns).text))\n";
    let inner = work.path().join("inner.xml");
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .arg(&inner)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{cop} DXPENT0000012345 DXPEDCCEB0000002 CEB621Message")
    );
    assert!(xmlsec_verifies(work.path(), &inner, &cert));
}

/// Every file under `dir`, relative, sorted (temporary dot-files included).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

#[test]
fn an_outbox_that_cannot_be_written_answers_a_clear_5xx_and_leaves_nothing_behind() {
    let sim = simulator();
    let work = TempDir::new("transfer-denied");
    let parent = work.path().join("客户端 ImpPath");
    let outbox = parent.join("OutBox");
    let proxy = Proxy::start(
        &sim.url(),
        json!({"transfer": {"outbox": outbox.display().to_string()}}),
    );
    proxy.wait_healthy();
    let message = std::fs::read("tests/ceb_corpus/ceb311.xml").unwrap();
    // one proxy, the folder changed under it: each answer names what is wrong with it now
    let refused = |what: &str, needle: &str, leftover: &[&str]| {
        let r = send(&proxy, &message, "application/xml");
        assert_eq!(r.status, 503, "{what}: {}", r.text());
        assert!(
            r.header("Content-Type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{what}"
        );
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(needle), "{what}: {error}");
        assert!(
            error.contains(&outbox.display().to_string()),
            "{what}: {error}"
        );
        assert_eq!(
            tree(work.path()),
            leftover,
            "{what}: only what the test made"
        );
    };
    refused("missing", "does not exist", &[]);
    // the folder's parent is a file: the path runs through it
    std::fs::write(&parent, "not a folder").unwrap();
    refused("through a file", "cannot be opened", &["客户端 ImpPath"]);
    std::fs::remove_file(&parent).unwrap();
    // the outbox itself is a file
    std::fs::create_dir_all(&parent).unwrap();
    std::fs::write(&outbox, "not a folder").unwrap();
    refused(
        "a file",
        "is a file, not a folder",
        &["客户端 ImpPath/OutBox"],
    );
    std::fs::remove_file(&outbox).unwrap();
    // a folder the proxy may not write to; root writes anyway (CI), so only where it is denied
    std::fs::create_dir_all(&outbox).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(outbox.join("probe"), "x").is_err() {
            refused("read-only", "was denied", &[]);
        } else {
            std::fs::remove_file(outbox.join("probe")).unwrap();
            eprintln!("running as root: the read-only folder case is not checked");
        }
        std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // fixed: the same request now writes its one file
    let r = send(&proxy, &message, "application/xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        tree(work.path()),
        vec!["客户端 ImpPath/OutBox/CEB311Message_4CDE1CFD-EDED-46B1-946C-B8022E42FC94.xml"]
    );
}

#[test]
fn receipts_become_one_signed_webhook_each_and_unreadable_files_are_set_aside() {
    let sim = simulator();
    let rx = Receiver::start(SECRET);
    let work = TempDir::new("transfer-receive");
    let inbox = work.path().join("In Box 回执");
    let processed = work.path().join("done");
    let failed = work.path().join("failed");
    std::fs::create_dir_all(&inbox).unwrap();
    let proxy = Proxy::start(
        &sim.url(),
        json!({
            "auth": {"app_secret": SECRET},
            "webhook": {"receipt_url": rx.url("/hooks/receipt"), "failure_url": rx.url("/hooks/failure")},
            "transfer": {"inbox": inbox.display().to_string(), "processed": processed.display().to_string(),
                         "failed": failed.display().to_string(), "poll_ms": 50},
        }),
    );
    for f in [
        "ceb312-dxp.xml",
        "ceb312-gb2312.xml",
        "ceb622-prefixed-bom.xml",
        "unreadable.xml",
    ] {
        std::fs::copy(Path::new("tests/receipts").join(f), inbox.join(f)).unwrap();
    }
    let events = wait_for(Duration::from_secs(8), "4 receipt events", || {
        let e = rx.of_kind("receipt");
        (e.len() >= 4).then_some(e)
    });
    assert_eq!(events.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| e.signature_ok && e.path == "/hooks/receipt")
    );
    let by = |file: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.body["file"] == file)
            .map(|e| e.body.clone())
            .collect()
    };
    let dxp = by("ceb312-dxp.xml");
    assert_eq!(dxp.len(), 1);
    assert_eq!(dxp[0]["msg_type"], "CEB312Message");
    assert_eq!(
        dxp[0]["envelope"]["copMsgId"],
        "1B5B8C2E-3D7A-4E4B-9E51-0C8C2B0E6A11"
    );
    assert_eq!(dxp[0]["keys"]["orderNo"], "cp477912536700681230");
    assert_eq!(dxp[0]["returnStatus"], "2");
    assert_eq!(dxp[0]["status"]["zh"], "电子口岸申报中");
    assert_eq!(dxp[0]["returnTime"], "2017-01-02T23:19:32.210+08:00");
    let gb = by("ceb312-gb2312.xml");
    assert_eq!(gb.len(), 2, "one event per return node");
    assert_eq!(gb[1]["returnStatus"], "120");
    assert_eq!(gb[1]["returnInfo"], "[Code:1800;Desc:逻辑校验通过]");
    assert_eq!(
        gb[0]["returnInfo"],
        "新增申报成功[8F49799F-EA6F-4E03-87FC-6123DBF163F2]"
    );
    let inv = by("ceb622-prefixed-bom.xml");
    assert_eq!(inv[0]["node"], "InventoryReturn");
    assert_eq!(inv[0]["keys"]["invtNo"], "64002020I000000001");
    assert_eq!(inv[0]["status"]["en"], "released");
    assert_eq!(inv[0]["returnTime"], "2020-06-15T17:15:56.654+08:00");

    let failure = wait_for(Duration::from_secs(5), "receipt_unreadable", || {
        rx.of_kind("ukey_malfunction")
            .into_iter()
            .find(|e| e.body["details"]["type"] == "receipt_unreadable")
    });
    assert_eq!(failure.body["details"]["file"], "unreadable.xml");
    wait_for(Duration::from_secs(5), "files moved", || {
        (files(&inbox).is_empty() && files(&processed).len() == 3).then_some(())
    });
    assert_eq!(files(&failed), vec!["unreadable.xml".to_string()]);

    // the same receipt again: moved away, not delivered again
    std::fs::copy("tests/receipts/ceb312-dxp.xml", inbox.join("again.xml")).unwrap();
    wait_for(Duration::from_secs(5), "the duplicate processed", || {
        (files(&processed).len() == 4).then_some(())
    });
    // then a new status: events arrive in order, so a duplicate would have come before it
    let later = std::fs::read_to_string("tests/receipts/ceb622-prefixed-bom.xml")
        .unwrap()
        .replace(">800<", ">899<")
        .replace("20200615171556654", "20200616090000000");
    std::fs::write(inbox.join("later.xml"), later).unwrap();
    let events = wait_for(Duration::from_secs(5), "the 899 receipt", || {
        let e = rx.of_kind("receipt");
        (e.len() >= 5).then_some(e)
    });
    assert_eq!(events.len(), 5, "the duplicate was delivered again");
    assert_eq!(events[4].body["returnStatus"], "899");
    assert_eq!(events[4].body["status"]["zh"], "结关");

    // and asked for by business key
    let r = signed(
        proxy.addr,
        "GET",
        "/api/receipts?invtNo=64002020I000000001",
        "",
        SECRET,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let records = r.json()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2);
    // newest first
    assert_eq!(records[0]["event"]["returnStatus"], "899");
    assert_eq!(records[1]["event"]["returnStatus"], "800");
}
