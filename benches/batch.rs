//! The ERP's month-end batch from one host (issue 25), as a benchmark (not a test): a card that
//! answers each call after 150 ms, 64 and 128 keep-alive callers on 127.0.0.1 each sending one
//! signing call after another (a caller honours `Retry-After`), `ukey.timeout_ms` 10 s, and
//! meanwhile one call a second from a second host, 127.0.0.2. Prints the table (answered
//! 200 / readable 503 / broken) next to the card's own capacity, how busy the card was with calls
//! whose caller got the answer, and the second host's latency.
//!
//! Run: `cargo bench --bench batch`; `BENCH_CARD_SECONDS` sets each run's length (default 15),
//! `BENCH_CARD_MS` the card's time per call (default 150).

mod common;

use common::{Answer, Conn, env_f64};

use chinaport_proxy::simulator::CardKind;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one call ended with.
enum Outcome {
    Ok,
    Busy(u64),
    Other,
    Broken,
}

/// One signing call on `conn`, as the table counts it.
fn call(conn: &mut Conn, data: &str) -> Outcome {
    match conn.call("cus-sec_SpcSignDataAsPEM", json!({"inData": data})) {
        None => Outcome::Broken,
        Some(a) if a.status == 200 => Outcome::Ok,
        Some(Answer {
            status: 503,
            retry_after_s: Some(s),
        }) if s > 0 => Outcome::Busy(s),
        Some(_) => Outcome::Other,
    }
}

fn run(callers: usize, secs: f64, card_ms: u64) {
    // `_card` is held to the end of the run: dropping it would stop the stand-in
    let (_card, mut proxy, addr, dir) =
        common::card_and_proxy(&format!("batch-{callers}"), CardKind::Rsa, card_ms, "");
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new([0usize; 4])); // 200, readable 503, other status, broken
    let started = Instant::now();
    // the card's capacity is counted up to the last answer: after the run is stopped, callers
    // still sleeping out a Retry-After send nothing, and that idle tail is the bench's, not ours
    let last_ok = Arc::new(Mutex::new(started));
    // the longest any batch call took to be answered (200 or 503): the budget is 10 s
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let handles: Vec<_> = (0..callers)
        .map(|c| {
            let (stop, counts, last_ok) = (stop.clone(), counts.clone(), last_ok.clone());
            let longest = longest.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open([127, 0, 0, 1], addr);
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    let Some(cn) = conn.as_mut() else {
                        counts.lock().unwrap()[3] += 1;
                        std::thread::sleep(Duration::from_millis(100));
                        conn = Conn::open([127, 0, 0, 1], addr);
                        continue;
                    };
                    k += 1;
                    let sent = Instant::now();
                    let outcome = call(cn, &format!("order-{c}-{k}"));
                    {
                        let mut l = longest.lock().unwrap();
                        *l = (*l).max(sent.elapsed());
                    }
                    let mut n = counts.lock().unwrap();
                    match outcome {
                        Outcome::Ok => {
                            n[0] += 1;
                            *last_ok.lock().unwrap() = Instant::now();
                        }
                        Outcome::Busy(s) => {
                            n[1] += 1;
                            drop(n);
                            let until = Instant::now() + Duration::from_secs(s);
                            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                        Outcome::Other => n[2] += 1,
                        Outcome::Broken => {
                            n[3] += 1;
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    // the second host: one call a second
    let mut second = Vec::new();
    let mut b = Conn::open([127, 0, 0, 2], addr).expect("second host");
    while started.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        let ok = matches!(call(&mut b, "second-host"), Outcome::Ok);
        second.push((t.elapsed(), ok));
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let elapsed = last_ok
        .lock()
        .unwrap()
        .duration_since(started)
        .as_secs_f64();
    let n = *counts.lock().unwrap();
    let capacity = elapsed * 1000.0 / card_ms as f64;
    let mut lat: Vec<f64> = second.iter().map(|(d, _)| d.as_secs_f64() * 1e3).collect();
    // its first call comes with the batch's first burst: both hosts are new then, and it waits
    // behind the batch's first queued call too (one of each other host, by design)
    let after_first = lat.iter().skip(1).copied().fold(f64::NAN, f64::max);
    lat.sort_by(f64::total_cmp);
    let second_ok = second.iter().filter(|(_, ok)| *ok).count();
    println!(
        "| {callers} | {} | {} | {} | {} | {:.1} s | {:.0} | {:.0} % | {second_ok}/{} | {:.0} ms | {:.0} ms | {:.0} ms |",
        n[0],
        n[1],
        n[2],
        n[3],
        longest.lock().unwrap().as_secs_f64(),
        capacity,
        100.0 * (n[0] + second_ok) as f64 / capacity,
        second.len(),
        lat.get(lat.len() / 2).copied().unwrap_or(f64::NAN),
        lat.last().copied().unwrap_or(f64::NAN),
        after_first,
    );
    let _ = proxy.kill();
    let _ = proxy.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let secs = env_f64("BENCH_CARD_SECONDS", 15.0);
    let card_ms = env_f64("BENCH_CARD_MS", 150.0) as u64;
    println!(
        "batch from one host: card {card_ms} ms a call, ukey.timeout_ms 10000, {secs} s a run"
    );
    println!(
        "| callers on 127.0.0.1 | answered 200 | readable 503 | other status | broken | longest answer | card's own capacity (calls) | card busy for callers | 127.0.0.2 answered | its p50 | its max | max after its first |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for callers in [64, 128] {
        run(callers, secs, card_ms);
    }
}
