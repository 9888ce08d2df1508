//! The real HAProxy in front of test proxies: a configuration derived from the shipped
//! `packaging/haproxy/haproxy.cfg` (same directives; addresses, map paths and check intervals
//! substituted), its maps, the process, and its statistics read from the runtime socket.
//! Shared by tests/fleet.rs and benches/fleet.rs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shipped configuration.
pub fn shipped() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/haproxy/haproxy.cfg");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `haproxy` binary, when installed.
pub fn binary() -> Option<PathBuf> {
    [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// One card behind HAProxy: the proxy at `addr`, in pool backend `pool`.
#[derive(Debug, Clone)]
pub struct Card {
    pub pool: String,
    pub name: String,
    pub addr: SocketAddr,
    pub cert_no: String,
}

/// A free port on `ip` (bound, then released for HAProxy to take).
pub fn free_addr(ip: [u8; 4]) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::from((ip, 0))).expect("a free port");
    l.local_addr().unwrap()
}

/// Splits a configuration into sections: a section starts at an unindented line that is not a
/// comment; the comments and blank lines before it belong to it.
fn sections(cfg: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for line in cfg.lines() {
        let unindented = !line.starts_with(' ') && !line.starts_with('\t');
        if unindented && !line.trim().is_empty() && !line.starts_with('#') {
            out.push((line.to_string(), std::mem::take(&mut pending)));
        } else if let Some(last) = out.last_mut().filter(|_| !unindented) {
            last.1.push(line.to_string());
        } else {
            pending.push(line.to_string());
        }
    }
    out
}

fn is_server(line: &str) -> bool {
    line.trim_start().starts_with("server ")
}

/// The test configuration: every section of the shipped file in order, with
/// - `bind` of the `fleet` frontend at `front` and of `stats` at `stats`;
/// - the first `pool_*` backend as the template of every pool in `cards`, its `server` lines
///   replaced by those cards; the first `card_*` backend as the template of a pinned backend per
///   card (its `track` pointing at the card's pool);
/// - `/etc/haproxy/` as `dir`, the runtime socket in `dir`, no syslog;
/// - every `inter <t>` as `inter <inter_ms>ms`.
pub fn config(
    shipped: &str,
    cards: &[Card],
    front: SocketAddr,
    stats: SocketAddr,
    dir: &Path,
    inter_ms: u64,
) -> String {
    let secs = sections(shipped);
    let mut out = String::new();
    let mut pools_done = false;
    let mut cards_done = false;
    for (head, body) in &secs {
        let name = head.split_whitespace().nth(1).unwrap_or_default();
        let is_pool = head.starts_with("backend pool_");
        let is_card = head.starts_with("backend card_");
        if is_pool {
            if pools_done {
                continue;
            }
            pools_done = true;
            let template_server = body.iter().find(|l| is_server(l)).expect("a server line");
            let mut pools: Vec<&str> = cards.iter().map(|c| c.pool.as_str()).collect();
            pools.dedup();
            for pool in pools {
                out.push_str(&format!("backend {pool}\n"));
                for line in body.iter().filter(|l| !is_server(l)) {
                    out.push_str(line);
                    out.push('\n');
                }
                for c in cards.iter().filter(|c| c.pool == pool) {
                    out.push_str(&server_line(template_server, c, None));
                }
                out.push('\n');
            }
            continue;
        }
        if is_card {
            if cards_done {
                continue;
            }
            cards_done = true;
            let template_server = body.iter().find(|l| is_server(l)).expect("a server line");
            for c in cards {
                out.push_str(&format!("backend card_{}\n", c.name));
                for line in body.iter().filter(|l| !is_server(l)) {
                    out.push_str(line);
                    out.push('\n');
                }
                out.push_str(&server_line(template_server, c, Some(&c.pool)));
                out.push('\n');
            }
            continue;
        }
        out.push_str(head);
        out.push('\n');
        for line in body {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            if t.starts_with("log /dev/log") {
                continue;
            } else if t.starts_with("stats socket ") {
                out.push_str(&format!(
                    "{indent}stats socket {} mode 600 level admin\n",
                    dir.join("admin.sock").display()
                ));
            } else if t.starts_with("bind ") {
                let at = if name == "stats" { stats } else { front };
                out.push_str(&format!("{indent}bind {at}\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let dir = format!("{}/", dir.display());
    let out = out.replace("/etc/haproxy/", &dir);
    // inter <t> → inter <inter_ms>ms
    let mut fixed = String::new();
    for line in out.lines() {
        let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
        for i in 1..words.len() {
            if words[i - 1] == "inter" {
                words[i] = format!("{inter_ms}ms");
            }
        }
        fixed.push_str(&words.join(" "));
        fixed.push('\n');
    }
    fixed
}

/// The template's server line for card `c`: its name and address, and `track <pool>/<name>`.
fn server_line(template: &str, c: &Card, track: Option<&str>) -> String {
    let t = template.trim_start();
    let indent = &template[..template.len() - t.len()];
    let mut words: Vec<String> = t.split_whitespace().map(str::to_string).collect();
    words[1] = c.name.clone();
    words[2] = c.addr.to_string();
    if let Some(pool) = track
        && let Some(i) = words.iter().position(|w| w == "track")
    {
        words[i + 1] = format!("{pool}/{}", c.name);
    }
    format!("{indent}{}\n", words.join(" "))
}

/// A running HAProxy. Dropping it stops it.
pub struct HaProxy {
    child: Child,
    pub front: SocketAddr,
    pub stats: SocketAddr,
    pub dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl HaProxy {
    /// Writes the configuration and maps into `dir` and starts HAProxy; waits until it listens.
    /// `ents` are (X-Ent-Code, pool) pairs for ent2pool.map; cert2card.map comes from `cards`.
    pub fn start(cards: &[Card], ents: &[(&str, &str)], dir: &Path, inter_ms: u64) -> HaProxy {
        let bin = binary().expect("haproxy is installed");
        let front = free_addr([127, 0, 0, 5]);
        let stats = free_addr([127, 0, 0, 5]);
        let cfg = config(&shipped(), cards, front, stats, dir, inter_ms);
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, &cfg).unwrap();
        let ent_map: String = ents.iter().map(|(e, p)| format!("{e} {p}\n")).collect();
        std::fs::write(dir.join("ent2pool.map"), ent_map).unwrap();
        let card_map: String = cards
            .iter()
            .map(|c| format!("{} card_{}\n", c.cert_no, c.name))
            .collect();
        std::fs::write(dir.join("cert2card.map"), card_map).unwrap();
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c refuses the test configuration:\n{}\n{cfg}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut child = Command::new(&bin)
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start haproxy");
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
        let mut h = HaProxy {
            child,
            front,
            stats,
            dir: dir.to_path_buf(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(front).is_err() || !dir.join("admin.sock").exists() {
            if let Ok(Some(status)) = h.child.try_wait() {
                panic!("haproxy exited with {status}: {}", h.log());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen: {}",
                h.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        h
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A command on the runtime API (`show stat`, `disable server …`).
    pub fn command(&self, cmd: &str) -> String {
        let mut s = UnixStream::connect(self.dir.join("admin.sock")).expect("runtime socket");
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// One field (`status`, `wredis`, `wretr`, `stot`, …) of `backend/server` in `show stat`.
    pub fn stat(&self, backend: &str, server: &str, field: &str) -> String {
        let csv = self.command("show stat");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = header
            .iter()
            .position(|h| *h == field)
            .unwrap_or_else(|| panic!("no field {field} in show stat"));
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|row| row.first() == Some(&backend) && row.get(1) == Some(&server))
            .and_then(|row| row.get(col).map(|v| v.to_string()))
            .unwrap_or_else(|| panic!("no row {backend}/{server} in show stat"))
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
