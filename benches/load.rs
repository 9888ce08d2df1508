//! Load benchmark (not a test): the proxy binary against a zero-latency UKey simulator, at 1, 16
//! and 64 concurrent keep-alive HTTP clients, next to the same load sent straight over one
//! WebSocket. Prints requests/s, p50/p99 latency and the proxy's peak RSS.
//!
//! Run: `cargo bench --bench load` (or `scripts/bench.sh`). `BENCH_SECONDS` sets each run's length.

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
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).is_err() || line.is_empty() {
                return false;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).is_ok() && status_line.contains(" 200 ")
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

fn start_proxy(sim: &Simulator, dir: &std::path::Path) -> (Child, SocketAddr) {
    let config = json!({
        "server": {"host": "127.0.0.1", "port": "0", "workers": 16},
        "ukey": {"url": sim.url(), "password": PASSWORD, "health_interval_s": 3600},
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

fn main() {
    // `cargo bench` passes --bench; nothing else to parse
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let sim = Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: Some(
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-simulator-ukey.pem"),
        ),
    })
    .expect("simulator");
    let dir = std::env::temp_dir().join(format!("chinaport-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut child, addr) = start_proxy(&sim, &dir);
    // wait until the proxy reaches the card
    let deadline = Instant::now() + Duration::from_secs(10);
    while !HttpClient::new(addr).call(0) {
        assert!(
            Instant::now() < deadline,
            "proxy never reached the simulator"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let tcp = TcpStream::connect(sim.addr()).expect("direct tcp");
    tcp.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client::client(sim.url(), tcp).expect("direct websocket");
    let ws: SharedWs = Arc::new(Mutex::new((ws, 1000)));
    // skip the greeting by doing one call
    assert!(direct_call(&mut ws.clone(), 0));

    println!(
        "chinaport-proxy load benchmark ({secs} s per run, median of {ROUNDS} alternating rounds, zero-latency simulator)"
    );
    println!(
        "{:>8} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "clients",
        "direct rps",
        "proxy rps",
        "ratio",
        "d p50 us",
        "p p50 us",
        "p p99 us",
        "d p99 us"
    );
    let mut peak_rss = 0;
    for clients in [1usize, 16, 64] {
        // alternate the two sides over ROUNDS rounds and take medians: on a small machine the
        // client threads compete with what they measure, and one noisy run says little
        let mut directs = Vec::new();
        let mut proxies = Vec::new();
        for _ in 0..ROUNDS {
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
        peak_rss = peak_rss.max(rss_kb(child.id(), "VmRSS:").unwrap_or(0));
        println!(
            "{clients:>8} {:>12.0} {:>12.0} {:>9.1}% {:>10.1} {:>10.1} {:>10.1} {:>9.1}",
            direct.rps,
            proxy.rps,
            100.0 * proxy.rps / direct.rps,
            direct.p50_us,
            proxy.p50_us,
            proxy.p99_us,
            direct.p99_us,
        );
        if clients == 1 {
            println!(
                "         added latency at 1 client: p50 {:.3} ms, p99 {:.3} ms",
                (proxy.p50_us - direct.p50_us) / 1000.0,
                (proxy.p99_us - direct.p99_us) / 1000.0
            );
        }
    }
    let hwm = rss_kb(child.id(), "VmHWM:").unwrap_or(0);
    println!(
        "proxy RSS: {:.1} MB at the end of the 64-client run, peak (VmHWM) {:.1} MB",
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
