//! Parses what customs drops into the inbox as it really comes: enveloped (`DxpMsg`,
//! `DxpMsgSv`) or bare, any namespace prefix, the declared encoding, many return nodes (one
//! event each), `returnTime` in China time turned into RFC 3339; also the client's own
//! `CommonResponeMessage` result files. Each event carries the identities by which a receipt
//! seen twice is recognised.

use super::envelope::{self, Unwrapped};
use super::folders::local;
use super::message::{KEY_NAMES, leaves};
use crate::customs::c14n::{self, Node};
use serde_json::{Map, Value, json};

/// One event to deliver, and the identities that make it a duplicate.
#[derive(Debug, Clone)]
pub struct Event {
    pub body: Value,
    pub ids: Vec<String>,
}

/// `returnStatus` labels (spec 202205 §2–3; docs/transfer-client.md §5): (code, 中文, English).
const STATUS: [(&str, &str, &str); 18] = [
    ("1", "电子口岸已暂存", "stored by E-Port"),
    ("2", "电子口岸申报中", "being declared by E-Port"),
    ("3", "发送海关成功", "sent to customs"),
    ("4", "发送海关失败", "sending to customs failed"),
    ("100", "海关退单", "rejected by customs"),
    ("120", "海关入库", "accepted by customs"),
    ("300", "人工审核", "manual review"),
    ("399", "海关审结", "customs decision made"),
    ("500", "查验", "inspection"),
    ("501", "扣留移送通关", "held, passed to clearance"),
    ("502", "扣留移送缉私", "held, passed to anti-smuggling"),
    ("503", "扣留移送法规", "held, passed to legal"),
    ("505", "移交", "handed over"),
    ("599", "其它扣留", "held (other)"),
    ("600", "挂起", "suspended"),
    ("700", "退运", "returned abroad"),
    ("800", "放行", "released"),
    ("899", "结关", "cleared"),
];

/// The meaning of a status code: labels for known codes, "处理异常" for negative ones.
pub fn status_of(code: &str) -> Value {
    if let Some((_, zh, en)) = STATUS.iter().find(|(c, _, _)| *c == code) {
        return json!({"code": code, "zh": zh, "en": en});
    }
    if code.starts_with('-') {
        return json!({"code": code, "zh": "处理异常", "en": "processing error"});
    }
    json!({"code": code, "zh": null, "en": null})
}

/// `yyyyMMddHHmmss[SSS]` China time → RFC 3339 with `+08:00`.
pub fn rfc3339_china(raw: &str) -> Option<String> {
    let r = raw.trim();
    if !(r.len() == 14 || r.len() == 17) || !r.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| r[a..b].parse::<u32>().unwrap_or(99);
    if !(1..=12).contains(&n(4, 6))
        || !(1..=31).contains(&n(6, 8))
        || n(8, 10) > 23
        || n(10, 12) > 59
        || n(12, 14) > 60
    {
        return None;
    }
    let frac = if r.len() == 17 {
        format!(".{}", &r[14..17])
    } else {
        String::new()
    };
    Some(format!(
        "{}-{}-{}T{}:{}:{}{frac}+08:00",
        &r[0..4],
        &r[4..6],
        &r[6..8],
        &r[8..10],
        &r[10..12],
        &r[12..14]
    ))
}

fn doc_of(bytes: &[u8]) -> Result<c14n::Document, String> {
    let text = super::decode::xml_text(bytes).map_err(|e| e.to_string())?;
    let text = c14n::normalise_line_ends(text.trim_start_matches('\u{feff}'));
    c14n::parse(&text).map_err(|e| format!("not well-formed XML: {e}"))
}

/// The events of one inbox file.
pub fn parse(bytes: &[u8], file: &str) -> Result<Vec<Event>, String> {
    let outer = doc_of(bytes)?;
    let (doc, env): (c14n::Document, Option<Unwrapped>) = match envelope::unwrap(&outer.root) {
        None => (outer, None),
        Some(Err(e)) => return Err(e),
        Some(Ok(u)) => (
            doc_of(&u.data).map_err(|e| format!("inside the DxpMsg: {e}"))?,
            Some(u),
        ),
    };
    let root = &doc.root;
    let msg_type = local(&root.name).to_string();
    let envelope_json = env
        .as_ref()
        .map(|u| json!({"copMsgId": u.cop_msg_id, "senderId": u.sender, "msgType": u.msg_type}));
    let cop = env
        .as_ref()
        .map(|u| u.cop_msg_id.clone())
        .filter(|c| !c.is_empty());
    if msg_type == "CommonResponeMessage" {
        let f: Map<String, Value> = leaves(root)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let code = f
            .get("DealFlag")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let status = json!({"code": code, "zh": if code == "0" {"导入成功"} else {"导入失败"},
                            "en": if code == "0" {"imported by the client"} else {"refused by the client"}});
        let body = json!({"event": "receipt", "msg_type": msg_type, "file": file, "fields": f,
                          "returnStatus": code, "status": status, "returnInfo": f.get("CheckInfo"),
                          "keys": {}, "envelope": envelope_json});
        return Ok(vec![Event {
            body,
            ids: vec![format!("file:{file}:{code}")],
        }]);
    }
    if !(msg_type.starts_with("CEB") && msg_type.ends_with("Message")) {
        return Err(format!("{msg_type} is neither a CEB receipt nor a DxpMsg"));
    }
    let message_guid = root
        .attrs
        .iter()
        .find(|(k, _)| k == "guid")
        .map(|(_, v)| v.clone());
    let mut events = Vec::new();
    for c in &root.children {
        let Node::Element(node) = c else { continue };
        let fields = leaves(node);
        if !fields.iter().any(|(k, _)| k == "returnStatus") {
            continue;
        }
        let get = |n: &str| {
            fields
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let code = get("returnStatus");
        let raw_time = get("returnTime");
        let guid = get("guid");
        let keys: Map<String, Value> = KEY_NAMES
            .iter()
            .filter_map(|k| {
                fields
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            })
            .collect();
        let all: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let index = events.len();
        let mut ids = vec![format!(
            "r:{msg_type}:{guid}:{code}:{raw_time}:{}",
            get("returnInfo").len()
        )];
        if let Some(c) = &cop {
            ids.push(format!("dxp:{c}#{index}"));
        }
        let body = json!({
            "event": "receipt",
            "msg_type": msg_type,
            "node": local(&node.name),
            "index": index,
            "guid": guid,
            "message_guid": message_guid,
            "keys": keys,
            "returnStatus": code,
            "status": status_of(&code),
            "returnTime": rfc3339_china(&raw_time),
            "returnTimeRaw": raw_time,
            "returnInfo": get("returnInfo"),
            "fields": all,
            "file": file,
            "envelope": envelope_json,
        });
        events.push(Event { body, ids });
    }
    if events.is_empty() {
        return Err(format!(
            "{msg_type} has no return node (no element with a returnStatus)"
        ));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_statuses() {
        assert_eq!(
            rfc3339_china("20170102231932210").unwrap(),
            "2017-01-02T23:19:32.210+08:00"
        );
        assert_eq!(
            rfc3339_china("20170102231932").unwrap(),
            "2017-01-02T23:19:32+08:00"
        );
        assert_eq!(rfc3339_china("2017010223193"), None);
        assert_eq!(rfc3339_china("20171302231932210"), None);
        assert_eq!(status_of("800")["zh"], "放行");
        assert_eq!(status_of("-621029")["en"], "processing error");
        assert_eq!(status_of("18")["zh"], Value::Null);
    }
}
