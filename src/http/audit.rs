//! What a handled request leaves behind for others: its audit record, and a failure webhook when
//! the card said no or did not answer. Called once per request from `serve`.

use super::App;
use super::exchange::Exchange;
use super::reply::{Body, Reply};
use crate::ukey::frame;
use crate::webhook::Audit;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications audited one by one per client address in each window.
const FAILURES_PER_ADDRESS: u64 = 5;
/// Failed authentications audited one by one from all addresses together in each window.
const FAILURES_IN_ALL: u64 = 100;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered; past this, the window of the oldest is closed early.
const ADDRESSES_KEPT: usize = 4096;

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
/// `Err`: the record could not be kept; the caller answers with that error instead (507 when the
/// journal is full), never with an unaudited result.
pub fn record(app: &App, ex: &Exchange, reply: &Reply) -> Result<(), Reply> {
    let Some(request) = &ex.audit_request else {
        return Ok(());
    };
    let response = reply.body_json(&ex.request_id).unwrap_or(Value::Null);
    let error = match reply.error_message() {
        Some(m) => m.to_string(),
        None if !reply.is_success() => frame::errors(&response).join("; "),
        None => String::new(),
    };
    app.webhooks
        .audit(Audit {
            request_id: &ex.request_id,
            client: ex.client.as_deref(),
            trace_id: ex.trace_id.as_deref(),
            client_ip: &ex.client_ip_text(),
            method: ex.ukey_method.as_deref().unwrap_or(""),
            request: request.clone(),
            response,
            success: reply.is_success(),
            error: &error,
            duration_ms: ex.arrived.elapsed().as_millis() as u64,
        })
        .map_err(refused)
}

/// The answer to a request whose audit record cannot be kept: 507 when the journal is full, 503
/// when it cannot be written.
pub fn refused(message: String) -> Reply {
    let status = if message.contains("journal is full") {
        507
    } else {
        503
    };
    Reply::error(status, message)
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

/// Journals a failed authentication, within the bounds of `FailedAuthGate`: no signature value,
/// only the rule that failed, the address, and the method and path.
pub fn record_auth_failure(app: &App, ex: &Exchange, http_method: &str, path: &str) {
    let Some(rule) = &ex.auth_failure else {
        return;
    };
    let ip = ex.client_ip_text();
    let (audit_it, closed) = app.failed_auth.admit(ex.client_ip, Instant::now());
    for (addr, count) in closed {
        app.webhooks
            .audit_suppressed(&addr, count, WINDOW.as_secs());
    }
    if !audit_it {
        return;
    }
    // best effort: the request is refused anyway, and failures are bounded by the gate
    let _ = app.webhooks.audit(Audit {
        request_id: &ex.request_id,
        client: None,
        trace_id: ex.trace_id.as_deref(),
        client_ip: &ip,
        method: "",
        request: json!({"http_method": http_method, "path": path}),
        response: json!({"status": 401}),
        success: false,
        error: &format!("authentication failed: {rule}"),
        duration_ms: ex.arrived.elapsed().as_millis() as u64,
    });
}

/// Bounds the audit records that failed authentication may write, so that an unauthenticated
/// flood can neither fill the webhook journal nor push authenticated records out of it: per
/// client address the first `FAILURES_PER_ADDRESS` in each minute are audited one by one, and
/// `FAILURES_IN_ALL` from all addresses together; the rest are counted, and the count is
/// audited as one `auth_failures_suppressed` event when its window has closed (seen at the
/// next failure after it).
#[derive(Default)]
pub struct FailedAuthGate {
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    by_address: HashMap<String, Window>,
    all: Option<Window>,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    seen: u64,
}

impl Window {
    fn suppressed(&self, limit: u64) -> u64 {
        self.seen.saturating_sub(limit)
    }
}

impl FailedAuthGate {
    /// Counts one failure from `ip` at `now`. Returns whether to audit it, and the windows
    /// that closed with failures left unaudited: (address, or `*` for the global bound, count).
    pub fn admit(&self, ip: Option<IpAddr>, now: Instant) -> (bool, Vec<(String, u64)>) {
        let key = ip.map(|i| i.to_string()).unwrap_or_default();
        let mut w = crate::sync::lock(&self.windows);
        let mut closed = Vec::new();
        let mut roll = |window: &mut Option<Window>, name: &str, limit: u64| {
            if let Some(old) = window
                && now.duration_since(old.start) >= WINDOW
            {
                let n = old.suppressed(limit);
                if n > 0 {
                    closed.push((name.to_string(), n));
                }
                *window = None;
            }
            let current = window.get_or_insert(Window {
                start: now,
                seen: 0,
            });
            current.seen += 1;
            current.seen <= limit
        };
        let mut mine = w.by_address.remove(&key);
        let address_ok = roll(&mut mine, &key, FAILURES_PER_ADDRESS);
        let all_ok = address_ok && roll(&mut w.all, "*", FAILURES_IN_ALL);
        if w.by_address.len() >= ADDRESSES_KEPT {
            // close the oldest window early rather than grow without bound
            if let Some(oldest) = w
                .by_address
                .iter()
                .min_by_key(|(_, win)| win.start)
                .map(|(k, _)| k.clone())
                && let Some(win) = w.by_address.remove(&oldest)
                && win.suppressed(FAILURES_PER_ADDRESS) > 0
            {
                closed.push((oldest, win.suppressed(FAILURES_PER_ADDRESS)));
            }
        }
        if let Some(m) = mine {
            w.by_address.insert(key, m);
        }
        (address_ok && all_ok, closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_audited_up_to_the_bound_then_counted() {
        let gate = FailedAuthGate::default();
        let a: Option<IpAddr> = Some([127, 0, 0, 2].into());
        let b: Option<IpAddr> = Some([127, 0, 0, 3].into());
        let t0 = Instant::now();
        let admitted = (0..20).filter(|_| gate.admit(a, t0).0).count();
        assert_eq!(admitted as u64, FAILURES_PER_ADDRESS);
        // another address has its own allowance
        assert!(gate.admit(b, t0).0);
        // a minute later the window closes with its count, and auditing resumes
        let (ok, closed) = gate.admit(a, t0 + WINDOW);
        assert!(ok);
        assert_eq!(closed, vec![("127.0.0.2".to_string(), 15)]);
    }

    #[test]
    fn many_addresses_together_are_bounded_too() {
        let gate = FailedAuthGate::default();
        let t0 = Instant::now();
        let admitted = (0..1000u32)
            .filter(|i| gate.admit(Some(IpAddr::from(i.to_be_bytes())), t0).0)
            .count();
        assert_eq!(admitted as u64, FAILURES_IN_ALL);
    }
}
