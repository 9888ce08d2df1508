//! Test harness: runs the real `chinaport-proxy` binary on a temporary config against the
//! in-crate UKey simulator, captures its log, and speaks raw HTTP/1.1 so that tests can send
//! exactly the bytes they mean (malformed ones included). Every wait is a poll with a deadline.
#![allow(dead_code)]

pub mod fuzz;
pub mod haproxy;
pub mod receiver;
pub mod standin;

use chinaport_proxy::simulator::{CardKind, SimOptions, Simulator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "Pw-7731-secret";

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chinaport-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The simulator's key file shared by all tests (made once; RSA key generation takes a moment).
pub fn shared_key_file() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-simulator-ukey.pem")
}

/// An RSA card: most tests check its signatures with OpenSSL's SHA-1 and xmlsec1.
pub fn simulator() -> Simulator {
    Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: Some(shared_key_file()),
        card: CardKind::Rsa,
        cert_days: None,
    })
    .expect("start simulator")
}

/// An SM2 card, as cards issued since mid-2022 are (and as the simulator plays by default).
pub fn simulator_sm2() -> Simulator {
    Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: Some(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-simulator-ukey-sm2.pem"),
        ),
        card: CardKind::Sm2,
        cert_days: None,
    })
    .expect("start simulator")
}

/// Merges `overlay` into `base` recursively.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// A running proxy process.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    pub dir: TempDir,
}

impl Proxy {
    /// The config every test starts from: port 0 on loopback, the simulator's URL, the test
    /// password, short timeouts.
    pub fn base_config(ukey_url: &str) -> Value {
        json!({
            "server": {"host": "127.0.0.1", "port": "0", "read_timeout_ms": 5000},
            "ukey": {"url": ukey_url, "password": PASSWORD, "timeout_ms": 2000},
            "log": {"verbose": true}
        })
    }

    /// Starts the proxy against `ukey_url` with `overlay` merged into the base config, and waits
    /// until it listens (not until the UKey is connected: see `wait_healthy`).
    pub fn start(ukey_url: &str, overlay: Value) -> Proxy {
        let mut config = Self::base_config(ukey_url);
        merge(&mut config, &overlay);
        Self::start_with_config(&config)
    }

    pub fn start_with_config(config: &Value) -> Proxy {
        Self::start_in(TempDir::new("proxy"), config)
    }

    /// Starts the proxy with its configuration (and so its state files) in `dir`.
    pub fn start_in(dir: TempDir, config: &Value) -> Proxy {
        Self::start_with_env(dir, config, &[])
    }

    /// `start_in`, with these environment variables set for the proxy.
    pub fn start_with_env(dir: TempDir, config: &Value, env: &[(&str, &str)]) -> Proxy {
        Self::start_with_args(dir, config, env, &[])
    }

    /// `start_with_env`, with these command-line arguments before `-config`.
    pub fn start_with_args(
        dir: TempDir,
        config: &Value,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Proxy {
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
            .args(args)
            .arg("-config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .env_remove("GLIBC_TUNABLES")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn proxy");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut proxy = Proxy {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
            dir,
        };
        let port = wait_for(Duration::from_secs(10), "the proxy to listen", || {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("proxy exited with {status}: {}", proxy.log());
            }
            let log = proxy.log();
            let at = log.find("listening on http://")?;
            let rest = &log[at + "listening on http://".len()..];
            let addr = rest.split_whitespace().next()?;
            addr.rsplit(':').next()?.parse::<u16>().ok()
        });
        proxy.addr = SocketAddr::from(([127, 0, 0, 1], port));
        proxy
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_for(timeout, &format!("log line {needle:?}"), || {
            self.log().contains(needle).then_some(())
        });
    }

    /// Waits until `/health` answers 200 (connected and probed).
    pub fn wait_healthy(&self) {
        wait_for(Duration::from_secs(15), "the proxy to be healthy", || {
            (self.get("/health").status == 200).then_some(())
        });
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        request(self.addr, "POST", path, &[], body.as_bytes())
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn rpc(&self, method: &str, args: Value) -> Resp {
        self.post(
            "/rpc",
            &json!({"_method": method, "args": args}).to_string(),
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = &mut self.child;
        wait_for(timeout, "the proxy to exit", || {
            child.try_wait().ok().flatten()
        })
        .code()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) to the process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -s {name} failed");
    }
}

impl Proxy {
    /// Stops the proxy and hands back its folder, to start another in it.
    pub fn stop_keep_dir(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, TempDir(PathBuf::new()))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw_request(addr, &raw)
}

/// Sends raw bytes and parses the response.
pub fn raw_request(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // the server may answer (413, 431) and close before it has read everything we send
    if let Err(e) = s.write_all(raw) {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "send request: {e}"
        );
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out)
        .unwrap_or_else(|| panic!("no HTTP response; got {:?}", String::from_utf8_lossy(&out)))
}

pub fn parse_response(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if let Some(len) = len {
        body.truncate(len);
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// Opens a connection and sends `raw` without reading; for half-open and slow-client tests.
pub fn open_raw(addr: SocketAddr, raw: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(raw).unwrap();
    s
}

/// Reads until EOF or `timeout`; returns what came and whether EOF was seen.
pub fn read_until_closed(s: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (out, true),
        }
    }
    let _ = s.shutdown(Shutdown::Both);
    (out, false)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A request signed with the MD5 scheme at time `ts` (milliseconds).
pub fn signed_at(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    body: &str,
    secret: &str,
    ts: u64,
) -> Resp {
    let path = path_and_query.split('?').next().unwrap();
    let sig = receiver::md5_hex(&format!("{method}{path}{ts}{body}{secret}"));
    let ts = ts.to_string();
    request(
        addr,
        method,
        path_and_query,
        &[("X-Timestamp", &ts), ("X-Signature", &sig)],
        body.as_bytes(),
    )
}

/// A request signed now.
pub fn signed(addr: SocketAddr, method: &str, path: &str, body: &str, secret: &str) -> Resp {
    signed_at(addr, method, path, body, secret, now_ms())
}

/// Asserts a UUID v4 in canonical form.
pub fn assert_uuid_v4(s: &str) {
    let parts: Vec<&str> = s.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "not a UUID: {s}"
    );
    assert!(parts[2].starts_with('4'), "not version 4: {s}");
    assert!(
        matches!(parts[3].chars().next(), Some('8' | '9' | 'a' | 'b')),
        "not RFC 4122 variant: {s}"
    );
}

/// Connects to `addr` from the loopback address `from` (127.0.0.2, 127.0.0.3, …), so that tests
/// can play several hosts.
pub fn connect_from(from: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local = SocketAddr::from((from, 0));
    socket.bind(&local.into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// A keep-alive HTTP/1.1 client on one connection: requests go one after the other and each
/// response is read by its Content-Length, so the connection stays open between them.
pub struct Client {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"), addr)
    }

    pub fn connect_from(from: [u8; 4], addr: SocketAddr) -> Client {
        Client::from_stream(connect_from(from, addr).expect("connect"), addr)
    }

    fn from_stream(stream: TcpStream, addr: SocketAddr) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
            addr,
        }
    }

    /// Sends one request and reads its response; `None` when the connection closed without one.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Resp> {
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        self.reader.get_mut().write_all(&bytes).ok()?;
        self.read_response()
    }

    fn read_response(&mut self) -> Option<Resp> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line).ok()? == 0 {
                return None;
            }
            head.extend_from_slice(&line);
        }
        let mut resp = parse_response(&head)?;
        let len = resp
            .header("Content-Length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).ok()?;
        resp.body = body;
        Some(resp)
    }
}

/// A small valid customs-179 order (the fields customs requires, nothing more).
pub fn order_179(session: &str, upload: bool) -> String {
    json!({"sessionId": session,
      "payExchangeInfoHead": {"guid": "A1", "initalRequest": "r", "initalResponse": "ok",
        "ebpCode": "E", "payCode": "P", "payTransactionId": "T", "totalAmount": 1,
        "currency": "142", "verDept": "3", "payType": "4", "tradingTime": "20250811185359"},
      "payExchangeInfoLists": [{"orderNo": "O", "goodsInfo": [{"gname": "g", "itemLink": "https://x/y"}],
        "recpAccount": "1", "recpName": "n"}],
      "serviceTime": 1756571640000u64, "realTimeDataUpload": upload})
    .to_string()
}

/// Runs the OpenSSL command line in `dir` and returns its standard output (fails the test when
/// it fails).
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A certificate given as base64 DER, as PEM (64-character lines), for openssl and xmlsec1.
pub fn pem_certificate(der_b64: &str) -> String {
    let lines: Vec<&str> = der_b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The simulator's signing certificate, as PEM.
pub fn cert_pem(sim: &Simulator) -> String {
    use base64::Engine;
    pem_certificate(&base64::engine::general_purpose::STANDARD.encode(sim.sign_cert_der()))
}
