//! Fleet benchmark (issue 26, not a test): simulator cards of 150 ms, each behind its own proxy,
//! and the real HAProxy in front with the shipped configuration (tests/common/haproxy.rs derives
//! it). 64 keep-alive callers send `X-Ent-Code` calls for one enterprise; prints calls/s through
//! HAProxy for 1, 2 and 4 cards next to N x one card's own rate (one caller back to back on one
//! proxy, no HAProxy), the ratio, p50/p99/max latency and every answer that was not 200.
//!
//! Run: `cargo bench --bench fleet`. `BENCH_SECONDS` (default 10) is each measured window,
//! after `BENCH_WARMUP_SECONDS` (default 3) to fill the queue; `BENCH_CLIENTS` (default 64).

#[path = "../tests/common/mod.rs"]
mod common;

use chinaport_proxy::simulator::{CardKind, SimOptions, Simulator};
use common::haproxy::{self, Card, HaProxy};
use common::{Client, PASSWORD, Proxy, TempDir};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ENT: &str = "3506960ABA";
const CARD_MS: u64 = 150;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (finished at, latency, status) of every call.
type Log = Arc<Mutex<Vec<(Instant, Duration, u16)>>>;

/// `clients` callers on `addr` until `run` has passed; returns every call's record.
fn load(
    addr: SocketAddr,
    clients: u64,
    headers: &[(&str, &str)],
    run: Duration,
) -> Vec<(Instant, Duration, u16)> {
    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let body = json!({"_method": "cus-sec_SpcSignDataAsPEM", "args": {"inData": "fleet bench"}})
        .to_string();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (log, stop, body, headers) =
                (log.clone(), stop.clone(), body.clone(), headers.clone());
            std::thread::spawn(move || {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let mut client = Client::connect(addr);
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let status = match client.send("POST", "/rpc", &h, body.as_bytes()) {
                        Some(r) => r.status,
                        None => {
                            client = Client::connect(addr);
                            0
                        }
                    };
                    log.lock()
                        .unwrap()
                        .push((Instant::now(), t.elapsed(), status));
                }
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    Arc::try_unwrap(log).unwrap().into_inner().unwrap()
}

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    not_ok: usize,
}

/// Calls that finished inside [from, from + window]: rate and latencies; answers not 200 over
/// the whole run.
fn figures(log: &[(Instant, Duration, u16)], from: Instant, window: Duration) -> Figures {
    let mut lat: Vec<Duration> = log
        .iter()
        .filter(|(at, _, _)| *at >= from && *at <= from + window)
        .map(|(_, l, _)| *l)
        .collect();
    lat.sort();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Figures {
        rate: lat.len() as f64 / window.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
        max: log.iter().map(|(_, l, _)| *l).max().unwrap_or_default(),
        not_ok: log.iter().filter(|(_, _, s)| *s != 200).count(),
    }
}

fn main() {
    if haproxy::binary().is_none() {
        eprintln!("SKIPPED benches/fleet.rs: haproxy is not installed (apt-get install haproxy)");
        return;
    }
    let window = Duration::from_secs(env_u64("BENCH_SECONDS", 10));
    let warmup = Duration::from_secs(env_u64("BENCH_WARMUP_SECONDS", 3));
    let clients = env_u64("BENCH_CLIENTS", 64);
    let keys = TempDir::new("fleet-bench");
    let members: Vec<(Simulator, Proxy)> = (0..4)
        .map(|i| {
            let sim = Simulator::start(SimOptions {
                listen: "127.0.0.1:0".into(),
                password: PASSWORD.into(),
                key_file: Some(
                    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                        .join(format!("fleet-bench-{i}.pem")),
                ),
                card: CardKind::Rsa,
                cert_days: None,
            })
            .expect("simulator");
            // budget: the card's own deadline; HAProxy's timeout queue comes on top
            let proxy = Proxy::start(
                &sim.url(),
                json!({"ukey": {"timeout_ms": 10000}, "log": {"verbose": false}}),
            );
            proxy.wait_healthy();
            sim.faults().set_latency(Duration::from_millis(CARD_MS));
            (sim, proxy)
        })
        .collect();

    // one card's own rate: one caller back to back, straight to its proxy
    let start = Instant::now();
    let log = load(
        members[0].1.addr,
        1,
        &[],
        warmup.min(Duration::from_secs(1)) + window,
    );
    let own = figures(&log, start + warmup.min(Duration::from_secs(1)), window);
    println!(
        "one card ({CARD_MS} ms), one caller, no HAProxy: {:.2} calls/s, p50 {:?}",
        own.rate, own.p50
    );
    println!(
        "{:>5} {:>8} {:>10} {:>12} {:>7} {:>9} {:>9} {:>9} {:>7}",
        "cards", "callers", "calls/s", "N x one", "ratio", "p50", "p99", "max", "not 200"
    );
    for n in [1usize, 2, 4] {
        let dir = TempDir::new("fleet-bench-haproxy");
        let cards: Vec<Card> = members[..n]
            .iter()
            .enumerate()
            .map(|(i, (sim, proxy))| Card {
                pool: "pool_A".into(),
                name: format!("A-card{}", i + 1),
                addr: proxy.addr,
                cert_no: sim.cert_no(),
            })
            .collect();
        let h = HaProxy::start(&cards, &[(ENT, "pool_A")], dir.path(), 2000);
        let start = Instant::now();
        let log = load(h.front, clients, &[("X-Ent-Code", ENT)], warmup + window);
        let f = figures(&log, start + warmup, window);
        let ideal = n as f64 * own.rate;
        println!(
            "{n:>5} {clients:>8} {:>10.2} {:>12.2} {:>6.1}% {:>9.2?} {:>9.2?} {:>9.2?} {:>7}",
            f.rate,
            ideal,
            100.0 * f.rate / ideal,
            f.p50,
            f.p99,
            f.max,
            f.not_ok
        );
    }
    drop(keys);
}
