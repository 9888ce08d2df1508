//! #30.4 benchmark (not a test): what the audit webhook adds to a signed call. 64 keep-alive
//! clients send md5-signed `/rpc` calls (`cus-sec_SpcGetCertNo`: the card answers at once, so
//! what is measured is the proxy, not the card queue) against a zero-latency simulator, to two
//! proxies in alternated rounds of `BENCH_SECONDS` (default 3): one without an audit webhook, one
//! with one whose journal starts just past its compaction threshold with a large undelivered
//! backlog (16 MiB delivered head, 15 MiB waiting), so that compaction (up to 15 MiB copied) and
//! the backlog's delivery run while the clients call. Two loads:
//! - open loop: the clients paced to `BENCH_RATE` calls/s together (default 2,000, three hundred
//!   times what a 150 ms card signs): the p99 a call gains from auditing (goal: at most 1 ms);
//! - closed loop: each client calls again as soon as it is answered, which saturates the proxy's
//!   core; what auditing costs then is throughput (one outgoing HTTP exchange per event), and the
//!   p99 follows it.
//!
//! On Linux with two or more cores the proxies run on core 0 and this process (clients, card,
//! receiver) on the others: the receiver stands for the ERP's machine, and 64 client threads on
//! the proxy's core would measure the scheduler, not the proxy (p99 moved 11-31 ms between runs
//! of the same build before).
//!
//! Run: `cargo bench --bench audit`. `BENCH_CLIENTS` (default 64); `BENCH_RECEIVER=down` (no
//! delivery work: the request path alone); `BENCH_SEED_WAITING` (undelivered events at the start).

use chinaport_proxy::simulator::{SimOptions, Simulator};
use md5::{Digest, Md5};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "88888888";
const SECRET: &str = "bench-secret-0815";
/// Rounds per load and proxy: the median of their p99s is what is compared (this VM's p99 moves
/// 0.4-2.2 ms between rounds of the same proxy).
const ROUNDS: usize = 7;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A receiver that accepts everything at once.
fn receiver() -> (Arc<tiny_http_cp::Server>, String) {
    let server = Arc::new(tiny_http_cp::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}/audit", server.server_addr().to_ip().unwrap());
    for _ in 0..2 {
        let s = server.clone();
        std::thread::spawn(move || {
            while let Ok(mut rq) = s.recv() {
                let _ = std::io::copy(rq.as_reader(), &mut std::io::sink());
                let _ = rq.respond(tiny_http_cp::Response::from_string("{}"));
            }
        });
    }
    (server, url)
}

/// A journal of `delivered` records already delivered (the marker says so) and `waiting` not.
fn seed_journal(path: &std::path::Path, delivered: u64, waiting: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let filler = "x".repeat(900);
    for seq in 1..=delivered + waiting {
        let body = json!({"event": "api_audit", "timestamp": now_ms(), "request_id": format!("seed-{seq}"), "filler": filler}).to_string();
        let line =
            json!({"seq": seq, "kind": "audit", "request_id": format!("seed-{seq}"), "body": body});
        writeln!(f, "{line}").unwrap();
    }
    f.flush().unwrap();
    std::fs::write(
        format!("{}.delivered", path.display()),
        format!("{delivered} 0\n"),
    )
    .unwrap();
}

fn start_proxy(
    sim: &Simulator,
    dir: &std::path::Path,
    webhook: serde_json::Value,
) -> (Child, SocketAddr) {
    let config = json!({
        "server": {"host": "127.0.0.1", "port": "0", "max_connections_per_ip": 1024},
        "ukey": {"url": sim.url(), "password": PASSWORD, "health_interval_s": 3600},
        "auth": {"app_secret": SECRET},
        "webhook": webhook,
    });
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("bench-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let log_path = dir.join("proxy.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"));
    pin::proxy(&mut command);
    let child = command
        .arg("-config")
        .arg(&path)
        .env("RUST_LOG", "chinaport_proxy=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1)
            && let Some(a) = rest.split_whitespace().next()
        {
            break a.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "proxy did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    (child, addr)
}

/// One client's calls until `until`: latencies of the 200s, and the count of other answers.
/// With `pace` (open loop) call k is due at `start + k * pace` and its latency counts from then,
/// so a call held up behind a slow one is charged for the wait too (no coordinated omission);
/// without, each call follows the last answer at once (closed loop).
fn client(
    addr: SocketAddr,
    id: usize,
    until: Instant,
    pace: Option<(Instant, Duration)>,
) -> (Vec<Duration>, u64) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut writer = s;
    let (mut lat, mut bad) = (Vec::new(), 0);
    let mut n = 0u64;
    while Instant::now() < until {
        let due = pace.map(|(start, every)| start + every * n as u32);
        if let Some(due) = due {
            if due >= until {
                break;
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        n += 1;
        let body = json!({"_method": "cus-sec_SpcGetCertNo", "args": {"n": format!("c{id}-{n}")}})
            .to_string();
        let ts = now_ms();
        let sig = md5_hex(&format!("POST/rpc{ts}{body}{SECRET}"));
        let req = format!(
            "POST /rpc HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Timestamp: {ts}\r\nX-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let t = due.unwrap_or_else(Instant::now);
        writer.write_all(req.as_bytes()).unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut b = vec![0; len];
        reader.read_exact(&mut b).unwrap();
        if status.contains(" 200 ") {
            lat.push(t.elapsed());
        } else {
            bad += 1;
        }
    }
    (lat, bad)
}

/// `rate`: calls a second from all clients together (open loop); `None`: closed loop.
fn run(addr: SocketAddr, clients: usize, seconds: f64, rate: Option<f64>) -> Round {
    let now = Instant::now();
    let until = now + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            // each client paced at rate / clients, their starts spread over one period
            let pace = rate.map(|r| {
                let every = Duration::from_secs_f64(clients as f64 / r);
                (now + every * i as u32 / clients as u32, every)
            });
            std::thread::spawn(move || client(addr, i, until, pace))
        })
        .collect();
    let (mut all, mut bad) = (Vec::new(), 0);
    for h in handles {
        let (l, b) = h.join().unwrap();
        all.extend(l);
        bad += b;
    }
    all.sort();
    // no 200 at all (a full journal answers 507): no latency to show
    let pick = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    (pick(0.5), pick(0.99), all.len(), bad)
}

/// Which cores the proxy and this process run on (Linux only; elsewhere nothing is pinned).
mod pin {
    use std::process::Command;

    #[cfg(target_os = "linux")]
    fn set(cpus: impl Iterator<Item = usize>) -> bool {
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it; pid 0 is the
        // calling thread, and threads it starts inherit the mask
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for c in cpus {
                libc::CPU_SET(c, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }

    fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Pins this process to every core but 0, before it starts any thread; says what it did.
    pub fn bench() -> String {
        #[cfg(target_os = "linux")]
        {
            let n = cores();
            if n >= 2 && set(1..n) {
                return format!(
                    "proxy on core 0, clients/card/receiver on cores 1-{}",
                    n - 1
                );
            }
        }
        "nothing pinned".into()
    }

    /// Makes the proxy run on core 0 (set in the child before it executes the proxy).
    pub fn proxy(command: &mut Command) {
        #[cfg(target_os = "linux")]
        if cores() >= 2 {
            use std::os::unix::process::CommandExt;
            // SAFETY: only sched_setaffinity, async-signal-safe, runs between fork and exec
            unsafe {
                command.pre_exec(|| {
                    set(std::iter::once(0));
                    Ok(())
                });
            }
        }
        let _ = command;
    }
}

/// Stops (SIGSTOP) or resumes a proxy; elsewhere than Unix both keep running.
fn pause(child: &Child, stop: bool) {
    #[cfg(unix)]
    // SAFETY: kill takes no pointers; the pid is our own child's, not yet reaped
    unsafe {
        libc::kill(
            child.id() as libc::pid_t,
            if stop { libc::SIGSTOP } else { libc::SIGCONT },
        );
    }
    let _ = (child, stop);
}

type Round = (f64, f64, usize, u64);

fn median(v: &[Round], f: fn(&Round) -> f64) -> f64 {
    let mut x: Vec<f64> = v.iter().map(f).collect();
    x.sort_by(|p, q| p.total_cmp(q));
    x[x.len() / 2]
}

/// Prints one load's rounds without (`a`) and with (`b`) the audit webhook.
fn report(title: &str, a: &[Round], b: &[Round]) {
    println!("{title}:");
    for (name, v) in [("without audit webhook", a), ("with audit webhook   ", b)] {
        println!(
            "  {name}: median p50 {:.3} ms, median p99 {:.3} ms, median {:.0} calls/run, {} not 200; p99s {:?}",
            median(v, |r| r.0),
            median(v, |r| r.1),
            median(v, |r| r.2 as f64),
            v.iter().map(|r| r.3).sum::<u64>(),
            v.iter()
                .map(|r| (r.1 * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        );
    }
    println!(
        "  p99 added by auditing (median vs median): {:.3} ms (goal <= 1 ms); calls answered {:+.1} %",
        median(b, |r| r.1) - median(a, |r| r.1),
        (median(b, |r| r.2 as f64) / median(a, |r| r.2 as f64) - 1.0) * 100.0
    );
}

fn main() {
    let pinned = pin::bench();
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let clients: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let sim = Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: Some(
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-simulator-ukey.pem"),
        ),
        card: chinaport_proxy::simulator::CardKind::Rsa,
        cert_days: None,
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let (mut plain, plain_addr) = start_proxy(&sim, &dir.join("plain"), json!({}));
    // BENCH_RECEIVER=down: the receiver's port is closed, so the sender does almost no work and
    // what remains is the request path (summary, journal append) alone
    let (_rx, url) = receiver();
    let url = if std::env::var("BENCH_RECEIVER").as_deref() == Ok("down") {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}/audit")
    } else {
        url
    };
    let journal = dir.join("journal.jsonl");
    // BENCH_SEED_WAITING: undelivered events the journal starts with (default 15,000)
    let waiting = std::env::var("BENCH_SEED_WAITING")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15_000);
    seed_journal(&journal, 16_000, waiting);
    let (mut audited, audited_addr) = start_proxy(
        &sim,
        &dir.join("audited"),
        json!({"audit_url": url, "journal_path": journal.to_string_lossy()}),
    );
    let _ = run(plain_addr, clients, 1.0, None); // warm-up
    let _ = run(audited_addr, clients, 1.0, None);
    // BENCH_RATE: the open loop's calls a second, all clients together (default 2,000: three
    // hundred times what a 150 ms card can sign, about half what the proxy's core answers)
    let rate = std::env::var("BENCH_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000.0);
    println!(
        "{clients} clients, {ROUNDS} alternated runs of {seconds} s each, md5-signed /rpc, zero-latency card; {pinned}"
    );
    for (title, load) in [
        (format!("open loop, {rate} calls/s"), Some(rate)),
        (
            "closed loop (each client calls again at once)".to_string(),
            None,
        ),
    ] {
        // alternated, so that both see the same machine (a shared 2-core box drifts a lot)
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            // the proxy not measured is stopped: the audited one's backlog is delivered in
            // its own rounds only
            pause(&audited, true);
            a.push(run(plain_addr, clients, seconds, load));
            pause(&audited, false);
            pause(&plain, true);
            b.push(run(audited_addr, clients, seconds, load));
            pause(&plain, false);
        }
        report(&title, &a, &b);
    }
    for child in [&mut plain, &mut audited] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
