//! The UKey thread: a thin loop that does the I/O and feeds the session (`session.rs`, the state
//! machine that decides everything). Each turn has explicit phases: take the jobs waiting in the
//! channel, tick, carry out what the session asked for (write frames, open or drop the
//! connection, report, and last hand the answers to their workers), then wait. Nothing here
//! sleeps: every wait is on the card's socket, the workers' doorbell and the session's next
//! deadline at once (`wait.rs`).

use super::conn::{Conn, Endpoint};
use super::expiry::{ExpiryWatch, Notice};
use super::lockout::Lockout;
use super::restart::Restarter;
use super::session::{Action, Event, Report, Session, Settings};
use super::wait::{self, Doorbell};
use super::{CallError, CallResult, Command, Job, SIGN_CERT_METHOD, Status, UkeyEvent};
use crate::config::UkeyConfig;
use crate::mask::Masker;
use crate::time::now_ms;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(super) struct Runner {
    endpoint: Endpoint,
    config: UkeyConfig,
    rx: Receiver<Command>,
    /// Rung by workers when a job waits and this thread waits for one; and to stop.
    bell: Arc<Doorbell>,
    status: Arc<Status>,
    events: Option<Sender<UkeyEvent>>,
    masker: Masker,
    /// Looking after the card and its software: the password, the client software, the
    /// certificate's expiry.
    care: Care,
    session: Session,
    conn: Option<Conn>,
    /// What the session asked for and is not carried out yet.
    actions: Vec<Action>,
    /// Answers held until the turn's frames are written: the card's next call goes first.
    answers: Vec<(Job, CallResult)>,
}

/// What the UKey thread looks after besides calls.
pub(super) struct Care {
    /// Remembers a refusal of the password across reconnects and restarts (see `lockout`).
    pub lockout: Lockout,
    pub restarter: Arc<Restarter>,
    pub expiry: ExpiryWatch,
}

impl Runner {
    pub(super) fn new(
        endpoint: Endpoint,
        config: UkeyConfig,
        rx: Receiver<Command>,
        bell: Arc<Doorbell>,
        status: Arc<Status>,
        events: Option<Sender<UkeyEvent>>,
        care: Care,
    ) -> Runner {
        let masker = Masker::new([config.password.clone()]);
        let refused = status.password_refused.load(Ordering::SeqCst);
        let session = Session::new(Settings::from_config(&config), refused, Instant::now());
        Runner {
            endpoint,
            config,
            rx,
            bell,
            status,
            events,
            masker,
            care,
            session,
            conn: None,
            actions: Vec::new(),
            answers: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        log::info!("UKey: connecting to {}", self.endpoint.url);
        while !self.session.stopped() {
            self.take_jobs();
            if self.session.stopped() {
                break;
            }
            self.feed(Event::Tick);
            self.carry_out();
            self.publish();
            self.wait();
        }
        self.carry_out();
        self.publish();
        log::info!("UKey: thread stopped");
    }

    /// Feeds the session one event, now.
    fn feed(&mut self, event: Event) {
        self.session.on(Instant::now(), event, &mut self.actions);
    }

    /// Feeds every job waiting in the channel; a stop request ends the session.
    fn take_jobs(&mut self) {
        if self.bell.stop_requested() {
            return self.stop();
        }
        // before the jobs: none of them may be answered from a cache a worker found wrong
        if let Some(why) = self.status.identity.take_forget() {
            self.feed(Event::Forget(why));
        }
        loop {
            match self.rx.try_recv() {
                Ok(Command::Call(job)) => self.feed(Event::Job(job)),
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return self.stop(),
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    /// Ends the session, then answers what is still in the channel.
    fn stop(&mut self) {
        self.feed(Event::Shutdown);
        while let Ok(cmd) = self.rx.try_recv() {
            if let Command::Call(job) = cmd {
                self.feed(Event::Job(job));
            }
        }
    }

    /// The socket is lost: calls still in the channel wait too, and are answered with the rest.
    fn lose(&mut self, why: String) {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Call(job) => self.feed(Event::Job(job)),
                // a `Shutdown` is also in `bell`: the next turn ends the session
                Command::Shutdown => {}
            }
        }
        self.feed(Event::Closed(why));
    }

    /// Carries out what the session asked for, in order (what that feeds back too), then hands
    /// the answers to their workers.
    fn carry_out(&mut self) {
        while !self.actions.is_empty() {
            let mut lost = None;
            for action in std::mem::take(&mut self.actions) {
                match action {
                    Action::Send { frame, to, label } => {
                        if lost.is_some() {
                            continue;
                        }
                        crate::metrics::global().ukey_sent(label);
                        if log::log_enabled!(log::Level::Debug) {
                            log::debug!("[{to}] UKey <- {}", self.masker.mask_json_text(&frame));
                        }
                        if let Some(conn) = &mut self.conn
                            && let Err(e) = conn.send(frame)
                        {
                            lost = Some(e.to_string());
                        }
                    }
                    Action::Answer(job, result) => self.answers.push((job, result)),
                    Action::Connect => self.connect(),
                    Action::Close => {
                        log::info!("UKey: closing the connection");
                        self.disconnected();
                        if let Some(conn) = self.conn.take() {
                            conn.close();
                        }
                    }
                    Action::Abort => {
                        if let Some(conn) = self.conn.take() {
                            conn.abort();
                        }
                    }
                    Action::Report(report) => self.report(report),
                }
            }
            if let Some(why) = lost {
                self.lose(why);
            }
        }
        for (job, result) in self.answers.drain(..) {
            // The worker may have given up already; nothing to do then.
            job.reply.send(result);
        }
    }

    /// One connection attempt; its outcome (and the frames that came with it) go to the session.
    fn connect(&mut self) {
        match Conn::open(&self.endpoint, self.config.connect_timeout()) {
            Ok((conn, early_frames)) => {
                self.conn = Some(conn);
                self.feed(Event::Connected);
                for frame in early_frames {
                    self.feed(Event::Frame(frame));
                }
                self.feed(Event::Tick);
            }
            Err(e) => self.feed(Event::ConnectFailed(e.to_string())),
        }
    }

    /// Waits for the card, a job or the next deadline; what the card sent goes to the session.
    fn wait(&mut self) {
        let now = Instant::now();
        let timeout = self
            .session
            .next_wake()
            .unwrap_or_else(|| now + self.config.health_interval())
            .saturating_duration_since(now);
        let Some(conn) = &mut self.conn else {
            // no socket: wait for a job (answered at once) or the next attempt
            match self.rx.recv_timeout(timeout) {
                Ok(Command::Call(job)) => self.feed(Event::Job(job)),
                Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => self.stop(),
                Err(RecvTimeoutError::Timeout) => {}
            }
            return;
        };
        // Jobs only matter while a call could be sent; otherwise they wait in the channel and
        // are taken when the card's reply frees the slot.
        let want_jobs = self.session.wants_jobs();
        let (rx, identity) = (&self.rx, &self.status.identity);
        // a worker's request to drop the identity cache rings the same bell as a job: a request
        // made just before the thread said it sleeps must not wait for the next wake-up either
        let woke = wait::wait(
            conn.socket(),
            &self.bell,
            want_jobs,
            || !rx.is_empty() || identity.forget_pending(),
            timeout,
        );
        let read = match woke {
            Ok(woke) if woke.card => conn.read_available().map_err(|e| e.to_string()),
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(format!("cannot wait on the socket: {e}")),
        };
        match read {
            Ok(frames) => {
                for frame in frames {
                    self.feed(Event::Frame(frame));
                }
            }
            Err(why) => self.lose(why),
        }
    }

    /// Publishes what `/health`, `/metrics` and admission read.
    fn publish(&self) {
        let waiting = self.session.callers_waiting() + self.rx.len();
        self.status.in_flight.store(
            if self.session.connected() { waiting } else { 0 },
            Ordering::SeqCst,
        );
        self.status
            .call_time_us
            .store(self.session.call_time_us(), Ordering::Relaxed);
    }

    fn disconnected(&self) {
        self.status.connected.store(false, Ordering::SeqCst);
        self.status.connected_since_ms.store(0, Ordering::SeqCst);
    }

    /// What the session reports goes to the status, the log, the webhooks and the metrics.
    fn report(&mut self, report: Report) {
        let metrics = crate::metrics::global();
        match report {
            Report::Connected {
                after_outage,
                again,
            } => {
                self.status.connected.store(true, Ordering::SeqCst);
                self.status
                    .connected_since_ms
                    .store(now_ms(), Ordering::SeqCst);
                self.status.set_last_error(None);
                self.status.set_sign_cert(None);
                // a new connection may be to another card
                self.status.identity.clear();
                // a new connection is healthy only once its own probe has passed
                self.status.last_probe_ok.store(false, Ordering::SeqCst);
                let url = &self.endpoint.url;
                match (after_outage, again) {
                    (true, true) => log::info!("UKey: reconnected to {url}"),
                    (true, false) => log::info!("UKey: connected to {url} (after retrying)"),
                    (false, _) => log::info!("UKey: connected to {url}"),
                }
                if after_outage {
                    self.emit(UkeyEvent::Recovered);
                }
            }
            Report::ConnectFailed {
                error,
                first,
                next_try,
            } => {
                self.status.set_last_error(Some(error.clone()));
                if !first {
                    log::debug!("UKey: still unreachable ({error}); next try in {next_try:?}");
                    return;
                }
                log::warn!(
                    "UKey: cannot reach {} ({error}); retrying with backoff 1 s doubling to 8 s",
                    self.endpoint.url
                );
                self.emit(UkeyEvent::ConnectionFailure { error });
            }
            Report::Lost { why } => {
                self.disconnected();
                self.status.identity.clear();
                crate::metrics::Metrics::count(&metrics.reconnects);
                self.status.set_last_error(Some(why.clone()));
                log::warn!(
                    "UKey: connection lost ({why}); reconnecting with backoff 1 s doubling to 8 s"
                );
                self.emit(UkeyEvent::ConnectionFailure { error: why });
            }
            Report::ProbeOk { cert_no } => {
                self.status.last_probe_ms.store(now_ms(), Ordering::SeqCst);
                self.status.last_probe_ok.store(true, Ordering::SeqCst);
                self.status.set_cert_no(cert_no);
                log::debug!("UKey: health probe passed");
            }
            Report::ProbeFailed { error } => {
                crate::metrics::Metrics::count(&metrics.probe_failures);
                self.status.last_probe_ok.store(false, Ordering::SeqCst);
                self.status.last_probe_ms.store(now_ms(), Ordering::SeqCst);
                log::warn!("UKey: {error}");
                self.emit(UkeyEvent::HealthCheckFailure { error });
            }
            Report::ProbeRefused => {
                self.status.last_probe_ok.store(false, Ordering::SeqCst);
                self.status.last_probe_ms.store(now_ms(), Ordering::SeqCst);
            }
            Report::PasswordRefused { errors } => {
                self.status.password_refused.store(true, Ordering::SeqCst);
                self.care.lockout.remember(&errors, now_ms());
                let why = CallError::PasswordRefused.to_string();
                self.status
                    .set_last_error(Some(format!("{why} (the card said: {errors})")));
                log::error!("UKey: the card rejected ukey.password ({errors}). {why}");
                self.emit(UkeyEvent::PasswordRejected {
                    error: format!("the card refused the configured password: {errors}"),
                });
            }
            Report::SignCert(cert) => {
                if is_simulator_certificate(&cert) {
                    log::warn!(
                        "UKey at {} is a SIMULATOR (its certificate says so): signatures it makes are NOT valid at customs",
                        self.endpoint.url
                    );
                }
                self.check_expiry(&cert);
                self.status.set_sign_cert(Some(cert));
            }
            Report::SignCertUnreadable => {
                log::warn!(
                    "UKey: could not read the signing certificate ({SIGN_CERT_METHOD} failed)"
                );
            }
            Report::CertCheckDue => {
                if let Some(cert) = self.status.sign_cert() {
                    self.check_expiry(&cert);
                }
            }
            Report::Answered { method, took } => metrics.ukey_call(&method, took),
            Report::Cached { key, frame } => self.status.identity.put(key, frame),
            Report::CacheDropped { why, entries } => {
                self.status.identity.clear();
                // the certificate is read again; until then signing workflows ask the card
                self.status.set_sign_cert(None);
                if entries > 0 {
                    log::info!("UKey: identity cache dropped ({entries} answer(s)): {why}");
                } else {
                    log::debug!("UKey: identity cache dropped (empty): {why}");
                }
            }
            Report::CacheAnswered { key } => metrics.ukey_cache_answer(key),
            Report::Restart(reason) => self.care.restarter.trigger(&reason),
        }
    }

    /// Looks at the signing certificate's expiry: publishes it for `/health`, and warns (log
    /// and webhook) once per threshold.
    fn check_expiry(&mut self, cert_b64: &str) {
        let Ok(cert) = crate::customs::cert::CertInfo::from_base64(cert_b64) else {
            return;
        };
        self.status
            .cert_not_after
            .store(cert.not_after, Ordering::SeqCst);
        match self.care.expiry.check(&cert, now_ms() / 1000) {
            Some(Notice::Expiring {
                days_left,
                not_after,
            }) => {
                log::warn!(
                    "UKey: the card's signing certificate expires in {days_left} day(s), on {}: renew it in time, filings stop when it expires",
                    crate::time::rfc3339(not_after)
                );
                self.emit(UkeyEvent::CertExpiring {
                    days_left,
                    not_after,
                });
            }
            Some(Notice::Expired { not_after }) => {
                log::error!(
                    "UKey: the card's signing certificate EXPIRED on {}: customs refuses what it signs; renew the certificate",
                    crate::time::rfc3339(not_after)
                );
                self.emit(UkeyEvent::CertExpired { not_after });
            }
            None => {}
        }
    }

    fn emit(&self, event: UkeyEvent) {
        if let Some(tx) = &self.events {
            // never block the UKey thread on whoever reports events
            let _ = tx.try_send(event);
        }
    }
}

/// Whether a certificate (base64 DER, as the card hands it out) is one of the simulator's: its
/// subject carries the word SIMULATOR, which stands as plain text in the DER.
fn is_simulator_certificate(cert_b64: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(crate::encoding::pem_body(cert_b64))
        .map(|der| {
            der.windows(super::SIMULATOR_MARK.len())
                .any(|w| w == super::SIMULATOR_MARK.as_bytes())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::is_simulator_certificate;

    #[test]
    fn simulator_certificates_are_recognised() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"\x30\x82..O=SIMULATOR..");
        assert!(is_simulator_certificate(&b64));
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"\x30\x82..O=Real Co..");
        assert!(!is_simulator_certificate(&b64));
        assert!(!is_simulator_certificate("not base64 !!"));
    }
}
