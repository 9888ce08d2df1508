//! A real webhook receiver on 127.0.0.1: records every event, verifies its MD5 signature the way
//! the README tells receivers to, and can be made slow, failing (5xx/4xx) or down (not listening),
//! strict (401 to a request whose signature does not verify, as a careful receiver answers), with
//! its clock off by some amount, or scripted to answer a list of statuses first.

use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: Value,
    pub request_id: Option<String>,
    /// The signature verified (or no secret was expected and none was sent).
    pub signature_ok: bool,
    /// Every header, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as it came.
    pub raw: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request as it came, whatever was answered.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// It carried an X-Signature header.
    pub signed: bool,
    pub signature_ok: bool,
    pub status: u16,
    pub seq: Option<u64>,
    /// The sender's address and port: one per TCP connection.
    pub peer: Option<SocketAddr>,
}

struct State {
    events: Mutex<Vec<Received>>,
    attempts: Mutex<Vec<Attempt>>,
    script: Mutex<VecDeque<u16>>,
    strict: AtomicBool,
    clock_offset_ms: AtomicI64,
    /// Status answered (200 by default).
    status: AtomicU16,
    delay_ms: AtomicU64,
    reply: Mutex<String>,
    secret: String,
}

pub struct Receiver {
    state: Arc<State>,
    server: Option<Arc<tiny_http_cp::Server>>,
    pub addr: SocketAddr,
}

impl Receiver {
    pub fn start(secret: &str) -> Receiver {
        let state = Arc::new(State {
            events: Mutex::new(Vec::new()),
            attempts: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            strict: AtomicBool::new(false),
            clock_offset_ms: AtomicI64::new(0),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            reply: Mutex::new("{}".into()),
            secret: secret.to_string(),
        });
        let mut r = Receiver {
            state,
            server: None,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        r.serve(tiny_http_cp::Server::http("127.0.0.1:0").expect("receiver listens"));
        r
    }

    fn serve(&mut self, server: tiny_http_cp::Server) {
        let server = Arc::new(server);
        self.addr = server.server_addr().to_ip().unwrap();
        for _ in 0..4 {
            let server = server.clone();
            let state = self.state.clone();
            std::thread::spawn(move || {
                while let Ok(mut rq) = server.recv() {
                    let mut body = String::new();
                    let _ = rq.as_reader().read_to_string(&mut body);
                    let header = |n: &'static str| {
                        rq.headers()
                            .iter()
                            .find(|h| h.field.equiv(n))
                            .map(|h| h.value.as_str().to_string())
                    };
                    let path = rq.url().split('?').next().unwrap_or("").to_string();
                    let signature_ok = verify(
                        &state.secret,
                        &path,
                        header("X-Timestamp"),
                        header("X-Signature"),
                        &body,
                        state.clock_offset_ms.load(Ordering::SeqCst),
                    );
                    let delay = state.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        std::thread::sleep(Duration::from_millis(delay));
                    }
                    let scripted = state.script.lock().unwrap().pop_front();
                    let status = if state.strict.load(Ordering::SeqCst) && !signature_ok {
                        401
                    } else {
                        scripted.unwrap_or_else(|| state.status.load(Ordering::SeqCst))
                    };
                    state.attempts.lock().unwrap().push(Attempt {
                        signed: header("X-Signature").is_some(),
                        signature_ok,
                        status,
                        seq: header("X-Webhook-Seq").and_then(|s| s.parse().ok()),
                        peer: rq.remote_addr().copied(),
                    });
                    if status == 200 {
                        let headers = rq
                            .headers()
                            .iter()
                            .map(|h| {
                                (
                                    h.field.as_str().as_str().to_ascii_lowercase(),
                                    h.value.as_str().to_string(),
                                )
                            })
                            .collect();
                        state.events.lock().unwrap().push(Received {
                            headers,
                            raw: body.clone(),
                            path,
                            body: serde_json::from_str(&body).unwrap_or(Value::Null),
                            request_id: header("X-Request-ID"),
                            signature_ok,
                        });
                    }
                    let reply = state.reply.lock().unwrap().clone();
                    let _ = rq.respond(
                        tiny_http_cp::Response::from_string(reply).with_status_code(status),
                    );
                }
            });
        }
        self.server = Some(server);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers these statuses to the next requests, in turn, then `set_status`'s.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    /// Answers 401 to every request whose signature does not verify (and records only the rest).
    pub fn set_strict(&self, strict: bool) {
        self.state.strict.store(strict, Ordering::SeqCst);
    }

    /// The receiver's clock runs this far ahead of the proxy's (for the 3 s window).
    pub fn set_clock_offset(&self, ms: i64) {
        self.state.clock_offset_ms.store(ms, Ordering::SeqCst);
    }

    /// Every request received, whatever it was answered.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.state.attempts.lock().unwrap().clone()
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// The body every request is answered with (recorded only when the status is 200).
    pub fn set_reply(&self, body: &str) {
        *self.state.reply.lock().unwrap() = body.to_string();
    }

    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Stops listening (connections are refused) until `up`.
    pub fn down(&mut self) {
        if let Some(s) = self.server.take() {
            for _ in 0..4 {
                s.unblock();
            }
        }
        // the accept thread frees the port once the last reference is dropped
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(self.addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "receiver did not go down"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let server = loop {
            match tiny_http_cp::Server::http(self.addr) {
                Ok(s) => break s,
                Err(_) => {
                    assert!(std::time::Instant::now() < deadline, "port not free again");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        self.serve(server);
    }

    pub fn events(&self) -> Vec<Received> {
        self.state.events.lock().unwrap().clone()
    }

    /// Events whose body has `"event": kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<Received> {
        self.events()
            .into_iter()
            .filter(|e| e.body["event"] == kind)
            .collect()
    }
}

fn verify(
    secret: &str,
    path: &str,
    timestamp: Option<String>,
    signature: Option<String>,
    body: &str,
    clock_offset_ms: i64,
) -> bool {
    if secret.is_empty() {
        return signature.is_none();
    }
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i128
        + clock_offset_ms as i128;
    let Ok(t) = ts.parse::<i128>() else {
        return false;
    };
    if (now - t).abs() > 3000 {
        return false;
    }
    sig == md5_hex(&format!("POST{path}{ts}{body}{secret}"))
}

pub fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
