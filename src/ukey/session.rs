//! The UKey session as a pure state machine: given the time and an event (a job arrived, the
//! connection opened or failed, a frame came in, the socket closed, a tick) it changes its state
//! and says what to do (send a frame, answer a job, open or drop the connection, report
//! something). It does no I/O and never reads the clock: `run.rs` does both and feeds it, and the
//! tests below drive it through every path with a made-up clock, in microseconds.

use super::queue::{FairQueue, Full};
use super::restart;
use super::{CallError, CallResult, Job, PROBE_METHOD, SIGN_CERT_METHOD, identity, lockout};
use crate::config::UkeyConfig;
use crate::mask::Masker;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The method whose answer carries the signing card's certificate number in `Data[1]`.
const SIGN_METHOD: &str = "cus-sec_SpcSignDataAsPEM";

/// The wait before the first retry; it doubles after each failed attempt, up to `BACKOFF_MAX`.
pub(super) const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// How many timed-out `_id`s are remembered, to log a late reply as such.
const LATE_IDS_KEPT: usize = 64;
/// How often the certificate's expiry is looked at while connected.
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// What the session needs of the configuration.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub password: String,
    pub timeout: Duration,
    pub health_interval: Duration,
    pub max_in_flight: usize,
    pub max_queue: usize,
    /// Restart the client software after this many failed connection attempts in a row.
    pub restart_after_failures: u32,
}

impl Settings {
    pub fn from_config(c: &UkeyConfig) -> Settings {
        Settings {
            password: c.password.clone(),
            timeout: c.timeout(),
            health_interval: c.health_interval(),
            max_in_flight: c.max_in_flight.max(1),
            max_queue: c.max_queue,
            restart_after_failures: c.client_restart_after_failures.max(1),
        }
    }
}

/// What happened.
pub(super) enum Event {
    /// A worker handed over a call.
    Job(Job),
    /// The connection asked for by `Action::Connect` is open (frames that came with it follow as
    /// `Frame`s).
    Connected,
    /// The connection asked for by `Action::Connect` could not be opened.
    ConnectFailed(String),
    /// A text frame from the card.
    Frame(String),
    /// The socket was lost (read or write failed, or the card closed it).
    Closed(String),
    /// Time passed: expire what is due, start a due probe, send what the free slots allow.
    Tick,
    /// The identity cache must go (a worker's self-check failed: the card may have changed).
    Forget(String),
    /// Answer what is left and end.
    Shutdown,
}

/// What to do.
pub(super) enum Action {
    /// Write this frame to the card (`to` names who it is for, for the debug log; `label` is
    /// the method's metric label).
    Send {
        frame: String,
        to: String,
        label: &'static str,
    },
    /// Hand a worker its answer.
    Answer(Job, CallResult),
    /// Open the connection now, then feed `Connected` or `ConnectFailed`.
    Connect,
    /// Close the connection with a close frame (shutting down).
    Close,
    /// Drop the connection without a close handshake (it is broken, or given up).
    Abort,
    /// Tell the rest of the proxy (status, logs, webhooks, metrics).
    Report(Report),
}

/// What the rest of the proxy hears.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Report {
    /// Connected; `after_outage` when attempts failed or a connection was lost before, `again`
    /// when a connection had been up before.
    Connected {
        after_outage: bool,
        again: bool,
    },
    /// A connection attempt failed; `first` for the first of an outage (reported loudly once).
    ConnectFailed {
        error: String,
        first: bool,
        next_try: Duration,
    },
    /// The session ended and will be retried after `BACKOFF_FIRST`.
    Lost {
        why: String,
    },
    ProbeOk {
        cert_no: Option<String>,
    },
    /// The probe failed or got no answer: the session ends (a `Lost` follows).
    ProbeFailed {
        error: String,
    },
    /// The probe was refused because of the password: the session stays, sending nothing.
    ProbeRefused,
    /// The card refused the configured password (its errors, masked).
    PasswordRefused {
        errors: String,
    },
    /// The signing certificate of this connection (base64 DER).
    SignCert(String),
    SignCertUnreadable,
    /// Time to look at the certificate's expiry again.
    CertCheckDue,
    /// A caller's call was answered after `took` on the card.
    Answered {
        method: String,
        took: Duration,
    },
    /// The client software should be restarted, for this reason.
    Restart(String),
    /// The card's answer to an identity read, now cached for this connection.
    Cached {
        key: &'static str,
        frame: Arc<Value>,
    },
    /// The identity cache was emptied (`entries` it held), for this reason.
    CacheDropped {
        why: String,
        entries: usize,
    },
    /// A caller's identity read was answered without a card call of its own: from the cache,
    /// or with the answer to an identical read already on its way.
    CacheAnswered {
        key: &'static str,
    },
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

impl Origin {
    /// The identity read this origin makes, if it is one.
    fn identity(&self) -> Option<&'static str> {
        match self {
            Origin::Caller(job) => identity::key(&job.method, &job.args),
            Origin::Probe { .. } => Some(PROBE_METHOD),
            Origin::SignCert { .. } => Some(SIGN_CERT_METHOD),
        }
    }
    fn deadline(&self) -> Instant {
        match self {
            Origin::Caller(job) => job.deadline,
            Origin::Probe { deadline } | Origin::SignCert { deadline } => *deadline,
        }
    }
    fn label(&self) -> &str {
        match self {
            Origin::Caller(job) => &job.request_id,
            Origin::Probe { .. } => "health-probe",
            Origin::SignCert { .. } => "sign-cert",
        }
    }
}

struct Sent {
    method: String,
    origin: Origin,
    sent_at: Instant,
    /// The identity read this is, and the cache generation it was sent in: an answer given
    /// before the cache was dropped may describe the card that was there then.
    identity: Option<(&'static str, u64)>,
}

/// A connected session's calls.
struct Calls {
    in_flight: HashMap<u64, Sent>,
    /// The proxy's own calls (probe, certificate): sent before any caller's.
    internal: VecDeque<Origin>,
    /// Callers' calls, round-robin by host.
    callers: FairQueue,
    next_probe: Instant,
    next_cert_check: Instant,
    probe_pending: bool,
    /// Calls that timed out and whose reply has not been seen yet.
    late_ids: VecDeque<u64>,
    /// Replies without `_id` can no longer be told apart on this connection: the card sent one
    /// that answered nothing (a duplicate?), or more calls timed out than `late_ids` keeps.
    idless_ambiguous: bool,
    /// The card has answered with `_id`s on this connection: a reply without one is then not
    /// the fallback for a client software that never sends them, and is not matched.
    ids_seen: bool,
    /// What the card answered to identity reads on this connection (see `identity`).
    identity: HashMap<&'static str, Arc<Value>>,
    /// Bumped each time the cache is dropped.
    generation: u64,
    /// Identity reads queued or on the card, by key, with the callers waiting for the same
    /// read (#28.4: sent once, answered to all).
    reading: HashMap<&'static str, Vec<Job>>,
    /// The certificate number the last signature named (`Data[1]`): a different one means
    /// another card.
    signed_as: Option<String>,
}

enum Link {
    /// Waiting until `retry_at`; a failure then waits `backoff`.
    Down {
        retry_at: Instant,
        backoff: Duration,
    },
    /// `Action::Connect` was given; a failure waits `backoff`.
    Connecting {
        backoff: Duration,
    },
    Up(Box<Calls>),
    Stopped,
}

/// The session: the connection's state, the calls, and what the card has shown.
pub(super) struct Session {
    settings: Settings,
    masker: Masker,
    link: Link,
    /// The card refused the password: nothing carrying it is sent any more.
    refused: bool,
    /// The card's recent time per call (moving average of send → reply), in microseconds.
    call_time_us: u64,
    /// `_id` of the next frame; 0 is the greeting's, so requests count from 1.
    next_id: u64,
    failed_connects: u32,
    /// Whether the current outage has been reported (once per outage).
    outage_reported: bool,
    ever_connected: bool,
    /// Why the card is unreachable, for the 503 of calls made meanwhile.
    last_error: Option<String>,
}

impl Session {
    /// A session that connects on its first tick; `refused` when a refusal of the password is
    /// remembered from before.
    pub fn new(settings: Settings, refused: bool, now: Instant) -> Session {
        let masker = Masker::new([settings.password.clone()]);
        Session {
            settings,
            masker,
            link: Link::Down {
                retry_at: now,
                backoff: BACKOFF_FIRST,
            },
            refused,
            call_time_us: 0,
            next_id: 1,
            failed_connects: 0,
            outage_reported: false,
            ever_connected: false,
            last_error: None,
        }
    }

    pub fn stopped(&self) -> bool {
        matches!(self.link, Link::Stopped)
    }

    pub fn connected(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// Whether a job handed over now could be acted on at once (sent, or answered because the
    /// card is unreachable): otherwise workers need not wake the thread.
    pub fn wants_jobs(&self) -> bool {
        match &self.link {
            Link::Up(c) => c.in_flight.len() < self.settings.max_in_flight,
            _ => true,
        }
    }

    /// The card's recent time per call, in microseconds (0 until a call was answered).
    pub fn call_time_us(&self) -> u64 {
        self.call_time_us
    }

    /// Callers whose calls are queued or sent and not yet answered.
    pub fn callers_waiting(&self) -> usize {
        let Link::Up(c) = &self.link else { return 0 };
        let caller = |o: &&Origin| matches!(o, Origin::Caller(_));
        c.in_flight
            .values()
            .map(|s| &s.origin)
            .filter(caller)
            .count()
            + c.callers.len()
            + c.reading.values().map(Vec::len).sum::<usize>()
    }

    /// The earliest instant something is due (a retry, a deadline, a probe); `None` when
    /// nothing is.
    pub fn next_wake(&self) -> Option<Instant> {
        match &self.link {
            Link::Down { retry_at, .. } => Some(*retry_at),
            Link::Connecting { .. } | Link::Stopped => None,
            Link::Up(c) => {
                let deadlines = c
                    .in_flight
                    .values()
                    .map(|sent| sent.origin.deadline())
                    .chain(c.internal.iter().map(Origin::deadline))
                    .chain(c.callers.deadlines())
                    .chain(c.reading.values().flatten().map(|job| job.deadline));
                let probe = (!c.probe_pending && !self.refused).then_some(c.next_probe);
                deadlines.chain(probe).chain(Some(c.next_cert_check)).min()
            }
        }
    }

    /// Feeds one event at `now`; what to do is appended to `out`, in order.
    pub fn on(&mut self, now: Instant, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Job(job) => self.on_job(job, out),
            Event::Connected => self.on_connected(now, out),
            Event::ConnectFailed(error) => self.on_connect_failed(now, error, out),
            Event::Frame(text) => self.on_frame(now, &text, out),
            Event::Closed(why) => {
                if matches!(self.link, Link::Up(_)) {
                    self.lose(now, why, out);
                }
            }
            Event::Tick => self.on_tick(now, out),
            Event::Forget(why) => self.drop_identity(now, why, out),
            Event::Shutdown => self.shut_down(out),
        }
    }

    // ---- the link ------------------------------------------------------------------------------

    fn on_connected(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.failed_connects = 0;
        self.last_error = None;
        out.push(Action::Report(Report::Connected {
            after_outage: self.outage_reported,
            again: self.ever_connected,
        }));
        self.ever_connected = true;
        self.outage_reported = false;
        let mut internal = VecDeque::new();
        // after the first probe (queued on the first tick, ahead of everything)
        internal.push_back(Origin::SignCert {
            deadline: now + self.settings.timeout,
        });
        // callers who read the certificate or its number meanwhile get these reads' answers
        // (#28.4); the probe is queued on the next tick
        let mut reading = HashMap::from([(SIGN_CERT_METHOD, Vec::new())]);
        if !self.refused {
            reading.insert(PROBE_METHOD, Vec::new());
        }
        self.link = Link::Up(Box::new(Calls {
            in_flight: HashMap::new(),
            internal,
            callers: FairQueue::new(self.settings.max_queue),
            next_probe: now, // a first probe fetches the certificate number
            next_cert_check: now + CERT_CHECK_INTERVAL,
            probe_pending: false,
            late_ids: VecDeque::new(),
            idless_ambiguous: false,
            ids_seen: false,
            identity: HashMap::new(),
            generation: 0,
            reading,
            signed_as: None,
        }));
    }

    fn on_connect_failed(&mut self, now: Instant, error: String, out: &mut Vec<Action>) {
        let backoff = match self.link {
            Link::Connecting { backoff } => backoff,
            _ => return,
        };
        self.failed_connects += 1;
        if self
            .failed_connects
            .is_multiple_of(self.settings.restart_after_failures)
        {
            out.push(Action::Report(Report::Restart(format!(
                "{} connection attempts in a row failed ({error})",
                self.failed_connects
            ))));
        }
        self.last_error = Some(error.clone());
        out.push(Action::Report(Report::ConnectFailed {
            error,
            first: !self.outage_reported,
            next_try: backoff,
        }));
        self.outage_reported = true;
        self.link = Link::Down {
            retry_at: now + backoff,
            backoff: (backoff * 2).min(BACKOFF_MAX),
        };
    }

    /// The session ended: every call still waiting is answered, the socket dropped, and the
    /// next attempt comes after `BACKOFF_FIRST`.
    fn lose(&mut self, now: Instant, why: String, out: &mut Vec<Action>) {
        // sent: the card may have carried it out (502); queued: it never received it (503)
        self.fail_all(
            &CallError::Lost(why.clone()),
            &CallError::Unavailable(why.clone()),
            out,
        );
        out.push(Action::Abort);
        self.last_error = Some(why.clone());
        self.outage_reported = true;
        out.push(Action::Report(Report::Lost { why }));
        self.link = Link::Down {
            retry_at: now + BACKOFF_FIRST,
            backoff: BACKOFF_FIRST * 2,
        };
    }

    fn shut_down(&mut self, out: &mut Vec<Action>) {
        self.fail_all(&CallError::ShuttingDown, &CallError::ShuttingDown, out);
        if matches!(self.link, Link::Up(_)) {
            out.push(Action::Close);
        }
        self.link = Link::Stopped;
    }

    /// Answers every caller: `sent` for the calls on the card, `queued` for the others.
    fn fail_all(&mut self, sent: &CallError, queued: &CallError, out: &mut Vec<Action>) {
        let Link::Up(c) = &mut self.link else { return };
        for (_, s) in c.in_flight.drain() {
            if let Origin::Caller(job) = s.origin {
                out.push(Action::Answer(job, Err(sent.clone())));
            }
        }
        c.internal.clear();
        for job in c.callers.drain() {
            out.push(Action::Answer(job, Err(queued.clone())));
        }
        // their own call was never sent
        for (_, jobs) in c.reading.drain() {
            for job in jobs {
                out.push(Action::Answer(job, Err(queued.clone())));
            }
        }
    }

    // ---- calls ---------------------------------------------------------------------------------

    fn on_job(&mut self, job: Job, out: &mut Vec<Action>) {
        match &mut self.link {
            Link::Up(c) => {
                let key = identity::key(&job.method, &job.args);
                if let Some(key) = key {
                    if let Some(frame) = c.identity.get(key) {
                        out.push(Action::Report(Report::CacheAnswered { key }));
                        out.push(Action::Answer(job, Ok(Value::clone(frame))));
                        return;
                    }
                    if let Some(waiting) = c.reading.get_mut(key) {
                        waiting.push(job);
                        return;
                    }
                }
                match c.callers.push(job) {
                    Ok(()) => {
                        if let Some(key) = key {
                            c.reading.insert(key, Vec::new());
                        }
                    }
                    Err((job, full)) => {
                        log::warn!(
                            "[{}] UKey queue full{}; answering busy",
                            job.request_id,
                            match full {
                                Full::Queue => "",
                                Full::Share => " for this client's share",
                            }
                        );
                        out.push(Action::Answer(
                            job,
                            Err(CallError::Busy { retry_after_s: 1 }),
                        ));
                    }
                }
            }
            Link::Stopped => out.push(Action::Answer(job, Err(CallError::ShuttingDown))),
            Link::Down { .. } | Link::Connecting { .. } => {
                let why = self
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not connected".into());
                out.push(Action::Answer(job, Err(CallError::Unavailable(why))));
            }
        }
    }

    /// Time-driven work: connect when the backoff is over; expire calls past their deadline,
    /// start a due probe, send queued calls.
    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.link {
            Link::Down { retry_at, backoff } if now >= retry_at => {
                self.link = Link::Connecting { backoff };
                out.push(Action::Connect);
                return;
            }
            Link::Up(_) => {}
            _ => return,
        }
        if let Err(error) = self.expire(now, out) {
            self.probe_failed(now, error, out);
            return;
        }
        let refused = self.refused;
        let timeout = self.settings.timeout;
        let Link::Up(c) = &mut self.link else { return };
        if now >= c.next_cert_check {
            c.next_cert_check = now + CERT_CHECK_INTERVAL;
            out.push(Action::Report(Report::CertCheckDue));
        }
        if !c.probe_pending && !refused && now >= c.next_probe {
            c.probe_pending = true;
            // ahead of queued calls: a long queue must not starve the health check
            c.internal.push_front(Origin::Probe {
                deadline: now + timeout,
            });
            // callers reading the certificate number meanwhile get the probe's answer
            c.reading.entry(PROBE_METHOD).or_default();
        }
        self.pump(now, out);
    }

    /// Sends queued calls while fewer than `max_in_flight` await a reply.
    fn pump(&mut self, now: Instant, out: &mut Vec<Action>) {
        let too_late_before = now + Duration::from_micros(self.call_time_us);
        loop {
            let refused = self.refused;
            let Link::Up(c) = &mut self.link else { return };
            if c.in_flight.len() >= self.settings.max_in_flight {
                return;
            }
            let Some(origin) = c
                .internal
                .pop_front()
                .or_else(|| c.callers.pop().map(Origin::Caller))
            else {
                return;
            };
            let key = origin.identity();
            let mut origin = match origin {
                // every frame carries the password: not one more attempt, by anyone
                Origin::Caller(job) if refused => {
                    out.push(Action::Answer(job, Err(CallError::PasswordRefused)));
                    release(c, key, out);
                    continue;
                }
                _ if refused => {
                    release(c, key, out);
                    continue;
                }
                // the card never works for a caller who will not be there to get the answer
                Origin::Caller(job) if job.deadline <= too_late_before => {
                    log::warn!(
                        "[{}] time budget ran out waiting for the UKey; not sent",
                        job.request_id
                    );
                    out.push(Action::Answer(
                        job,
                        Err(CallError::Late(self.settings.timeout)),
                    ));
                    release(c, key, out);
                    continue;
                }
                // answered meanwhile by another read of the same (the proxy's own, say)
                Origin::Caller(job) if key.is_some_and(|k| c.identity.contains_key(k)) => {
                    let Some(frame) = key.and_then(|k| c.identity.get(k)).cloned() else {
                        continue;
                    };
                    let key = key.unwrap_or_default();
                    let followers = c.reading.remove(key).unwrap_or_default();
                    for job in std::iter::once(job).chain(followers) {
                        out.push(Action::Report(Report::CacheAnswered { key }));
                        out.push(Action::Answer(job, Ok(Value::clone(&frame))));
                    }
                    continue;
                }
                other => other,
            };
            let id = self.next_id;
            self.next_id += 1;
            // the arguments are moved into the frame, not copied: a CEB message can be large,
            // and nothing reads them after they are sent
            let (method, args) = match &mut origin {
                Origin::Caller(job) => (
                    std::mem::take(&mut job.method),
                    std::mem::take(&mut job.args),
                ),
                Origin::Probe { .. } => (PROBE_METHOD.to_string(), Map::new()),
                Origin::SignCert { .. } => (SIGN_CERT_METHOD.to_string(), Map::new()),
            };
            let frame = request_frame(&self.settings.password, id, &method, args);
            out.push(Action::Send {
                frame,
                to: origin.label().to_string(),
                label: super::methods::label(&method),
            });
            c.in_flight.insert(
                id,
                Sent {
                    method,
                    origin,
                    sent_at: now,
                    identity: key.map(|k| (k, c.generation)),
                },
            );
        }
    }

    /// Answers every call whose deadline has passed. A probe past its deadline is an error: the
    /// session must end.
    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) -> Result<(), String> {
        let timeout = self.settings.timeout;
        let Link::Up(c) = &mut self.link else {
            return Ok(());
        };
        let mut probe_timed_out = false;
        // callers waiting for another's identity read, past their own budget
        for waiting in c.reading.values_mut() {
            if waiting.iter().any(|job| job.deadline <= now) {
                let (due, kept): (Vec<Job>, Vec<Job>) =
                    waiting.drain(..).partition(|job| job.deadline <= now);
                *waiting = kept;
                for job in due {
                    out.push(Action::Answer(job, Err(CallError::Late(timeout))));
                }
            }
        }
        if c.in_flight
            .values()
            .any(|sent| sent.origin.deadline() <= now)
        {
            let due: Vec<u64> = c
                .in_flight
                .iter()
                .filter(|(_, sent)| sent.origin.deadline() <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                let Some(sent) = c.in_flight.remove(&id) else {
                    continue;
                };
                if c.late_ids.len() >= LATE_IDS_KEPT {
                    c.late_ids.pop_front();
                    c.idless_ambiguous = true;
                }
                c.late_ids.push_back(id);
                release(c, sent.identity.map(|(k, _)| k), out);
                match sent.origin {
                    Origin::Caller(job) => {
                        log::warn!(
                            "[{}] UKey did not answer {} within {} ms",
                            job.request_id,
                            sent.method,
                            timeout.as_millis()
                        );
                        out.push(Action::Answer(job, Err(CallError::Timeout(timeout))));
                    }
                    Origin::Probe { .. } => probe_timed_out = true,
                    Origin::SignCert { .. } => {
                        log::warn!("UKey: no answer to {SIGN_CERT_METHOD}");
                    }
                }
            }
        }
        // queued calls that waited too long for a slot (rare: only rebuild the queue then)
        if c.internal.iter().any(|o| o.deadline() <= now) {
            let (expired, kept): (Vec<Origin>, Vec<Origin>) =
                c.internal.drain(..).partition(|o| o.deadline() <= now);
            c.internal = kept.into();
            for origin in expired {
                release(c, origin.identity(), out);
                match origin {
                    Origin::Probe { .. } => probe_timed_out = true,
                    Origin::Caller(_) | Origin::SignCert { .. } => {}
                }
            }
        }
        {
            let expired = c.callers.expire(now).into_iter().map(Origin::Caller);
            for origin in expired {
                release(c, origin.identity(), out);
                match origin {
                    Origin::Caller(job) => {
                        log::warn!(
                            "[{}] time budget ran out waiting for the UKey; not sent",
                            job.request_id
                        );
                        out.push(Action::Answer(job, Err(CallError::Late(timeout))));
                    }
                    Origin::Probe { .. } => probe_timed_out = true,
                    Origin::SignCert { .. } => {}
                }
            }
        }
        if probe_timed_out {
            c.probe_pending = false;
            return Err(format!(
                "health probe {PROBE_METHOD} got no answer within {} ms",
                timeout.as_millis()
            ));
        }
        Ok(())
    }

    fn probe_failed(&mut self, now: Instant, error: String, out: &mut Vec<Action>) {
        out.push(Action::Report(Report::ProbeFailed {
            error: error.clone(),
        }));
        self.lose(now, error, out);
    }

    // ---- frames --------------------------------------------------------------------------------

    /// Matches one frame to the call it answers.
    fn on_frame(&mut self, now: Instant, text: &str, out: &mut Vec<Action>) {
        let Link::Up(c) = &mut self.link else { return };
        let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else {
            log::debug!("UKey: ignored a frame that is not a JSON object");
            return;
        };
        let id = match frame.get("_id") {
            None | Some(Value::Null) => None,
            Some(v) => match frame_id(v) {
                Some(id) => Some(id),
                None => {
                    log::warn!(
                        "UKey: frame with an unusable _id ignored: {}",
                        self.masker.mask_json_text(text)
                    );
                    return;
                }
            },
        };
        let method = frame.get("_method").and_then(Value::as_str);
        if id == Some(0) && method == Some("open") {
            log::debug!("UKey: greeting received");
            return;
        }
        let key = match id {
            Some(id) if c.in_flight.contains_key(&id) => {
                c.ids_seen = true;
                Some(id)
            }
            Some(_) => None,
            // M9: a reply without `_id` is matched only where it cannot be anyone else's
            None => idless_match(c, method),
        };
        let Some(sent) = key.and_then(|k| c.in_flight.remove(&k)) else {
            let late = id.is_some_and(|id| {
                let at = c.late_ids.iter().position(|l| *l == id);
                at.map(|at| c.late_ids.remove(at)).is_some()
            });
            if id.is_none() {
                // it answers nothing: from now on no reply without `_id` can be trusted here
                c.idless_ambiguous = true;
                log::warn!(
                    "UKey: a frame without _id that cannot be matched unambiguously was dropped; \
                     replies without _id are no longer matched on this connection: {}",
                    self.masker.mask_json_text(text)
                );
            } else {
                log::debug!(
                    "UKey: {} frame ignored: {}",
                    if late {
                        "late (timed-out)"
                    } else {
                        "unsolicited"
                    },
                    self.masker.mask_json_text(text)
                );
            }
            return;
        };
        frame.remove("_id");
        if let Some((key, generation)) = sent.identity {
            self.identity_answered(now, key, generation, &frame, out);
        }
        let signed = sent.method == SIGN_METHOD;
        match sent.origin {
            Origin::Caller(job) => {
                let took = now.saturating_duration_since(sent.sent_at);
                self.record_call_time(took);
                out.push(Action::Report(Report::Answered {
                    method: sent.method,
                    took,
                }));
                if !frame.contains_key("_status") && !frame.contains_key("_args") {
                    // L8: neither success nor failure: not a reply the caller can act on
                    log::warn!(
                        "[{}] UKey reply has neither _status nor _args: {}",
                        job.request_id,
                        self.masker.mask_json_text(text)
                    );
                    out.push(Action::Answer(
                        job,
                        Err(CallError::BadReply(
                            "the card's reply has neither _status nor _args".into(),
                        )),
                    ));
                    return;
                }
                let answer = Value::Object(frame);
                self.look_after_caller(now, &answer, out);
                if signed {
                    self.check_signer(now, &answer, out);
                }
                if log::log_enabled!(log::Level::Debug) {
                    log::debug!(
                        "[{}] UKey -> {}",
                        job.request_id,
                        self.masker.mask_json_text(text)
                    );
                }
                out.push(Action::Answer(job, Ok(answer)));
            }
            Origin::Probe { .. } => self.on_probe_reply(now, &frame, out),
            Origin::SignCert { .. } => self.on_sign_cert(now, &frame, out),
        }
    }

    // ---- the identity cache (#28) --------------------------------------------------------------

    /// An identity read was answered: every caller waiting for the same read gets the frame,
    /// and a success is cached, unless the cache was dropped since it was sent. A certificate
    /// number other than the cached one means another card: everything cached goes first.
    fn identity_answered(
        &mut self,
        now: Instant,
        key: &'static str,
        generation: u64,
        frame: &Map<String, Value>,
        out: &mut Vec<Action>,
    ) {
        let Link::Up(c) = &mut self.link else { return };
        let answer = Value::Object(frame.clone());
        let readable = frame.contains_key("_status") || frame.contains_key("_args");
        for job in c.reading.remove(key).unwrap_or_default() {
            if readable {
                out.push(Action::Report(Report::CacheAnswered { key }));
                out.push(Action::Answer(job, Ok(answer.clone())));
            } else {
                out.push(Action::Answer(
                    job,
                    Err(CallError::BadReply(
                        "the card's reply has neither _status nor _args".into(),
                    )),
                ));
            }
        }
        if !readable || !super::frame::succeeded(&answer) || generation != c.generation {
            return;
        }
        if key == PROBE_METHOD {
            let cached = c.identity.get(key).and_then(|f| cert_no_of(f, 0));
            let now_no = cert_no_of(&answer, 0);
            if let (Some(was), Some(is)) = (cached, now_no)
                && was != is
            {
                self.drop_identity_and(
                    now,
                    format!("the card's certificate number changed from {was} to {is}"),
                    Refresh::Cert,
                    out,
                );
            }
        }
        let Link::Up(c) = &mut self.link else { return };
        let frame = Arc::new(answer);
        c.identity.insert(key, frame.clone());
        out.push(Action::Report(Report::Cached { key, frame }));
    }

    /// A signature names its card's certificate number (`Data[1]`): one other than the last
    /// signature's (or, before the first, the cached one) means the card was swapped.
    fn check_signer(&mut self, now: Instant, answer: &Value, out: &mut Vec<Action>) {
        let Link::Up(c) = &mut self.link else { return };
        if !super::frame::succeeded(answer) {
            return;
        }
        let Some(signer) = cert_no_of(answer, 1) else {
            return;
        };
        let known = c
            .signed_as
            .clone()
            .or_else(|| c.identity.get(PROBE_METHOD).and_then(|f| cert_no_of(f, 0)));
        c.signed_as = Some(signer.clone());
        if let Some(known) = known
            && known != signer
        {
            self.drop_identity(
                now,
                format!("a signature names certificate {signer}, not {known}: another card"),
                out,
            );
        }
    }

    /// Empties the cache (the card may have changed), and reads the card's identity again: the
    /// probe comes forward, the signing certificate is read anew.
    fn drop_identity(&mut self, now: Instant, why: String, out: &mut Vec<Action>) {
        self.drop_identity_and(now, why, Refresh::Both, out);
    }

    fn drop_identity_and(
        &mut self,
        now: Instant,
        why: String,
        refresh: Refresh,
        out: &mut Vec<Action>,
    ) {
        let timeout = self.settings.timeout;
        let Link::Up(c) = &mut self.link else { return };
        let entries = c.identity.len();
        c.identity.clear();
        c.generation += 1;
        c.signed_as = None;
        if matches!(refresh, Refresh::Both | Refresh::Probe) && !c.probe_pending && !self.refused {
            // queued on the next tick: callers reading the number meanwhile wait for it
            c.next_probe = now;
            c.reading.entry(PROBE_METHOD).or_default();
        }
        if matches!(refresh, Refresh::Both | Refresh::Cert)
            && !c.reading.contains_key(SIGN_CERT_METHOD)
        {
            c.internal.push_back(Origin::SignCert {
                deadline: now + timeout,
            });
            c.reading.insert(SIGN_CERT_METHOD, Vec::new());
        }
        out.push(Action::Report(Report::CacheDropped { why, entries }));
    }

    /// What a reply to one of the proxy's own calls (probe, certificate) is looked at for: a
    /// refused password (nothing more is sent), and `Err:Custom50070` / `Err:Custom50200` (the
    /// client software is restarted). Returns whether the card refused the password.
    fn look_after(&mut self, answer: &Value, out: &mut Vec<Action>) -> bool {
        let refused = lockout::is_password_refusal(answer);
        if refused {
            self.on_password_refused(answer, out);
        }
        self.restart_if_called_for(answer, out);
        refused
    }

    /// A caller's reply. M3: it never sets the refusal itself, since a caller chose its method
    /// and arguments (which the card may echo); a reply that looks like a refusal brings the
    /// probe forward, and the probe's reply (the proxy's own call) decides.
    fn look_after_caller(&mut self, now: Instant, answer: &Value, out: &mut Vec<Action>) {
        if let Some(error) = identity::card_gone(&super::frame::errors(answer)) {
            self.drop_identity(now, format!("the card answered {error}"), out);
        }
        if lockout::is_password_refusal(answer)
            && let Link::Up(c) = &mut self.link
            && !c.probe_pending
        {
            log::warn!("UKey: a caller's call was refused with the password's code; probing now");
            c.next_probe = now;
        }
        self.restart_if_called_for(answer, out);
    }

    fn restart_if_called_for(&mut self, answer: &Value, out: &mut Vec<Action>) {
        if let Some(code) = restart::calls_for_restart(&super::frame::errors(answer)) {
            out.push(Action::Report(Report::Restart(format!(
                "the card answered {code}"
            ))));
        }
    }

    fn on_probe_reply(&mut self, now: Instant, frame: &Map<String, Value>, out: &mut Vec<Action>) {
        if let Link::Up(c) = &mut self.link {
            c.probe_pending = false;
            c.next_probe = now + self.settings.health_interval;
        }
        let args = frame.get("_args");
        let ok = args.and_then(|a| a.get("Result")).and_then(Value::as_bool) == Some(true);
        if ok {
            let cert_no = args
                .and_then(|a| a.get("Data"))
                .and_then(|d| d.get(0))
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.push(Action::Report(Report::ProbeOk { cert_no }));
            return;
        }
        let refused = self.look_after(&Value::Object(frame.clone()), out);
        if refused {
            // Reconnecting cannot fix a wrong password, and every further frame would be one
            // more wrong attempt towards locking the card: send nothing more, stay connected.
            out.push(Action::Report(Report::ProbeRefused));
            return;
        }
        let errors = args
            .and_then(|a| a.get("Error"))
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no Error given".into());
        let error = format!(
            "health probe {PROBE_METHOD} failed: {}",
            self.masker.mask_str(&errors)
        );
        self.probe_failed(now, error, out);
    }

    /// Keeps the signing certificate for whoever needs it.
    fn on_sign_cert(&mut self, now: Instant, frame: &Map<String, Value>, out: &mut Vec<Action>) {
        let value = Value::Object(frame.clone());
        if let Some(error) = identity::card_gone(&super::frame::errors(&value)) {
            // not read again at once: the probe says first whether a card is there
            self.drop_identity_and(
                now,
                format!("the card answered {error}"),
                Refresh::Probe,
                out,
            );
        }
        if lockout::is_password_refusal(&value) {
            self.on_password_refused(&value, out);
            return;
        }
        let cert = frame
            .get("_args")
            .filter(|a| a.get("Result").and_then(Value::as_bool) == Some(true))
            .and_then(|a| a.get("Data"))
            .and_then(|d| d.get(0))
            .and_then(Value::as_str);
        out.push(Action::Report(match cert {
            Some(cert) => Report::SignCert(cert.to_string()),
            None => Report::SignCertUnreadable,
        }));
    }

    /// The card refused the password: from now on no frame is sent (see `pump`), and it is
    /// reported once.
    fn on_password_refused(&mut self, frame: &Value, out: &mut Vec<Action>) {
        if self.refused {
            return;
        }
        self.refused = true;
        let errors = self
            .masker
            .mask_str(&super::frame::errors(frame).join("; "));
        self.last_error = Some(format!(
            "{} (the card said: {errors})",
            CallError::PasswordRefused
        ));
        out.push(Action::Report(Report::PasswordRefused { errors }));
    }

    /// Folds one call's send → reply time into the moving average that admission and `pump`
    /// use (weight 1/5: it follows a card that slows down within a few calls).
    fn record_call_time(&mut self, took: Duration) {
        let took = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.call_time_us;
        let new = if old == 0 { took } else { (old * 4 + took) / 5 };
        self.call_time_us = new.max(1);
    }
}

/// What to read again after the cache is dropped.
enum Refresh {
    Both,
    Probe,
    Cert,
}

/// `Data[i]` of a successful frame as a certificate number, compared trimmed and case folded.
fn cert_no_of(frame: &Value, i: usize) -> Option<String> {
    frame
        .get("_args")
        .and_then(|a| a.get("Data"))
        .and_then(|d| d.get(i))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(identity::normal_cert_no)
}

/// The read of `key` left the queue or the card without an answer (expired, refused): the
/// first caller waiting for it takes its place in the queue, the others wait for that one.
fn release(c: &mut Calls, key: Option<&'static str>, out: &mut Vec<Action>) {
    let Some(key) = key else { return };
    let Some(mut waiting) = c.reading.remove(key) else {
        return;
    };
    while !waiting.is_empty() {
        let job = waiting.remove(0);
        match c.callers.push(job) {
            Ok(()) => {
                c.reading.insert(key, waiting);
                return;
            }
            Err((job, _)) => out.push(Action::Answer(
                job,
                Err(CallError::Busy { retry_after_s: 1 }),
            )),
        }
    }
}

/// The request frame: a fresh `_id`, and `args.passwd` from the configuration, whatever the
/// client sent.
fn request_frame(password: &str, id: u64, method: &str, mut args: Map<String, Value>) -> String {
    args.remove("passwd");
    args.insert("passwd".into(), Value::String(password.to_string()));
    json!({"_method": method, "_id": id, "args": Value::Object(args)}).to_string()
}

/// `_id` as the card sends it: a non-negative integer, or a string of decimal digits (no sign,
/// point, exponent or prefix: anything else is not the `_id` the proxy sent).
fn frame_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// The call a reply without `_id` answers, where that is unambiguous: a card that never sent an
/// `_id` on this connection, exactly one call in flight (of the method the reply names, if it
/// names one), no timed-out call whose late reply could be this one, and no reply without `_id`
/// that answered nothing on this connection.
fn idless_match(c: &Calls, method: Option<&str>) -> Option<u64> {
    if c.ids_seen || c.idless_ambiguous || !c.late_ids.is_empty() || c.in_flight.len() != 1 {
        return None;
    }
    let (id, sent) = c.in_flight.iter().next()?;
    method.is_none_or(|m| m == sent.method).then_some(*id)
}

#[cfg(test)]
mod tests {
    use super::super::oneshot;
    use super::*;

    const PW: &str = "pw-1234";
    const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings() -> Settings {
        Settings {
            password: PW.into(),
            timeout: ms(2000),
            health_interval: Duration::from_secs(30),
            max_in_flight: 1,
            max_queue: 256,
            restart_after_failures: 5,
        }
    }

    /// A session driven by a made-up clock, with every action it gave kept.
    struct Rig {
        s: Session,
        t0: Instant,
        now: Instant,
        out: Vec<Action>,
        /// Receivers of the jobs handed over, by request id.
        waiting: Vec<(String, oneshot::Receiver<CallResult>)>,
    }

    impl Rig {
        fn new(settings: Settings) -> Rig {
            let t0 = Instant::now();
            Rig {
                s: Session::new(settings, false, t0),
                t0,
                now: t0,
                out: Vec::new(),
                waiting: Vec::new(),
            }
        }

        /// Connected, probed and with the certificate read: ready for calls.
        fn connected(settings: Settings) -> Rig {
            let mut r = Rig::new(settings);
            r.feed(Event::Tick);
            assert!(matches!(r.take()[..], [Action::Connect]));
            r.feed(Event::Connected);
            r.feed(Event::Frame(
                r#"{"_id":0,"_method":"open","_status":"00"}"#.into(),
            ));
            // the probe first, then the certificate (together when two may be in flight)
            let mut seen = Vec::new();
            while seen.len() < 2 {
                r.feed(Event::Tick);
                for f in r.sent() {
                    seen.push(f["_method"].as_str().unwrap().to_string());
                    let data = if seen.len() == 1 { "cert-1" } else { "MIIB" };
                    r.reply(&f, json!({"Result": true, "Data": [data]}));
                }
            }
            assert_eq!(seen, [PROBE_METHOD, SIGN_CERT_METHOD]);
            r.feed(Event::Tick);
            r.out.clear();
            r
        }

        fn at(&mut self, since_start: Duration) {
            self.now = self.t0 + since_start;
        }

        fn feed(&mut self, e: Event) {
            self.s.on(self.now, e, &mut self.out);
        }

        fn take(&mut self) -> Vec<Action> {
            std::mem::take(&mut self.out)
        }

        /// A caller's call, with a budget from now.
        fn call(&mut self, id: &str, method: &str, budget: Duration) {
            self.call_from(0, id, method, budget);
        }

        /// A call from 127.0.0.`host` (0: no address).
        fn call_from(&mut self, host: u8, id: &str, method: &str, budget: Duration) {
            let (reply, answer) = oneshot::slot();
            self.waiting.push((id.to_string(), answer));
            let job = Job {
                method: method.into(),
                args: Map::new(),
                request_id: id.into(),
                client: (host > 0).then(|| std::net::IpAddr::from([127, 0, 0, host])),
                deadline: self.now + budget,
                reply,
            };
            self.feed(Event::Job(job));
        }

        /// The frames sent so far (taken out of the actions), as JSON.
        fn sent(&mut self) -> Vec<Value> {
            let mut frames = Vec::new();
            self.out.retain(|a| match a {
                Action::Send { frame, .. } => {
                    frames.push(serde_json::from_str(frame).unwrap());
                    false
                }
                _ => true,
            });
            frames
        }

        fn reply(&mut self, to: &Value, args: Value) {
            let frame =
                json!({"_id": to["_id"], "_method": to["_method"], "_status": "00", "_args": args});
            self.feed(Event::Frame(frame.to_string()));
        }

        /// The answers given so far, by request id (taken out of the actions).
        fn answers(&mut self) -> Vec<(String, CallResult)> {
            let mut answers = Vec::new();
            let mut kept = Vec::new();
            for a in self.out.drain(..) {
                match a {
                    Action::Answer(job, result) => answers.push((job.request_id.clone(), result)),
                    other => kept.push(other),
                }
            }
            self.out = kept;
            answers
        }

        fn reports(&self) -> Vec<Report> {
            self.out
                .iter()
                .filter_map(|a| match a {
                    Action::Report(r) => Some(r.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    fn methods(frames: &[Value]) -> Vec<&str> {
        frames
            .iter()
            .map(|f| f["_method"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_call_is_sent_with_the_password_and_answered_with_the_frame() {
        let mut r = Rig::connected(settings());
        r.call("c1", SIGN, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        assert_eq!(methods(&sent), [SIGN]);
        assert_eq!(sent[0]["args"]["passwd"], PW);
        r.at(ms(150));
        r.reply(&sent[0], json!({"Result": true, "Data": ["sig"]}));
        let reports = r.reports();
        assert!(reports.contains(&Report::Answered {
            method: SIGN.into(),
            took: ms(150)
        }));
        let answers = r.answers();
        assert_eq!(answers.len(), 1);
        let frame = answers[0].1.as_ref().unwrap();
        assert_eq!(frame["_args"]["Data"][0], "sig");
        assert!(frame.get("_id").is_none());
        assert_eq!(r.s.call_time_us(), 150_000);
    }

    #[test]
    fn a_call_whose_budget_runs_out_in_the_queue_is_never_sent() {
        let mut r = Rig::connected(settings());
        r.call("held", SIGN, ms(5000));
        r.feed(Event::Tick);
        let held = r.sent();
        assert_eq!(held.len(), 1);
        r.call("behind", SIGN, ms(1000));
        r.at(ms(1000));
        r.feed(Event::Tick);
        let answers = r.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, "behind");
        // never sent: 503 with Retry-After, not the 504 of a call the card did not answer
        assert!(matches!(answers[0].1, Err(CallError::Late(_))));
        // the slot frees: nothing more is sent for the expired call
        r.reply(&held[0], json!({"Result": true}));
        r.feed(Event::Tick);
        assert!(r.sent().is_empty());
    }

    #[test]
    fn a_call_too_close_to_its_deadline_for_the_cards_pace_is_answered_late_unsent() {
        let mut r = Rig::connected(settings());
        // learn a pace of 500 ms
        r.call("pace", SIGN, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.at(ms(500));
        r.reply(&sent[0], json!({"Result": true}));
        r.answers();
        r.call("held", SIGN, ms(5000));
        r.call("tight", SIGN, ms(900)); // due at 1400 ms
        r.feed(Event::Tick);
        let held = r.sent();
        r.at(ms(1000)); // 400 ms left, less than the card's 500 ms
        r.reply(&held[0], json!({"Result": true}));
        r.feed(Event::Tick);
        assert!(r.sent().is_empty(), "the tight call was sent");
        let answers = r.answers();
        assert!(
            answers
                .iter()
                .any(|(id, res)| id == "tight" && matches!(res, Err(CallError::Late(_))))
        );
    }

    #[test]
    fn a_late_reply_is_not_given_to_the_next_caller() {
        let mut r = Rig::connected(settings());
        r.call("first", SIGN, ms(1000));
        r.feed(Event::Tick);
        let first = r.sent();
        r.at(ms(1000));
        r.feed(Event::Tick);
        assert!(matches!(r.answers()[..], [(_, Err(CallError::Timeout(_)))]));
        r.call("second", SIGN, ms(1000));
        r.feed(Event::Tick);
        let second = r.sent();
        // the first call's reply arrives now, late
        r.reply(&first[0], json!({"Result": true, "Data": ["for-first"]}));
        assert!(r.answers().is_empty());
        r.reply(&second[0], json!({"Result": true, "Data": ["for-second"]}));
        let answers = r.answers();
        assert_eq!(answers[0].0, "second");
        assert_eq!(
            answers[0].1.as_ref().unwrap()["_args"]["Data"][0],
            "for-second"
        );
    }

    #[test]
    fn replies_in_another_order_go_to_their_callers_by_id() {
        let mut r = Rig::connected(Settings {
            max_in_flight: 4,
            ..settings()
        });
        for i in 0..4 {
            r.call(&format!("c{i}"), SIGN, ms(2000));
        }
        r.feed(Event::Tick);
        let sent = r.sent();
        assert_eq!(sent.len(), 4);
        for (i, f) in sent.iter().enumerate().rev() {
            r.reply(f, json!({"Result": true, "Data": [format!("for-c{i}")]}));
        }
        for (id, res) in r.answers() {
            assert_eq!(res.unwrap()["_args"]["Data"][0], format!("for-{id}"));
        }
    }

    #[test]
    fn the_probe_goes_ahead_of_queued_calls() {
        let mut r = Rig::connected(Settings {
            health_interval: Duration::from_secs(1),
            ..settings()
        });
        r.call("held", SIGN, ms(60_000));
        r.feed(Event::Tick);
        let held = r.sent();
        for i in 0..3 {
            r.call(&format!("q{i}"), SIGN, ms(60_000));
        }
        r.at(ms(1001)); // the probe is due
        r.feed(Event::Tick);
        r.reply(&held[0], json!({"Result": true}));
        r.feed(Event::Tick);
        let next = r.sent();
        assert_eq!(methods(&next), [PROBE_METHOD]);
        r.reply(&next[0], json!({"Result": true, "Data": ["cert-1"]}));
        r.feed(Event::Tick);
        assert_eq!(methods(&r.sent()), [SIGN]);
    }

    #[test]
    fn a_probe_without_answer_ends_the_session_and_answers_every_caller() {
        let mut r = Rig::connected(settings());
        r.call("held", SIGN, ms(60_000));
        r.feed(Event::Tick);
        r.sent();
        r.at(Duration::from_secs(30));
        r.call("queued", SIGN, ms(60_000));
        r.feed(Event::Tick); // the probe waits behind "held"
        r.at(Duration::from_secs(32)); // its deadline passes
        r.feed(Event::Tick);
        let reports = r.reports();
        assert!(
            matches!(&reports[0], Report::ProbeFailed { error } if error.contains("got no answer"))
        );
        assert!(matches!(&reports[1], Report::Lost { .. }));
        assert!(r.out.iter().any(|a| matches!(a, Action::Abort)));
        let answers = r.answers();
        assert_eq!(answers.len(), 2);
        for (id, res) in &answers {
            match id.as_str() {
                // on the card: it may have been carried out (502)
                "held" => assert!(matches!(res, Err(CallError::Lost(_)))),
                // never sent (503 with Retry-After)
                _ => assert!(matches!(res, Err(CallError::Unavailable(_)))),
            }
        }
        assert!(!r.s.connected());
        // retried after 1 s
        r.out.clear();
        r.at(Duration::from_secs(32) + ms(999));
        r.feed(Event::Tick);
        assert!(r.out.is_empty());
        r.at(Duration::from_secs(33));
        r.feed(Event::Tick);
        assert!(matches!(r.take()[..], [Action::Connect]));
    }

    #[test]
    fn a_failed_probe_ends_the_session() {
        let mut r = Rig::connected(settings());
        r.at(Duration::from_secs(30));
        r.feed(Event::Tick);
        let probe = r.sent();
        r.reply(
            &probe[0],
            json!({"Result": false, "Error": ["未检测到卡", "Err:Base50000"]}),
        );
        let reports = r.reports();
        assert!(
            matches!(&reports[0], Report::ProbeFailed { error } if error.contains("未检测到卡"))
        );
        assert!(!r.s.connected());
    }

    #[test]
    fn after_a_refused_password_nothing_more_is_sent_by_anyone() {
        let mut r = Rig::connected(settings());
        r.at(Duration::from_secs(30));
        r.feed(Event::Tick);
        let probe = r.sent();
        r.reply(
            &probe[0],
            json!({"Result": false, "Error": ["口令验证失败", "Err:Custom50030"]}),
        );
        let reports = r.reports();
        assert!(matches!(&reports[0], Report::PasswordRefused { .. }));
        assert!(reports.contains(&Report::ProbeRefused));
        assert!(r.s.connected(), "stays connected, sending nothing");
        r.out.clear();
        r.call("after", SIGN, ms(2000));
        for s in [31, 61, 91, 3600] {
            r.at(Duration::from_secs(s));
            r.feed(Event::Tick);
        }
        assert!(r.sent().is_empty(), "a frame was sent after the refusal");
        assert!(matches!(
            r.answers()[..],
            [(_, Err(CallError::PasswordRefused))]
        ));
        // nothing is due any more but the daily certificate check
        assert!(r.s.next_wake().unwrap() >= r.t0 + CERT_CHECK_INTERVAL);
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_eight() {
        let mut r = Rig::new(settings());
        let mut attempts = Vec::new();
        for _ in 0..7 {
            let at = r.s.next_wake().unwrap();
            r.now = at - Duration::from_micros(1);
            r.feed(Event::Tick);
            assert!(r.take().is_empty(), "an attempt before its time");
            r.now = at;
            r.feed(Event::Tick);
            assert!(matches!(r.take()[..], [Action::Connect]));
            attempts.push(at - r.t0);
            r.feed(Event::ConnectFailed("refused".into()));
            r.take();
        }
        let gaps: Vec<u64> = attempts
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis() as u64)
            .collect();
        assert_eq!(gaps, [1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn an_outage_is_reported_once_and_calls_meanwhile_are_answered_at_once() {
        let mut r = Rig::new(Settings {
            restart_after_failures: 3,
            ..settings()
        });
        let mut firsts = 0;
        let mut restarts = 0;
        for _ in 0..6 {
            r.now = r.s.next_wake().unwrap();
            r.feed(Event::Tick);
            r.feed(Event::ConnectFailed("connection refused".into()));
            for rep in r.reports() {
                match rep {
                    Report::ConnectFailed { first: true, .. } => firsts += 1,
                    Report::Restart(_) => restarts += 1,
                    _ => {}
                }
            }
            r.out.clear();
        }
        assert_eq!((firsts, restarts), (1, 2));
        r.call("meanwhile", SIGN, ms(2000));
        let answers = r.answers();
        assert!(
            matches!(&answers[0].1, Err(CallError::Unavailable(why)) if why == "connection refused")
        );
        r.now = r.s.next_wake().unwrap();
        r.feed(Event::Tick);
        r.feed(Event::Connected);
        assert!(r.reports().contains(&Report::Connected {
            after_outage: true,
            again: false
        }));
    }

    #[test]
    fn a_lost_socket_answers_every_caller_and_retries_after_one_second() {
        let mut r = Rig::connected(Settings {
            max_in_flight: 1,
            ..settings()
        });
        r.call("sent", SIGN, ms(2000));
        r.feed(Event::Tick);
        r.sent();
        r.call("queued", SIGN, ms(2000));
        r.at(ms(100));
        r.feed(Event::Closed("end of stream".into()));
        let answers = r.answers();
        assert_eq!(answers.len(), 2);
        assert!(r.reports().contains(&Report::Lost {
            why: "end of stream".into()
        }));
        assert_eq!(r.s.next_wake(), Some(r.t0 + ms(1100)));
    }

    #[test]
    fn shutdown_answers_every_caller_and_closes() {
        let mut r = Rig::connected(settings());
        r.call("a", SIGN, ms(2000));
        r.feed(Event::Tick);
        r.call("b", SIGN, ms(2000));
        r.feed(Event::Shutdown);
        let answers = r.answers();
        assert_eq!(answers.len(), 2);
        assert!(
            answers
                .iter()
                .all(|(_, res)| matches!(res, Err(CallError::ShuttingDown)))
        );
        assert!(r.out.iter().any(|a| matches!(a, Action::Close)));
        assert!(r.s.stopped());
    }

    #[test]
    fn a_full_queue_answers_busy_and_a_host_past_its_share_too() {
        let mut r = Rig::connected(Settings {
            max_queue: 4,
            ..settings()
        });
        r.call("held", SIGN, ms(2000));
        r.feed(Event::Tick);
        r.sent();
        // a host may hold half the queue
        for i in 0..3 {
            r.call_from(1, &format!("a{i}"), SIGN, ms(2000));
        }
        let answers = r.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, "a2");
        assert!(matches!(answers[0].1, Err(CallError::Busy { .. })));
        // others are still taken, until the queue is full
        for i in 0..3 {
            r.call_from(2 + i, &format!("b{i}"), SIGN, ms(2000));
        }
        let answers = r.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, "b2");
    }

    #[test]
    fn waiting_calls_are_sent_round_robin_by_host_in_order_within_a_host() {
        let mut r = Rig::connected(settings());
        r.call_from(1, "held", SIGN, ms(60_000));
        r.feed(Event::Tick);
        let mut sent = r.sent();
        for i in 0..5 {
            r.call_from(1, &format!("a{i}"), SIGN, ms(60_000));
        }
        r.call_from(2, "b0", SIGN, ms(60_000));
        r.call_from(3, "c0", SIGN, ms(60_000));
        r.call_from(2, "b1", SIGN, ms(60_000));
        let mut order = Vec::new();
        while let Some(f) = sent.pop() {
            r.reply(&f, json!({"Result": true}));
            for (id, _) in r.answers() {
                order.push(id);
            }
            r.feed(Event::Tick);
            sent = r.sent();
        }
        assert_eq!(
            order,
            ["held", "a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]
        );
    }

    #[test]
    fn a_card_error_that_calls_for_it_restarts_the_client_software() {
        let mut r = Rig::connected(settings());
        r.call("c", SIGN, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.reply(
            &sent[0],
            json!({"Result": false, "Error": ["Err:Custom50070"]}),
        );
        assert!(
            r.reports()
                .iter()
                .any(|rep| matches!(rep, Report::Restart(why) if why.contains("Err:Custom50070")))
        );
    }

    #[test]
    fn ids_are_integers_or_integer_strings() {
        assert_eq!(frame_id(&json!(17)), Some(17));
        assert_eq!(frame_id(&json!("17")), Some(17));
        assert_eq!(frame_id(&json!(-1)), None);
        assert_eq!(frame_id(&json!("x")), None);
        assert_eq!(frame_id(&json!(null)), None);
        for odd in [
            json!("120.0"),
            json!(120.5),
            json!(-120),
            json!("0x78"),
            json!("+120"),
            json!(" 120"),
        ] {
            assert_eq!(frame_id(&odd), None, "{odd}");
        }
    }

    /// A reply without `_id` to the one call in flight.
    fn idless(r: &mut Rig, data: &str) {
        let frame =
            json!({"_method": SIGN, "_status": "00", "_args": {"Result": true, "Data": [data]}});
        r.feed(Event::Frame(frame.to_string()));
    }

    #[test]
    fn m9_a_card_that_sends_ids_gets_no_reply_without_one_matched() {
        let mut r = Rig::connected(settings()); // its probe was answered with an _id
        r.call("c", SIGN, ms(2000));
        r.feed(Event::Tick);
        r.sent();
        idless(&mut r, "for-c");
        assert!(r.answers().is_empty());
    }

    /// Connected to a card that never sends `_id`, with one call of `SIGN` in flight.
    fn idless_card_with_a_call(id: &str, budget: Duration) -> Rig {
        let mut r = Rig::new(settings());
        r.feed(Event::Tick);
        r.feed(Event::Connected);
        r.call(id, SIGN, budget);
        r.feed(Event::Tick);
        let probe = r.sent();
        assert_eq!(methods(&probe), [PROBE_METHOD]);
        let reply = json!({"_method": PROBE_METHOD, "_status": "00", "_args": {"Result": true, "Data": ["c"]}});
        r.feed(Event::Frame(reply.to_string()));
        r.feed(Event::Tick);
        let cert = r.sent();
        assert_eq!(methods(&cert), [SIGN_CERT_METHOD]);
        let reply =
            json!({"_method": SIGN_CERT_METHOD, "_status": "00", "_args": {"Result": false}});
        r.feed(Event::Frame(reply.to_string()));
        r.feed(Event::Tick);
        assert_eq!(methods(&r.sent()), [SIGN]);
        r.out.clear();
        r
    }

    #[test]
    fn a_reply_without_id_goes_to_the_one_call_in_flight() {
        let mut r = idless_card_with_a_call("c", ms(2000));
        r.call("c", SIGN, ms(2000));
        r.feed(Event::Tick);
        r.sent();
        idless(&mut r, "for-c");
        let answers = r.answers();
        assert_eq!(answers[0].1.as_ref().unwrap()["_args"]["Data"][0], "for-c");
    }

    #[test]
    fn m9_a_late_reply_without_id_is_never_given_to_the_next_caller() {
        let mut r = idless_card_with_a_call("first", ms(1000));
        r.at(ms(1000));
        r.feed(Event::Tick);
        r.answers();
        r.call("second", SIGN, ms(1000));
        r.feed(Event::Tick);
        r.sent();
        idless(&mut r, "for-first"); // late, and cannot be told from second's
        assert!(r.answers().is_empty());
    }

    #[test]
    fn m9_after_a_reply_without_id_that_answers_nothing_none_is_matched() {
        let mut r = idless_card_with_a_call("a", ms(2000));
        idless(&mut r, "for-a");
        idless(&mut r, "for-a"); // a duplicate
        assert_eq!(r.answers().len(), 1);
        r.call("b", SIGN, ms(2000));
        r.feed(Event::Tick);
        r.sent();
        idless(&mut r, "for-a"); // the duplicate again, or b's? nobody can tell
        assert!(r.answers().is_empty());
    }

    #[test]
    fn m9_with_two_calls_in_flight_a_reply_without_id_is_dropped() {
        let mut r = Rig::connected(Settings {
            max_in_flight: 2,
            ..settings()
        });
        r.call("a", SIGN, ms(2000));
        r.call("b", "cus-sec_SpcGetEntName", ms(2000));
        r.feed(Event::Tick);
        assert_eq!(r.sent().len(), 2);
        idless(&mut r, "x");
        assert!(r.answers().is_empty());
    }

    #[test]
    fn l8_a_reply_with_neither_status_nor_args_is_an_error() {
        let mut r = Rig::connected(settings());
        r.call("c", SIGN, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.feed(Event::Frame(json!({"_id": sent[0]["_id"]}).to_string()));
        assert!(matches!(
            r.answers()[..],
            [(_, Err(CallError::BadReply(_)))]
        ));
    }

    #[test]
    fn m3_a_callers_refused_call_only_brings_the_probe_forward() {
        let mut r = Rig::connected(settings());
        r.call("c", SIGN, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.reply(
            &sent[0],
            json!({"Result": false, "Error": ["口令验证失败", "Err:Custom50030"]}),
        );
        assert!(
            !r.reports()
                .iter()
                .any(|rep| matches!(rep, Report::PasswordRefused { .. }))
        );
        assert!(
            r.answers()[0].1.is_ok(),
            "the caller gets the card's own answer"
        );
        r.feed(Event::Tick);
        let probe = r.sent();
        assert_eq!(methods(&probe), [PROBE_METHOD], "probed at once");
        // the card accepts the proxy's own call: no refusal
        r.reply(&probe[0], json!({"Result": true, "Data": ["cert-1"]}));
        assert!(
            !r.reports()
                .iter()
                .any(|rep| matches!(rep, Report::PasswordRefused { .. }))
        );
        r.call("d", SIGN, ms(2000));
        r.feed(Event::Tick);
        assert_eq!(methods(&r.sent()), [SIGN]);
    }
    // ---- #28: the identity cache ---------------------------------------------------------------

    const ENT: &str = "cus-sec_SpcGetEntName";

    fn cache_answers(r: &Rig) -> usize {
        r.reports()
            .iter()
            .filter(|rep| matches!(rep, Report::CacheAnswered { .. }))
            .count()
    }

    fn dropped(r: &Rig) -> bool {
        r.reports()
            .iter()
            .any(|rep| matches!(rep, Report::CacheDropped { .. }))
    }

    #[test]
    fn the_reads_made_on_connecting_answer_callers_at_once_as_the_card_gave_them() {
        let mut r = Rig::connected(settings());
        r.call("no", PROBE_METHOD, ms(2000));
        r.call("cert", SIGN_CERT_METHOD, ms(2000));
        assert!(r.sent().is_empty(), "the card was asked");
        assert_eq!(cache_answers(&r), 2);
        let answers = r.answers();
        let no = answers[0].1.as_ref().unwrap();
        assert_eq!(
            no,
            &json!({"_method": PROBE_METHOD, "_status": "00",
                    "_args": {"Result": true, "Data": ["cert-1"]}})
        );
        assert_eq!(answers[1].1.as_ref().unwrap()["_args"]["Data"][0], "MIIB");
        // a read with an argument asks about something else: to the card
        let (reply, _answer) = oneshot::slot();
        let mut args = Map::new();
        args.insert("cert".into(), json!("MIIC"));
        r.feed(Event::Job(Job {
            method: "cus-sec_SpcGetValidTimeFromCert".into(),
            args,
            request_id: "v".into(),
            client: None,
            deadline: r.now + ms(2000),
            reply,
        }));
        r.feed(Event::Tick);
        assert_eq!(r.sent().len(), 1);
    }

    #[test]
    fn an_identity_read_goes_to_the_card_once_then_is_cached_while_the_queue_is_long() {
        let mut r = Rig::connected(settings());
        r.call("ent-1", ENT, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        assert_eq!(methods(&sent), [ENT]);
        r.reply(&sent[0], json!({"Result": true, "Data": ["Co"]}));
        assert!(
            r.reports()
                .iter()
                .any(|rep| matches!(rep, Report::Cached { key, .. } if *key == ENT))
        );
        r.answers();
        // a signature holds the card, others queue behind it
        r.call("sig", SIGN, ms(2000));
        r.feed(Event::Tick);
        r.sent();
        r.call("queued", SIGN, ms(2000));
        r.call("ent-2", ENT, ms(2000));
        let answers = r.answers();
        assert_eq!(answers.len(), 1, "answered before the queue moved");
        assert_eq!(answers[0].0, "ent-2");
        assert_eq!(answers[0].1.as_ref().unwrap()["_args"]["Data"][0], "Co");
        // a failed identity read is not cached
        let mut r = Rig::connected(settings());
        r.call("e", ENT, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.reply(
            &sent[0],
            json!({"Result": false, "Error": ["busy", "Err:Base1"]}),
        );
        r.answers();
        r.call("e2", ENT, ms(2000));
        r.feed(Event::Tick);
        assert_eq!(methods(&r.sent()), [ENT]);
    }

    #[test]
    fn a_card_gone_error_drops_the_cache_and_the_card_is_read_again() {
        for code in ["Err:Custom50070", "Err:Custom50200", "未检测到卡"] {
            let mut r = Rig::connected(settings());
            r.call("sig", SIGN, ms(2000));
            r.feed(Event::Tick);
            let sent = r.sent();
            r.reply(&sent[0], json!({"Result": false, "Error": [code]}));
            assert!(dropped(&r), "{code}");
            r.out.clear();
            // the certificate number now comes from the card: the probe, brought forward
            r.call("no", PROBE_METHOD, ms(2000));
            assert!(
                r.answers().is_empty(),
                "{code}: answered from a dropped cache"
            );
            r.feed(Event::Tick);
            let sent = r.sent();
            assert_eq!(methods(&sent), [PROBE_METHOD]);
            r.reply(&sent[0], json!({"Result": true, "Data": ["cert-2"]}));
            let answers = r.answers();
            assert_eq!(answers[0].1.as_ref().unwrap()["_args"]["Data"][0], "cert-2");
            // and the signing certificate is read again
            r.feed(Event::Tick);
            assert_eq!(methods(&r.sent()), [SIGN_CERT_METHOD]);
        }
    }

    #[test]
    fn a_probe_naming_another_certificate_drops_what_the_old_card_said() {
        let mut r = Rig::connected(settings());
        r.call("ent", ENT, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.reply(&sent[0], json!({"Result": true, "Data": ["Old Co"]}));
        r.out.clear();
        r.at(Duration::from_secs(30));
        r.feed(Event::Tick);
        let probe = r.sent();
        assert_eq!(methods(&probe), [PROBE_METHOD]);
        r.reply(&probe[0], json!({"Result": true, "Data": ["CERT-2"]}));
        assert!(dropped(&r));
        r.out.clear();
        // the new number is cached, the old card's name is not
        r.call("no", PROBE_METHOD, ms(2000));
        assert_eq!(
            r.answers()[0].1.as_ref().unwrap()["_args"]["Data"][0],
            "CERT-2"
        );
        r.call("ent", ENT, ms(2000));
        r.feed(Event::Tick);
        // the new card's certificate first, then the name
        assert_eq!(methods(&r.sent()), [SIGN_CERT_METHOD]);
        // the same number again (another case) keeps the cache
        let mut r = Rig::connected(settings());
        r.at(Duration::from_secs(30));
        r.feed(Event::Tick);
        let probe = r.sent();
        r.reply(&probe[0], json!({"Result": true, "Data": ["CERT-1"]}));
        assert!(!dropped(&r));
    }

    #[test]
    fn a_signature_by_another_certificate_drops_the_cache_before_it_is_answered() {
        let mut r = Rig::connected(settings());
        r.call("s1", SIGN, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.reply(&sent[0], json!({"Result": true, "Data": ["sig", "cert-1"]}));
        assert!(!dropped(&r));
        r.out.clear();
        r.call("s2", SIGN, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.reply(&sent[0], json!({"Result": true, "Data": ["sig", "cert-9"]}));
        let at = |r: &Rig, f: &dyn Fn(&Action) -> bool| r.out.iter().position(f).unwrap();
        let drop_at = at(&r, &|a| {
            matches!(a, Action::Report(Report::CacheDropped { .. }))
        });
        let answer_at = at(&r, &|a| matches!(a, Action::Answer(..)));
        assert!(drop_at < answer_at);
        r.out.clear();
        r.call("no", PROBE_METHOD, ms(2000));
        assert!(r.answers().is_empty());
    }

    #[test]
    fn a_workers_forget_and_a_reconnect_empty_the_cache() {
        let mut r = Rig::connected(settings());
        r.feed(Event::Forget("self-check failed".into()));
        assert!(r.reports().contains(&Report::CacheDropped {
            why: "self-check failed".into(),
            entries: 2
        }));
        r.out.clear();
        r.call("no", PROBE_METHOD, ms(2000));
        assert!(r.answers().is_empty());
        // reconnect: a new connection starts empty
        let mut r = Rig::connected(settings());
        r.call("ent", ENT, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.reply(&sent[0], json!({"Result": true, "Data": ["Co"]}));
        r.feed(Event::Closed("end of stream".into()));
        r.at(Duration::from_secs(1));
        r.feed(Event::Tick);
        r.feed(Event::Connected);
        r.out.clear();
        r.call("ent", ENT, ms(2000));
        assert!(r.answers().is_empty(), "answered from the old connection");
    }

    #[test]
    fn a_read_sent_before_a_drop_is_not_cached() {
        let mut r = Rig::connected(settings());
        r.call("ent", ENT, ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.feed(Event::Forget("self-check failed".into()));
        r.reply(&sent[0], json!({"Result": true, "Data": ["Old Co"]}));
        assert!(
            !r.reports()
                .iter()
                .any(|rep| matches!(rep, Report::Cached { key, .. } if *key == ENT))
        );
    }

    #[test]
    fn concurrent_identical_reads_are_sent_once_and_all_get_the_answer() {
        let mut r = Rig::connected(settings());
        for i in 0..5 {
            r.call(&format!("ent-{i}"), ENT, ms(2000));
        }
        r.call("other", "cus-sec_SpcGetEnvCertAsPEM", ms(2000));
        r.feed(Event::Tick);
        let sent = r.sent();
        assert_eq!(methods(&sent), [ENT]);
        assert_eq!(r.s.callers_waiting(), 6);
        r.reply(&sent[0], json!({"Result": true, "Data": ["Co"]}));
        let answers = r.answers();
        assert_eq!(answers.len(), 5);
        for (_, a) in &answers {
            assert_eq!(a.as_ref().unwrap()["_args"]["Data"][0], "Co");
        }
        assert_eq!(cache_answers(&r), 4, "one of them was the card's own call");
        r.feed(Event::Tick);
        assert_eq!(methods(&r.sent()), ["cus-sec_SpcGetEnvCertAsPEM"]);
    }

    #[test]
    fn right_after_connecting_readers_wait_for_the_proxys_own_reads() {
        let mut r = Rig::new(settings());
        r.feed(Event::Tick);
        r.feed(Event::Connected);
        for i in 0..3 {
            r.call(&format!("no-{i}"), PROBE_METHOD, ms(2000));
            r.call(&format!("cert-{i}"), SIGN_CERT_METHOD, ms(2000));
        }
        let mut sent_methods = Vec::new();
        for _ in 0..2 {
            r.feed(Event::Tick);
            for f in r.sent() {
                sent_methods.push(f["_method"].as_str().unwrap().to_string());
                r.reply(&f, json!({"Result": true, "Data": ["x"]}));
            }
        }
        assert_eq!(sent_methods, [PROBE_METHOD, SIGN_CERT_METHOD]);
        assert_eq!(r.answers().len(), 6);
    }

    #[test]
    fn a_waiting_reader_takes_over_when_the_read_it_waits_for_gives_up() {
        let mut r = Rig::connected(settings());
        r.call("held", SIGN, ms(5000));
        r.feed(Event::Tick);
        let held = r.sent();
        r.call("short", ENT, ms(500));
        r.call("long", ENT, ms(4000));
        r.at(ms(500));
        r.feed(Event::Tick);
        let answers = r.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, "short");
        r.reply(&held[0], json!({"Result": true}));
        r.answers();
        r.feed(Event::Tick);
        let sent = r.sent();
        assert_eq!(methods(&sent), [ENT], "the waiting reader's own call");
        r.reply(&sent[0], json!({"Result": true, "Data": ["Co"]}));
        assert_eq!(r.answers()[0].0, "long");
        // a waiting reader past its own budget is answered, its read left alone
        let mut r = Rig::connected(settings());
        r.call("first", ENT, ms(4000));
        r.feed(Event::Tick);
        let sent = r.sent();
        r.call("brief", ENT, ms(100));
        r.at(ms(100));
        r.feed(Event::Tick);
        assert!(matches!(r.answers()[..], [(_, Err(CallError::Late(_)))]));
        r.reply(&sent[0], json!({"Result": true, "Data": ["Co"]}));
        assert_eq!(r.answers()[0].0, "first");
    }
}
