//! `GET /metrics`: the Prometheus text format. Open like `/health`: aggregates only, no payload,
//! no identifier of a caller or a card.

use super::App;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};
use crate::metrics::{Exposition, label};
use crate::time::now_ms;
use crate::ukey::expiry::days_left;
use std::sync::atomic::Ordering;

pub fn get(app: &App, _: &Input, _: &mut Exchange) -> Reply {
    let m = crate::metrics::global();
    let status = app.ukey.status();
    let mut e = Exposition::default();
    let requests: Vec<(String, f64)> = m
        .requests()
        .into_iter()
        .map(|((route, code), n)| {
            (
                format!("route=\"{}\",status=\"{code}\"", label(&route)),
                n as f64,
            )
        })
        .collect();
    e.labelled(
        "chinaport_http_requests_total",
        "counter",
        "HTTP requests answered, by route and status.",
        &requests,
    );
    e.histograms(
        "chinaport_http_request_duration_seconds",
        "Time from a request's arrival to its answer.",
        &[(String::new(), m.request_seconds())],
    );
    let calls: Vec<_> = m
        .ukey_call_seconds()
        .into_iter()
        .map(|(method, h)| (format!("method=\"{}\"", label(method)), h))
        .collect();
    e.histograms(
        "chinaport_ukey_call_duration_seconds",
        "Time the card took to answer a call (sent to answered), by UKey method.",
        &calls,
    );
    // #28.3: what the card spent its time on, and what it was spared; labels from the closed set
    let counts = m.ukey_counts();
    let sent: Vec<(String, f64)> = counts
        .iter()
        .map(|(method, n, _)| (format!("method=\"{}\"", label(method)), *n as f64))
        .collect();
    e.labelled(
        "chinaport_ukey_calls_total",
        "counter",
        "Calls sent to the card (callers' and the proxy's own probe and certificate reads), by UKey method.",
        &sent,
    );
    let cached: Vec<(String, f64)> = counts
        .iter()
        .map(|(method, _, n)| (format!("method=\"{}\"", label(method)), *n as f64))
        .collect();
    e.labelled(
        "chinaport_ukey_cache_answers_total",
        "counter",
        "Identity reads answered without a card call of their own (from the per-connection cache, or with an identical read's answer), by UKey method.",
        &cached,
    );
    let gauge = |v: bool| if v { 1.0 } else { 0.0 };
    let (pending, bytes, dropped) = app.webhooks.backlog();
    let singles: [(&str, &str, &str, f64); 12] = [
        (
            "chinaport_ukey_connected",
            "gauge",
            "1 when the WebSocket to the E-Port client software is up.",
            gauge(status.connected.load(Ordering::SeqCst)),
        ),
        (
            "chinaport_ukey_password_refused",
            "gauge",
            "1 when the card refused ukey.password and nothing is sent to it.",
            gauge(status.password_refused.load(Ordering::SeqCst)),
        ),
        (
            "chinaport_ukey_reconnects_total",
            "counter",
            "Connections to the card lost or given up (each followed by reconnecting).",
            m.reconnects.load(Ordering::Relaxed) as f64,
        ),
        (
            "chinaport_ukey_probe_failures_total",
            "counter",
            "Health probes that failed or got no answer.",
            m.probe_failures.load(Ordering::Relaxed) as f64,
        ),
        (
            "chinaport_ukey_calls_pending",
            "gauge",
            "Calls waiting for the card or being answered by it.",
            status.pending.load(Ordering::SeqCst) as f64,
        ),
        (
            "chinaport_ukey_calls_in_flight",
            "gauge",
            "Calls queued in the UKey thread or sent and not yet answered.",
            status.in_flight.load(Ordering::SeqCst) as f64,
        ),
        (
            "chinaport_shed_total",
            "counter",
            "Calls answered 503 with Retry-After at once because the card was busy.",
            m.shed.load(Ordering::Relaxed) as f64,
        ),
        (
            "chinaport_webhook_events_pending",
            "gauge",
            "Webhook events in the journal, not yet delivered.",
            pending as f64,
        ),
        (
            "chinaport_webhook_pending_bytes",
            "gauge",
            "Size of the undelivered webhook events.",
            bytes as f64,
        ),
        (
            "chinaport_webhook_events_delivered_total",
            "counter",
            "Webhook events delivered.",
            m.webhooks_delivered.load(Ordering::Relaxed) as f64,
        ),
        (
            "chinaport_webhook_delivery_failures_total",
            "counter",
            "Webhook delivery attempts that failed (retried) or were refused (4xx).",
            m.webhooks_failed.load(Ordering::Relaxed) as f64,
        ),
        (
            "chinaport_webhook_events_dropped_total",
            "counter",
            "Webhook events dropped because the journal was full.",
            dropped as f64,
        ),
    ];
    for (name, kind, help, value) in singles {
        e.single(name, kind, help, value);
    }
    let not_after = status.cert_not_after.load(Ordering::SeqCst);
    if not_after > 0 {
        e.single(
            "chinaport_cert_days_left",
            "gauge",
            "Days until the card's signing certificate expires (negative once expired).",
            days_left(not_after, now_ms() / 1000) as f64,
        );
    }
    // #26.1: which card this proxy serves, so one Prometheus job over the fleet can tell the
    // proxies apart (and a target labelled with another number has had its card swapped). The
    // number comes from the card: only the characters certificate numbers are made of go in.
    if let Some(cert_no) = status.cert_no() {
        let safe: String = cert_no
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(64)
            .collect();
        e.labelled(
            "chinaport_card_info",
            "gauge",
            "The certificate number of the card this proxy serves (as its health probe read it).",
            &[(format!("cert_no=\"{safe}\""), 1.0)],
        );
    }
    e.labelled(
        "chinaport_build_info",
        "gauge",
        "The running version.",
        &[(format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1.0)],
    );
    e.single(
        "chinaport_uptime_seconds",
        "gauge",
        "Seconds since the proxy started.",
        app.started.elapsed().as_secs() as f64,
    );
    Reply {
        status: 200,
        body: Body::Raw {
            bytes: e.finish().into_bytes(),
            content_type: "text/plain; version=0.0.4; charset=utf-8",
        },
        headers: Vec::new(),
    }
}
