//! chinaport-proxy patch: which accepted connection is served and which refused, what one host
//! may hold without a complete request, and the memory budget of heads and pending bodies.
//!
//! - `max_connections` bounds the connections served at once (each has a thread).
//! - `max_pending_per_ip` bounds, per client address, the connections that hold a slot
//!   *without a complete request*: accepted and not yet sent a whole request, or in the middle of
//!   a head or body (see `head_deadline.rs`). A connection whose request is complete (being
//!   handled, waiting for the card, or idle between requests) does not count: one host's batch of
//!   parallel calls is not capped, while its half-open or slow connections are.
//! - A refused connection still gets a readable answer (`refuse.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Refusals being answered at once (each reads the request and lingers on its own thread);
/// past this a refused connection is answered and closed at once.
const MAX_REFUSING: usize = 128;

pub(crate) struct Admission {
    max_connections: usize,
    max_pending_per_ip: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
    pending: Mutex<HashMap<IpAddr, usize>>,
    refusing_per_ip: Mutex<HashMap<IpAddr, usize>>,
    budget: Arc<crate::MemoryBudget>,
}

/// What the accept loop does with a new connection.
pub(crate) enum Decision {
    /// Served on its own thread; `pending` counts it for its host until its first request is
    /// complete (`None` when it arrived with a complete request in hand).
    Serve {
        slot: ConnectionSlot,
        pending: Option<PendingSlot>,
    },
    /// Refused, on a thread of its own that reads the request before answering; when
    /// `promotable` (only its host's pending limit was in the way), a whole request arriving
    /// soon gets it served after all (`promote`).
    Refuse {
        refusal: RefusalSlot,
        promotable: bool,
    },
    /// Refused with no thread to spare: answered and closed at once.
    RefuseNow,
}

impl Admission {
    pub(crate) fn new(
        max_connections: usize,
        max_pending_per_ip: usize,
        budget: Arc<crate::MemoryBudget>,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            max_connections,
            max_pending_per_ip,
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            pending: Mutex::new(HashMap::new()),
            refusing_per_ip: Mutex::new(HashMap::new()),
            budget,
        })
    }

    pub(crate) fn budget(&self) -> &Arc<crate::MemoryBudget> {
        &self.budget
    }

    /// `complete_request_waiting`: asked only when the host is at its pending limit, whether a
    /// whole request has already arrived on this connection.
    pub(crate) fn decide(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        complete_request_waiting: impl FnOnce() -> bool,
    ) -> Decision {
        let over_total = self.open.load(Ordering::Relaxed) >= self.max_connections;
        let pending = if over_total {
            return self.refusal(ip, false);
        } else {
            match ip {
                None => Some(None),
                Some(ip) => match self.try_pending(ip) {
                    Some(slot) => Some(Some(slot)),
                    None if complete_request_waiting() => Some(None),
                    None => None,
                },
            }
        };
        match pending {
            Some(pending) => {
                self.open.fetch_add(1, Ordering::Relaxed);
                Decision::Serve {
                    slot: ConnectionSlot {
                        admission: self.clone(),
                    },
                    pending,
                }
            }
            None => self.refusal(ip, true),
        }
    }

    /// Counts one more pending connection of `ip`, unless it is at its limit.
    pub(crate) fn try_pending(self: &Arc<Self>, ip: IpAddr) -> Option<PendingSlot> {
        let mut map = lock(&self.pending);
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_pending_per_ip {
            return None;
        }
        *n += 1;
        Some(PendingSlot {
            admission: self.clone(),
            ip,
        })
    }

    /// A slot for a connection refused only for its host's pending limit, whose whole request
    /// has since arrived or whose host has since dropped below its limit; `None` when the
    /// server is full by now.
    pub(crate) fn promote(self: &Arc<Self>) -> Option<ConnectionSlot> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ConnectionSlot {
            admission: self.clone(),
        })
    }

    fn refusal(self: &Arc<Self>, ip: Option<IpAddr>, promotable: bool) -> Decision {
        if self.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::Relaxed);
            return Decision::RefuseNow;
        }
        if let Some(ip) = ip {
            let mut map = lock(&self.refusing_per_ip);
            let n = map.entry(ip).or_insert(0);
            // one host cannot take every refusing thread either
            if *n >= self.max_pending_per_ip.max(1) {
                drop(map);
                self.refusing.fetch_sub(1, Ordering::Relaxed);
                return Decision::RefuseNow;
            }
            *n += 1;
        }
        Decision::Refuse {
            refusal: RefusalSlot {
                admission: self.clone(),
                ip,
            },
            promotable,
        }
    }

    /// Something that counts a later head of a connection from `ip` as pending.
    pub(crate) fn pending_source(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<PendingSource> {
        ip.map(|ip| PendingSource {
            admission: self.clone(),
            ip,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn release(map: &Mutex<HashMap<IpAddr, usize>>, ip: IpAddr) {
    let mut map = lock(map);
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

/// One served connection, for as long as it lives.
pub(crate) struct ConnectionSlot {
    admission: Arc<Admission>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection of `ip` without a complete request.
pub(crate) struct PendingSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        release(&self.admission.pending, self.ip);
    }
}

/// Counts a later request head of an open connection (not refused: the connection is already
/// served; its count only makes new connections of the same host wait their turn).
pub(crate) struct PendingSource {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl PendingSource {
    pub(crate) fn take(&self) -> PendingSlot {
        *lock(&self.admission.pending).entry(self.ip).or_insert(0) += 1;
        PendingSlot {
            admission: self.admission.clone(),
            ip: self.ip,
        }
    }
}

/// One refusal being answered.
pub(crate) struct RefusalSlot {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
}

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        self.admission.refusing.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            release(&self.admission.refusing_per_ip, ip);
        }
    }
}

/// Whether `peeked` (what has arrived on a connection, not yet read) holds a whole request:
/// a head, and as many body bytes as its `Content-Length` says (no `Transfer-Encoding`).
pub(crate) fn holds_complete_request(peeked: &[u8]) -> bool {
    let Some(end) = find(peeked, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&peeked[..end]).to_ascii_lowercase();
    let mut length = 0usize;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        match name.trim() {
            "transfer-encoding" => return false,
            "content-length" => match value.trim().parse() {
                Ok(n) => length = n,
                Err(_) => return false,
            },
            _ => {}
        }
    }
    peeked.len() - (end + 4) >= length
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_ip: usize) -> Arc<Admission> {
        Admission::new(total, per_ip, Arc::new(crate::MemoryBudget::new(1 << 20)))
    }

    #[test]
    fn a_host_at_its_pending_limit_is_served_only_with_a_complete_request() {
        let a = admission(10, 2);
        let ip = Some(IpAddr::from([127, 0, 0, 2]));
        let held: Vec<_> = (0..2).map(|_| a.decide(ip, || false)).collect();
        assert!(held.iter().all(|d| matches!(
            d,
            Decision::Serve {
                pending: Some(_),
                ..
            }
        )));
        assert!(matches!(
            a.decide(ip, || false),
            Decision::Refuse {
                promotable: true,
                ..
            }
        ));
        assert!(matches!(
            a.decide(ip, || true),
            Decision::Serve { pending: None, .. }
        ));
        // another host is not affected
        let other = Some(IpAddr::from([127, 0, 0, 1]));
        assert!(matches!(
            a.decide(other, || false),
            Decision::Serve {
                pending: Some(_),
                ..
            }
        ));
        drop(held);
        assert!(matches!(
            a.decide(ip, || false),
            Decision::Serve {
                pending: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn over_the_total_every_connection_is_refused() {
        let a = admission(1, 5);
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        let _first = a.decide(ip, || true);
        assert!(matches!(
            a.decide(ip, || true),
            Decision::Refuse {
                promotable: false,
                ..
            }
        ));
        assert!(a.promote().is_none());
    }

    #[test]
    fn a_complete_request_is_recognised() {
        assert!(holds_complete_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!holds_complete_request(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(holds_complete_request(
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
        ));
        assert!(!holds_complete_request(
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"
        ));
        assert!(!holds_complete_request(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ));
    }
}
