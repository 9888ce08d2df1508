//! Webhooks: audit and failure events. Request threads only append to the journal and wake the
//! sender; one sender thread delivers from the journal with ureq, oldest first, retrying with
//! backoff, so no request ever waits for a receiver and no audit record is lost while it is down.
//!
//! Only an answer that says so ends an event: a 2xx (accepted) or 410 Gone (the receiver does
//! not want it, ever). Every other answer, a refused connection, a timeout, and a failure to sign
//! are retried, in order, with the event signed afresh each time (so a receiver whose clock was
//! off accepts it once the clocks agree again). An event is never sent unsigned when a scheme is
//! configured.

pub mod journal;

use crate::auth::outgoing::Signer;
use crate::mask::Masker;
use crate::time::now_ms;
use crate::time::rfc3339;
use crate::ukey::UkeyEvent;
use crossbeam_channel::{Receiver, Sender, bounded, select};
use journal::{Journal, Kind, Record};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Each phase of one delivery attempt (connect, send, answer) may take this long; a slow
/// receiver delays only the sender thread.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a receiver's answer is read (it is not used: only its status counts).
const RECEIVER_ANSWER_MAX: u64 = 64 * 1024;

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
    /// The first wait after a failed attempt; it doubles up to `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
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
            retry_first: Duration::from_millis(config.webhook.retry_first_ms.max(1)),
            retry_max: Duration::from_millis(
                config
                    .webhook
                    .retry_max_ms
                    .max(config.webhook.retry_first_ms.max(1)),
            ),
        }
    }
}

/// Webhooks are signed with `webhook.sign_scheme` (default: the first accepted scheme) and
/// `auth.app_secret`; without a secret they go unsigned.
fn signer_of(config: &crate::config::Config) -> Option<Signer> {
    if config.auth.app_secret.is_empty() {
        return None;
    }
    // `auth.scheme` is never empty (validated), so this fallback is only for form's sake
    let scheme = config
        .webhook
        .sign_scheme
        // the token signs nothing: the first scheme that signs
        .or_else(|| {
            config
                .auth
                .scheme
                .iter()
                .copied()
                .find(|s| *s != crate::config::Scheme::Token)
        })
        .unwrap_or(crate::config::Scheme::Md5);
    Some(Signer {
        scheme,
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
    /// Up while the sender sleeps with nothing to deliver: only then does an event wake it (one
    /// wake for the first event, none while it is busy or backing off). Each wake is a thread
    /// switch on the request path's core: at 64 callers that cost more than the record itself.
    sender_idle: Arc<AtomicBool>,
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
            sender_idle: Arc::default(),
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
            sender_idle: Arc::default(),
            masker: masker.clone(),
        };
        let sender = Delivery {
            agent: settings.tls.background_agent(ATTEMPT_TIMEOUT),
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

    /// Whether an audit record for a request of `body_bytes` would fit in the journal now:
    /// checked before the request is served, so that one that could not be audited is refused
    /// before the card is used (`Err` says why).
    pub fn audit_room(&self, body_bytes: usize) -> Result<(), String> {
        let (true, Some(journal)) = (self.audit, &self.journal) else {
            return Ok(());
        };
        // the body appears once in "request" and is escaped again in the journal line
        let estimate = 2 * body_bytes as u64 + 2048;
        journal.has_room_for(estimate).map_err(|e| {
            let _ = self.wake.try_send(()); // the sender writes the dropped count to the marker
            refusal(&e)
        })
    }

    /// Journals an audit record (before the response is sent) and wakes the sender. `Err`: it
    /// could not be kept, and the request must not be answered as if it had been audited.
    pub fn audit(&self, a: Audit<'_>) -> Result<(), String> {
        if !self.audit {
            return Ok(());
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
        self.record(Kind::Audit, Some(a.request_id), body)
            .map_err(|e| refusal(&e))
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
        let _ = self.record(Kind::Audit, None, body);
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
        let _ = self.record(Kind::Failure, request_id, body);
    }

    /// Journals a receipt event (`event: "receipt"`) read from the transfer inbox. An error
    /// (journal full or unwritable) tells the watcher to leave the file for the next poll.
    pub fn receipt(&self, mut body: Value) -> Result<(), String> {
        if !self.receipt {
            return Ok(());
        }
        body["timestamp"] = now_ms().into();
        self.record(Kind::Receipt, None, body)
            .map_err(|e| e.to_string())
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
        let _ = self.record(Kind::Failure, None, body);
    }

    fn record(
        &self,
        kind: Kind,
        request_id: Option<&str>,
        body: Value,
    ) -> Result<(), journal::JournalError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let result = journal
            .append(kind, request_id, body.to_string())
            .map(|_| ());
        match &result {
            // Full is logged by the journal, once per episode; other errors each time
            Ok(()) | Err(journal::JournalError::Full { .. }) => {}
            Err(e) => log::error!("{e}"),
        }
        // also on Full: the sender writes the dropped count to the marker. The flag is read
        // after the append: see `Delivery::run` for the other half
        if matches!(result, Err(journal::JournalError::Full { .. }))
            || self.sender_idle.swap(false, Ordering::SeqCst)
        {
            let _ = self.wake.try_send(());
        }
        result
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

/// The JSON error a request gets when its audit record cannot be kept.
fn refusal(e: &journal::JournalError) -> String {
    format!("{e}; the request was refused rather than served without an audit record")
}

/// What one delivery attempt came to.
enum Outcome {
    Delivered,
    /// 410 Gone: the receiver says it will never take this event; logged and skipped.
    Gone,
    /// Anything else (down, slow, any other 4xx or 5xx, not signed): try again later, in order.
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
        let mut retry = self.settings.retry_first;
        let mut failing_since: Option<Instant> = None;
        // while failing, the next attempt waits for this even when new events arrive: a wake
        // per event would turn the backoff into a busy retry loop against a receiver that is down
        let mut next_try = Instant::now();
        loop {
            let now = Instant::now();
            let seen = self.journal.appended();
            if now >= next_try {
                match self.deliver_pending(stop) {
                    Ok(()) => {
                        if let Some(since) = failing_since.take() {
                            log::info!(
                                "webhooks: receiver accepts again after {} s; backlog delivered",
                                since.elapsed().as_secs()
                            );
                        }
                        retry = self.settings.retry_first;
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
                        next_try = Instant::now() + retry;
                        retry = (retry * 2).min(self.settings.retry_max);
                    }
                }
            }
            let wait = failing_since
                .is_some()
                .then(|| next_try.saturating_duration_since(Instant::now()));
            // the marker is written within MARKER_EVERY of a delivery, even when nothing follows
            let mut marker = self.journal.marker_due_in();
            if marker == Some(Duration::ZERO) {
                marker = match self.journal.flush_marker() {
                    Ok(()) => self.journal.marker_due_in().filter(|d| !d.is_zero()),
                    Err(e) => {
                        log::error!("webhooks: cannot update the journal marker: {e}");
                        Some(self.settings.retry_first)
                    }
                };
            }
            let timeout = [wait, marker]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(Duration::from_secs(3600));
            if failing_since.is_none() {
                // flag up, then look: an event appended before the flag was up is seen here,
                // one appended after it finds the flag up and wakes this thread (both SeqCst)
                self.hooks.sender_idle.store(true, Ordering::SeqCst);
                if self.journal.appended() != seen {
                    self.hooks.sender_idle.store(false, Ordering::SeqCst);
                    continue;
                }
            }
            select! {
                recv(stop) -> _ => {
                    if let Err(e) = self.journal.flush_marker() {
                        log::error!("webhooks: cannot update the journal marker: {e}");
                    }
                    return;
                }
                recv(wake) -> _ => {}
                recv(ukey_events) -> e => match e {
                    Ok(event) => self.on_ukey_event(event),
                    // the UKey thread is gone: stop watching (a disconnected channel would
                    // make every select! return at once) and keep delivering
                    Err(_) => ukey_events = crossbeam_channel::never(),
                },
                default(timeout) => {}
            }
            self.hooks.sender_idle.store(false, Ordering::SeqCst);
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
                    Outcome::Gone => {
                        crate::metrics::Metrics::count(&metrics.webhooks_failed);
                        log::warn!(
                            "webhooks: receiver answered 410 Gone to event {}: it does not want it; not retried",
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
                // hand the core to any request thread that is ready: while a backlog drains
                // this thread never blocks long, and the scheduler would otherwise let it finish
                // its time slice first (milliseconds) before a signed call that just arrived.
                // Only while a quarter of the journal or less waits: yielding to a core that
                // stays saturated would let the backlog grow until the journal refused calls
                // (benches/audit.rs filled it in 20 s), so past that the sender takes its share
                if self.journal.undelivered() <= self.journal.max_bytes() / 4 {
                    std::thread::yield_now();
                }
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
            Some(signer) => match sign(signer, url, record) {
                Ok(signed) => (signed.headers, signed.body),
                // never downgraded to unsigned: a receiver that checks would refuse it
                Err(e) => {
                    log::error!(
                        "webhooks: cannot sign event {}: {e}; not sent, retried",
                        record.seq
                    );
                    return Outcome::Retry(format!("cannot sign event {}: {e}", record.seq));
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
        // the same on every attempt and after a restart: what a receiver drops duplicates by
        request = request.header("X-Webhook-Seq", record.seq.to_string());
        match request.send(&body[..]) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                // read to its end, so that ureq keeps the connection for the next event: an
                // unread answer closes it, and a new connection per event cost the sender most
                // of its time (connect, close, and ureq's 256 KB of fresh buffers each)
                let _ = resp
                    .body_mut()
                    .with_config()
                    .limit(RECEIVER_ANSWER_MAX)
                    .read_to_vec();
                match status {
                    200..=299 => Outcome::Delivered,
                    410 => Outcome::Gone,
                    _ => Outcome::Retry(format!("{url} answered {status}")),
                }
            }
            Err(e) => Outcome::Retry(crate::outbound::explain(url, &e)),
        }
    }
}

/// Signs one attempt at `now`: each attempt carries a fresh timestamp (and nonce).
fn sign(
    signer: &Signer,
    url: &str,
    record: &Record,
) -> Result<crate::auth::outgoing::Signed, String> {
    #[cfg(debug_assertions)]
    if test_hook::fail_signing() {
        return Err("test hook: signing made to fail (CHINAPORT_TEST_SIGN_FAILURES)".into());
    }
    signer.sign("POST", url, record.body.as_bytes(), now_ms())
}

/// Debug builds only (the tests' binary): `CHINAPORT_TEST_SIGN_FAILURES=N` makes the first N
/// signing attempts fail, the only way to show that a failure to sign is retried, not sent
/// unsigned (no real key makes the shared-secret schemes fail). Release builds do not contain it.
#[cfg(debug_assertions)]
mod test_hook {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub fn fail_signing() -> bool {
        static LEFT: OnceLock<AtomicU64> = OnceLock::new();
        let left = LEFT.get_or_init(|| {
            AtomicU64::new(
                std::env::var("CHINAPORT_TEST_SIGN_FAILURES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )
        });
        left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
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
