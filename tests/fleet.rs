//! A fleet behind the real HAProxy (issue 26): three proxies, each with its own simulator card
//! (two of enterprise A with different keys and certificate numbers, one of B), and HAProxy on
//! 127.0.0.5 with a configuration derived from packaging/haproxy/haproxy.cfg. Signatures are
//! checked with openssl; which card served a call is read from the signature itself.
//!
//! Without `haproxy` installed the tests say so and pass, unless CHINAPORT_REQUIRE_HAPROXY is
//! set (.ci/run sets it, so CI fails rather than skip).

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chinaport_proxy::simulator::{CardKind, SimOptions, Simulator};
use common::haproxy::{self, Card, HaProxy};
use common::*;
use serde_json::{Value, json};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const ENT_A: &str = "3506960ABA";
const ENT_B: &str = "4403169D3W";
const SIGN: &str = "cus-sec_SpcSignDataAsPEM";

/// Whether HAProxy is here; when it is not, says so (and fails where it is required).
fn haproxy_present() -> bool {
    if haproxy::binary().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("CHINAPORT_REQUIRE_HAPROXY").is_none(),
        "haproxy is not installed but CHINAPORT_REQUIRE_HAPROXY is set: apt-get install haproxy"
    );
    eprintln!("SKIPPED tests/fleet.rs: haproxy is not installed (apt-get install haproxy)");
    false
}

/// A card of the fleet: simulator, proxy, and its certificate's public key for openssl.
struct Member {
    sim: Simulator,
    proxy: Proxy,
    cert_no: String,
    pubkey: PathBuf,
}

struct Fleet {
    a1: Member,
    a2: Member,
    b: Member,
    haproxy: HaProxy,
    keys: TempDir,
    _dir: TempDir,
}

/// A card with its own key (kept between runs: RSA key generation takes a moment).
fn card_sim(tag: &str) -> Simulator {
    Simulator::start(SimOptions {
        listen: "127.0.0.1:0".into(),
        password: PASSWORD.into(),
        key_file: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fleet-{tag}.pem"))),
        card: CardKind::Rsa,
        cert_days: None,
    })
    .expect("start simulator")
}

fn member(tag: &str, keys: &TempDir, overlay: &Value) -> Member {
    let sim = card_sim(tag);
    let proxy = Proxy::start(&sim.url(), overlay.clone());
    let cert_no = sim.cert_no();
    let der = keys.path().join(format!("{tag}.der"));
    std::fs::write(&der, sim.sign_cert_der()).unwrap();
    let pubkey = keys.path().join(format!("{tag}.pub.pem"));
    let out = openssl(
        keys.path(),
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            &format!("{tag}.der"),
            "-pubkey",
            "-noout",
        ],
    );
    std::fs::write(&pubkey, out).unwrap();
    Member {
        sim,
        proxy,
        cert_no,
        pubkey,
    }
}

fn fleet(overlay: Value, inter_ms: u64) -> Fleet {
    let keys = TempDir::new("fleet-keys");
    let (a1, a2, b) = (
        member("A1", &keys, &overlay),
        member("A2", &keys, &overlay),
        member("B1", &keys, &overlay),
    );
    let numbers = [&a1.cert_no, &a2.cert_no, &b.cert_no];
    assert!(
        numbers[0] != numbers[1] && numbers[1] != numbers[2] && numbers[0] != numbers[2],
        "three distinct cards: {numbers:?}"
    );
    for m in [&a1, &a2, &b] {
        m.proxy.wait_healthy();
    }
    let card = |pool: &str, name: &str, m: &Member| Card {
        pool: pool.into(),
        name: name.into(),
        addr: m.proxy.addr,
        cert_no: m.cert_no.clone(),
    };
    let cards = [
        card("pool_A", "A-card1", &a1),
        card("pool_A", "A-card2", &a2),
        card("pool_B", "B-card1", &b),
    ];
    let dir = TempDir::new("haproxy");
    let haproxy = HaProxy::start(
        &cards,
        &[(ENT_A, "pool_A"), (ENT_B, "pool_B")],
        dir.path(),
        inter_ms,
    );
    for server in ["A-card1", "A-card2"] {
        wait_up(&haproxy, "pool_A", server);
    }
    wait_up(&haproxy, "pool_B", "B-card1");
    Fleet {
        a1,
        a2,
        b,
        haproxy,
        keys,
        _dir: dir,
    }
}

fn status_of(h: &HaProxy, backend: &str, server: &str) -> String {
    h.stat(backend, server, "status")
}

fn wait_up(h: &HaProxy, backend: &str, server: &str) {
    wait_for(Duration::from_secs(10), &format!("{server} UP"), || {
        (status_of(h, backend, server) == "UP").then_some(())
    });
}

/// What a signing call through HAProxy returned.
struct Signed {
    status: u16,
    data: String,
    signature: String,
    cert_no: String,
    header_cert_no: Option<String>,
    resp: Resp,
}

fn sign_via(h: &HaProxy, headers: &[(&str, &str)], data: &str) -> Signed {
    let body = json!({"_method": SIGN, "args": {"inData": data}}).to_string();
    let resp = request(h.front, "POST", "/rpc", headers, body.as_bytes());
    let j: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let field = |i: usize| {
        j["_args"]["Data"][i]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    Signed {
        status: resp.status,
        data: data.into(),
        signature: field(0),
        cert_no: field(1),
        header_cert_no: resp.header("X-Cert-No").map(str::to_string),
        resp,
    }
}

/// openssl: does `s.signature` verify over `s.data` under the key of `m`?
fn verifies(keys: &TempDir, s: &Signed, m: &Member) -> bool {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let (data, sig) = (
        keys.path().join(format!("data{n}")),
        keys.path().join(format!("sig{n}")),
    );
    std::fs::write(&data, &s.data).unwrap();
    std::fs::write(&sig, B64.decode(&s.signature).unwrap_or_default()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha1", "-verify"])
        .arg(&m.pubkey)
        .arg("-signature")
        .arg(&sig)
        .arg(&data)
        .output()
        .expect("openssl (.ci/run installs it)");
    out.status.success()
}

impl Fleet {
    /// The member whose certificate signed `s`, checked by openssl against all three: exactly
    /// one verifies, and it is the one the card named.
    fn signer(&self, s: &Signed) -> &Member {
        assert_eq!(s.status, 200, "{}", s.resp.text());
        let all = [&self.a1, &self.a2, &self.b];
        let verified: Vec<&&Member> = all.iter().filter(|m| verifies(&self.keys, s, m)).collect();
        assert_eq!(verified.len(), 1, "one card's certificate verifies");
        let m = verified[0];
        assert_eq!(
            s.cert_no, m.cert_no,
            "the card names the certificate that signed"
        );
        // the proxy's own header names the card that served it (issue 26 item 1)
        assert_eq!(
            s.header_cert_no.as_deref(),
            Some(m.cert_no.as_str()),
            "X-Cert-No names the card that signed"
        );
        m
    }
    fn is(&self, m: &Member, other: &Member) -> bool {
        m.cert_no == other.cert_no
    }
}

/// `/rpc` answers a proxy gave so far, by status, from its /metrics.
fn rpc_answers(p: &Proxy, status: u16) -> u64 {
    let text = p.get("/metrics").text();
    let prefix = format!("chinaport_http_requests_total{{route=\"/rpc\",status=\"{status}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse::<f64>().unwrap_or(0.0) as u64)
        .unwrap_or(0)
}

fn rpc_total(p: &Proxy) -> u64 {
    let text = p.get("/metrics").text();
    text.lines()
        .filter(|l| l.starts_with("chinaport_http_requests_total{route=\"/rpc\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn sims_saw(f: &Fleet, data: &str) -> bool {
    [&f.a1, &f.a2, &f.b].iter().any(|m| {
        m.sim
            .received()
            .iter()
            .any(|fr| fr["args"]["inData"] == data)
    })
}

#[test]
fn routes_by_enterprise_and_certificate_and_refuses_unknown_codes() {
    if !haproxy_present() {
        return;
    }
    let f = fleet(json!({}), 300);
    let h = &f.haproxy;

    // enterprise A: every signature is one of A's two cards, never B's; the pool uses both
    let mut used = [0usize; 2];
    for i in 0..12 {
        let s = sign_via(h, &[("X-Ent-Code", ENT_A)], &format!("A order {i}"));
        let m = f.signer(&s);
        assert!(!f.is(m, &f.b), "a call for A was signed by B's card");
        used[usize::from(f.is(m, &f.a2))] += 1;
    }
    assert!(
        used[0] > 0 && used[1] > 0,
        "both of A's cards serve: {used:?}"
    );

    for i in 0..3 {
        let s = sign_via(h, &[("X-Ent-Code", ENT_B)], &format!("B order {i}"));
        assert!(f.is(f.signer(&s), &f.b));
    }

    // X-Cert-No pins to that card, and wins over X-Ent-Code
    for i in 0..6 {
        let s = sign_via(h, &[("X-Cert-No", &f.a2.cert_no)], &format!("pinned {i}"));
        assert!(f.is(f.signer(&s), &f.a2), "pinned to A2");
    }
    let s = sign_via(
        h,
        &[("X-Ent-Code", ENT_B), ("X-Cert-No", &f.a1.cert_no)],
        "pinned over ent",
    );
    assert!(f.is(f.signer(&s), &f.a1));

    // the stats page, its CSV and HAProxy's Prometheus exporter, as docs/fleet.md reads them
    let page = request(h.stats, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("pool_A"),
        "the stats page lists the pool"
    );
    let csv = request(h.stats, "GET", "/;csv", &[], b"").text();
    assert!(
        csv.contains("pool_A,A-card1,") && csv.contains("wredis"),
        "{csv}"
    );
    let prom = request(h.stats, "GET", "/metrics", &[], b"").text();
    for needle in [
        "haproxy_server_status{proxy=\"pool_A\",server=\"A-card1\",state=\"UP\"} 1",
        "haproxy_backend_current_queue{proxy=\"pool_A\"}",
        "haproxy_server_redispatch_warnings_total{proxy=\"pool_A\",server=\"A-card2\"}",
    ] {
        assert!(prom.contains(needle), "{needle} not in HAProxy's /metrics");
    }

    // the maps are the whitelist: HAProxy answers JSON itself and no card sees the call
    for (headers, status) in [
        (vec![("X-Ent-Code", "9999999999")], 404),
        (vec![("X-Cert-No", "ffffffff")], 404),
        (vec![("X-Cert-No", "ffffffff"), ("X-Ent-Code", ENT_A)], 404),
        (vec![], 400),
    ] {
        let data = format!("refused {headers:?}");
        let s = sign_via(h, &headers, &data);
        assert_eq!(s.status, status, "{headers:?}: {}", s.resp.text());
        assert!(
            s.resp
                .header("Content-Type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{:?}",
            s.resp.headers
        );
        assert!(s.resp.json()["error"].is_string(), "{}", s.resp.text());
        assert!(!sims_saw(&f, &data), "a refused call reached a card");
    }
}

#[test]
fn a_dark_card_is_taken_out_its_calls_replayed_and_it_comes_back() {
    if !haproxy_present() {
        return;
    }
    // checks every second: the window in which calls still reach the dark card is wide enough
    // to send some into it; they must come back from the other card
    let f = fleet(json!({}), 1000);
    let h = &f.haproxy;
    for i in 0..4 {
        f.signer(&sign_via(h, &[("X-Ent-Code", ENT_A)], &format!("warm {i}")));
    }

    // unplug A1: its software stops taking connections and drops the one it has
    f.a1.sim.faults().set_refuse(true);
    f.a1.sim.drop_connections();
    wait_for(
        Duration::from_secs(5),
        "A1's proxy to see its card gone",
        || (f.a1.proxy.get("/health").status == 503).then_some(()),
    );
    let refused_before = rpc_answers(&f.a1.proxy, 503);

    // calls sent now: some reach A1's proxy (HAProxy has not seen it yet), which answers 503
    // because the card never received them; HAProxy replays them on A2
    let mut i = 0;
    while rpc_answers(&f.a1.proxy, 503) == refused_before {
        assert!(
            i < 20,
            "no call reached the dark card before HAProxy took it out"
        );
        let s = sign_via(h, &[("X-Ent-Code", ENT_A)], &format!("while dark {i}"));
        assert!(f.is(f.signer(&s), &f.a2), "served by the other card");
        i += 1;
    }
    let redispatched: u64 = h.stat("pool_A", "A-card1", "wredis").parse().unwrap();
    assert!(redispatched >= 1, "HAProxy redispatched the 503 to A2");

    // within the check interval (fall x inter, or at once by observe layer7) it is out, and
    // then no call reaches it
    wait_for(Duration::from_secs(4), "A1 DOWN in HAProxy", || {
        status_of(h, "pool_A", "A-card1")
            .starts_with("DOWN")
            .then_some(())
    });
    let reached = rpc_total(&f.a1.proxy);
    for i in 0..8 {
        let s = sign_via(h, &[("X-Ent-Code", ENT_A)], &format!("after down {i}"));
        assert!(f.is(f.signer(&s), &f.a2));
    }
    assert_eq!(
        rpc_total(&f.a1.proxy),
        reached,
        "no call reached the card marked down"
    );
    // pinned to the dark card: HAProxy's own JSON 503, with Retry-After, and nothing sent
    let s = sign_via(h, &[("X-Cert-No", &f.a1.cert_no)], "pinned to dark");
    assert_eq!(s.status, 503, "{}", s.resp.text());
    assert!(s.resp.header("Retry-After").is_some());
    assert!(s.resp.json()["error"].is_string());
    assert_eq!(rpc_total(&f.a1.proxy), reached);

    // plug it back: the proxy reconnects, HAProxy's checks see it, and it serves again
    f.a1.sim.faults().set_refuse(false);
    f.a1.proxy.wait_healthy();
    wait_up(h, "pool_A", "A-card1");
    let mut n = 0;
    wait_for(Duration::from_secs(5), "a call served by A1 again", || {
        n += 1;
        let s = sign_via(h, &[("X-Ent-Code", ENT_A)], &format!("back {n}"));
        let m = f.signer(&s);
        assert!(!f.is(m, &f.b));
        f.is(m, &f.a1).then_some(())
    });
}

/// A customs stand-in that counts uploads and never answers them.
struct SilentCustoms {
    addr: SocketAddr,
    uploads: Arc<AtomicUsize>,
}

fn silent_customs() -> SilentCustoms {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let uploads = Arc::new(AtomicUsize::new(0));
    let count = uploads.clone();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // count a request once its head has arrived, then hold the connection
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            if seen.starts_with(b"POST ") {
                count.fetch_add(1, Ordering::SeqCst);
            }
            held.push(stream);
        }
    });
    SilentCustoms { addr, uploads }
}

#[test]
fn an_upload_to_customs_is_never_sent_twice() {
    if !haproxy_present() {
        return;
    }
    let customs = silent_customs();
    let f = fleet(
        json!({"customs": {
            "upload_url": format!("http://{}/ceb2grab/grab/realTimeDataUpload", customs.addr),
            "timeout_ms": 3000}}),
        300,
    );
    let front = f.haproxy.front;
    let caller = std::thread::spawn(move || {
        request(
            front,
            "POST",
            "/api/customs179",
            &[("X-Ent-Code", ENT_A)],
            order_179("fleet-upload-1", true).as_bytes(),
        )
    });
    wait_for(
        Duration::from_secs(5),
        "the upload to reach customs",
        || (customs.uploads.load(Ordering::SeqCst) == 1).then_some(()),
    );
    // the card that signed it crashes while customs has the upload: HAProxy sees a connection
    // closed without an answer, which it would replay on A2 for a replay-safe call
    let signed_by = |m: &Member| {
        m.sim.received().iter().any(|fr| {
            fr["_method"] == SIGN
                && fr["args"]["inData"]
                    .as_str()
                    .is_some_and(|d| d.contains("fleet-upload-1"))
        })
    };
    let (serving, other) = if signed_by(&f.a1) {
        (&f.a1, &f.a2)
    } else {
        (&f.a2, &f.a1)
    };
    assert!(signed_by(serving), "one of A's cards signed the order");
    serving.proxy.signal("KILL");
    let r = caller.join().unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.json()["error"].is_string(), "HAProxy's JSON 502");
    assert_eq!(
        customs.uploads.load(Ordering::SeqCst),
        1,
        "the upload was sent to customs once"
    );
    assert!(
        !signed_by(other),
        "the order was not replayed on the other card"
    );
}
