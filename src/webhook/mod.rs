//! Webhooks: audit and failure events. Request threads only append to the journal and wake the
//! sender; one sender thread delivers from the journal with ureq, oldest first, retrying with
//! backoff, so no request ever waits for a receiver and no audit record is lost while it is down.

pub mod journal;

use crate::auth::outgoing::Signer;
use crate::mask::Masker;
use crate::ukey::expiry::rfc3339;
use crate::ukey::{UkeyEvent, now_ms};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use journal::{Journal, Kind, Record};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One delivery attempt may take this long (a slow receiver delays only the sender thread).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Where and how webhooks are sent.
#[derive(Clone)]
pub struct WebhookSettings {
    pub audit_url: String,
    pub failure_url: String,
    /// Where receipt events go: `webhook.receipt_url`, else the audit URL.
    pub receipt_url: String,
    /// Signs webhooks with the configured scheme; `None`: unsigned (no secret configured).
    pub signer: Option<Arc<Signer>>,
    pub journal_path: PathBuf,
    pub journal_max_bytes: u64,
    /// Which TLS roots are trusted (`webhook.tls_roots`, `webhook.ca_file`).
    pub tls: crate::outbound::TlsTrust,
}

impl WebhookSettings {
    /// The settings of `config`; a relative journal path is next to the configuration file.
    pub fn from_config(
        config: &crate::config::Config,
        config_path: &Path,
        tls: crate::outbound::TlsTrust,
    ) -> WebhookSettings {
        let dir = config_path.parent().unwrap_or(Path::new("."));
        let journal = match config.webhook.journal_path.as_str() {
            "" => dir.join("webhook-journal.jsonl"),
            p => dir.join(p), // an absolute path stays as it is
        };
        WebhookSettings {
            audit_url: config.webhook.audit_url.clone(),
            failure_url: config.webhook.failure_url.clone(),
            receipt_url: match config.webhook.receipt_url.as_str() {
                "" => config.webhook.audit_url.clone(),
                u => u.to_string(),
            },
            signer: signer_of(config).map(Arc::new),
            journal_path: journal,
            journal_max_bytes: config.webhook.journal_max_bytes,
            tls,
        }
    }
}

/// Webhooks are signed with `webhook.sign_scheme` (default: the first accepted scheme) and
/// `auth.app_secret`; without a secret they go unsigned.
fn signer_of(config: &crate::config::Config) -> Option<Signer> {
    if config.auth.app_secret.is_empty() {
        return None;
    }
    let name = match config.webhook.sign_scheme.as_str() {
        "" => config
            .auth
            .scheme
            .first()
            .map(String::as_str)
            .unwrap_or("md5"),
        s => s,
    };
    Some(Signer {
        scheme: crate::auth::Scheme::parse(name).unwrap_or(crate::auth::Scheme::Md5),
        key: crate::auth::outgoing::OutKey::Secret(crate::auth::Secret::new(
            config.auth.app_secret.as_bytes(),
        )),
        key_id: config.webhook.key_id.clone(),
        checksum: config.auth.checksum.clone(),
    })
}

/// What a request thread reports. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    journal: Option<Arc<Journal>>,
    audit: bool,
    failure: bool,
    receipt: bool,
    wake: Sender<()>,
    masker: Masker,
}

/// The audit record of one request.
pub struct Audit<'a> {
    pub request_id: &'a str,
    /// The authenticated client, when authentication is on.
    pub client: Option<&'a str>,
    /// The caller's trace id (x-mg-traceid), when it sent one.
    pub trace_id: Option<&'a str>,
    /// The caller's address.
    pub client_ip: &'a str,
    pub method: &'a str,
    pub request: Value,
    pub response: Value,
    pub success: bool,
    pub error: &'a str,
    pub duration_ms: u64,
}

impl Webhooks {
    /// A handle that records nothing (no URL configured).
    pub fn disabled() -> Webhooks {
        let (wake, _) = bounded(1);
        Webhooks {
            journal: None,
            audit: false,
            failure: false,
            receipt: false,
            wake,
            masker: Masker::default(),
        }
    }

    /// Opens the journal and starts the sender thread. `ukey_events` are turned into failure
    /// webhooks by that thread.
    pub fn start(
        settings: WebhookSettings,
        masker: Masker,
        ukey_events: Receiver<UkeyEvent>,
        stop: Receiver<()>,
    ) -> Result<(Webhooks, Option<JoinHandle<()>>), String> {
        let audit = !settings.audit_url.is_empty();
        let failure = !settings.failure_url.is_empty();
        let receipt = !settings.receipt_url.is_empty();
        if !audit && !failure && !receipt {
            return Ok((Webhooks::disabled(), None));
        }
        let journal =
            Journal::open(&settings.journal_path, settings.journal_max_bytes).map_err(|e| {
                format!(
                    "cannot open the webhook journal {}: {e}",
                    settings.journal_path.display()
                )
            })?;
        let journal = Arc::new(journal);
        let (backlog, _) = journal.backlog();
        if backlog > 0 {
            log::info!("webhooks: {backlog} undelivered events from before; resuming delivery");
        }
        let (wake, wake_rx) = bounded(1);
        let hooks = Webhooks {
            journal: Some(journal.clone()),
            audit,
            failure,
            receipt,
            wake,
            masker: masker.clone(),
        };
        let sender = Delivery {
            agent: settings.tls.agent(ATTEMPT_TIMEOUT),
            settings,
            journal,
            hooks: hooks.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || sender.run(&wake_rx, &ukey_events, &stop))
            .map_err(|e| e.to_string())?;
        Ok((hooks, Some(handle)))
    }

    /// Whether audit records are sent at all (`webhook.audit_url` is set): without it a request
    /// is not summarised for one.
    pub fn audits(&self) -> bool {
        self.audit
    }

    /// Journals an audit record (before the response is sent) and wakes the sender.
    pub fn audit(&self, a: Audit<'_>) {
        if !self.audit {
            return;
        }
        let mut body = json!({
            "event": "api_audit",
            "timestamp": now_ms(),
            "request_id": a.request_id,
            "client_ip": a.client_ip,
            "method": a.method,
            "request": a.request,
            "response": a.response,
            "success": a.success,
            "error": a.error,
            "duration_ms": a.duration_ms,
        });
        if let Some(c) = a.client {
            body["client"] = c.into();
        }
        if let Some(t) = a.trace_id {
            body["trace_id"] = t.into();
        }
        self.masker.mask_value(&mut body);
        self.record(Kind::Audit, Some(a.request_id), body);
    }

    /// Journals how many failed authentications from `client_ip` were counted but not audited
    /// one by one (see `http::audit::FailedAuthGate`).
    pub fn audit_suppressed(&self, client_ip: &str, count: u64, window_s: u64) {
        if !self.audit {
            return;
        }
        let body = json!({
            "event": "auth_failures_suppressed",
            "timestamp": now_ms(),
            "client_ip": client_ip,
            "count": count,
            "window_s": window_s,
            "success": false,
            "error": format!("{count} further failed authentication(s) from {client_ip} within {window_s} s were not audited one by one"),
        });
        self.record(Kind::Audit, None, body);
    }

    /// Journals a failure event.
    pub fn failure(
        &self,
        kind: &str,
        error: &str,
        method: &str,
        errors: &[String],
        request_id: Option<&str>,
    ) {
        self.failure_with(kind, error, method, errors, request_id, Value::Null);
    }

    /// Journals a failure event whose `details` also carry the fields of `extra` (an object).
    pub fn failure_with(
        &self,
        kind: &str,
        error: &str,
        method: &str,
        errors: &[String],
        request_id: Option<&str>,
        extra: Value,
    ) {
        if !self.failure {
            return;
        }
        let mut body = json!({
            "event": "ukey_malfunction",
            "timestamp": now_ms(),
            "error": error,
            "details": {
                "type": kind,
                "method": method,
                "errors": errors,
                "request_id": request_id.unwrap_or(""),
            },
        });
        if let (Some(details), Value::Object(extra)) = (body["details"].as_object_mut(), extra) {
            details.extend(extra);
        }
        self.masker.mask_value(&mut body);
        self.record(Kind::Failure, request_id, body);
    }

    /// Journals a receipt event (`event: "receipt"`) read from the transfer inbox.
    pub fn receipt(&self, mut body: Value) {
        if !self.receipt {
            return;
        }
        body["timestamp"] = now_ms().into();
        self.record(Kind::Receipt, None, body);
    }

    fn recovered(&self) {
        if !self.failure {
            return;
        }
        let body = json!({
            "event": "ukey_recovered",
            "timestamp": now_ms(),
            "details": {"type": "connection_recovered"},
        });
        self.record(Kind::Failure, None, body);
    }

    fn record(&self, kind: Kind, request_id: Option<&str>, body: Value) {
        let Some(journal) = &self.journal else { return };
        match journal.append(kind, request_id, body.to_string()) {
            Ok(_) => {
                let _ = self.wake.try_send(());
            }
            // Full is logged once by the journal; other errors each time
            Err(journal::JournalError::Full { .. }) => {}
            Err(e) => log::error!("{e}"),
        }
    }

    /// Undelivered (events, bytes) and events dropped because the journal was full.
    pub fn backlog(&self) -> (u64, u64, u64) {
        match &self.journal {
            Some(j) => {
                let (events, bytes) = j.backlog();
                (events, bytes, j.dropped())
            }
            None => (0, 0, 0),
        }
    }
}

/// What one delivery attempt came to.
enum Outcome {
    Delivered,
    /// 4xx: the receiver will never take it; logged and skipped.
    Rejected(u16),
    /// Down, slow or 5xx: try again later, in order.
    Retry(String),
}

/// The sender thread's state.
struct Delivery {
    agent: ureq::Agent,
    settings: WebhookSettings,
    journal: Arc<Journal>,
    hooks: Webhooks,
}

impl Delivery {
    fn run(self, wake: &Receiver<()>, ukey_events: &Receiver<UkeyEvent>, stop: &Receiver<()>) {
        let mut ukey_events = ukey_events.clone();
        let mut retry = RETRY_FIRST;
        let mut failing_since: Option<Instant> = None;
        loop {
            let wait = match self.deliver_pending(stop) {
                Ok(()) => {
                    if let Some(since) = failing_since.take() {
                        log::info!(
                            "webhooks: receiver accepts again after {} s; backlog delivered",
                            since.elapsed().as_secs()
                        );
                    }
                    retry = RETRY_FIRST;
                    None
                }
                Err(why) => {
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        log::warn!(
                            "webhooks: delivery failed ({why}); events wait in the journal and are retried with backoff"
                        );
                    } else {
                        log::debug!("webhooks: still failing ({why}); next try in {retry:?}");
                    }
                    let w = retry;
                    retry = (retry * 2).min(RETRY_MAX);
                    Some(w)
                }
            };
            let timeout = wait.unwrap_or(Duration::from_secs(3600));
            select! {
                recv(stop) -> _ => return,
                recv(wake) -> _ => {}
                recv(ukey_events) -> e => match e {
                    Ok(event) => self.on_ukey_event(event),
                    // the UKey thread is gone: stop watching (a disconnected channel would
                    // make every select! return at once) and keep delivering
                    Err(_) => ukey_events = crossbeam_channel::never(),
                },
                default(timeout) => {}
            }
        }
    }

    /// A failure event about the card or its software, with `extra` in its details.
    fn card_event(&self, kind: &str, error: String, extra: Value) {
        self.hooks
            .failure_with(kind, &error, "", std::slice::from_ref(&error), None, extra);
    }

    fn on_ukey_event(&self, event: UkeyEvent) {
        match event {
            UkeyEvent::Recovered => self.hooks.recovered(),
            UkeyEvent::ConnectionFailure { error } => self.hooks.failure(
                "connection_failure",
                &error,
                "",
                std::slice::from_ref(&error),
                None,
            ),
            UkeyEvent::CertExpiring {
                days_left,
                not_after,
            } => self.card_event(
                "cert_expiring",
                format!(
                    "the card's signing certificate expires in {days_left} day(s), on {}",
                    rfc3339(not_after)
                ),
                json!({"days_left": days_left, "not_after": rfc3339(not_after)}),
            ),
            UkeyEvent::CertExpired { not_after } => self.card_event(
                "cert_expired",
                format!(
                    "the card's signing certificate expired on {}",
                    rfc3339(not_after)
                ),
                json!({"days_left": crate::ukey::expiry::days_left(not_after, now_ms() / 1000),
                       "not_after": rfc3339(not_after)}),
            ),
            UkeyEvent::ClientRestarted { outcome } => self.card_event(
                "client_restarted",
                format!(
                    "the E-Port client software was restarted ({}): {}",
                    outcome["reason"].as_str().unwrap_or_default(),
                    if outcome["ok"] == true {
                        "done"
                    } else {
                        "it failed"
                    }
                ),
                json!({"restart": outcome}),
            ),
            UkeyEvent::PasswordRejected { error } => self.hooks.failure(
                "password_rejected",
                &error,
                "",
                std::slice::from_ref(&error),
                None,
            ),
            UkeyEvent::HealthCheckFailure { error } => self.hooks.failure(
                "health_check_failure",
                &error,
                crate::ukey::PROBE_METHOD,
                std::slice::from_ref(&error),
                None,
            ),
        }
    }

    /// Delivers everything pending, oldest first; stops at the first record that must be retried.
    fn deliver_pending(&self, stop: &Receiver<()>) -> Result<(), String> {
        loop {
            let batch = self
                .journal
                .pending(64)
                .map_err(|e| format!("cannot read the journal: {e}"))?;
            if batch.is_empty() {
                return Ok(());
            }
            for (record, len) in batch {
                if !stop.is_empty() {
                    return Ok(()); // shutting down: the rest stays in the journal
                }
                let metrics = crate::metrics::global();
                match self.attempt_guarded(&record) {
                    Outcome::Delivered => {
                        crate::metrics::Metrics::count(&metrics.webhooks_delivered)
                    }
                    Outcome::Rejected(status) => {
                        crate::metrics::Metrics::count(&metrics.webhooks_failed);
                        log::warn!(
                            "webhooks: receiver rejected event {} with {status}; not retried",
                            record.seq
                        )
                    }
                    Outcome::Retry(why) => {
                        crate::metrics::Metrics::count(&metrics.webhooks_failed);
                        return Err(why);
                    }
                }
                self.journal
                    .mark_delivered(record.seq, len)
                    .map_err(|e| format!("cannot update the journal marker: {e}"))?;
            }
        }
    }

    /// One attempt; a panic inside it (a bug in a library) is a failed attempt to retry, not
    /// the end of delivery for good.
    fn attempt_guarded(&self, record: &Record) -> Outcome {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.attempt(record)))
            .unwrap_or_else(|_| {
                Outcome::Retry(format!(
                    "delivery of event {} failed with an internal error (see the panic above)",
                    record.seq
                ))
            })
    }

    fn attempt(&self, record: &Record) -> Outcome {
        let url = match record.kind {
            Kind::Audit => &self.settings.audit_url,
            Kind::Failure => &self.settings.failure_url,
            Kind::Receipt => &self.settings.receipt_url,
        };
        if url.is_empty() {
            return Outcome::Delivered; // that receiver was removed from the config since
        }
        let (headers, body) = match &self.settings.signer {
            Some(signer) => match signer.sign("POST", url, record.body.as_bytes(), now_ms()) {
                Ok(signed) => (signed.headers, signed.body),
                Err(e) => {
                    log::error!(
                        "webhooks: cannot sign event {}: {e}; sent unsigned",
                        record.seq
                    );
                    (Vec::new(), record.body.as_bytes().to_vec())
                }
            },
            None => (Vec::new(), record.body.as_bytes().to_vec()),
        };
        let mut request = self
            .agent
            .post(url.as_str())
            .header("Content-Type", "application/json");
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(rid) = &record.request_id {
            request = request.header("X-Request-ID", rid);
        }
        match request.send(&body[..]) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match status {
                    200..=299 => Outcome::Delivered,
                    400..=499 if status != 408 && status != 429 => Outcome::Rejected(status),
                    _ => Outcome::Retry(format!("{url} answered {status}")),
                }
            }
            Err(e) => Outcome::Retry(crate::outbound::explain(url, &e)),
        }
    }
}

/// The path of a URL, without query or fragment ("/" when there is none): what webhooks sign.
pub fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    };
    path.split(['?', '#']).next().unwrap_or("/")
}

#[cfg(test)]
mod tests {
    use super::url_path;

    #[test]
    fn url_paths() {
        assert_eq!(
            url_path("https://x.example/webhook/audit?k=1"),
            "/webhook/audit"
        );
        assert_eq!(url_path("http://127.0.0.1:9000"), "/");
        assert_eq!(url_path("http://h:1/a#b"), "/a");
    }
}
