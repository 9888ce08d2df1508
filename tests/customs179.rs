//! POST /api/customs179 against the UKey simulator and a stand-in customs receiver: the exact
//! source string customs checks, the upload form, validation errors, and customs' answers.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chinaport_proxy::simulator::card::public_key_of;
use common::receiver::Receiver;
use common::*;
use serde_json::{Value, json};
use sha1::Sha1;
use std::time::Duration;

/// The worked order of the protocol notes, fields in customs' order.
fn example_order() -> Value {
    json!({"sessionId": "123456",
     "payExchangeInfoHead": {"guid": "IYUU4A6D0D78893C739E004DA89918FC8DBB", "initalRequest": "<xml>…</xml>",
       "initalResponse": "ok", "ebpCode": "3506960ABA", "payCode": "4403169D3W",
       "payTransactionId": "4200002754202508110844258623", "totalAmount": 143.64, "currency": "142",
       "verDept": "3", "payType": "4", "tradingTime": "20250811185359", "note": "备注"},
     "payExchangeInfoLists": [{"orderNo": "cp477912536700681230",
       "goodsInfo": [{"gname": "ISG BioSkin 赋活奇肌全方位洗卸慕斯150mL",
                      "itemLink": "https://isg.tw.cn/pages/goods_details/index?id=8"}],
       "recpAccount": "612755288", "recpCode": "91350603MADY5YXCX2", "recpName": "漳州伊诗嘉跨境电子商务有限公司"}],
     "serviceTime": 1756571640000u64})
}

/// The same order with every object's fields in another order, guid in lower case, and
/// serviceTime as a string: written as text, since a JSON map would sort the keys again.
const SHUFFLED: &str = r#"{"serviceTime":"1756571640000",
 "payExchangeInfoLists":[{"recpName":"漳州伊诗嘉跨境电子商务有限公司","recpCode":"91350603MADY5YXCX2",
   "goodsInfo":[{"itemLink":"https://isg.tw.cn/pages/goods_details/index?id=8","gname":"ISG BioSkin 赋活奇肌全方位洗卸慕斯150mL"}],
   "recpAccount":"612755288","orderNo":"cp477912536700681230"}],
 "payExchangeInfoHead":{"note":"备注","tradingTime":"20250811185359","payType":"4","verDept":"3","currency":"142",
   "totalAmount":143.64,"payTransactionId":"4200002754202508110844258623","payCode":"4403169D3W",
   "ebpCode":"3506960ABA","initalResponse":"ok","initalRequest":"<xml>…</xml>",
   "guid":"iyuu4a6d0d78893c739e004da89918fc8dbb"},
 "sessionID":"123456"}"#;

/// What customs checks for the example order, written out by hand from the protocol notes.
const EXPECTED_SOURCE: &str = concat!(
    r#""sessionID":"123456"||"payExchangeInfoHead":"{"guid":"IYUU4A6D0D78893C739E004DA89918FC8DBB","#,
    r#""initalRequest":"<xml>…</xml>","initalResponse":"ok","ebpCode":"3506960ABA","payCode":"4403169D3W","#,
    r#""payTransactionId":"4200002754202508110844258623","totalAmount":143.64,"currency":"142","verDept":"3","#,
    r#""payType":"4","tradingTime":"20250811185359","note":"备注"}"||"payExchangeInfoLists":"[{"orderNo":"#,
    r#""cp477912536700681230","goodsInfo":[{"gname":"ISG BioSkin 赋活奇肌全方位洗卸慕斯150mL","itemLink":"#,
    r#""https://isg.tw.cn/pages/goods_details/index?id=8"}],"recpAccount":"612755288","recpCode":"#,
    r#""91350603MADY5YXCX2","recpName":"漳州伊诗嘉跨境电子商务有限公司"}]"||"serviceTime":"1756571640000""#
);

/// The JSON that `name` (payExchangeInfoHead or payExchangeInfoLists) has in EXPECTED_SOURCE.
fn signed_part(name: &str) -> &'static str {
    let start = EXPECTED_SOURCE
        .find(&format!("\"{name}\":\""))
        .map(|i| i + name.len() + 4)
        .expect("the part is in the source");
    let len = EXPECTED_SOURCE[start..]
        .find("\"||")
        .expect("the part ends");
    &EXPECTED_SOURCE[start..start + len]
}

fn setup(extra: Value) -> (chinaport_proxy::simulator::Simulator, Proxy) {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), extra);
    proxy.wait_healthy();
    (sim, proxy)
}

fn post(proxy: &Proxy, body: &str) -> Resp {
    proxy.post("/api/customs179", body)
}

/// The signature the card made verifies over the source string with its certificate.
fn assert_signed(sim: &chinaport_proxy::simulator::Simulator, answer: &Value) {
    let key = public_key_of(&sim.sign_cert_der()).unwrap();
    let sig = B64.decode(answer["signValue"].as_str().unwrap()).unwrap();
    let source = answer["signSource"].as_str().unwrap();
    key.pkcs1v15_verify::<Sha1>(source.as_bytes(), &sig)
        .expect("signValue verifies over signSource");
    assert_eq!(answer["certNo"], sim.cert_no().as_str());
}

#[test]
fn the_source_string_is_exactly_what_customs_checks_whatever_the_field_order() {
    let (sim, proxy) = setup(json!({}));
    for body in [example_order().to_string(), SHUFFLED.to_string()] {
        let r = post(&proxy, &body);
        assert_eq!(r.status, 200, "{}", r.text());
        let answer = r.json();
        assert_eq!(answer["signSource"], EXPECTED_SOURCE);
        assert_signed(&sim, &answer);
        // the card signed exactly that string
        let frames = sim.received();
        let signed = frames
            .iter()
            .rev()
            .find(|f| f["_method"] == "cus-sec_SpcSignDataAsPEM")
            .unwrap();
        assert_eq!(signed["args"]["inData"], EXPECTED_SOURCE);
        // head and lists in the answer are byte for byte what was signed
        let text = r.text();
        let head = signed_part("payExchangeInfoHead");
        assert!(
            text.contains(&format!("\"payExchangeInfoHead\":{head},")),
            "{text}"
        );
        let lists = signed_part("payExchangeInfoLists");
        assert!(
            text.contains(&format!("\"payExchangeInfoLists\":{lists},")),
            "{text}"
        );
        assert_eq!(answer["sessionID"], "123456");
        assert_eq!(answer["serviceTime"], "1756571640000");
    }
}

#[test]
fn amounts_are_bare_numbers_without_trailing_zeros() {
    let (_sim, proxy) = setup(json!({}));
    // written as text: a JSON value would not keep 100.0 and 100.10 as the caller wrote them
    for (i, (amount, want)) in [
        ("100.0", "100"),
        ("100.10", "100.1"),
        ("143.64", "143.64"),
        ("0.1", "0.1"),
        ("143.64000000000001", "143.64"),
        ("\"143.60\"", "143.6"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = example_order()
            .to_string()
            .replace(
                "\"totalAmount\":143.64",
                &format!("\"totalAmount\":{amount}"),
            )
            .replace("\"123456\"", &format!("\"amount-{i}\""));
        let r = post(&proxy, &body);
        assert_eq!(r.status, 200, "{amount}: {}", r.text());
        let source = r.json()["signSource"].as_str().unwrap().to_string();
        assert!(
            source.contains(&format!("\"totalAmount\":{want},")),
            "{amount}: {source}"
        );
    }
}

#[test]
fn text_is_raw_utf8_with_only_json_escapes() {
    let (_sim, proxy) = setup(json!({}));
    let mut order = example_order();
    order["payExchangeInfoHead"]["note"] = json!("中文 \"quoted\" & A/B <b>");
    order["payExchangeInfoHead"]["initalRequest"] = json!(
        "<xml><openid><![CDATA[o9dVx7]]></openid><total_fee>14364</total_fee><notify_url><![CDATA[https://isg.tw.cn/api/pay/notify]]></notify_url></xml>"
    );
    let r = post(&proxy, &order.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let source = r.json()["signSource"].as_str().unwrap().to_string();
    assert!(
        source.contains(r#""note":"中文 \"quoted\" & A/B <b>""#),
        "{source}"
    );
    assert!(
        source.contains("<notify_url><![CDATA[https://isg.tw.cn/api/pay/notify]]></notify_url>"),
        "{source}"
    );
    assert!(
        !source.contains("\\u") && !source.contains("\\/"),
        "{source}"
    );
}

#[test]
fn stringified_head_and_lists_are_accepted() {
    let (_sim, proxy) = setup(json!({}));
    let mut order = example_order();
    order["payExchangeInfoHead"] = json!(order["payExchangeInfoHead"].to_string());
    order["payExchangeInfoLists"] = json!(order["payExchangeInfoLists"].to_string());
    let r = post(&proxy, &order.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["signSource"], EXPECTED_SOURCE);
}

/// A change made to the example order.
type Change = Box<dyn Fn(&mut Value)>;

#[test]
fn each_validation_error_names_its_path() {
    let (sim, proxy) = setup(json!({}));
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|o| {
                o.as_object_mut().unwrap().remove("sessionId");
            }),
            "sessionID: is required",
        ),
        (
            Box::new(|o| o["sessionId"] = json!(123456)),
            "sessionID: must be a string",
        ),
        (
            Box::new(|o| {
                o["payExchangeInfoHead"]
                    .as_object_mut()
                    .unwrap()
                    .remove("payCode");
            }),
            "payExchangeInfoHead.payCode: is required",
        ),
        (
            Box::new(|o| o["payExchangeInfoHead"]["ebpCode"] = json!("  ")),
            "payExchangeInfoHead.ebpCode: must not be empty",
        ),
        (
            Box::new(|o| o["payExchangeInfoHead"]["currency"] = json!(142)),
            "payExchangeInfoHead.currency: must be a string",
        ),
        (
            Box::new(|o| o["payExchangeInfoHead"]["totalAmount"] = json!("lots")),
            "payExchangeInfoHead.totalAmount",
        ),
        (
            Box::new(|o| o["payExchangeInfoHead"]["extra"] = json!("x")),
            "payExchangeInfoHead.extra: is not a field customs knows",
        ),
        (
            Box::new(|o| o["payExchangeInfoLists"] = json!([])),
            "payExchangeInfoLists: must have at least one entry",
        ),
        (
            Box::new(|o| o["payExchangeInfoLists"][0]["goodsInfo"] = json!("x")),
            "payExchangeInfoLists[0].goodsInfo: must be an array",
        ),
        (
            Box::new(|o| {
                let goods = o["payExchangeInfoLists"][0]["goodsInfo"]
                    .as_array_mut()
                    .unwrap();
                goods.push(json!({"gname": "second"}));
            }),
            "payExchangeInfoLists[0].goodsInfo[1].itemLink: is required",
        ),
        (
            Box::new(|o| o["payExchangeInfoLists"][0]["recpName"] = json!(null)),
            "payExchangeInfoLists[0].recpName: is required",
        ),
        (
            Box::new(|o| o["payExchangeInfoLists"][0]["bank"] = json!("x")),
            "payExchangeInfoLists[0].bank: is not a field customs knows",
        ),
        (
            Box::new(|o| o["serviceTime"] = json!("soon")),
            "serviceTime: must be milliseconds",
        ),
        (
            Box::new(|o| o["realTimeDataUpload"] = json!("yes")),
            "realTimeDataUpload: must be true or false",
        ),
        (
            Box::new(|o| o["extraTop"] = json!(1)),
            "extraTop: is not a field customs knows",
        ),
        (
            Box::new(|o| o["payExchangeInfoHead"] = json!("{not json")),
            "payExchangeInfoHead: is a string but not JSON",
        ),
    ];
    for (change, want) in cases {
        let mut order = example_order();
        change(&mut order);
        let r = post(&proxy, &order.to_string());
        assert_eq!(r.status, 400, "{want}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(want), "{e:?} lacks {want:?}");
    }
    let r = post(&proxy, "not json");
    assert_eq!(r.status, 400);
    // the recpCode and note may be empty
    let mut order = example_order();
    order["payExchangeInfoLists"][0]["recpCode"] = json!("");
    order["payExchangeInfoHead"]
        .as_object_mut()
        .unwrap()
        .remove("note");
    let r = post(&proxy, &order.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["signSource"]
            .as_str()
            .unwrap()
            .contains(r#""note":""}"#)
    );
    assert!(!sim.received().iter().any(|f| {
        f["args"]["inData"]
            .as_str()
            .is_some_and(|s| s.contains("\"extra\""))
    }));
}

/// Decodes application/x-www-form-urlencoded.
fn form_value(body: &str, name: &str) -> String {
    let raw = body
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {body}"));
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn upload_success_error_code_and_customs_down() {
    let mut customs = Receiver::start("");
    customs.set_reply(r#"{"code":"10000","message":"上传成功","serviceTime":1756571640000}"#);
    let (sim, proxy) = setup(
        json!({"customs": {"upload_url": customs.url("/ceb2grab/grab/realTimeDataUpload"),
        // the stand-in going down leaves the proxy's pooled connection to it open and silent,
        // like a hung server: the upload then ends at this timeout (10 s by default)
        "timeout_ms": 1000}}),
    );
    let mut order = example_order();
    order["realTimeDataUpload"] = json!(true);
    let r = post(&proxy, &order.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["customs"]["code"], "10000");
    assert_signed(&sim, &answer);
    let got = customs.events();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("content-type").unwrap(),
        "application/x-www-form-urlencoded; charset=UTF-8"
    );
    let payload = form_value(&got[0].raw, "payExInfoStr");
    // exactly the signed JSON: head and lists as signed, then serviceTime, certNo, signValue
    let head = signed_part("payExchangeInfoHead");
    let lists = signed_part("payExchangeInfoLists");
    let expected = format!(
        r#"{{"sessionID":"123456","payExchangeInfoHead":{head},"payExchangeInfoLists":{lists},"serviceTime":"1756571640000","certNo":"{}","signValue":"{}"}}"#,
        answer["certNo"].as_str().unwrap(),
        answer["signValue"].as_str().unwrap()
    );
    assert_eq!(payload, expected);

    // a code other than 10000: 502, customs' reply, and the signed object all the same
    customs.set_reply(r#"{"code":"20004","message":"证书或ebpCode未备案"}"#);
    order["sessionId"] = json!("session-2");
    let r = post(&proxy, &order.to_string());
    assert_eq!(r.status, 502, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["customs"]["code"], "20004");
    assert!(answer["error"].as_str().unwrap().contains("20004"));
    assert_signed(&sim, &answer);

    // customs down
    customs.down();
    order["sessionId"] = json!("session-3");
    let r = post(&proxy, &order.to_string());
    assert_eq!(r.status, 502, "{}", r.text());
    let answer = r.json();
    assert!(
        answer["error"].as_str().unwrap().contains("upload"),
        "{answer}"
    );
    assert!(answer["signValue"].is_string());
    assert_signed(&sim, &answer);
}

#[test]
fn signing_a_session_twice_warns_and_is_audited() {
    let rx = Receiver::start("");
    let (_sim, proxy) = setup(json!({"webhook": {"audit_url": rx.url("/audit")}}));
    let first = post(&proxy, &example_order().to_string());
    assert_eq!(first.json()["warnings"], json!([]));
    let second = post(&proxy, &example_order().to_string());
    assert_eq!(second.status, 200);
    let w = second.json()["warnings"][0].as_str().unwrap().to_string();
    assert!(w.contains("123456") && w.contains("reused"), "{w}");
    proxy.wait_log("was signed before", Duration::from_secs(5));
    let audits = wait_for(Duration::from_secs(10), "two audits", || {
        let a = rx.of_kind("api_audit");
        (a.len() >= 2).then_some(a)
    });
    assert_eq!(audits[0].body["method"], "customs179");
    assert_eq!(audits[0].body["success"], true);
    assert_eq!(audits[0].body["response"]["signSource"], EXPECTED_SOURCE);
}

/// Finding L10: `"totalAmount": 123456789012345678901234567890` was signed as
/// `123456789012345660285533552` (the f64 it parsed to). Now a number beyond what JSON carries
/// exactly is refused, nothing reaches the card, and the same amount as a string is signed
/// digit for digit.
#[test]
fn amounts_beyond_two_to_the_53_fen_are_refused_not_rounded() {
    let sim = simulator();
    let proxy = Proxy::start(&sim.url(), json!({}));
    proxy.wait_healthy();
    let order = order_179("huge", false);
    assert!(order.contains("\"totalAmount\":1,"));
    let huge = order.replace(
        "\"totalAmount\":1,",
        "\"totalAmount\":123456789012345678901234567890,",
    );
    let r = proxy.post("/api/customs179", &huge);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("totalAmount") && e.contains("90071992547409.92"),
        "{e}"
    );
    assert!(
        !sim.received()
            .iter()
            .any(|f| f["_method"] == "cus-sec_SpcSignDataAsPEM"),
        "nothing was signed"
    );
    let as_string = order.replace(
        "\"totalAmount\":1,",
        "\"totalAmount\":\"123456789012345678901234567890\",",
    );
    let r = proxy.post("/api/customs179", &as_string);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["signSource"]
            .as_str()
            .unwrap()
            .contains("\"totalAmount\":123456789012345678901234567890,"),
        "{}",
        r.text()
    );
}
