//! A scripted stand-in card: a real WebSocket server that greets like the E-Port client
//! software, answers the probe (`cus-sec_SpcGetCertNo`) and the certificate read itself, and
//! answers every other call with the frames the test's script returns (written in one go), so
//! that a test can play a card that misbehaves exactly as a finding describes.

use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use tungstenite::Message;

pub const CERT_NO: &str = "standin-0001";

/// Whether the stand-in echoes `_id` in its answers to the probe and the certificate read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    Echoed,
    Never,
}

pub struct StandIn {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
}

type Script = dyn FnMut(&Value) -> Vec<Value> + Send;

impl StandIn {
    /// Starts the card; `script` gets each request other than the probe and the certificate
    /// read and returns the frames to answer it with (none: it stays silent).
    pub fn start(ids: Ids, script: impl FnMut(&Value) -> Vec<Value> + Send + 'static) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stand-in");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        let script: Arc<Mutex<Box<Script>>> = Arc::new(Mutex::new(Box::new(script)));
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let seen = seen.clone();
                let script = script.clone();
                std::thread::spawn(move || serve(tcp, ids, &seen, &script));
            }
        });
        StandIn { addr, received }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(
    tcp: std::net::TcpStream,
    ids: Ids,
    seen: &Mutex<Vec<Value>>,
    script: &Mutex<Box<Script>>,
) {
    let Ok(mut ws) = tungstenite::accept(tcp) else {
        return;
    };
    let greeting = json!({"_id": 0, "_method": "open", "_status": "00", "_args": {}});
    if ws.send(Message::text(greeting.to_string())).is_err() {
        return;
    }
    while let Ok(msg) = ws.read() {
        let Message::Text(text) = msg else { continue };
        let Ok(request) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        seen.lock().unwrap().push(request.clone());
        let method = request["_method"].as_str().unwrap_or_default();
        let frames = match method {
            "cus-sec_SpcGetCertNo" | "cus-sec_SpcGetSignCertAsPEM" => {
                let mut f = json!({"_method": method, "_status": "00",
                    "_args": {"Result": method == "cus-sec_SpcGetCertNo", "Data": [CERT_NO], "Error": []}});
                if ids == Ids::Echoed {
                    f["_id"] = request["_id"].clone();
                }
                vec![f]
            }
            _ => (script.lock().unwrap())(&request),
        };
        // all of a request's frames in one write
        for f in frames {
            if ws.write(Message::text(f.to_string())).is_err() {
                return;
            }
        }
        if ws.flush().is_err() {
            return;
        }
    }
}
