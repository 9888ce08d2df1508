//! What is known about one request while it is handled: its ID, when it arrived, who sent it,
//! what it called, and what goes into its log line and audit record. Handlers get the body as an
//! `Input` and fill in the `Exchange`.

use serde_json::Value;
use std::cell::Cell;
use std::net::IpAddr;
use std::time::Instant;

/// The request body and its Content-Type (lower-cased), as the handler sees them.
#[derive(Debug, Default)]
pub struct Input {
    pub body: Vec<u8>,
    pub content_type: String,
    /// The query string, without `?`.
    pub query: String,
    pub accept_language: String,
}

#[derive(Debug)]
pub struct Exchange {
    pub request_id: String,
    /// When the request's head had been read. Its time budget runs from here.
    pub arrived: Instant,
    /// The caller's address, for the log line and the audit record.
    pub client_ip: Option<IpAddr>,
    /// The UKey method (or endpoint name) it called, for the log line and audit.
    pub ukey_method: Option<String>,
    /// Set once the request passed authentication and reached routing: it is then audited.
    pub audit_request: Option<Value>,
    /// Who signed it, with which scheme, and the caller's trace id (x-mg-traceid).
    pub client: Option<String>,
    pub scheme: Option<crate::config::Scheme>,
    pub trace_id: Option<String>,
    /// Headers the authentication scheme adds to the response.
    pub response_headers: Vec<(String, String)>,
    /// Set when authentication failed: the rule that failed, for the (bounded) audit record.
    pub auth_failure: Option<String>,
    /// Set once the card received one of this request's calls: its answer then names the card
    /// in `X-Cert-No` (#26.1). A cell, because the signing workflows hold the exchange shared.
    pub card_served: Cell<bool>,
}

impl Exchange {
    pub fn new(arrived: Instant, client_ip: Option<IpAddr>) -> Exchange {
        Exchange {
            request_id: uuid::Uuid::new_v4().to_string(),
            arrived,
            client_ip,
            ukey_method: None,
            audit_request: None,
            client: None,
            scheme: None,
            trace_id: None,
            response_headers: Vec::new(),
            auth_failure: None,
            card_served: Cell::new(false),
        }
    }

    /// Notes a call's outcome: if the card received it, the answer names the card.
    pub fn note_card(&self, result: &Result<Value, crate::ukey::CallError>) {
        if crate::ukey::card_received(result) {
            self.card_served.set(true);
        }
    }

    /// The wall-clock time of arrival in Unix milliseconds: what a signature's timestamp is
    /// judged against, so that time spent waiting inside the proxy never makes a caller stale.
    pub fn arrived_ms(&self) -> u64 {
        crate::time::now_ms().saturating_sub(self.arrived.elapsed().as_millis() as u64)
    }

    /// Whether the caller is this PC itself: exactly 127.0.0.1 or ::1. The rest of 127.0.0.0/8 is
    /// treated as another host on purpose: nothing on this PC needs it, and it lets the tests
    /// play a LAN host (127.0.0.2) against a real socket.
    pub fn from_this_pc(&self) -> bool {
        self.client_ip.is_some_and(|ip| match ip {
            IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
            }
        })
    }

    /// The client address as text, for log lines and audit records.
    pub fn client_ip_text(&self) -> String {
        self.client_ip.map(|ip| ip.to_string()).unwrap_or_default()
    }
}
