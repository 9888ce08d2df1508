//! The UKey bridge: the handle HTTP workers call, the jobs they hand over, and the shared status.
//! Exactly one thread (see `run`) owns the WebSocket; everything else talks to it by channel.

pub mod conn;
pub mod expiry;
pub mod frame;
pub mod identity;
pub mod lockout;
pub mod methods;
pub mod oneshot; // public for benches/load.rs, whose floor server waits the same way
mod queue;
pub mod restart;
mod run;
mod session;
mod wait;

use crate::config::UkeyConfig;
use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Extra time a worker waits beyond the UKey timeout before giving up on the UKey thread itself,
/// so that even a stuck thread cannot hang a caller.
const WORKER_GRACE: Duration = Duration::from_secs(2);

/// The method the health probe calls; its answer is the certificate number.
pub const PROBE_METHOD: &str = "cus-sec_SpcGetCertNo";
/// The word the simulator's certificates carry in their subject; the proxy warns when it sees it.
pub const SIMULATOR_MARK: &str = "SIMULATOR";
/// The method that hands out the signing certificate (base64 DER), read once per connection.
pub const SIGN_CERT_METHOD: &str = "cus-sec_SpcGetSignCertAsPEM";

/// Why a call got no answer from the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Not connected, or the connection broke before the call was sent: the card never
    /// received it.
    Unavailable(String),
    /// The connection broke after the call was sent: the card may have carried it out.
    Lost(String),
    /// Sent, and no reply within the configured timeout.
    Timeout(Duration),
    /// Too many calls are already waiting (`ukey.max_queue`).
    Busy { retry_after_s: u64 },
    /// The calls ahead of this one would not finish within its time budget: refused at once
    /// rather than left to wait and fail.
    Overloaded { ahead: usize, retry_after_s: u64 },
    /// Its time budget ran out, or would have before the card could answer, while it waited
    /// for the card: it was never sent.
    Late(Duration),
    /// The proxy is shutting down.
    ShuttingDown,
    /// The card refused the configured password: nothing is sent to it any more.
    PasswordRefused,
    /// The card answered, but with a frame that is neither a success nor a failure.
    BadReply(String),
}

/// Whether the card received a call, given its outcome: an answer, or an error after sending.
pub fn card_received(result: &Result<Value, CallError>) -> bool {
    result
        .as_ref()
        .map_or_else(CallError::card_received, |_| true)
}

impl CallError {
    /// When the caller should try again, for `Retry-After`: set exactly when the card never
    /// received the call (#26.1), so that a balancer may replay it on another card.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            CallError::Busy { retry_after_s } | CallError::Overloaded { retry_after_s, .. } => {
                Some(*retry_after_s)
            }
            CallError::Late(_) | CallError::Unavailable(_) | CallError::ShuttingDown => Some(1),
            // an operator must fix the configuration: another card may serve meanwhile
            CallError::PasswordRefused => Some(60),
            CallError::Lost(_) | CallError::Timeout(_) | CallError::BadReply(_) => None,
        }
    }

    /// Whether the card received the call before it failed: everything but a 503 (#26.1).
    pub fn card_received(&self) -> bool {
        self.http_status() != 503
    }

    /// The HTTP status (#26.1): 503 when the card never received the call, 502 when it did and
    /// the answer was lost or unreadable, 504 when it did and did not answer in time.
    pub fn http_status(&self) -> u16 {
        match self {
            CallError::Lost(_) | CallError::BadReply(_) => 502,
            CallError::Timeout(_) => 504,
            _ => 503,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Unavailable(why) => write!(f, "UKey unavailable: {why}"),
            CallError::Lost(why) => write!(
                f,
                "UKey unavailable: the connection broke after the call was sent ({why}); the \
                 card may have carried it out"
            ),
            CallError::Timeout(t) => {
                write!(f, "UKey did not answer within {} ms", t.as_millis())
            }
            CallError::Busy { retry_after_s } => write!(
                f,
                "UKey busy: too many calls waiting; try again in {retry_after_s} s"
            ),
            CallError::Overloaded {
                ahead,
                retry_after_s,
            } => write!(
                f,
                "UKey busy: the {ahead} call(s) ahead of this one would not finish within its \
                 time budget; try again in {retry_after_s} s"
            ),
            CallError::Late(t) => write!(
                f,
                "UKey busy: this call's time budget of {} ms ran out while it waited for the \
                 card, so it was not sent; try again shortly",
                t.as_millis()
            ),
            CallError::ShuttingDown => write!(f, "proxy is shutting down"),
            CallError::BadReply(why) => write!(
                f,
                "the UKey answered with a frame the proxy cannot read ({why}); the call may or \
                 may not have been carried out"
            ),
            CallError::PasswordRefused => write!(
                f,
                "the card refused the configured password, so no call is sent to it any more \
                 (repeated wrong passwords lock the card). Set the card's password in \
                 ukey.password in the configuration file and restart chinaport-proxy"
            ),
        }
    }
}

/// The reply a caller gets: the card's frame without `_id`.
pub type CallResult = Result<Value, CallError>;

/// One call handed to the UKey thread.
pub struct Job {
    pub method: String,
    /// Arguments as the client sent them; the thread removes any `passwd` and injects its own.
    pub args: Map<String, Value>,
    pub request_id: String,
    /// The client's address: calls are served round-robin by it (see `queue`).
    pub client: Option<std::net::IpAddr>,
    pub deadline: Instant,
    pub reply: oneshot::Sender<CallResult>,
}

pub(crate) enum Command {
    Call(Job),
    /// Fail what is left, close the socket with a close frame, and end the thread.
    Shutdown,
}

/// What happened to the connection, for whoever reports it (webhooks). Sent without blocking.
#[derive(Debug, Clone, PartialEq)]
pub enum UkeyEvent {
    /// Connected after having been down (not sent for the very first connection).
    Recovered,
    /// The connection could not be opened, or was lost; once per outage.
    ConnectionFailure { error: String },
    /// The periodic probe failed or got no answer.
    HealthCheckFailure { error: String },
    /// The card refused the configured password; sent once, when it happens.
    PasswordRejected { error: String },
    /// The signing certificate expires within a warning threshold (30, 7, 1 days).
    CertExpiring { days_left: i64, not_after: u64 },
    /// The signing certificate has expired.
    CertExpired { not_after: u64 },
    /// The client software was restarted (its outcome, as `/health` shows it).
    ClientRestarted { outcome: serde_json::Value },
}

/// Small, lock-light view of the connection for `/health` and logs.
#[derive(Debug, Default)]
pub struct Status {
    pub connected: AtomicBool,
    /// Calls queued or sent and not yet answered.
    pub in_flight: AtomicUsize,
    /// Callers waiting in `Ukey::call` right now (queued, sent, or on their way in).
    pub pending: AtomicUsize,
    /// The same, by client address: what a new call waits behind, the queue being round-robin
    /// by host.
    pub pending_by_host: Mutex<std::collections::HashMap<queue::Host, usize>>,
    /// The card's recent time per call (moving average of send → reply), in microseconds;
    /// 0 until a call has been answered.
    pub call_time_us: AtomicU64,
    pub last_probe_ok: AtomicBool,
    /// The card refused the configured password (see `lockout`): nothing is sent to it.
    pub password_refused: AtomicBool,
    /// Milliseconds since the epoch of the last probe's end; 0 = none yet.
    pub last_probe_ms: AtomicU64,
    /// Certificate number from the last successful probe. Locked only to copy a short string.
    pub cert_no: Mutex<Option<String>>,
    pub last_error: Mutex<Option<String>>,
    /// The signing certificate (base64 DER) of the current connection, once read.
    pub sign_cert: Mutex<Option<String>>,
    /// When the current connection came up (Unix milliseconds); 0 while disconnected.
    pub connected_since_ms: AtomicU64,
    /// The signing certificate's notAfter (Unix seconds); 0 until read.
    pub cert_not_after: AtomicU64,
    /// The last restart of the client software, as `/health` shows it.
    pub client_restart: Mutex<Option<serde_json::Value>>,
    /// The identity answers of the current connection, as workers read them (#28).
    pub identity: identity::Published,
}

impl Status {
    /// The card's recent time per call; zero until a call has been answered.
    pub fn call_time(&self) -> Duration {
        Duration::from_micros(self.call_time_us.load(Ordering::Relaxed))
    }

    pub fn cert_no(&self) -> Option<String> {
        read(&self.cert_no)
    }
    pub fn last_error(&self) -> Option<String> {
        read(&self.last_error)
    }
    pub fn sign_cert(&self) -> Option<String> {
        read(&self.sign_cert)
    }
    fn set_sign_cert(&self, v: Option<String>) {
        write(&self.sign_cert, v);
    }
    fn set_cert_no(&self, v: Option<String>) {
        write(&self.cert_no, v);
    }
    fn set_last_error(&self, v: Option<String>) {
        write(&self.last_error, v);
    }
}

/// A copy of a short status string; the lock is held only for the copy.
fn read(m: &Mutex<Option<String>>) -> Option<String> {
    crate::sync::lock(m).clone()
}

fn write(m: &Mutex<Option<String>>, v: Option<String>) {
    *crate::sync::lock(m) = v;
}

/// The handle HTTP workers use. Cheap to clone.
#[derive(Clone)]
pub struct Ukey {
    tx: Sender<Command>,
    /// Wakes the UKey thread when it waits for a job (see `wait`).
    bell: Arc<wait::Doorbell>,
    status: Arc<Status>,
    timeout: Duration,
    max_in_flight: usize,
    restarter: Arc<restart::Restarter>,
}

/// Counts a caller in `Status::pending` (and its host's count) for as long as it waits.
struct Waiting<'a> {
    status: &'a Status,
    host: queue::Host,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.status.pending.fetch_sub(1, Ordering::SeqCst);
        let mut hosts = crate::sync::lock(&self.status.pending_by_host);
        if let Some(n) = hosts.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                hosts.remove(&self.host);
            }
        }
    }
}

impl Ukey {
    /// Starts the UKey thread. `events` receives connection events; it may be dropped.
    /// `state_dir` (the configuration's folder) is where a refusal of the password is
    /// remembered across restarts; `None` keeps it in memory only.
    pub fn spawn(
        config: &UkeyConfig,
        events: Option<Sender<UkeyEvent>>,
        state_dir: Option<&std::path::Path>,
    ) -> std::io::Result<(Ukey, JoinHandle<()>)> {
        let endpoint = conn::Endpoint::parse(&config.url)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // The channel only hands jobs over; the queue's bounds (`ukey.max_queue`, a host's
        // share) are applied by the UKey thread. While the card works on a call the thread does
        // not read the channel, so it must hold a burst of every host's calls, or one host's
        // burst would turn the next host away before its turn (4 x covers the 1,024 default
        // connections).
        let (tx, rx): (Sender<Command>, Receiver<Command>) =
            bounded(config.max_queue.max(1).saturating_mul(4));
        let bell = Arc::new(wait::Doorbell::new()?);
        let status = Arc::new(Status::default());
        let (lockout, refused) = lockout::Lockout::open(state_dir, &config.password);
        if refused {
            status.password_refused.store(true, Ordering::SeqCst);
            let why = CallError::PasswordRefused.to_string();
            log::error!(
                "UKey: {why} (remembered in {})",
                state_dir
                    .map(|d| d.join(lockout::FILE_NAME).display().to_string())
                    .unwrap_or_default()
            );
            status.set_last_error(Some(why));
        }
        let restarter = Arc::new(restart::Restarter::new(
            config,
            status.clone(),
            events.clone(),
        ));
        let runner = run::Runner::new(
            endpoint,
            config.clone(),
            rx,
            bell.clone(),
            status.clone(),
            events,
            run::Care {
                lockout,
                restarter: restarter.clone(),
                expiry: expiry::ExpiryWatch::open(state_dir),
            },
        );
        let handle = std::thread::Builder::new()
            .name("ukey".into())
            .spawn(move || runner.run())?;
        Ok((
            Ukey {
                tx,
                bell,
                status,
                timeout: config.timeout(),
                max_in_flight: config.max_in_flight.max(1),
                restarter,
            },
            handle,
        ))
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Drops the identity cache at once (a signature did not verify against the cached
    /// certificate: the card may have been swapped); the UKey thread reads the card again.
    pub fn forget_identity(&self, why: String) {
        self.status.identity.forget(why);
        self.bell.job_queued();
    }

    /// Restarts the E-Port client software (see `restart`).
    pub fn restarter(&self) -> &restart::Restarter {
        &self.restarter
    }

    /// Calls `method` on the card and waits for its reply. The time budget (`ukey.timeout_ms`)
    /// runs from `arrived`, when the request reached the proxy: waiting for a thread, in the
    /// queue and for the card all count. A call that could not be answered within it is refused
    /// at once (`Overloaded`) instead of waiting to fail.
    /// `client` is the caller's address: the card serves waiting calls round-robin by it.
    pub fn call(
        &self,
        method: &str,
        args: Map<String, Value>,
        request_id: &str,
        arrived: Instant,
        client: Option<std::net::IpAddr>,
    ) -> CallResult {
        if self.status.password_refused.load(Ordering::SeqCst) {
            return Err(CallError::PasswordRefused);
        }
        // #28: what the card said about itself on this connection, without waiting for it
        if let Some(key) = identity::key(method, &args)
            && let Some(frame) = self.status.identity.get(key)
        {
            crate::metrics::global().ukey_cache_answer(key);
            return Ok(Value::clone(&frame));
        }
        let deadline = arrived + self.timeout;
        let ahead = self.enter(client);
        let _waiting = Waiting {
            status: &self.status,
            host: client,
        };
        if let Some(late_by) = self.would_finish_late(ahead, deadline) {
            return Err(CallError::Overloaded {
                ahead,
                retry_after_s: late_by.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        let (reply, answer) = oneshot::slot();
        let job = Job {
            method: method.to_string(),
            args,
            request_id: request_id.to_string(),
            client,
            deadline,
            reply,
        };
        match self.tx.try_send(Command::Call(job)) {
            Ok(()) => self.bell.job_queued(),
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                return Err(CallError::Busy { retry_after_s: 1 });
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(CallError::ShuttingDown);
            }
        }
        // the UKey thread answers every job by its deadline; the grace covers a stuck thread
        match answer.recv_deadline(deadline + WORKER_GRACE) {
            Ok(result) => result,
            Err(oneshot::RecvError::Timeout) => Err(CallError::Timeout(self.timeout)),
            Err(oneshot::RecvError::Closed) => Err(CallError::ShuttingDown),
        }
    }

    /// Counts a new caller from `host` in, and returns how many calls it waits behind: its own
    /// host's, and of every other host at most one more than that (one per turn).
    fn enter(&self, host: queue::Host) -> usize {
        self.status.pending.fetch_add(1, Ordering::SeqCst);
        let mut hosts = crate::sync::lock(&self.status.pending_by_host);
        let own = *hosts.get(&host).unwrap_or(&0);
        let others: usize = hosts
            .iter()
            .filter(|(h, _)| **h != host)
            .map(|(_, n)| (*n).min(own + 1))
            .sum();
        *hosts.entry(host).or_insert(0) += 1;
        own + others
    }

    /// How far past `deadline` a call would finish behind `ahead` others, at the card's recent
    /// pace; `None` when it would make it (or the pace is not known yet).
    fn would_finish_late(&self, ahead: usize, deadline: Instant) -> Option<Duration> {
        let per_call = self.status.call_time();
        if per_call.is_zero() {
            return None;
        }
        let rounds = (ahead / self.max_in_flight + 1) as u32;
        let finish = Instant::now() + per_call.saturating_mul(rounds);
        finish.checked_duration_since(deadline)
    }

    /// Asks the UKey thread to close the socket (with a close frame) and end. Calls still
    /// waiting are answered `ShuttingDown`.
    pub fn shutdown(&self) {
        self.bell.request_stop();
        let _ = self
            .tx
            .send_timeout(Command::Shutdown, Duration::from_secs(1));
    }
}

/// Moved to `crate::time`; kept here for code that still names it.
pub use crate::time::now_ms;
