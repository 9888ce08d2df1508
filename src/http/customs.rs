//! `POST /api/customs179`: validates the order, has the UKey sign the customs source string, and
//! uploads the result to customs when asked. The response embeds the head and lists byte for byte
//! as signed, so it is written by hand rather than through a JSON map (which would reorder them).

use super::App;
use super::audit;
use super::domain;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use crate::customs::customs179::{self, Order};
use crate::customs::upload::Upload;
use crate::sign::{self, SignError};
use serde_json::{Value, json};

const SIGN_METHOD: &str = "cus-sec_SpcSignDataAsPEM";

pub fn post_179(app: &App, input: &Input, ex: &mut Exchange) -> Reply {
    ex.ukey_method = Some("customs179".into());
    let reply = sign(app, &input.body, ex);
    audit::report_operation_failure(app, SIGN_METHOD, &reply, &ex.request_id);
    reply
}

fn sign(app: &App, body: &[u8], ex: &Exchange) -> Reply {
    let request_id = ex.request_id.as_str();
    let order = match customs179::parse_order(body) {
        Ok(o) => o,
        Err(e) => return domain::reply(&SignError::Order(e), request_id),
    };
    let source = order.source();
    let (sign_value, cert_no) = match sign::sign_179(&domain::card(app, ex), &order) {
        Ok(s) => s,
        Err(e) => return domain::reply(&e, request_id),
    };
    let mut warnings = Vec::new();
    if app.customs.signed_before(&order.session_id) {
        let w = format!(
            "sessionID {} was signed before: customs rejects a reused sessionID",
            order.session_id
        );
        log::warn!("[{request_id}] {w}");
        warnings.push(w);
    }
    let payload = order.upload_json(&cert_no, &sign_value);
    let upload = if order.upload {
        app.customs.upload(&payload, request_id)
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
