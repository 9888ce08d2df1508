//! Load benchmark (not a test). `BENCH_MODE` picks what runs:
//! - `zero`: the proxy binary against a zero-latency UKey simulator, at 1, 16 and 64 concurrent
//!   keep-alive HTTP clients, next to the same load sent straight over one WebSocket. Prints
//!   requests/s, p50/p99 latency and the proxy's peak RSS, and a floor: a server of the proxy's
//!   shape (a thread per connection, one card thread, the same reply slot) with none of its work.
//! - `card`: a realistic card (the simulator answering each call after 150 ms, one at a time) at
//!   64 and 128 clients, next to one direct WebSocket client calling it back to back, which is
//!   the physical limit. Prints card utilisation (proxy ÷ direct), p50/p99/max latency and 503s.
//! - `all` (the default): `zero`, then `card`.
//! - `floor`: the floor alone, so that its threads' CPU can be read from `/proc`.
//!
//! Run: `cargo bench --bench load` (or `scripts/bench.sh`). `BENCH_SECONDS` sets each
//! zero-latency (and floor) run's length, `BENCH_CLIENTS` their client counts (comma-separated,
//! default `1,16,64`), `BENCH_CARD_SECONDS` each realistic-card run's (default 15).

use chinaport_proxy::simulator::{SimOptions, Simulator};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::{Message, Utf8Bytes};

const PASSWORD: &str = "88888888";

struct Stats {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn stats(mut lat: Vec<Duration>, elapsed: Duration) -> Stats {
    lat.sort();
    let pick = |q: f64| {
        let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat.get(i)
            .map(|d| d.as_secs_f64() * 1e6)
            .unwrap_or(f64::NAN)
    };
    Stats {
        rps: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pick(0.50),
        p99_us: pick(0.99),
    }
}

const ROUNDS: usize = 3;

/// The run with the median throughput, and the medians of its latency figures.
fn median(mut runs: Vec<Stats>) -> Stats {
    let mid = runs.len() / 2;
    let pick = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[mid]
    };
    let mut rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
    let mut p50: Vec<f64> = runs.iter().map(|r| r.p50_us).collect();
    let mut p99: Vec<f64> = runs.iter().map(|r| r.p99_us).collect();
    let out = Stats {
        rps: pick(&mut rps),
        p50_us: pick(&mut p50),
        p99_us: pick(&mut p99),
    };
    runs.clear();
    out
}

/// Runs `clients` threads, each calling `one` in a loop for `secs`; returns latencies.
fn drive<C: Send + 'static>(
    clients: usize,
    secs: f64,
    make: impl Fn(usize) -> C,
    one: fn(&mut C, usize) -> bool,
) -> Stats {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let mut client = make(i);
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut n = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    assert!(one(&mut client, n), "a request failed");
                    lat.push(t.elapsed());
                    n += 1;
                }
                lat
            })
        })
        .collect();
    let lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect();
    stats(lat, start.elapsed())
}

/// A keep-alive HTTP/1.1 client for POST /rpc.
struct HttpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    addr: SocketAddr,
}

impl HttpClient {
    fn new(addr: SocketAddr) -> HttpClient {
        let s = TcpStream::connect(addr).expect("connect proxy");
        s.set_nodelay(true).unwrap();
        HttpClient {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            addr,
        }
    }

    /// A signing call; the status and `Retry-After`, `None` when the connection failed.
    fn call_status(&mut self) -> Option<(u16, Option<u64>)> {
        let body = json!({"_method": "cus-sec_SpcSignDataAsPEM", "args": {"inData": "month-end"}})
            .to_string();
        let req = format!(
            "POST /rpc HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.writer.write_all(req.as_bytes()).ok()?;
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line).ok()? == 0 {
            return None;
        }
        let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
        let head = read_head(&mut self.reader)?;
        let mut body = vec![0; head.content_length];
        self.reader.read_exact(&mut body).ok()?;
        Some((status, head.retry_after))
    }

    fn call(&mut self, n: usize) -> bool {
        let body = json!({"_method": "cus-sec_SpcGetCertNo", "args": {"n": n}}).to_string();
        let req = format!(
            "POST /rpc HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        if self.writer.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line).is_err() {
            return false;
        }
        let Some(head) = read_head(&mut self.reader) else {
            return false;
        };
        let mut body = vec![0; head.content_length];
        self.reader.read_exact(&mut body).is_ok() && status_line.contains(" 200 ")
    }
}

/// What the benchmark reads of a message head's header lines.
struct Head {
    content_length: usize,
    retry_after: Option<u64>,
}

/// Reads header lines up to the blank line that ends them (the first line already read);
/// `None` when the connection ended or failed first.
fn read_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut head = Head {
        content_length: 0,
        retry_after: None,
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(head);
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                head.content_length = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("retry-after") {
                head.retry_after = v.trim().parse().ok();
            }
        }
    }
}

type SharedWs = Arc<Mutex<(tungstenite::WebSocket<TcpStream>, u64)>>;

/// Straight over one WebSocket: callers take turns on it, as the card takes one call at a time.
fn direct_call(ws: &mut SharedWs, _n: usize) -> bool {
    let Ok(mut guard) = ws.lock() else {
        return false;
    };
    let (socket, next_id) = &mut *guard;
    *next_id += 1;
    let id = *next_id;
    let frame = json!({"_method": "cus-sec_SpcGetCertNo", "_id": id, "args": {"passwd": PASSWORD}});
    if socket
        .send(Message::Text(Utf8Bytes::from(frame.to_string())))
        .is_err()
    {
        return false;
    }
    loop {
        match socket.read() {
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                if v["_id"].as_u64() == Some(id) {
                    return v["_args"]["Result"] == true;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

fn start_proxy(
    sim: &Simulator,
    dir: &std::path::Path,
    ukey: serde_json::Value,
) -> (Child, SocketAddr) {
    let mut ukey_config =
        json!({"url": sim.url(), "password": PASSWORD, "health_interval_s": 3600});
    if let (Some(base), Some(extra)) = (ukey_config.as_object_mut(), ukey.as_object()) {
        base.extend(extra.clone());
    }
    // every benchmark client comes from 127.0.0.1: lift the per-address cap
    let config = json!({
        "server": {"host": "127.0.0.1", "port": "0", "max_connections_per_ip": 1024},
        "ukey": ukey_config,
    });
    let path = dir.join("bench-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    // The log goes to a file, as on the customs PC (Task Scheduler gives no console); a pipe
    // drained by a thread of this process would compete with the clients for the CPU.
    let log_path = dir.join("proxy.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .arg("-config")
        .arg(&path)
        .env("RUST_LOG", "chinaport_proxy=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn proxy");
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr: SocketAddr = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1)
            && let Some(addr) = rest.split_whitespace().next()
        {
            break addr.parse().expect("address");
        }
        assert!(Instant::now() < deadline, "proxy did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    (child, addr)
}

fn rss_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The zero-latency client counts: `BENCH_CLIENTS` (comma-separated), default 1, 16 and 64.
fn bench_clients() -> Vec<usize> {
    let parsed: Vec<usize> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if parsed.is_empty() {
        vec![1, 16, 64]
    } else {
        parsed
    }
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "all".into());
    if mode == "zero" || mode == "all" {
        zero_latency(env_f64("BENCH_SECONDS", 2.0));
    }
    if mode == "floor" {
        // the floor alone, so that its threads' CPU per call can be read from /proc
        let sim = bench_simulator();
        let floor = start_floor(&sim);
        for clients in bench_clients() {
            let run = drive(
                clients,
                env_f64("BENCH_SECONDS", 2.0),
                |_| HttpClient::new(floor),
                HttpClient::call,
            );
            println!("floor alone, {clients} clients: {:.0} rps", run.rps);
        }
    }
    if mode == "card" || mode == "all" {
        realistic_card(env_f64("BENCH_CARD_SECONDS", 15.0));
    }
}

fn bench_simulator() -> Simulator {
    Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: Some(
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-simulator-ukey.pem"),
        ),
        card: chinaport_proxy::simulator::CardKind::Rsa,
        cert_days: None,
    })
    .expect("simulator")
}

/// A WebSocket straight to the simulator, with the proxy's own settings (`conn::websocket_config`),
/// so that the direct side and the proxy read alike.
fn direct_socket(sim: &Simulator) -> tungstenite::WebSocket<TcpStream> {
    let tcp = TcpStream::connect(sim.addr()).expect("connect to the simulator");
    tcp.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client::client_with_config(
        sim.url(),
        tcp,
        Some(chinaport_proxy::ukey::conn::websocket_config()),
    )
    .expect("direct websocket");
    ws
}

/// One direct client calling `sim` back to back for `secs`: the most a card can do.
fn direct_serial(sim: &Simulator, secs: f64) -> usize {
    let ws = direct_socket(sim);
    let mut ws: SharedWs = Arc::new(Mutex::new((ws, 1_000_000)));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut n = 0;
    while Instant::now() < end {
        assert!(direct_call(&mut ws, n), "a direct call failed");
        n += 1;
    }
    n
}

/// What one realistic-card client saw.
#[derive(Default)]
struct CardRun {
    ok: Vec<Duration>,
    shed: usize,
    other: usize,
}

/// `clients` keep-alive clients calling for `secs`; a 503 is retried after its `Retry-After`,
/// as a well-behaved ERP would.
fn card_clients(addr: SocketAddr, clients: usize, secs: f64) -> CardRun {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = HttpClient::new(addr);
                let mut run = CardRun::default();
                while Instant::now() < end {
                    let t = Instant::now();
                    match c.call_status() {
                        // only what was answered within the run counts against the direct client
                        Some((200, _)) if Instant::now() <= end => run.ok.push(t.elapsed()),
                        Some((200, _)) => {}
                        Some((503, retry)) => {
                            run.shed += 1;
                            let wait = Duration::from_secs(retry.unwrap_or(1));
                            std::thread::sleep(
                                wait.min(end.saturating_duration_since(Instant::now())),
                            );
                        }
                        _ => {
                            run.other += 1;
                            c = HttpClient::new(addr);
                        }
                    }
                }
                run
            })
        })
        .collect();
    let mut all = CardRun::default();
    for h in handles {
        let r = h.join().expect("client");
        all.ok.extend(r.ok);
        all.shed += r.shed;
        all.other += r.other;
    }
    all.ok.sort();
    all
}

fn realistic_card(secs: f64) {
    const CARD_MS: u64 = 150;
    let sim = bench_simulator();
    sim.faults().set_latency(Duration::from_millis(CARD_MS));
    let dir = std::env::temp_dir().join(format!("chinaport-bench-card-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "\nrealistic card: {CARD_MS} ms per call, one at a time; {secs} s per run; 503s retried after Retry-After"
    );
    let direct = direct_serial(&sim, secs);
    println!("direct client back to back (the physical limit): {direct} calls");
    println!(
        "{:>8} {:>10} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>7}",
        "clients", "budget", "200s", "util", "503s", "p50 ms", "p99 ms", "max ms", "dropped"
    );
    // 64 clients with a generous budget: nobody shed, so the longest wait shows fairness;
    // 128 clients on the default 10 s budget: the month-end batch
    for (clients, budget_ms) in [(64usize, 30_000u64), (128, 10_000)] {
        let (mut child, addr) = start_proxy(&sim, &dir, json!({"timeout_ms": budget_ms}));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !HttpClient::new(addr).call(0) {
            assert!(
                Instant::now() < deadline,
                "proxy never reached the simulator"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let run = card_clients(addr, clients, secs);
        let pick = |q: f64| {
            let i = ((run.ok.len() as f64 - 1.0) * q).round() as usize;
            run.ok
                .get(i)
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(f64::NAN)
        };
        println!(
            "{clients:>8} {:>8} s {:>8} {:>7.1}% {:>7} {:>9.0} {:>9.0} {:>9.0} {:>7}",
            budget_ms / 1000,
            run.ok.len(),
            100.0 * run.ok.len() as f64 / direct as f64,
            run.shed,
            pick(0.5),
            pick(0.99),
            pick(1.0),
            run.other
        );
        if clients == 64 {
            println!(
                "         fairness: longest wait {:.0} ms, bound 1.2 x 64 x {CARD_MS} ms = {:.0} ms",
                pick(1.0),
                1.2 * 64.0 * CARD_MS as f64
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn zero_latency(secs: f64) {
    let sim = bench_simulator();
    let dir = std::env::temp_dir().join(format!("chinaport-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut child, addr) = start_proxy(&sim, &dir, json!({}));
    // wait until the proxy reaches the card
    let deadline = Instant::now() + Duration::from_secs(10);
    while !HttpClient::new(addr).call(0) {
        assert!(
            Instant::now() < deadline,
            "proxy never reached the simulator"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let ws = direct_socket(&sim);
    let ws: SharedWs = Arc::new(Mutex::new((ws, 1000)));
    // skip the greeting by doing one call
    assert!(direct_call(&mut ws.clone(), 0));
    let floor = start_floor(&sim);

    // The reference: one direct client calling the simulator back to back, one call at a time,
    // as `ukey.max_in_flight = 1` makes the proxy do. That is the most the card path can carry.
    let serial = median(
        (0..ROUNDS)
            .map(|_| {
                let w = ws.clone();
                drive(1, secs, move |_| w.clone(), direct_call)
            })
            .collect(),
    );
    println!(
        "chinaport-proxy load benchmark ({secs} s per run, median of {ROUNDS} alternating rounds, zero-latency simulator)"
    );
    println!(
        "reference: one direct client back to back {:.0} rps, p50 {:.1} us, p99 {:.1} us",
        serial.rps, serial.p50_us, serial.p99_us
    );
    println!(
        "{:>8} {:>12} {:>12} {:>14} {:>10} {:>10} {:>12}",
        "clients",
        "proxy rps",
        "of serial",
        "shared-ws rps",
        "p p50 us",
        "p p99 us",
        "of shared-ws"
    );
    let mut peak_rss = 0;
    for clients in bench_clients() {
        // alternate the two sides over ROUNDS rounds and take medians: on a small machine the
        // client threads compete with what they measure, and one noisy run says little.
        // "shared-ws": N threads taking turns on one direct WebSocket (kept for comparison).
        let mut directs = Vec::new();
        let mut proxies = Vec::new();
        let mut floors = Vec::new();
        for _ in 0..ROUNDS {
            floors.push(drive(
                clients,
                secs,
                |_| HttpClient::new(floor),
                HttpClient::call,
            ));
            let w = ws.clone();
            directs.push(drive(clients, secs, move |_| w.clone(), direct_call));
            proxies.push(drive(
                clients,
                secs,
                |_| HttpClient::new(addr),
                HttpClient::call,
            ));
        }
        let direct = median(directs);
        let proxy = median(proxies);
        let floor_run = median(floors);
        peak_rss = peak_rss.max(rss_kb(child.id(), "VmRSS:").unwrap_or(0));
        println!(
            "{clients:>8} {:>12.0} {:>11.1}% {:>14.0} {:>10.1} {:>10.1} {:>11.1}%",
            proxy.rps,
            100.0 * proxy.rps / serial.rps,
            direct.rps,
            proxy.p50_us,
            proxy.p99_us,
            100.0 * proxy.rps / direct.rps,
        );
        println!(
            "         floor (the same shape, no work in it): {:.0} rps = {:.1}% of serial; the proxy reaches {:.1}% of the floor",
            floor_run.rps,
            100.0 * floor_run.rps / serial.rps,
            100.0 * proxy.rps / floor_run.rps,
        );
        if clients == 1 {
            println!(
                "         added latency at 1 client: p50 {:.3} ms, p99 {:.3} ms",
                (proxy.p50_us - serial.p50_us) / 1000.0,
                (proxy.p99_us - serial.p99_us) / 1000.0
            );
        }
    }
    let hwm = rss_kb(child.id(), "VmHWM:").unwrap_or(0);
    let mb = |field: &str| rss_kb(child.id(), field).unwrap_or(0) as f64 / 1024.0;
    println!(
        "proxy RSS: {:.1} MB at most after a run, peak (VmHWM) {:.1} MB, target 8 MB",
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "           now {:.1} MB: {:.1} MB anonymous (heap, stacks), {:.1} MB of mapped files (the exe, libc), {} threads",
        mb("VmRSS:"),
        mb("RssAnon:"),
        mb("RssFile:"),
        rss_kb(child.id(), "Threads:").unwrap_or(0)
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The design's floor: the proxy's shape with none of its work. A thread per keep-alive
/// connection reads a request head and body, hands the call over a crossbeam channel to one
/// card thread that owns the WebSocket, waits for the reply in the proxy's own reply slot
/// (`ukey::oneshot`), and writes a fixed-header response. No routing, JSON, password,
/// logging, metrics, UUID or audit. It shows how much of a gap to the serial reference is the
/// shape (threads, hand-offs, two sockets per call) and how much is the proxy's work.
fn start_floor(sim: &Simulator) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("floor listener");
    let addr = listener.local_addr().expect("floor address");
    let (jobs, queue) = crossbeam_channel::bounded::<FloorJob>(1024);
    let ws = direct_socket(sim);
    floor_thread("floor-card", move || {
        let mut ws: SharedWs = Arc::new(Mutex::new((ws, 2_000_000)));
        assert!(direct_call(&mut ws, 0), "floor: the greeting call failed");
        for reply in queue {
            let ok = direct_call(&mut ws, 0);
            reply.send(ok.then(|| r#"{"_args":{"Result":true}}"#.to_string()));
        }
    });
    floor_thread("floor-accept", move || {
        for stream in listener.incoming().flatten() {
            let jobs = jobs.clone();
            floor_thread("floor-conn", move || floor_connection(stream, jobs));
        }
    });
    addr
}

/// What a floor connection hands its card thread: where the answer goes.
type FloorJob = chinaport_proxy::ukey::oneshot::Sender<Option<String>>;

/// A named thread, so that the floor's CPU can be told apart in `/proc/<pid>/task/*/stat`.
fn floor_thread(name: &str, f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("floor thread");
}

/// One keep-alive connection of the floor server: head, body, call, response, until EOF.
fn floor_connection(stream: TcpStream, jobs: crossbeam_channel::Sender<FloorJob>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if !matches!(reader.read_line(&mut request_line), Ok(n) if n > 0) {
            return;
        }
        let Some(head) = read_head(&mut reader) else {
            return;
        };
        let mut body = vec![0; head.content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (reply, answer) = chinaport_proxy::ukey::oneshot::slot();
        if jobs.send(reply).is_err() {
            return;
        }
        let Ok(Some(text)) = answer.recv_deadline(Instant::now() + Duration::from_secs(10)) else {
            return;
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
