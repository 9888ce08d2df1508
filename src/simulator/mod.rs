//! A UKey simulator: a WebSocket server that behaves like the E-Port client software (greeting,
//! `_id` matching, password check, the `cus-sec_Spc…` methods, real RSA/SHA-1 signatures), with
//! fault knobs for integrators and for our own tests. Nothing it signs is valid at customs.
//!
//! The knobs are set through `Faults` in process, from the command line of `simulate`, or by a
//! client at run time with two extra methods (through the proxy's `/rpc` too):
//! `sim-ctl_Faults` (args: `latency_ms`, `silent`, `errors`, `drop_after`, `refuse`,
//! `bad_signatures`, `swap_card`, `clear`) and `sim-ctl_Drop` (closes the connection at once,
//! without an answer). `swap_card` plays another card put in the reader, on the same socket and
//! without a word: another key and certificate number from the next call on (swapping again
//! puts the first card back).
//!
//! `transfer` plays the customs transfer client beside it (`--simulate --transfer`).

pub mod card;
mod methods;
pub mod transfer;

use crate::sync::lock;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tungstenite::{Message, Utf8Bytes, WebSocket};

pub use card::{Card, CardKind, SIMULATOR_MARK};
pub use methods::ENT_NAME;

/// Frames remembered for inspection (tests, `--simulate` debugging); older ones are dropped.
const RECEIVED_KEPT: usize = 10_000;

/// Fault knobs, changeable while the simulator runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Added before every answer.
    pub latency_ms: AtomicU64,
    /// Methods that never get an answer.
    pub silent_methods: Mutex<HashSet<String>>,
    /// Methods answered `Result:false` with these errors.
    pub error_methods: Mutex<HashMap<String, Vec<String>>>,
    /// Close the connection (without answering) when `requests_seen` reaches this; 0 = off.
    pub drop_after_requests: AtomicU64,
    /// Close new connections right after accepting them.
    pub refuse_connections: AtomicBool,
    /// Collect this many requests, then answer them newest first (tests reply matching); 0/1 = off.
    pub reverse_batch: AtomicUsize,
    /// Requests received so far, over all connections.
    pub requests_seen: AtomicU64,
    /// Sign over other data than asked: signatures that do not verify.
    pub bad_signatures: AtomicBool,
    /// Swaps asked for and not yet carried out (`swap_card`), taken by the next request.
    swaps_asked: AtomicUsize,
}

impl Faults {
    pub fn set_latency(&self, d: Duration) {
        self.latency_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn set_silent(&self, method: &str, silent: bool) {
        {
            let mut s = lock(&self.silent_methods);
            if silent {
                s.insert(method.to_string());
            } else {
                s.remove(method);
            }
        }
    }
    pub fn set_error(&self, method: &str, errors: Option<Vec<String>>) {
        {
            let mut m = lock(&self.error_methods);
            match errors {
                Some(e) => m.insert(method.to_string(), e),
                None => m.remove(method),
            };
        }
    }
    pub fn set_refuse(&self, refuse: bool) {
        self.refuse_connections.store(refuse, Ordering::SeqCst);
    }
    /// Applies knobs sent as JSON (`sim-ctl_Faults` or the command line) and returns them all.
    pub fn apply(&self, args: &Value) -> Value {
        if args.get("clear").and_then(Value::as_bool) == Some(true) {
            self.latency_ms.store(0, Ordering::SeqCst);
            self.drop_after_requests.store(0, Ordering::SeqCst);
            self.refuse_connections.store(false, Ordering::SeqCst);
            self.reverse_batch.store(0, Ordering::SeqCst);
            self.bad_signatures.store(false, Ordering::SeqCst);
            lock(&self.silent_methods).clear();
            lock(&self.error_methods).clear();
        }
        if let Some(ms) = args.get("latency_ms").and_then(Value::as_u64) {
            self.latency_ms.store(ms, Ordering::SeqCst);
        }
        if let Some(n) = args.get("drop_after").and_then(Value::as_u64) {
            let done = self.requests_seen.load(Ordering::SeqCst);
            self.drop_after_requests
                .store(if n == 0 { 0 } else { done + n }, Ordering::SeqCst);
        }
        if let Some(r) = args.get("refuse").and_then(Value::as_bool) {
            self.set_refuse(r);
        }
        if let Some(b) = args.get("bad_signatures").and_then(Value::as_bool) {
            self.bad_signatures.store(b, Ordering::SeqCst);
        }
        if args.get("swap_card").and_then(Value::as_bool) == Some(true) {
            self.swaps_asked.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(methods) = args.get("silent").and_then(Value::as_array) {
            for m in methods.iter().filter_map(Value::as_str) {
                self.set_silent(m, true);
            }
        }
        if let Some(errors) = args.get("errors").and_then(Value::as_object) {
            for (method, e) in errors {
                let list = match e {
                    Value::Array(a) => a
                        .iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect(),
                    Value::String(s) => vec![s.clone()],
                    _ => continue,
                };
                self.set_error(method, Some(list));
            }
        }
        self.describe()
    }

    /// The knobs as JSON.
    pub fn describe(&self) -> Value {
        let silent: Vec<String> = lock(&self.silent_methods).iter().cloned().collect();
        let errors = json!(*lock(&self.error_methods));
        json!({
            "latency_ms": self.latency_ms.load(Ordering::SeqCst),
            "silent": silent,
            "errors": errors,
            "drop_after_request": self.drop_after_requests.load(Ordering::SeqCst),
            "refuse": self.refuse_connections.load(Ordering::SeqCst),
            "bad_signatures": self.bad_signatures.load(Ordering::SeqCst),
        })
    }

    fn is_silent(&self, method: &str) -> bool {
        lock(&self.silent_methods).contains(method)
    }
    fn error_for(&self, method: &str) -> Option<Vec<String>> {
        lock(&self.error_methods).get(method).cloned()
    }
}

/// Settings of a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Address to listen on, e.g. "127.0.0.1:61232" (port 0 picks one).
    pub listen: String,
    /// The card password it accepts.
    pub password: String,
    /// Where the key and certificates are kept (made on first use); `None`: a new key each start.
    pub key_file: Option<PathBuf>,
    /// The kind of card played: SM2 (default) or RSA.
    pub card: CardKind,
    /// A fresh card whose certificates end this many days from now (negative: expired), for
    /// testing expiry; `None`: ten years. Only when no key file is given.
    pub cert_days: Option<i64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: "127.0.0.1:61232".into(),
            password: "88888888".into(),
            key_file: None,
            card: CardKind::default(),
            cert_days: None,
        }
    }
}

struct Shared {
    options: SimOptions,
    /// The card in the reader (0) and the other one (1, made on the first swap).
    cards: Mutex<Vec<Arc<Card>>>,
    current: AtomicUsize,
    faults: Arc<Faults>,
    /// The last `RECEIVED_KEPT` requests; a deque, because dropping the oldest from a full
    /// `Vec` moved all 10,000 others on every frame.
    received: Mutex<VecDeque<Value>>,
    accepted: AtomicUsize,
    closes: AtomicUsize,
    open: Mutex<Vec<TcpStream>>,
    stopping: AtomicBool,
}

/// A running simulator. Dropping it stops it.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Simulator {
    pub fn start(options: SimOptions) -> io::Result<Simulator> {
        let card = match &options.key_file {
            Some(path) => Card::load_or_create(path, options.card),
            None => Card::generate_valid(options.card, options.cert_days),
        }
        .map_err(io::Error::other)?;
        if card.kind() != options.card {
            return Err(io::Error::other(format!(
                "the simulator's key file holds an {} card, not {}: use --card {} or another file",
                card.kind().name(),
                options.card.name(),
                card.kind().name()
            )));
        }
        let listener = TcpListener::bind(&options.listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            cards: Mutex::new(vec![Arc::new(card)]),
            current: AtomicUsize::new(0),
            faults: Arc::new(Faults::default()),
            received: Mutex::new(VecDeque::new()),
            accepted: AtomicUsize::new(0),
            closes: AtomicUsize::new(0),
            open: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept_thread = std::thread::Builder::new()
            .name("sim-accept".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(Simulator {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Puts the other card in the reader (made on first use: another key, another certificate
    /// number), on the same connections; returns its certificate number.
    pub fn swap_card(&self) -> Result<String, String> {
        self.shared.swap()?;
        Ok(self.cert_no())
    }

    /// Every request frame received so far (passwords as sent: this is the card's view).
    pub fn received(&self) -> Vec<Value> {
        lock(&self.shared.received).iter().cloned().collect()
    }

    /// The signature this simulator gives for `data` (what `cus-sec_SpcSignDataAsPEM` answers).
    pub fn signature_of(&self, data: &str) -> String {
        self.shared.card().sign(data.as_bytes()).unwrap_or_default()
    }

    /// The certificate number it reports.
    pub fn cert_no(&self) -> String {
        self.shared.card().cert_no()
    }

    /// Its signing certificate, DER.
    pub fn sign_cert_der(&self) -> Vec<u8> {
        self.shared.card().sign_cert_der().to_vec()
    }

    /// Connections accepted so far (refused ones included).
    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Close frames received from clients (a clean close, as opposed to a dropped socket).
    pub fn close_frames_received(&self) -> usize {
        self.shared.closes.load(Ordering::SeqCst)
    }

    /// Closes every open connection at once, without a close frame (a crashed client software).
    pub fn drop_connections(&self) {
        {
            for s in lock(&self.shared.open).drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.drop_connections();
        // wake the accept loop
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    /// The card in the reader now.
    fn card(&self) -> Arc<Card> {
        let cards = lock(&self.cards);
        let i = self.current.load(Ordering::SeqCst).min(cards.len() - 1);
        cards[i].clone()
    }

    fn swap(&self) -> Result<(), String> {
        let mut cards = lock(&self.cards);
        if cards.len() < 2 {
            let kind = cards[0].kind();
            cards.push(Arc::new(Card::generate(kind)?));
        }
        let next = 1 - self.current.load(Ordering::SeqCst).min(1);
        self.current.store(next, Ordering::SeqCst);
        log::info!(
            "simulator: swapped the card (now the {} one)",
            ["first", "second"][next]
        );
        Ok(())
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.faults.refuse_connections.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let s = shared.clone();
        let _ = std::thread::Builder::new()
            .name("sim-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &s) {
                    log::debug!("simulator: connection ended: {e}");
                }
            });
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    if let Ok(clone) = stream.try_clone() {
        lock(&shared.open).push(clone);
    }
    let mut ws =
        tungstenite::accept_with_config(stream, Some(crate::ukey::conn::websocket_config()))
            .map_err(|e| e.to_string())?;
    let greeting = json!({"_id": 0, "_method": "open", "_status": "00",
                          "_args": {"Result": true, "Data": ["simulator"], "Error": []}});
    send(&mut ws, &greeting)?;
    let mut batch: Vec<Value> = Vec::new();
    loop {
        let text = match ws.read().map_err(|e| e.to_string())? {
            Message::Text(t) => t.as_str().to_owned(),
            Message::Close(_) => {
                shared.closes.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            _ => continue,
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        remember(shared, &frame);
        if frame.get("_method").and_then(Value::as_str) == Some("sim-ctl_Drop") {
            let _ = ws.get_ref().shutdown(Shutdown::Both);
            return Ok(());
        }
        let n = shared.faults.requests_seen.fetch_add(1, Ordering::SeqCst) + 1;
        let drop_at = shared.faults.drop_after_requests.load(Ordering::SeqCst);
        if drop_at != 0 && n >= drop_at {
            shared.faults.drop_after_requests.store(0, Ordering::SeqCst);
            let _ = ws.get_ref().shutdown(Shutdown::Both);
            return Ok(());
        }
        batch.push(frame);
        let batch_size = shared.faults.reverse_batch.load(Ordering::SeqCst).max(1);
        if batch.len() < batch_size {
            continue;
        }
        for frame in batch.drain(..).rev() {
            answer(&mut ws, shared, &frame)?;
        }
    }
}

fn remember(shared: &Shared, frame: &Value) {
    {
        let mut r = lock(&shared.received);
        if r.len() >= RECEIVED_KEPT {
            r.pop_front();
        }
        r.push_back(frame.clone());
    }
}

fn answer(ws: &mut WebSocket<TcpStream>, shared: &Shared, frame: &Value) -> Result<(), String> {
    let method = frame
        .get("_method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if shared.faults.is_silent(method) {
        return Ok(());
    }
    while shared.faults.swaps_asked.load(Ordering::SeqCst) > 0 {
        shared.faults.swaps_asked.fetch_sub(1, Ordering::SeqCst);
        shared.swap()?;
    }
    let latency = shared.faults.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        std::thread::sleep(Duration::from_millis(latency));
    }
    let args = frame.get("args").cloned().unwrap_or(json!({}));
    let outcome = match shared.faults.error_for(method) {
        Some(errors) => Err(errors),
        None => {
            methods::check_password(&shared.options.password, &args).and_then(|()| match method {
                "sim-ctl_Faults" => Ok(vec![shared.faults.apply(&args).to_string()]),
                _ => methods::call(
                    &shared.card(),
                    method,
                    &args,
                    shared.faults.bad_signatures.load(Ordering::SeqCst),
                ),
            })
        }
    };
    let (result, data, errors) = match outcome {
        Ok(data) => (true, data, Vec::new()),
        Err(errors) => (false, Vec::new(), errors),
    };
    let reply = json!({
        "_id": frame.get("_id").cloned().unwrap_or(Value::Null),
        "_method": method,
        "_status": "00",
        "_args": {"Result": result, "Data": data, "Error": errors},
    });
    send(ws, &reply)
}

fn send(ws: &mut WebSocket<TcpStream>, v: &Value) -> Result<(), String> {
    ws.send(Message::Text(Utf8Bytes::from(v.to_string())))
        .map_err(|e| e.to_string())
}
