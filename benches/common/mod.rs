//! What the benches that run the real binary share: starting it on a config written to a temp
//! folder (its port read from its log), waiting until `/health` says it is ready, and a stand-in
//! card with the proxy in front of it.

// each bench uses part of this module
#![allow(dead_code)]

/// The simulator's card password, as the proxy's config gives it.
pub const PASSWORD: &str = "88888888";

use chinaport_proxy::simulator::{CardKind, SimOptions, Simulator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the proxy on `config` (written to `dir/config.json`) and returns it with the address it
/// listens on. Its log is read on a thread of its own, so that it never blocks on a full pipe.
pub fn start_proxy(config: &Value, dir: &Path) -> (Child, SocketAddr) {
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .arg("-config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the proxy");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("the proxy's log").unwrap();
        if let Some(at) = line.find("listening on http://") {
            let rest = &line[at + "listening on http://".len()..];
            let addr = rest.split_whitespace().next().unwrap();
            break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Waits (20 s at most) until `/health` answers 200 with `must_contain` in its body.
pub fn wait_healthy(addr: SocketAddr, must_contain: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") && out.contains(must_contain) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the proxy did not become healthy (with {must_contain:?} in /health)");
}

/// A stand-in card of `kind` that takes `card_ms` a call, and the proxy on the shipped defaults
/// in front of it (no secret: the callers are the bench), ready once `/health` shows
/// `health_shows`. Their files go to a temp folder named after `name`, returned too.
pub fn card_and_proxy(
    name: &str,
    kind: CardKind,
    card_ms: u64,
    health_shows: &str,
) -> (Simulator, Child, SocketAddr, PathBuf) {
    let dir = std::env::temp_dir().join(format!("bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: Some(dir.join("card.pem")),
        card: kind,
        cert_days: None,
    })
    .expect("simulator");
    sim.faults().set_latency(Duration::from_millis(card_ms));
    let config = json!({
        "server": {"host": "127.0.0.1", "port": "0"},
        "ukey": {"url": sim.url(), "password": PASSWORD, "timeout_ms": 10000},
        "auth": {"allow_unauthenticated": true},
        "log": {"verbose": false}
    });
    let (proxy, addr) = start_proxy(&config, &dir);
    wait_healthy(addr, health_shows);
    (sim, proxy, addr, dir)
}

/// A number from the environment, or `default`.
pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a `/rpc` call was answered with.
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, where the answer had one.
    pub retry_after_s: Option<u64>,
}

/// One keep-alive connection to the proxy, from a chosen loopback address, as a plain HTTP
/// client makes it: one `/rpc` call after another on the same socket.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(from: [u8; 4], to: SocketAddr) -> Option<Conn> {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        socket.bind(&SocketAddr::from((from, 0)).into()).ok()?;
        socket.connect(&to.into()).ok()?;
        let stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        Some(Conn {
            reader: BufReader::new(stream),
        })
    }

    /// One `/rpc` call; `None` when the connection broke before a whole answer came.
    pub fn call(&mut self, method: &str, args: Value) -> Option<Answer> {
        let body = json!({"_method": method, "args": args}).to_string();
        let head = format!(
            "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body.as_bytes()).ok()?;
        let (mut status, mut len, mut retry_after_s) = (0u16, 0usize, None);
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if status == 0 {
                status = l.split_whitespace().nth(1)?.parse().ok()?;
            } else if let Some((n, v)) = l.split_once(':') {
                let v = v.trim();
                if n.eq_ignore_ascii_case("content-length") {
                    len = v.parse().ok()?;
                } else if n.eq_ignore_ascii_case("retry-after") {
                    retry_after_s = Some(v.parse().unwrap_or(1));
                }
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).ok()?;
        Some(Answer {
            status,
            retry_after_s,
        })
    }
}
