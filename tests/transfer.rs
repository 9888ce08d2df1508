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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary as `--simulate --card rsa --transfer` runs it: its own UKey simulator (an RSA
/// card, so that xmlsec1 can judge its signatures) and the simulated transfer client, on the
/// default folders next to its configuration in `dir`, webhooks to `rx`.
fn start_simulated(dir: TempDir, transfer: Value, rx: &Receiver) -> Proxy {
    // the tests' RSA key, made once, instead of a new one per process
    drop(simulator());
    std::fs::copy(shared_key_file(), dir.path().join("simulator-ukey.pem")).unwrap();
    let config = json!({
        "server": {"host": "127.0.0.1", "port": "0", "read_timeout_ms": 5000},
        "ukey": {"url": format!("ws://127.0.0.1:{}", free_port()), "password": PASSWORD, "timeout_ms": 2000},
        "log": {"verbose": true},
        "auth": {"app_secret": SECRET},
        "webhook": {"receipt_url": rx.url("/hooks/receipt"), "failure_url": rx.url("/hooks/failure")},
        "transfer": transfer,
    });
    let proxy = Proxy::start_with_args(
        dir,
        &config,
        &[],
        &["--simulate", "--card", "rsa", "--transfer"],
    );
    proxy.wait_healthy();
    proxy
}

fn send_signed(proxy: &Proxy, xml: &str) -> Value {
    let body = json!({ "xml": xml }).to_string();
    let r = signed(proxy.addr, "POST", "/api/ceb/send", &body, SECRET);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The receipt records `GET /api/receipts` holds for `query`, once `done` says they are all in.
fn receipts_until(proxy: &Proxy, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    wait_for(Duration::from_secs(15), query, || {
        let r = signed(
            proxy.addr,
            "GET",
            &format!("/api/receipts?{query}"),
            "",
            SECRET,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let records: Vec<Value> = r.json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "receipt")
            .cloned()
            .collect();
        done(&records).then_some(records)
    })
}

/// The certificate embedded in a signed message, as PEM.
fn embedded_cert(signed_xml: &str) -> String {
    let b64 = signed_xml
        .split("X509Certificate>")
        .nth(1)
        .unwrap()
        .trim_end_matches("</ds:")
        .trim();
    let b64: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    pem_certificate(&b64)
}

#[test]
fn simulate_transfer_closes_the_loop_from_send_to_receipt() {
    let rx = Receiver::start(SECRET);
    let dir = TempDir::new("sim-transfer");
    let base = dir.path().to_path_buf();
    let proxy = start_simulated(dir, json!({"poll_ms": 50}), &rx);
    let order = std::fs::read_to_string("tests/ceb_corpus/ceb311.xml").unwrap();
    let sent = send_signed(&proxy, &order);
    let guid = sent["guid"].as_str().unwrap().to_string();
    let file = sent["file"].as_str().unwrap().to_string();

    // customs' sequence for an order: 2 (新增申报成功[guid]) then 120, newest first
    let records = receipts_until(&proxy, &format!("guid={guid}"), |r| r.len() >= 2);
    assert_eq!(records.len(), 2, "{records:?}");
    let (last, first) = (&records[0]["event"], &records[1]["event"]);
    assert_eq!(first["returnStatus"], "2");
    assert_eq!(first["returnInfo"], format!("新增申报成功[{guid}]"));
    assert_eq!(last["returnStatus"], "120");
    assert_eq!(last["status"]["zh"], "海关入库");
    assert_eq!(last["returnInfo"], "[Code:1800;Desc:逻辑校验通过]");
    assert_eq!(last["msg_type"], "CEB312Message");
    assert_eq!(last["node"], "OrderReturn");
    assert_eq!(last["keys"]["orderNo"], "cp477912536700681230");
    assert!(
        last["returnTime"].as_str().unwrap().ends_with("+08:00"),
        "{last}"
    );

    // the same two as signed webhooks
    let events = wait_for(Duration::from_secs(5), "2 receipt webhooks", || {
        let e = rx.of_kind("receipt");
        (e.len() >= 2).then_some(e)
    });
    assert!(events.iter().all(|e| e.signature_ok), "unsigned webhook");
    let codes: Vec<&str> = events
        .iter()
        .map(|e| e.body["returnStatus"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["2", "120"]);

    // the client moved what it took to SentBox, and it verifies independently (xmlsec1)
    let transfer = base.join("transfer");
    assert!(files(&transfer.join("outbox")).is_empty());
    assert_eq!(files(&transfer.join("SentBox")), vec![file.clone()]);
    let taken = std::fs::read_to_string(transfer.join("SentBox").join(&file)).unwrap();
    assert!(xmlsec_verifies(
        &base,
        &transfer.join("SentBox").join(&file),
        &embedded_cert(&taken)
    ));
    wait_for(
        Duration::from_secs(5),
        "receipts moved to processed",
        || {
            (files(&transfer.join("inbox")).is_empty()
                && files(&transfer.join("processed")).len() == 2)
                .then_some(())
        },
    );
    let log = proxy.log();
    assert!(log.contains("transfer client SIMULATOR"), "{log}");

    // an inventory, in the same loop, also gets its release (800)
    let inventory = std::fs::read_to_string("tests/ceb_corpus/ceb621-crlf.xml").unwrap();
    let sent = send_signed(&proxy, &inventory);
    let copno = sent["keys"]["copNo"].as_str().unwrap().to_string();
    let records = receipts_until(&proxy, &format!("copNo={copno}"), |r| r.len() >= 3);
    let codes: Vec<&str> = records
        .iter()
        .map(|r| r["event"]["returnStatus"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["800", "120", "2"]);
    assert_eq!(records[0]["event"]["node"], "InventoryReturn");
    assert_eq!(records[0]["event"]["returnInfo"], "[Code:2600;Desc:放行]");
    assert!(
        records[0]["event"]["keys"]["invtNo"]
            .as_str()
            .is_some_and(|n| n.contains('I')),
        "customs gives the inventory its number: {}",
        records[0]["event"]
    );
}

#[test]
fn simulate_transfer_rejects_refuses_and_garbles_as_asked() {
    let rx = Receiver::start(SECRET);
    let dir = TempDir::new("sim-transfer-bad");
    let base = dir.path().to_path_buf();
    // enveloped, so that the client checks the DxpMsg and answers in one
    let proxy = start_simulated(
        dir,
        json!({"poll_ms": 50, "envelope": "dxp", "dxp_id": "DXPENT0000012345"}),
        &rx,
    );
    let order = std::fs::read_to_string("tests/ceb_corpus/ceb311.xml").unwrap();
    let variant = |order_no: &str, guid: &str| {
        order
            .replace("cp477912536700681230", order_no)
            .replace("4CDE1CFD-EDED-46B1-946C-B8022E42FC94", guid)
    };

    // a business key containing REJECT: 2, then customs' refusal 100 with its reason
    let rejected = variant("ORDER-REJECT-1", "11111111-1111-4111-8111-111111111111");
    send_signed(&proxy, &rejected);
    let records = receipts_until(&proxy, "orderNo=ORDER-REJECT-1", |r| r.len() >= 2);
    let refusal = &records[0]["event"];
    assert_eq!(refusal["returnStatus"], "100");
    assert_eq!(refusal["status"]["en"], "rejected by customs");
    assert_eq!(refusal["returnInfo"], "[Code:13035;Desc:支付企业不一致]");
    // back in an envelope from the customs node to this enterprise
    assert_eq!(refusal["envelope"]["senderId"], "DXPEDCCEB0000002");
    assert_eq!(refusal["envelope"]["msgType"], "CEB312Message");

    // GARBLE: an unreadable file, set aside and reported once
    let garbled = variant("ORDER-GARBLE-1", "22222222-2222-4222-8222-222222222222");
    send_signed(&proxy, &garbled);
    let failure = wait_for(Duration::from_secs(10), "receipt_unreadable", || {
        rx.of_kind("ukey_malfunction")
            .into_iter()
            .find(|e| e.body["details"]["type"] == "receipt_unreadable")
    });
    assert!(failure.signature_ok);
    let bad_file = failure.body["details"]["file"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(bad_file.starts_with("CEB312Message_"), "{bad_file}");
    let transfer = base.join("transfer");
    wait_for(
        Duration::from_secs(5),
        "the file in transfer/failed",
        || (files(&transfer.join("failed")) == vec![bad_file.clone()]).then_some(()),
    );

    // a message changed after signing, put straight into the outbox: FailBox, and refused
    let sent_box = transfer.join("SentBox");
    let taken = files(&sent_box)
        .into_iter()
        .find(|f| f.contains("11111111"))
        .unwrap();
    let text = std::fs::read_to_string(sent_box.join(&taken)).unwrap();
    let inner = {
        use base64::Engine;
        let data = text
            .split("<dxp:Data>")
            .nth(1)
            .unwrap()
            .split("</dxp:Data>")
            .next()
            .unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap()
    };
    let tampered = inner.replace("ORDER-REJECT-1", "ORDER-TAMPERED-1").replace(
        "11111111-1111-4111-8111-111111111111",
        "33333333-3333-4333-8333-333333333333",
    );
    std::fs::write(
        transfer.join("outbox").join("CEB311Message_tampered.xml"),
        tampered,
    )
    .unwrap();
    let records = receipts_until(&proxy, "orderNo=ORDER-TAMPERED-1", |r| !r.is_empty());
    let refusal = &records[0]["event"];
    assert_eq!(refusal["returnStatus"], "100");
    assert!(
        refusal["returnInfo"]
            .as_str()
            .unwrap()
            .starts_with("验签失败"),
        "{refusal}"
    );
    assert_eq!(
        files(&transfer.join("FailBox")),
        vec!["CEB311Message_tampered.xml".to_string()]
    );
    // every other message was taken and sent on
    assert_eq!(files(&sent_box).len(), 2);
    assert!(files(&transfer.join("outbox")).is_empty());
}
