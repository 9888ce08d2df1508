//! `GET /health`: whether the card is connected and answering, for monitors and the operator.
//! Open to every host (a load balancer checks it), but the details that describe this PC's
//! insides (the last error's text, the client-restart command and its output) are only shown to
//! a caller on this PC (finding L4); the status and its reason are shown to all.

use super::App;
use super::exchange::{Exchange, Input};
use super::reply::Reply;
use crate::time::now_ms;
use crate::time::rfc3339;
use crate::ukey::expiry::days_left;
use serde_json::json;
use std::sync::atomic::Ordering;

pub fn get(app: &App, _: &Input, ex: &mut Exchange) -> Reply {
    let status = app.ukey.status();
    let connected = status.connected.load(Ordering::SeqCst);
    let probe_ms = status.last_probe_ms.load(Ordering::SeqCst);
    let probe_ok = status.last_probe_ok.load(Ordering::SeqCst);
    let not_after = status.cert_not_after.load(Ordering::SeqCst);
    let now_s = now_ms() / 1000;
    let days_left = (not_after > 0).then(|| days_left(not_after, now_s));
    let expired = not_after > 0 && now_s > not_after;
    let refused = status.password_refused.load(Ordering::SeqCst);
    // #26.1: up, answering its probe, the password accepted, the certificate valid
    let healthy = connected && probe_ok && !refused && !expired;
    let backlog = app.webhooks.backlog();
    let mut body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "connected": connected,
        "days_left": days_left,
        "password_refused": refused,
        "cert_no": status.cert_no(),
        "last_probe": {
            "time_ms": if probe_ms == 0 { None } else { Some(probe_ms) },
            "ok": probe_ok,
        },
        "last_error": if expired {
            Some(format!("the card's signing certificate expired on {}: renew it", rfc3339(not_after)))
        } else {
            status.last_error().map(|e| app.masker.mask_str(&e))
        },
        "certificate": {
            "not_after": (not_after > 0).then(|| rfc3339(not_after)),
            "days_left": days_left,
            "expired": expired,
        },
        "client_restart": crate::sync::lock(&status.client_restart).clone(),
        "in_flight": status.in_flight.load(Ordering::SeqCst),
        // #28: the identity reads answered without the card on this connection
        "identity_cache": status.identity.methods(),
        "webhook_backlog": {"events": backlog.0, "bytes": backlog.1, "dropped": backlog.2},
        "uptime_s": app.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "time_ms": now_ms(),
    });
    let local = ex.from_this_pc();
    if !local && let Some(fields) = body.as_object_mut() {
        fields.remove("last_error");
        fields.remove("client_restart");
        fields.insert(
            "details".into(),
            "last_error and client_restart are shown only to a caller on this PC (127.0.0.1)"
                .into(),
        );
    }
    Reply::json(if healthy { 200 } else { 503 }, body)
}
