//! What the benches that run the real binary share: starting it on a config written to a temp
//! folder (its port read from its log), and waiting until `/health` says it is ready.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the proxy on `config` (written to `dir/config.json`) and returns it with the address it
/// listens on. Its log is read on a thread of its own, so that it never blocks on a full pipe.
pub fn start_proxy(config: &Value, dir: &Path) -> (Child, SocketAddr) {
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chinaport-proxy"))
        .arg("-config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the proxy");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("the proxy's log").unwrap();
        if let Some(at) = line.find("listening on http://") {
            let rest = &line[at + "listening on http://".len()..];
            let addr = rest.split_whitespace().next().unwrap();
            break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Waits (20 s at most) until `/health` answers 200 with `must_contain` in its body.
pub fn wait_healthy(addr: SocketAddr, must_contain: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") && out.contains(must_contain) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the proxy did not become healthy (with {must_contain:?} in /health)");
}
