//! chinaport-proxy patch: closing a connection so that the client reads what was written to it.
//!
//! Closing a socket that still has unread bytes from the client makes the kernel send a TCP
//! reset, and a reset can make the client drop the answer it has not read yet ("connection
//! reset", or "broken pipe" when it is still sending). This follows nginx's lingering close
//! (<https://nginx.org/en/docs/http/ngx_http_core_module.html#lingering_close>): after the
//! last answer the server shuts down its sending side (FIN) and goes on reading and
//! discarding what the client sends, until the client closes, nothing arrives for
//! `LINGER_TIMEOUT` (nginx `lingering_timeout`) or `LINGER_TIME` has passed (nginx
//! `lingering_time`). A refused connection first reads (and discards) the request itself, so a
//! plain HTTP client that sends its whole request before reading gets its 503.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::util::admission::find;

/// Longest a closing connection is drained (nginx `lingering_time`, 30 s there; ours serves
/// one local program, not browsers on slow links).
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);
/// Longest wait for the next bytes while draining (nginx `lingering_timeout`, 5 s there).
pub(crate) const LINGER_TIMEOUT: Duration = Duration::from_millis(500);
/// Most bytes of a refused request (head and body) read before it is answered.
const MAX_REFUSED_REQUEST: usize = 64 * 1024;
/// Most bytes discarded while lingering.
const MAX_DRAIN: usize = 1024 * 1024;

/// Reads (and discards) the request on `conn`, within bounds, then answers `response`, then
/// closes with a lingering close.
pub(crate) fn refuse(mut conn: Connection, response: &[u8]) {
    let started = Instant::now();
    if conn
        .set_timeouts(Some(LINGER_TIMEOUT), Some(LINGER_TIMEOUT))
        .is_err()
    {
        return;
    }
    read_request(&mut conn, started);
    if conn.write_all(response).and_then(|_| conn.flush()).is_ok() {
        linger(&mut conn);
    }
}

/// Writes `response` and closes at once, without a thread (when none is to spare).
pub(crate) fn refuse_now(mut conn: Connection, response: &[u8]) {
    let _ = conn.set_timeouts(Some(LINGER_TIMEOUT), Some(LINGER_TIMEOUT));
    let _ = conn.write_all(response);
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Write);
}

/// Reads a request head and as much of its body as `Content-Length` says, within
/// `MAX_REFUSED_REQUEST` bytes and `LINGER_TIME`.
fn read_request(conn: &mut Connection, started: Instant) {
    let mut seen = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let mut wanted = None;
    while seen.len() < MAX_REFUSED_REQUEST {
        if let Some(total) = wanted {
            if seen.len() >= total {
                return;
            }
        }
        let left = LINGER_TIME.saturating_sub(started.elapsed());
        if left.is_zero()
            || conn
                .set_read_timeout(Some(left.min(LINGER_TIMEOUT)))
                .is_err()
        {
            return;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if wanted.is_none() {
            if let Some(end) = find(&seen, b"\r\n\r\n") {
                wanted = Some(end + 4 + content_length(&seen[..end]));
            }
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Shuts down the sending side and drains what the client still sends, within bounds.
pub(crate) fn linger(conn: &mut Connection) {
    let started = Instant::now();
    if conn.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < MAX_DRAIN {
        let left = LINGER_TIME.saturating_sub(started.elapsed());
        if left.is_zero()
            || conn
                .set_read_timeout(Some(left.min(LINGER_TIMEOUT)))
                .is_err()
        {
            return;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}
