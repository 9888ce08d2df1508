//! The last 100 calls, for the status page: when, which route and UKey method, the answer's
//! status and duration, the request ID and the caller's address. Never a payload, a password or
//! a signature.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

pub const KEPT: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct RecentCall {
    pub time_ms: u64,
    pub route: String,
    pub ukey_method: String,
    pub status: u16,
    pub duration_ms: u64,
    pub request_id: String,
    pub client_ip: String,
}

#[derive(Default)]
pub struct Recent {
    calls: Mutex<VecDeque<RecentCall>>,
}

impl Recent {
    pub fn push(&self, call: RecentCall) {
        {
            let mut c = crate::sync::lock(&self.calls);
            if c.len() >= KEPT {
                c.pop_front();
            }
            c.push_back(call);
        }
    }

    /// Newest first.
    pub fn list(&self) -> Vec<RecentCall> {
        crate::sync::lock(&self.calls)
            .iter()
            .rev()
            .cloned()
            .collect()
    }
}
