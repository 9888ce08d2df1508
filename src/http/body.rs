//! Reading a request's body within `server.max_body_bytes`: a larger one is answered 413
//! without being read.

use super::reply::Reply;
use std::io::Read;
use tiny_http::Request;

/// Reads the body of `request`, at most `limit` bytes.
pub fn read(request: &mut Request, limit: usize) -> Result<Vec<u8>, Reply> {
    let too_large = || {
        Reply::error(
            413,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    if request.body_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Reply::error(400, format!("could not read the request body: {e}")))?;
    if body.len() > limit {
        return Err(too_large());
    }
    Ok(body)
}
