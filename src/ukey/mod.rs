//! The UKey bridge: the handle HTTP workers call, the jobs they hand over, and the shared status.
//! Exactly one thread (see `run`) owns the WebSocket; everything else talks to it by channel.

pub mod conn;
pub mod frame;
mod run;

use crate::config::UkeyConfig;
use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
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
    /// Not connected (or the connection broke while the call was in flight).
    Unavailable(String),
    /// No reply within the configured timeout.
    Timeout(Duration),
    /// Too many calls are already waiting.
    Busy,
    /// The proxy is shutting down.
    ShuttingDown,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Unavailable(why) => write!(f, "UKey unavailable: {why}"),
            CallError::Timeout(t) => {
                write!(f, "UKey did not answer within {} ms", t.as_millis())
            }
            CallError::Busy => write!(f, "UKey busy: too many calls waiting, try again"),
            CallError::ShuttingDown => write!(f, "proxy is shutting down"),
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
    pub deadline: Instant,
    pub reply: Sender<CallResult>,
}

pub(crate) enum Command {
    Call(Job),
    /// Fail what is left, close the socket with a close frame, and end the thread.
    Shutdown,
}

/// What happened to the connection, for whoever reports it (webhooks). Sent without blocking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UkeyEvent {
    /// Connected after having been down (not sent for the very first connection).
    Recovered,
    /// The connection could not be opened, or was lost; once per outage.
    ConnectionFailure { error: String },
    /// The periodic probe failed or got no answer.
    HealthCheckFailure { error: String },
}

/// Small, lock-light view of the connection for `/health` and logs.
#[derive(Debug, Default)]
pub struct Status {
    pub connected: AtomicBool,
    /// Calls queued or sent and not yet answered.
    pub in_flight: AtomicUsize,
    pub last_probe_ok: AtomicBool,
    /// Milliseconds since the epoch of the last probe's end; 0 = none yet.
    pub last_probe_ms: AtomicU64,
    /// Certificate number from the last successful probe. Locked only to copy a short string.
    pub cert_no: Mutex<Option<String>>,
    pub last_error: Mutex<Option<String>>,
    /// The signing certificate (base64 DER) of the current connection, once read.
    pub sign_cert: Mutex<Option<String>>,
}

impl Status {
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
    m.lock().map(|g| g.clone()).unwrap_or(None)
}

fn write(m: &Mutex<Option<String>>, v: Option<String>) {
    if let Ok(mut g) = m.lock() {
        *g = v;
    }
}

/// The handle HTTP workers use. Cheap to clone.
#[derive(Clone)]
pub struct Ukey {
    tx: Sender<Command>,
    status: Arc<Status>,
    timeout: Duration,
}

impl Ukey {
    /// Starts the UKey thread. `events` receives connection events; it may be dropped.
    pub fn spawn(
        config: &UkeyConfig,
        events: Option<Sender<UkeyEvent>>,
    ) -> std::io::Result<(Ukey, JoinHandle<()>)> {
        let endpoint = conn::Endpoint::parse(&config.url)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let (tx, rx): (Sender<Command>, Receiver<Command>) = bounded(config.max_queue.max(1));
        let status = Arc::new(Status::default());
        let runner = run::Runner::new(endpoint, config.clone(), rx, status.clone(), events);
        let handle = std::thread::Builder::new()
            .name("ukey".into())
            .spawn(move || runner.run())?;
        Ok((
            Ukey {
                tx,
                status,
                timeout: config.timeout(),
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

    /// Calls `method` on the card and waits for its reply, at most the configured timeout
    /// (plus a small grace should the UKey thread itself be stuck).
    pub fn call(&self, method: &str, args: Map<String, Value>, request_id: &str) -> CallResult {
        let (reply, answer) = bounded(1);
        let job = Job {
            method: method.to_string(),
            args,
            request_id: request_id.to_string(),
            deadline: Instant::now() + self.timeout,
            reply,
        };
        match self.tx.try_send(Command::Call(job)) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => return Err(CallError::Busy),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(CallError::ShuttingDown);
            }
        }
        match answer.recv_timeout(self.timeout + WORKER_GRACE) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(CallError::Timeout(self.timeout))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(CallError::ShuttingDown),
        }
    }

    /// Asks the UKey thread to close the socket (with a close frame) and end. Calls still
    /// waiting are answered `ShuttingDown`.
    pub fn shutdown(&self) {
        let _ = self
            .tx
            .send_timeout(Command::Shutdown, Duration::from_secs(1));
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
