//! `POST /api/customs179`: validates the order, has the UKey sign the customs source string, and
//! uploads the result to customs when asked. The response embeds the head and lists byte for byte
//! as signed, so it is written by hand rather than through a JSON map (which would reorder them).

use crate::customs::customs179::{self, Order};
use crate::http::reply::{Body, Reply};
use crate::http::rpc;
use crate::ukey::Ukey;
use serde_json::{Map, Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

const SIGN_METHOD: &str = "cus-sec_SpcSignDataAsPEM";
/// Session IDs remembered to warn about a second signature.
const SESSIONS_KEPT: usize = 10_000;

/// The endpoint's state: the customs upload client and the session IDs already signed.
pub struct Customs {
    agent: ureq::Agent,
    upload_url: String,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

/// What happened to the upload.
enum Upload {
    NotAsked,
    Accepted(Value),
    Refused(Value),
    Failed(String),
}

impl Customs {
    pub fn new(upload_url: &str, timeout: Duration, system_roots: bool) -> Customs {
        let agent = crate::webhook::http_agent(system_roots, timeout);
        Customs {
            agent,
            upload_url: upload_url.to_string(),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// True when this session ID was signed before (customs rejects a reused one).
    fn signed_before(&self, session: &str) -> bool {
        let Ok(mut guard) = self.seen.lock() else {
            return false;
        };
        let (set, order) = &mut *guard;
        if set.contains(session) {
            return true;
        }
        if order.len() >= SESSIONS_KEPT
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        set.insert(session.to_string());
        order.push_back(session.to_string());
        false
    }

    fn upload(&self, payload: &str, request_id: &str) -> Upload {
        let form = format!("payExInfoStr={}", customs179::form_encode(payload));
        let sent = self
            .agent
            .post(self.upload_url.as_str())
            .header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .send(form.as_bytes());
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Upload::Failed(format!(
                    "customs upload to {} failed: {e}",
                    self.upload_url
                ));
            }
        };
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let reply: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| json!({"status": status, "body": text}));
        let code = reply.get("code").and_then(|c| {
            c.as_str()
                .map(str::to_owned)
                .or_else(|| c.as_i64().map(|n| n.to_string()))
        });
        log::info!(
            "[{request_id}] customs upload answered {status}, code {}",
            code.as_deref().unwrap_or("none")
        );
        match code.as_deref() {
            Some("10000") if (200..300).contains(&status) => Upload::Accepted(reply),
            _ => Upload::Refused(reply),
        }
    }
}

/// Handles one call; `ukey_method` is set for the log line and audit.
pub fn handle(customs: &Customs, ukey: &Ukey, body: &[u8], request_id: &str) -> Reply {
    let order = match customs179::parse_order(body) {
        Ok(o) => o,
        Err(e) => return Reply::error(400, format!("invalid customs 179 data: {e}")),
    };
    let source = order.source();
    let mut args = Map::new();
    args.insert("inData".into(), Value::String(source.clone()));
    let frame = match ukey.call(SIGN_METHOD, args, request_id) {
        Ok(f) => f,
        Err(e) => return rpc::call_error_reply(&e),
    };
    if !rpc::frame_succeeded(&frame) {
        let errors = rpc::frame_errors(&frame).join("; ");
        return Reply::json(
            400,
            json!({"error": format!("the UKey did not sign: {errors}"), "request_id": request_id, "ukey": frame}),
        );
    }
    let Some((sign_value, cert_no)) = rpc::signature_and_cert(&frame, ukey) else {
        return Reply::json(
            502,
            json!({"error": "the UKey answered without a signature", "request_id": request_id, "ukey": frame}),
        );
    };
    let mut warnings = Vec::new();
    if customs.signed_before(&order.session_id) {
        let w = format!(
            "sessionID {} was signed before: customs rejects a reused sessionID",
            order.session_id
        );
        log::warn!("[{request_id}] {w}");
        warnings.push(w);
    }
    let payload = order.upload_json(&cert_no, &sign_value);
    let upload = if order.upload {
        customs.upload(&payload, request_id)
    } else {
        Upload::NotAsked
    };
    respond(&order, &payload, &source, &warnings, upload, request_id)
}

fn respond(
    order: &Order,
    payload: &str,
    source: &str,
    warnings: &[String],
    upload: Upload,
    request_id: &str,
) -> Reply {
    let (status, customs, error) = match upload {
        Upload::NotAsked => (200, None, None),
        Upload::Accepted(reply) => (200, Some(reply), None),
        Upload::Refused(reply) => {
            let code = reply
                .get("code")
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into());
            (
                502,
                Some(reply),
                Some(format!("customs did not accept the upload (code {code})")),
            )
        }
        Upload::Failed(e) => (502, None, Some(e)),
    };
    // the upload object as it is (head and lists exactly as signed), then our own fields
    let mut text = payload[..payload.len() - 1].to_string();
    text.push_str(&format!(
        ",\"signSource\":{}",
        serde_json::to_string(source).unwrap_or_default()
    ));
    text.push_str(&format!(",\"warnings\":{}", json!(warnings)));
    if order.upload {
        text.push_str(&format!(",\"customs\":{}", customs.unwrap_or(Value::Null)));
    }
    if let Some(e) = error {
        text.push_str(&format!(
            ",\"error\":{},\"request_id\":{}",
            json!(e),
            json!(request_id)
        ));
    }
    text.push('}');
    Reply {
        status,
        body: Body::Raw {
            bytes: text.into_bytes(),
            content_type: "application/json; charset=utf-8",
        },
        headers: Vec::new(),
    }
}
