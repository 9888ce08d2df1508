//! `POST /api/ceb/send`: signs an unsigned CEB message exactly as `/api/ceb/sign` does (the
//! same `crate::sign` workflow, self-check included), wraps it as `transfer.envelope` says and writes it
//! atomically into the transfer client's outbox. `GET /api/receipts`: what was sent and received
//! for a message. The work is `crate::transfer`.

use super::exchange::{Exchange, Input};
use super::reply::Reply;
use super::{App, audit, domain};
use crate::config::Envelope;
use crate::sign;
use crate::transfer::message::Meta;
use crate::transfer::{envelope, outbox};
use serde_json::{Map, Value, json};

const OFF: &str = "transfer is off: set transfer.outbox (or transfer.client_settings: \"auto\" on the customs PC)";

pub fn send(app: &App, input: &Input, ex: &mut Exchange) -> Reply {
    let Some(t) = app.transfer.as_deref() else {
        return Reply::error(503, OFF);
    };
    let (xml, resend, receiver) = match request_of(input) {
        Ok(r) => r,
        Err(e) => return Reply::error(400, e),
    };
    let meta = match Meta::read(&xml) {
        Ok(m) => m,
        Err(e) => return Reply::error(400, e),
    };
    let before = t.store.sent(&meta.guid);
    if let (Some((answer, _)), false) = (&before, resend) {
        ex.ukey_method = Some("ceb.send".into());
        return Reply::json(200, answer.clone());
    }
    if !t.begin(&meta.guid) {
        return Reply::error(
            409,
            format!("message {} is being sent by another request", meta.guid),
        );
    }
    let reply = sign_and_write(
        app,
        t,
        &xml,
        &meta,
        receiver,
        before.map_or(1, |(_, n)| n + 1),
        ex,
    );
    t.end(&meta.guid);
    ex.ukey_method = Some("ceb.send".into());
    reply
}

fn sign_and_write(
    app: &App,
    t: &crate::transfer::Transfer,
    xml: &str,
    meta: &Meta,
    receiver: Option<String>,
    attempt: u32,
    ex: &mut Exchange,
) -> Reply {
    // the same workflow as /api/ceb/sign, self-check included
    let signed_xml = match sign::sign_ceb(&domain::card(app, ex), &app.config.ceb, xml) {
        Ok(s) => s.signed,
        Err(e) => {
            let reply = domain::reply(&e, &ex.request_id);
            audit::report_operation_failure(app, sign::SIGN_METHOD, &reply, &ex.request_id);
            return reply;
        }
    };
    let cop_msg_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let receiver = receiver.unwrap_or_else(|| envelope::receiver_for(&meta.msg_type).to_string());
    let (bytes, envelope_json) = match t.envelope {
        Envelope::None => (signed_xml.into_bytes(), Value::Null),
        Envelope::Dxp => (
            envelope::wrap(
                &signed_xml,
                &meta.msg_type,
                &t.dxp_id,
                &receiver,
                &cop_msg_id,
            )
            .into_bytes(),
            json!({"type": "dxp", "senderId": t.dxp_id, "receiverId": receiver}),
        ),
    };
    let name = if attempt <= 1 {
        format!("{}_{}.xml", meta.msg_type, meta.guid)
    } else {
        format!("{}_{}_t-{attempt}.xml", meta.msg_type, meta.guid)
    };
    let path = match outbox::write_atomically(&t.folders.outbox, &name, &bytes) {
        Ok(p) => p,
        Err(e) => {
            if e.status() >= 500 {
                log::error!("[{}] transfer: {e}", ex.request_id);
            }
            return Reply::error(e.status(), e.to_string());
        }
    };
    let keys: Map<String, Value> = meta
        .keys
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let answer = json!({
        "file": name,
        "path": path.display().to_string(),
        "CopMsgId": if t.envelope == Envelope::Dxp { Value::String(cop_msg_id) } else { Value::Null },
        "guid": meta.guid,
        "msg_type": meta.msg_type,
        "keys": keys,
        "envelope": envelope_json,
        "attempt": attempt,
    });
    if let Err(e) = t.store.record_sent(&meta.guid, &answer) {
        log::error!("[{}] transfer: {e}", ex.request_id);
    }
    Reply::json(200, answer)
}

/// The XML, `resend` and `receiver` of a send request: raw XML, or `{"xml": …}`.
fn request_of(input: &Input) -> Result<(String, bool, Option<String>), String> {
    let text = std::str::from_utf8(&input.body)
        .map_err(|e| format!("the message is not UTF-8 (at byte {})", e.valid_up_to()))?;
    let is_json = input.content_type.starts_with("application/json")
        || (!input.content_type.contains("xml") && text.trim_start().starts_with('{'));
    if !is_json {
        return Ok((text.trim_start_matches('\u{feff}').to_string(), false, None));
    }
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Some(xml) = v.get("xml").and_then(Value::as_str) else {
        return Err(
            "JSON body must be {\"xml\": \"<the unsigned message>\", \"resend\": false}".into(),
        );
    };
    let resend = match v.get("resend") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("resend must be true or false".into()),
    };
    let receiver = match v.get("receiver") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Some(s.clone())
        }
        Some(_) => return Err("receiver must be a DXP id (up to 16 letters and digits)".into()),
    };
    Ok((xml.to_string(), resend, receiver))
}

/// `GET /api/receipts?guid=…` (or `orderNo`, `invtNo`, `logisticsNo`, `copNo`).
pub fn receipts(app: &App, input: &Input, _ex: &mut Exchange) -> Reply {
    let Some(t) = app.transfer.as_deref() else {
        return Reply::error(503, OFF);
    };
    const FIELDS: [&str; 5] = ["guid", "orderNo", "invtNo", "logisticsNo", "copNo"];
    let query = input
        .query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, v)| FIELDS.contains(k) && !v.is_empty());
    let Some((field, value)) = query else {
        return Reply::error(
            400,
            "name the message: ?guid=…, ?orderNo=…, ?invtNo=…, ?logisticsNo=… or ?copNo=…",
        );
    };
    let value = percent_decode(value);
    let records = t.store.find(field, &value);
    Reply::json(200, json!({"query": {field: value}, "records": records}))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
