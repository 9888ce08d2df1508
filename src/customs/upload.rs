//! Talking to customs' `realTimeDataUpload` endpoint for the 179 data, and remembering which
//! session IDs were signed (customs rejects a reused one). An outgoing client only: nothing here
//! serves HTTP.

use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Session IDs remembered to warn about a second signature.
const SESSIONS_KEPT: usize = 10_000;

/// What happened to an upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Upload {
    NotAsked,
    /// Customs answered `code` 10000.
    Accepted(Value),
    /// Customs answered, but not 10000 (its reply is kept for the caller).
    Refused(Value),
    /// Customs could not be reached.
    Failed(String),
}

/// The customs upload client and the session IDs already signed.
pub struct Customs {
    agent: ureq::Agent,
    upload_url: String,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Customs {
    pub fn new(upload_url: &str, agent: ureq::Agent) -> Customs {
        Customs {
            agent,
            upload_url: upload_url.to_string(),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Builds the client with the shared outgoing-HTTP settings.
    pub fn with_timeout(
        upload_url: &str,
        timeout: Duration,
        tls: &crate::outbound::TlsTrust,
    ) -> Customs {
        Customs::new(upload_url, tls.agent(timeout))
    }

    /// True when this session ID was signed before (customs rejects a reused one).
    pub fn signed_before(&self, session: &str) -> bool {
        let mut guard = crate::sync::lock(&self.seen);
        let (set, order) = &mut *guard;
        if set.contains(session) {
            return true;
        }
        if order.len() >= SESSIONS_KEPT
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        set.insert(session.to_string());
        order.push_back(session.to_string());
        false
    }

    /// POSTs the signed object as the form field `payExInfoStr`.
    pub fn upload(&self, payload: &str, request_id: &str) -> Upload {
        // ureq form-encodes the field; the charset is said, as customs' own samples do
        let sent = self
            .agent
            .post(self.upload_url.as_str())
            .header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .send_form([("payExInfoStr", payload)]);
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Upload::Failed(format!(
                    "customs upload failed: {}",
                    crate::outbound::explain(&self.upload_url, &e)
                ));
            }
        };
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let reply: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| json!({"status": status, "body": text}));
        let code = reply.get("code").and_then(|c| {
            c.as_str()
                .map(str::to_owned)
                .or_else(|| c.as_i64().map(|n| n.to_string()))
        });
        log::info!(
            "[{request_id}] customs upload answered {status}, code {}",
            code.as_deref().unwrap_or("none")
        );
        match code.as_deref() {
            Some("10000") if (200..300).contains(&status) => Upload::Accepted(reply),
            _ => Upload::Refused(reply),
        }
    }
}
