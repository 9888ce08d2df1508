//! Reading a request's body within `server.max_body_bytes` and the server's memory budget: a
//! larger one is answered 413 without being read, one the budget has no room for 503 with
//! `Retry-After`, and one that does not arrive within `server.body_timeout_ms` 408 (the
//! connection is then closed).

use super::reply::Reply;
use std::io::ErrorKind;
use tiny_http_cp::Request;

/// Bytes reserved against the budget at a time while a body of unknown length (chunked) is read.
const STEP: usize = 16 * 1024;

/// Reads the body of `request`, at most `limit` bytes.
pub fn read(request: &mut Request, limit: usize) -> Result<Vec<u8>, Reply> {
    let too_large = || {
        Reply::error(
            413,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let over_budget = |request: &Request| {
        // the body is left unread: the connection cannot go on
        request.close_after();
        Reply::error(
            503,
            "too many request bodies being received at once; try again shortly",
        )
        .with_header("Retry-After", "1")
    };
    if request.body_length().is_some_and(|n| n > limit) {
        request.close_after();
        return Err(too_large());
    }
    // small bodies were read (and counted) with the head
    let declared = request.body_length().filter(|&n| n > 1024);
    if let Some(n) = declared
        && !request.reserve_body(n)
    {
        return Err(over_budget(request));
    }
    // a declared length is allocated once, so what is held is what the budget counts
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    let mut reserved = declared.unwrap_or(0);
    // on the heap: on the stack this buffer was the deepest page every connection thread
    // touched, 0.5 MB of RSS at 64 clients (benches/load.rs). A known length is all the reader
    // can give, so a request without a body allocates nothing here.
    let mut chunk = vec![0u8; request.body_length().map_or(8192, |n| n.min(8192))];
    loop {
        let n = match request.as_reader().read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                request.close_after();
                return Err(Reply::error(
                    408,
                    "the request body did not arrive in time (server.body_timeout_ms)",
                ));
            }
            Err(e) => {
                request.close_after();
                return Err(Reply::error(
                    400,
                    format!("could not read the request body: {e}"),
                ));
            }
        };
        if body.len() + n > limit {
            request.close_after();
            return Err(too_large());
        }
        if declared.is_none() && body.len() + n > reserved {
            if !request.reserve_body(STEP) {
                return Err(over_budget(request));
            }
            reserved += STEP;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
}
