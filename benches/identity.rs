//! What the identity cache (#28) buys, as a benchmark (not a test): a card that answers each
//! call after 150 ms, 16 keep-alive callers each signing message after message the way public
//! signers and ERP code do: `cus-sec_SpcGetCertNo`, then `cus-sec_SpcSignDataAsPEM` (both must
//! answer 200 for the message to count). Printed: messages signed per second with the cache on,
//! and with it off (the same read given an argument, which the cache does not answer: every read
//! goes to the card, as before #28), next to the card's own rate (one signature per card call).
//! Goal: on ≥ 1.9 × off, and ≥ 97 % of the card's rate. Then the self-check's cost per
//! signature (`ukey.self_check`), RSA and SM2, measured on the verification itself.
//!
//! Run: `cargo bench --bench identity`; `BENCH_CARD_SECONDS` sets each run's length (default
//! 15), `BENCH_CARD_MS` the card's time per call (default 150).

mod common;

use common::{Conn, env_f64};

use chinaport_proxy::customs::cardsig;
use chinaport_proxy::customs::cert::CertInfo;
use chinaport_proxy::simulator::{Card, CardKind};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CALLERS: usize = 16;

/// Messages signed per second by `CALLERS` callers, and messages that failed.
fn run(cache: bool, secs: f64, card_ms: u64) -> (f64, usize) {
    // `_card` is held to the end of the run: dropping it would stop the stand-in
    let (_card, mut proxy, addr, dir) = common::card_and_proxy(
        &format!("identity-{cache}"),
        CardKind::Sm2,
        card_ms,
        "cus-sec_SpcGetSignCertAsPEM",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (signed, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let handles: Vec<_> = (0..CALLERS)
        .map(|c| {
            let (stop, signed, failed) = (stop.clone(), signed.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open([127, 0, 0, 1], addr).expect("connect");
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    // off: an argument makes the read one the cache does not answer
                    let read_args = if cache { json!({}) } else { json!({"n": k}) };
                    let ok_200 = |a: Option<common::Answer>| a.is_some_and(|a| a.status == 200);
                    let ok = ok_200(conn.call("cus-sec_SpcGetCertNo", read_args))
                        && ok_200(conn.call(
                            "cus-sec_SpcSignDataAsPEM",
                            json!({"inData": format!("message-{c}-{k}")}),
                        ));
                    if stop.load(Ordering::Relaxed) {
                        break; // finished after the clock stopped: not counted
                    }
                    let n = if ok { &signed } else { &failed };
                    n.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        conn = Conn::open([127, 0, 0, 1], addr).expect("reconnect");
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for h in handles {
        let _ = h.join();
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    let _ = std::fs::remove_dir_all(&dir);
    (
        signed.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

/// Microseconds one self-check takes (verifying a signature against the certificate, parsed
/// from base64 as `/rpc` does each time): (median, 95th percentile).
fn self_check_us(kind: CardKind) -> (f64, f64) {
    let card = Card::generate(kind).expect("a card");
    let cert_b64 = card.sign_cert_b64();
    let data = "<ceb:CEB311Message>order 4CDE1CFD … 143.64</ceb:CEB311Message>".repeat(8);
    let sig = card.sign(data.as_bytes()).unwrap();
    let mut times: Vec<f64> = (0..400)
        .map(|_| {
            let t = Instant::now();
            let cert = CertInfo::from_base64(&cert_b64).unwrap();
            cardsig::verify(&cert, data.as_bytes(), &sig).unwrap();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 95 / 100])
}

fn main() {
    let secs = env_f64("BENCH_CARD_SECONDS", 15.0);
    let card_ms = env_f64("BENCH_CARD_MS", 150.0) as u64;
    let card_rate = 1000.0 / card_ms as f64;
    println!(
        "GetCertNo then SignDataAsPEM per message: card {card_ms} ms a call, {CALLERS} callers, {secs} s a run"
    );
    let (on, on_failed) = run(true, secs, card_ms);
    let (off, off_failed) = run(false, secs, card_ms);
    println!(
        "| identity cache | messages signed / s | of the card's {card_rate:.2} signatures / s | failed |"
    );
    println!("|---|---|---|---|");
    println!(
        "| on | {on:.2} | {:.1} % | {on_failed} |",
        100.0 * on / card_rate
    );
    println!(
        "| off | {off:.2} | {:.1} % | {off_failed} |",
        100.0 * off / card_rate
    );
    println!(
        "on / off: {:.2} x (goal >= 1.9 x; on >= 97 % of the card's rate)",
        on / off
    );
    println!("self-check per signature (ukey.self_check), parse + verify:");
    println!("| card | median | p95 |");
    println!("|---|---|---|");
    for kind in [CardKind::Rsa, CardKind::Sm2] {
        let (p50, p95) = self_check_us(kind);
        println!("| {} | {p50:.0} µs | {p95:.0} µs |", kind.name());
    }
}
