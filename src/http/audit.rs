//! What a handled request leaves behind for others: its audit record, and a failure webhook when
//! the card said no or did not answer. Called once per request from `serve`.

use super::App;
use super::exchange::Exchange;
use super::reply::{Body, Reply};
use crate::ukey::frame;
use crate::webhook::Audit;
use serde_json::{Value, json};

/// The request as an audit record shows it: its JSON, or an excerpt of what it was.
pub fn request_summary(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
            json!({"body": text, "bytes": body.len()})
        }
    }
}

/// Journals the audit record of a request that passed authentication (before it is answered).
pub fn record(app: &App, ex: &Exchange, reply: &Reply) {
    let Some(request) = &ex.audit_request else {
        return;
    };
    let response = reply.body_json(&ex.request_id).unwrap_or(Value::Null);
    let error = match reply.error_message() {
        Some(m) => m.to_string(),
        None if !reply.is_success() => frame::errors(&response).join("; "),
        None => String::new(),
    };
    app.webhooks.audit(Audit {
        request_id: &ex.request_id,
        client: ex.client.as_deref(),
        trace_id: ex.trace_id.as_deref(),
        method: ex.ukey_method.as_deref().unwrap_or(""),
        request: request.clone(),
        response,
        success: reply.is_success(),
        error: &error,
        duration_ms: ex.arrived.elapsed().as_millis() as u64,
    });
}

/// A card that said no, or did not answer in time, is reported to the failure webhook. (A lost
/// connection is reported once per outage by the UKey thread, not once per call.)
pub fn report_operation_failure(app: &App, method: &str, reply: &Reply, request_id: &str) {
    let (error, errors) = match &reply.body {
        Body::Json(f) if reply.status == 400 => {
            // /rpc answers the card's frame; the customs endpoints nest it under "ukey"
            let errors = frame::errors(f.get("ukey").unwrap_or(f));
            (
                format!("UKey operation {method} failed: {}", errors.join("; ")),
                errors,
            )
        }
        Body::Error(m) if m.contains("did not answer") => (m.clone(), vec![m.clone()]),
        _ => return,
    };
    app.webhooks.failure(
        "operation_failure",
        &error,
        method,
        &errors,
        Some(request_id),
    );
}
