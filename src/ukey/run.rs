//! The UKey thread's main loop: one loop over two explicit states, `Disconnected` (waiting out
//! the backoff, answering every call 503 at once) and `Connected` (a session with calls in flight),
//! each event handled by a small function. Nothing here sleeps: every wait is on the card's
//! socket, the workers' doorbell and the nearest deadline at once (`wait.rs`).

use super::conn::{Conn, ConnError, Endpoint};
use super::expiry::{self, ExpiryWatch, Notice};
use super::lockout::{self, Lockout};
use super::restart::{self, Restarter};
use super::wait::{self, Doorbell};
use super::{CallError, Command, Job, PROBE_METHOD, SIGN_CERT_METHOD, Status, UkeyEvent, now_ms};
use crate::config::UkeyConfig;
use crate::mask::Masker;
use crossbeam_channel::{Receiver, Sender, TryRecvError, select};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// How many timed-out `_id`s are remembered, to log a late reply as such.
const LATE_IDS_KEPT: usize = 64;

pub(super) struct Runner {
    endpoint: Endpoint,
    config: UkeyConfig,
    rx: Receiver<Command>,
    /// Rung by workers when a job waits and this thread waits for one; and to stop.
    bell: Arc<Doorbell>,
    status: Arc<Status>,
    events: Option<Sender<UkeyEvent>>,
    masker: Masker,
    /// `_id` of the next frame; 0 is the greeting's, so requests count from 1.
    next_id: u64,
    /// Whether the current outage has been reported (log line and event): once per outage.
    outage_reported: bool,
    /// Whether a connection has ever been up (the first one is not a "recovery").
    ever_connected: bool,
    /// Looking after the card and its software: the password, the client software, the
    /// certificate's expiry.
    care: Care,
    /// Connection attempts that failed in a row (restarts the client software after
    /// `ukey.client_restart_after_failures`).
    failed_connects: u32,
}

/// What the UKey thread looks after besides calls.
pub(super) struct Care {
    /// Remembers a refusal of the password across reconnects and restarts (see `lockout`).
    pub lockout: Lockout,
    pub restarter: Arc<Restarter>,
    pub expiry: ExpiryWatch,
}

/// How often the certificate's expiry is looked at while connected.
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

enum State {
    Disconnected {
        retry_at: Instant,
        backoff: Duration,
    },
    Connected(Box<Session>),
    Stopped,
}

struct Session {
    conn: Conn,
    in_flight: HashMap<u64, Sent>,
    queue: VecDeque<Origin>,
    next_probe: Instant,
    /// When the certificate's expiry is looked at again (it is on connect, and daily).
    next_cert_check: Instant,
    probe_pending: bool,
    late_ids: VecDeque<u64>,
    /// Replies matched but not yet handed to their workers: the next frame goes to the card
    /// first (`on_readable`), so waking a worker is never on the card's critical path.
    answered: Vec<(Job, super::CallResult)>,
}

/// Who is waiting for a frame.
enum Origin {
    Caller(Job),
    Probe {
        deadline: Instant,
    },
    /// The signing certificate, read once per connection.
    SignCert {
        deadline: Instant,
    },
}

struct Sent {
    method: String,
    origin: Origin,
    sent_at: Instant,
}

impl Origin {
    fn deadline(&self) -> Instant {
        match self {
            Origin::Caller(job) => job.deadline,
            Origin::Probe { deadline } | Origin::SignCert { deadline } => *deadline,
        }
    }
}

/// Why a session ended.
enum SessionEnd {
    Lost(String),
    ProbeFailed(String),
    Shutdown,
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
        Runner {
            endpoint,
            config,
            rx,
            bell,
            status,
            events,
            masker,
            next_id: 1,
            outage_reported: false,
            ever_connected: false,
            care,
            failed_connects: 0,
        }
    }

    pub(super) fn run(mut self) {
        log::info!("UKey: connecting to {}", self.endpoint.url);
        let mut state = self.connect(BACKOFF_FIRST);
        loop {
            state = match state {
                State::Disconnected { retry_at, backoff } => {
                    self.wait_disconnected(retry_at, backoff)
                }
                State::Connected(session) => self.serve(*session),
                State::Stopped => break,
            };
        }
        log::info!("UKey: thread stopped");
    }

    // ---- Disconnected -------------------------------------------------------------------------

    /// Answers every call at once with 503 until it is time to try again.
    fn wait_disconnected(&mut self, retry_at: Instant, backoff: Duration) -> State {
        loop {
            if self.bell.stop_requested() {
                return State::Stopped;
            }
            let wait = retry_at.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return self.connect(backoff);
            }
            select! {
                recv(self.rx) -> cmd => match cmd {
                    Ok(Command::Call(job)) => {
                        let why = self.status.last_error().unwrap_or_else(|| "not connected".into());
                        reply(job, Err(CallError::Unavailable(why)));
                    }
                    Ok(Command::Shutdown) | Err(_) => return State::Stopped,
                },
                default(wait) => return self.connect(backoff),
            }
        }
    }

    /// One connection attempt. On failure the next one waits `backoff`, which then doubles.
    fn connect(&mut self, backoff: Duration) -> State {
        match Conn::open(&self.endpoint, self.config.connect_timeout()) {
            Ok((conn, early_frames)) => {
                let mut session = self.on_connected(conn);
                for frame in early_frames {
                    self.on_frame(&mut session, &frame);
                }
                deliver(&mut session);
                State::Connected(Box::new(session))
            }
            Err(e) => {
                self.on_connect_failed(&e, backoff);
                State::Disconnected {
                    retry_at: Instant::now() + backoff,
                    backoff: (backoff * 2).min(BACKOFF_MAX),
                }
            }
        }
    }

    fn on_connect_failed(&mut self, e: &ConnError, backoff: Duration) {
        let error = e.to_string();
        self.failed_connects += 1;
        let n = self.config.client_restart_after_failures.max(1);
        if self.failed_connects.is_multiple_of(n) {
            self.care.restarter.trigger(&format!(
                "{} connection attempts in a row failed ({error})",
                self.failed_connects
            ));
        }
        self.status.set_last_error(Some(error.clone()));
        if self.outage_reported {
            log::debug!("UKey: still unreachable ({error}); next try in {backoff:?}");
            return;
        }
        self.outage_reported = true;
        log::warn!(
            "UKey: cannot reach {} ({error}); retrying with backoff 1 s doubling to 8 s",
            self.endpoint.url
        );
        self.emit(UkeyEvent::ConnectionFailure { error });
    }

    fn on_connected(&mut self, conn: Conn) -> Session {
        self.failed_connects = 0;
        self.status.connected.store(true, Ordering::SeqCst);
        self.status
            .connected_since_ms
            .store(now_ms(), Ordering::SeqCst);
        self.status.set_last_error(None);
        if self.ever_connected && self.outage_reported {
            log::info!("UKey: reconnected to {}", self.endpoint.url);
            self.emit(UkeyEvent::Recovered);
        } else if self.outage_reported {
            log::info!("UKey: connected to {} (after retrying)", self.endpoint.url);
            self.emit(UkeyEvent::Recovered);
        } else {
            log::info!("UKey: connected to {}", self.endpoint.url);
        }
        self.ever_connected = true;
        self.outage_reported = false;
        self.status.set_sign_cert(None);
        let mut queue = VecDeque::new();
        // after the first probe (queued on the first tick, ahead of everything)
        queue.push_back(Origin::SignCert {
            deadline: Instant::now() + self.config.timeout(),
        });
        Session {
            conn,
            in_flight: HashMap::new(),
            queue,
            next_probe: Instant::now(), // a first probe fetches the certificate number
            next_cert_check: Instant::now() + CERT_CHECK_INTERVAL,
            probe_pending: false,
            late_ids: VecDeque::new(),
            answered: Vec::new(),
        }
    }

    // ---- Connected ----------------------------------------------------------------------------

    /// Runs a session until it ends, then reports why and picks the next state.
    fn serve(&mut self, mut session: Session) -> State {
        let end = self.session_loop(&mut session);
        self.status.connected.store(false, Ordering::SeqCst);
        self.status.connected_since_ms.store(0, Ordering::SeqCst);
        match end {
            SessionEnd::Shutdown => {
                self.fail_all(&mut session, &CallError::ShuttingDown);
                log::info!("UKey: closing the connection");
                session.conn.close();
                State::Stopped
            }
            SessionEnd::Lost(why) | SessionEnd::ProbeFailed(why) => {
                crate::metrics::Metrics::count(&crate::metrics::global().reconnects);
                self.fail_all(&mut session, &CallError::Unavailable(why.clone()));
                session.conn.abort();
                self.status.set_last_error(Some(why.clone()));
                self.outage_reported = true;
                log::warn!(
                    "UKey: connection lost ({why}); reconnecting with backoff 1 s doubling to 8 s"
                );
                self.emit(UkeyEvent::ConnectionFailure { error: why });
                State::Disconnected {
                    retry_at: Instant::now() + BACKOFF_FIRST,
                    backoff: BACKOFF_FIRST * 2,
                }
            }
        }
    }

    fn session_loop(&mut self, s: &mut Session) -> SessionEnd {
        loop {
            if let Err(end) = self.take_jobs(s).and_then(|()| self.on_tick(s)) {
                return end;
            }
            self.publish_in_flight(s);
            let timeout = self
                .next_wakeup(s)
                .saturating_duration_since(Instant::now());
            // Jobs only matter while a call could be sent; otherwise they wait in the channel
            // and are taken when the card's reply frees the slot.
            let want_jobs = s.in_flight.len() < self.config.max_in_flight;
            let rx = &self.rx;
            let woke = wait::wait(
                s.conn.socket(),
                &self.bell,
                want_jobs,
                || !rx.is_empty(),
                timeout,
            );
            let step = match woke {
                Ok(woke) if woke.card => self.on_readable(s),
                Ok(_) => Ok(()),
                Err(e) => Err(SessionEnd::Lost(format!("cannot wait on the socket: {e}"))),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Moves every job waiting in the channel into the session's queue (or answers it busy).
    fn take_jobs(&mut self, s: &mut Session) -> Result<(), SessionEnd> {
        if self.bell.stop_requested() {
            return Err(SessionEnd::Shutdown);
        }
        loop {
            match self.rx.try_recv() {
                Ok(Command::Call(job)) => self.queue_job(s, job),
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                    return Err(SessionEnd::Shutdown);
                }
                Err(TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    /// The earliest instant something is due: a call's deadline or the next probe.
    fn next_wakeup(&self, s: &Session) -> Instant {
        let deadlines = s
            .in_flight
            .values()
            .map(|sent| sent.origin.deadline())
            .chain(s.queue.iter().map(Origin::deadline));
        let probe = if s.probe_pending || self.refused() {
            None
        } else {
            Some(s.next_probe)
        };
        deadlines
            .chain(probe)
            .chain(Some(s.next_cert_check))
            .min()
            .unwrap_or_else(|| Instant::now() + self.config.health_interval())
    }

    /// Time-driven work: expire calls past their deadline, start a due probe, send queued calls.
    fn on_tick(&mut self, s: &mut Session) -> Result<(), SessionEnd> {
        let now = Instant::now();
        self.expire(s, now)?;
        if now >= s.next_cert_check {
            s.next_cert_check = now + CERT_CHECK_INTERVAL;
            if let Some(cert) = self.status.sign_cert() {
                self.check_expiry(&cert);
            }
        }
        if !s.probe_pending && !self.refused() && now >= s.next_probe {
            s.probe_pending = true;
            // ahead of queued calls: a long queue must not starve the health check
            s.queue.push_front(Origin::Probe {
                deadline: now + self.config.timeout(),
            });
        }
        self.pump(s)
    }

    fn queue_job(&mut self, s: &mut Session, job: Job) {
        if s.queue.len() >= self.config.max_queue {
            log::warn!("[{}] UKey queue full; answering busy", job.request_id);
            reply(job, Err(CallError::Busy { retry_after_s: 1 }));
            return;
        }
        s.queue.push_back(Origin::Caller(job));
    }

    /// Sends queued calls while fewer than `max_in_flight` await a reply.
    fn pump(&mut self, s: &mut Session) -> Result<(), SessionEnd> {
        while s.in_flight.len() < self.config.max_in_flight {
            let Some(origin) = s.queue.pop_front() else {
                break;
            };
            let mut origin = match origin {
                // every frame carries the password: not one more attempt, by anyone
                Origin::Caller(job) if self.refused() => {
                    reply(job, Err(CallError::PasswordRefused));
                    continue;
                }
                _ if self.refused() => continue,
                // the card never works for a caller who will not be there to get the answer
                Origin::Caller(job) if self.too_late(job.deadline) => {
                    log::warn!(
                        "[{}] time budget ran out waiting for the UKey; not sent",
                        job.request_id
                    );
                    reply(job, Err(CallError::Late(self.config.timeout())));
                    continue;
                }
                other => other,
            };
            let id = self.next_id;
            self.next_id += 1;
            // the arguments are moved into the frame, not copied: a CEB message can be large,
            // and nothing reads them after they are sent
            let (method, args) = match &mut origin {
                Origin::Caller(job) => (job.method.clone(), std::mem::take(&mut job.args)),
                Origin::Probe { .. } => (PROBE_METHOD.to_string(), Map::new()),
                Origin::SignCert { .. } => (SIGN_CERT_METHOD.to_string(), Map::new()),
            };
            let frame = self.request_frame(id, &method, args);
            if log::log_enabled!(log::Level::Debug) {
                log::debug!(
                    "[{}] UKey <- {}",
                    origin_id(&origin),
                    self.masker.mask_json_text(&frame)
                );
            }
            s.in_flight.insert(
                id,
                Sent {
                    method,
                    origin,
                    sent_at: Instant::now(),
                },
            );
            if let Err(e) = s.conn.send(frame) {
                return Err(SessionEnd::Lost(e.to_string()));
            }
        }
        Ok(())
    }

    /// The request frame: a fresh `_id`, and `args.passwd` from the configuration, whatever
    /// the client sent.
    fn request_frame(&self, id: u64, method: &str, mut args: Map<String, Value>) -> String {
        args.remove("passwd");
        args.insert("passwd".into(), Value::String(self.config.password.clone()));
        json!({"_method": method, "_id": id, "args": Value::Object(args)}).to_string()
    }

    /// The socket has something: reads it, matches the frames, sends what the freed slots allow,
    /// then hands the replies to their workers.
    fn on_readable(&mut self, s: &mut Session) -> Result<(), SessionEnd> {
        let frames = s
            .conn
            .read_available()
            .map_err(|e| SessionEnd::Lost(e.to_string()))?;
        let mut end = None;
        for frame in frames {
            end = self.on_frame(s, &frame);
            if end.is_some() {
                break;
            }
        }
        // the card first: the next call is written before any worker is woken with its reply
        let pumped = match end {
            Some(end) => Err(end),
            None => self.take_jobs(s).and_then(|()| self.pump(s)),
        };
        deliver(s);
        pumped
    }

    /// Matches one frame to the call it answers. Returns why the session must end, if it must.
    fn on_frame(&mut self, s: &mut Session, text: &str) -> Option<SessionEnd> {
        let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else {
            log::debug!("UKey: ignored a frame that is not a JSON object");
            return None;
        };
        let id = frame.get("_id").and_then(frame_id);
        let method = frame
            .get("_method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if id == Some(0) && method.as_deref() == Some("open") {
            log::debug!("UKey: greeting received");
            return None;
        }
        let key = match id {
            Some(id) if s.in_flight.contains_key(&id) => Some(id),
            // A reply with no usable `_id` may be matched by method, but only when exactly one
            // call of that method is in flight: never risk handing a caller another's reply.
            None => unique_by_method(s, method.as_deref()),
            Some(_) => None,
        };
        let Some(sent) = key.and_then(|k| s.in_flight.remove(&k)) else {
            let late = id.is_some_and(|id| s.late_ids.contains(&id));
            log::debug!(
                "UKey: {} frame ignored: {}",
                if late {
                    "late (timed-out)"
                } else {
                    "unsolicited"
                },
                self.masker.mask_json_text(text)
            );
            return None;
        };
        frame.remove("_id");
        match sent.origin {
            Origin::Caller(job) => {
                self.record_call_time(sent.sent_at.elapsed());
                crate::metrics::global().ukey_call(&sent.method, sent.sent_at.elapsed());
                let answer = Value::Object(frame);
                self.look_after(&answer);
                if log::log_enabled!(log::Level::Debug) {
                    log::debug!(
                        "[{}] UKey -> {}",
                        job.request_id,
                        self.masker.mask_json_text(text)
                    );
                }
                s.answered.push((job, Ok(answer)));
                None
            }
            Origin::Probe { .. } => self.on_probe_reply(s, &frame),
            Origin::SignCert { .. } => {
                self.on_sign_cert(&frame);
                None
            }
        }
    }

    /// Keeps the signing certificate for whoever needs it, and warns when the card is a simulator
    /// (its certificates say so in their subject).
    fn on_sign_cert(&mut self, frame: &Map<String, Value>) {
        let value = Value::Object(frame.clone());
        if lockout::is_password_refusal(&value) {
            self.on_password_refused(&value);
            return;
        }
        let cert = frame
            .get("_args")
            .filter(|a| a.get("Result").and_then(Value::as_bool) == Some(true))
            .and_then(|a| a.get("Data"))
            .and_then(|d| d.get(0))
            .and_then(Value::as_str);
        let Some(cert) = cert else {
            log::warn!("UKey: could not read the signing certificate ({SIGN_CERT_METHOD} failed)");
            return;
        };
        if is_simulator_certificate(cert) {
            log::warn!(
                "UKey at {} is a SIMULATOR (its certificate says so): signatures it makes are NOT valid at customs",
                self.endpoint.url
            );
        }
        self.status.set_sign_cert(Some(cert.to_string()));
        self.check_expiry(cert);
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
                    expiry::rfc3339(not_after)
                );
                self.emit(UkeyEvent::CertExpiring {
                    days_left,
                    not_after,
                });
            }
            Some(Notice::Expired { not_after }) => {
                log::error!(
                    "UKey: the card's signing certificate EXPIRED on {}: customs refuses what it signs; renew the certificate",
                    expiry::rfc3339(not_after)
                );
                self.emit(UkeyEvent::CertExpired { not_after });
            }
            None => {}
        }
    }

    /// What a reply to a call or a probe is looked at for: a refused password (nothing more
    /// is sent), and `Err:Custom50070` / `Err:Custom50200` (the client software is restarted).
    /// Returns whether the card refused the password.
    fn look_after(&mut self, answer: &Value) -> bool {
        let refused = lockout::is_password_refusal(answer);
        if refused {
            self.on_password_refused(answer);
        }
        if let Some(code) = restart::calls_for_restart(&super::frame::errors(answer)) {
            self.care
                .restarter
                .trigger(&format!("the card answered {code}"));
        }
        refused
    }

    fn on_probe_reply(
        &mut self,
        s: &mut Session,
        frame: &Map<String, Value>,
    ) -> Option<SessionEnd> {
        s.probe_pending = false;
        s.next_probe = Instant::now() + self.config.health_interval();
        self.status.last_probe_ms.store(now_ms(), Ordering::SeqCst);
        let args = frame.get("_args");
        let ok = args.and_then(|a| a.get("Result")).and_then(Value::as_bool) == Some(true);
        if ok {
            let cert = args
                .and_then(|a| a.get("Data"))
                .and_then(|d| d.get(0))
                .and_then(Value::as_str)
                .map(str::to_owned);
            self.status.last_probe_ok.store(true, Ordering::SeqCst);
            self.status.set_cert_no(cert);
            log::debug!("UKey: health probe passed");
            return None;
        }
        let refused = self.look_after(&Value::Object(frame.clone()));
        let errors = args
            .and_then(|a| a.get("Error"))
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no Error given".into());
        let error = format!(
            "health probe {PROBE_METHOD} failed: {}",
            self.masker.mask_str(&errors)
        );
        if refused {
            // Reconnecting cannot fix a wrong password, and every further frame would be one
            // more wrong attempt towards locking the card: send nothing more, stay connected.
            self.status.last_probe_ok.store(false, Ordering::SeqCst);
            return None;
        }
        Some(self.probe_failed(error))
    }

    fn refused(&self) -> bool {
        self.status.password_refused.load(Ordering::SeqCst)
    }

    /// The card refused the password: from now on no frame is sent (see `pump`), the refusal is
    /// remembered on disk, and it is reported once.
    fn on_password_refused(&mut self, frame: &Value) {
        if self.refused() {
            return;
        }
        self.status.password_refused.store(true, Ordering::SeqCst);
        let errors = self
            .masker
            .mask_str(&super::frame::errors(frame).join("; "));
        self.care.lockout.remember(&errors, now_ms());
        let why = CallError::PasswordRefused.to_string();
        self.status
            .set_last_error(Some(format!("{why} (the card said: {errors})")));
        log::error!("UKey: the card rejected ukey.password ({errors}). {why}");
        self.emit(UkeyEvent::PasswordRejected {
            error: format!("the card refused the configured password: {errors}"),
        });
    }

    fn probe_failed(&mut self, error: String) -> SessionEnd {
        crate::metrics::Metrics::count(&crate::metrics::global().probe_failures);
        self.status.last_probe_ok.store(false, Ordering::SeqCst);
        self.status.last_probe_ms.store(now_ms(), Ordering::SeqCst);
        log::warn!("UKey: {error}");
        self.emit(UkeyEvent::HealthCheckFailure {
            error: error.clone(),
        });
        SessionEnd::ProbeFailed(error)
    }

    /// Answers every call whose deadline has passed; a probe past its deadline ends the session.
    fn expire(&mut self, s: &mut Session, now: Instant) -> Result<(), SessionEnd> {
        let timeout = self.config.timeout();
        let due: Vec<u64> = if s
            .in_flight
            .values()
            .any(|sent| sent.origin.deadline() <= now)
        {
            s.in_flight
                .iter()
                .filter(|(_, sent)| sent.origin.deadline() <= now)
                .map(|(id, _)| *id)
                .collect()
        } else {
            Vec::new()
        };
        let mut probe_timed_out = false;
        for id in due {
            let Some(sent) = s.in_flight.remove(&id) else {
                continue;
            };
            if s.late_ids.len() >= LATE_IDS_KEPT {
                s.late_ids.pop_front();
            }
            s.late_ids.push_back(id);
            match sent.origin {
                Origin::Caller(job) => {
                    log::warn!(
                        "[{}] UKey did not answer {} within {} ms",
                        job.request_id,
                        sent.method,
                        timeout.as_millis()
                    );
                    reply(job, Err(CallError::Timeout(timeout)));
                }
                Origin::Probe { .. } => probe_timed_out = true,
                Origin::SignCert { .. } => {
                    log::warn!("UKey: no answer to {SIGN_CERT_METHOD}");
                }
            }
        }
        // queued calls that waited too long for a slot (rare: only rebuild the queue then)
        let expired: Vec<Origin> = if s.queue.iter().any(|o| o.deadline() <= now) {
            let (expired, kept): (Vec<Origin>, Vec<Origin>) =
                s.queue.drain(..).partition(|o| o.deadline() <= now);
            s.queue = kept.into();
            expired
        } else {
            Vec::new()
        };
        for origin in expired {
            match origin {
                Origin::Caller(job) => {
                    log::warn!("[{}] timed out waiting for the UKey", job.request_id);
                    reply(job, Err(CallError::Timeout(timeout)));
                }
                Origin::Probe { .. } => probe_timed_out = true,
                Origin::SignCert { .. } => {}
            }
        }
        if probe_timed_out {
            s.probe_pending = false;
            return Err(self.probe_failed(format!(
                "health probe {PROBE_METHOD} got no answer within {} ms",
                timeout.as_millis()
            )));
        }
        Ok(())
    }

    /// Whether a call due at `deadline` can no longer be answered in time: its deadline has
    /// passed, or is nearer than the card's recent time per call.
    fn too_late(&self, deadline: Instant) -> bool {
        deadline <= Instant::now() + self.status.call_time()
    }

    /// Folds one call's send → reply time into the moving average that admission and `pump`
    /// use (weight 1/5: it follows a card that slows down within a few calls).
    fn record_call_time(&self, took: Duration) {
        let took = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.status.call_time_us.load(Ordering::Relaxed);
        let new = if old == 0 { took } else { (old * 4 + took) / 5 };
        self.status
            .call_time_us
            .store(new.max(1), Ordering::Relaxed);
    }

    fn fail_all(&mut self, s: &mut Session, error: &CallError) {
        deliver(s);
        // jobs still in the channel wait too; a `Shutdown` among them is also in `bell`
        let unread = std::iter::from_fn(|| self.rx.try_recv().ok()).filter_map(|cmd| match cmd {
            Command::Call(job) => Some(Origin::Caller(job)),
            Command::Shutdown => None,
        });
        let waiting = s
            .in_flight
            .drain()
            .map(|(_, sent)| sent.origin)
            .chain(s.queue.drain(..))
            .chain(unread);
        for origin in waiting {
            if let Origin::Caller(job) = origin {
                reply(job, Err(error.clone()));
            }
        }
        self.status.in_flight.store(0, Ordering::SeqCst);
    }

    fn publish_in_flight(&self, s: &Session) {
        let callers = s
            .in_flight
            .values()
            .filter(|sent| matches!(sent.origin, Origin::Caller(_)))
            .count()
            + s.queue
                .iter()
                .filter(|o| matches!(o, Origin::Caller(_)))
                .count()
            + self.rx.len();
        self.status.in_flight.store(callers, Ordering::SeqCst);
    }

    fn emit(&self, event: UkeyEvent) {
        if let Some(tx) = &self.events {
            // never block the UKey thread on whoever reports events
            let _ = tx.try_send(event);
        }
    }
}

/// Hands every matched reply to its worker.
fn deliver(s: &mut Session) {
    for (job, result) in s.answered.drain(..) {
        reply(job, result);
    }
}

fn reply(job: Job, result: super::CallResult) {
    // The worker may have given up already; nothing to do then.
    job.reply.send(result);
}

fn origin_id(origin: &Origin) -> &str {
    match origin {
        Origin::Caller(job) => &job.request_id,
        Origin::Probe { .. } => "health-probe",
        Origin::SignCert { .. } => "sign-cert",
    }
}

/// `_id` as the card sends it: a non-negative integer, or a string holding one.
fn frame_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unique_by_method(s: &Session, method: Option<&str>) -> Option<u64> {
    let method = method?;
    let mut matching = s.in_flight.iter().filter(|(_, sent)| sent.method == method);
    match (matching.next(), matching.next()) {
        (Some((id, _)), None) => Some(*id),
        _ => None,
    }
}

/// Whether a certificate (base64 DER, as the card hands it out) is one of the simulator's: its
/// subject carries the word SIMULATOR, which stands as plain text in the DER.
fn is_simulator_certificate(cert_b64: &str) -> bool {
    use base64::Engine;
    let b64: String = cert_b64
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(|der| {
            der.windows(super::SIMULATOR_MARK.len())
                .any(|w| w == super::SIMULATOR_MARK.as_bytes())
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::{frame_id, is_simulator_certificate};
    use serde_json::json;

    #[test]
    fn ids_are_integers_or_integer_strings() {
        assert_eq!(frame_id(&json!(17)), Some(17));
        assert_eq!(frame_id(&json!("17")), Some(17));
        assert_eq!(frame_id(&json!(-1)), None);
        assert_eq!(frame_id(&json!("x")), None);
        assert_eq!(frame_id(&json!(null)), None);
    }

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
