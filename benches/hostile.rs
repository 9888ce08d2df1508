//! The HTTP front under hostile load (not a test). `BENCH_MODE` picks what runs:
//! - `hostile`: a call from 127.0.0.1, timed before and while 127.0.0.2 holds 500 half-open
//!   connections (nothing sent, half a head, a head with half a body): issue #25.4 asks that
//!   they delay it by no more than 100 ms. Prints p50 and max of 50 calls each way.
//! - `memory`: the proxy's RSS with N connections each holding a 32 KiB head without its end
//!   (from 16 addresses), then with 64 bodies of 2 MiB pending: the figures of docs/limits.md.
//! - `all` (the default): both.
//!
//! Run: `cargo bench --bench hostile`. `BENCH_CONNECTIONS` sets N for `memory` (default 512).

use chinaport_proxy::simulator::{SimOptions, Simulator};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "88888888";

fn simulator() -> Simulator {
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

fn start_proxy(
    sim: &Simulator,
    dir: &std::path::Path,
    server: serde_json::Value,
) -> (Child, SocketAddr) {
    let config = json!({
        "server": server,
        "ukey": {"url": sim.url(), "password": PASSWORD, "health_interval_s": 3600},
    });
    let path = dir.join("bench-front-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let log_path = dir.join("proxy-front.log");
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

fn connect_from(from: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// One call on a new connection; its status and how long it took.
fn call(addr: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let body = json!({"_method": "cus-sec_SpcGetCertNo", "args": {}}).to_string();
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    (status, started.elapsed())
}

fn summary(mut took: Vec<Duration>) -> (f64, f64) {
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(took[took.len() / 2]), ms(took[took.len() - 1]))
}

fn hostile(sim: &Simulator, dir: &std::path::Path) {
    let (mut child, addr) = start_proxy(sim, dir, json!({"host": "127.0.0.1", "port": "0"}));
    let calls = |what: &str| {
        let took: Vec<Duration> = (0..50)
            .map(|_| {
                let (status, took) = call(addr);
                assert_eq!(status, 200, "{what}");
                took
            })
            .collect();
        summary(took)
    };
    // warm up (and wait until the card is connected)
    let deadline = Instant::now() + Duration::from_secs(15);
    while call(addr).0 != 200 {
        assert!(Instant::now() < deadline, "the proxy never answered 200");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (quiet_p50, quiet_max) = calls("quiet");
    let mut held = Vec::new();
    for i in 0..500 {
        let Ok(mut s) = connect_from([127, 0, 0, 2], addr) else {
            continue;
        };
        let _ = match i % 3 {
            0 => Ok(()),
            1 => s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\n"),
            _ => s.write_all(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"),
        };
        held.push(s);
    }
    let (hostile_p50, hostile_max) = calls("hostile");
    println!("hostile: a call from 127.0.0.1 (50 calls, new connection each)");
    println!("  quiet:                         p50 {quiet_p50:7.2} ms   max {quiet_max:7.2} ms");
    println!(
        "  500 half-open from 127.0.0.2:  p50 {hostile_p50:7.2} ms   max {hostile_max:7.2} ms   (p50 delay {:+.2} ms)",
        hostile_p50 - quiet_p50
    );
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Waits until the RSS stops growing (the proxy has read what was sent).
fn settled_rss(pid: u32) -> u64 {
    let mut last = rss_kb(pid);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = rss_kb(pid);
        if now <= last + 64 {
            return now;
        }
        last = now;
    }
}

fn memory(sim: &Simulator, dir: &std::path::Path) {
    let n: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let (mut child, addr) = start_proxy(
        sim,
        dir,
        json!({"host": "127.0.0.1", "port": "0", "header_timeout_ms": 60000, "body_timeout_ms": 60000,
               "read_timeout_ms": 60000}),
    );
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    let base = settled_rss(pid);
    // heads of almost 32 KiB (the most one may be) without their end, 32 per address (the
    // pending limit)
    let line = format!("X-Filler: {}\r\n", "a".repeat(7900));
    let head = format!("GET /health HTTP/1.1\r\nHost: x\r\n{}", line.repeat(4));
    assert!(head.len() < 32 * 1024);
    let mut held = Vec::new();
    for i in 0..n {
        let from = [127, 0, 1, 1 + (i / 32) as u8];
        if let Ok(mut s) = connect_from(from, addr) {
            let _ = s.write_all(head.as_bytes());
            held.push(s);
        }
    }
    let heads = settled_rss(pid);
    drop(held);
    std::thread::sleep(Duration::from_secs(1));
    let after_heads = settled_rss(pid);
    // 64 bodies of 2 MiB, all sent but the last byte
    let body = vec![b'x'; 2 * 1024 * 1024 - 1];
    let mut held = Vec::new();
    for i in 0..64 {
        let from = [127, 0, 2, 1 + (i / 32) as u8];
        if let Ok(mut s) = connect_from(from, addr) {
            let _ = write!(
                s,
                "POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len() + 1
            );
            let _ = s.write_all(&body);
            held.push(s);
        }
    }
    let bodies = settled_rss(pid);
    println!("memory: the proxy's RSS (VmRSS)");
    println!("  idle:                                   {:8} KB", base);
    println!(
        "  {} connections, {} B head each:  {:8} KB   ({:.1} KB per connection)",
        held.len().max(n),
        head.len(),
        heads,
        (heads.saturating_sub(base)) as f64 / n as f64
    );
    println!(
        "  after they closed:                      {:8} KB",
        after_heads
    );
    println!(
        "  64 pending bodies of 2 MiB:             {:8} KB   ({:.0} KB per body)",
        bodies,
        (bodies.saturating_sub(after_heads)) as f64 / 64.0
    );
    drop(held);
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "all".into());
    let sim = simulator();
    let dir = std::env::temp_dir().join(format!("chinaport-bench-front-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if mode == "hostile" || mode == "all" {
        hostile(&sim, &dir);
    }
    if mode == "memory" || mode == "all" {
        memory(&sim, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
