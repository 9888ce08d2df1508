use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;

use std::sync::Arc;

use crate::util::head_deadline::HeadClock;
use crate::Reservation;

use crate::util::{EqualReader, FusedReader};
use crate::{HTTPVersion, Header, Method, Response, StatusCode};
use chunked_transfer::Decoder;

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // chinaport-proxy patch: when the request's head had been read
    arrived: std::time::Instant,

    // chinaport-proxy patch: the connection's deadlines and pending count
    clock: Option<Arc<HeadClock>>,

    // chinaport-proxy patch: the head's (and body's) bytes held against the memory budget
    held: Option<Reservation>,
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),

    /// chinaport-proxy patch: the body's length cannot be known for sure (status, reason).
    BadFraming(u16, &'static str),

    /// chinaport-proxy patch: the memory budget has no room for the body.
    OverBudget,
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// chinaport-proxy patch: what `new_request` is built from, besides the streams.
pub(crate) struct RequestParts {
    pub method: Method,
    pub path: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
    pub remote_addr: Option<SocketAddr>,
    pub clock: Option<Arc<HeadClock>>,
    pub held: Option<Reservation>,
}

/// chinaport-proxy patch: how the body is delimited (RFC 9112 section 6), strictly: a
/// request whose framing a front proxy could read differently is refused, not guessed at
/// (finding L5, request smuggling).
fn framing(headers: &[Header]) -> Result<Option<usize>, RequestCreationError> {
    let bad = |why| Err(RequestCreationError::BadFraming(400, why));
    let mut encodings = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"));
    let mut lengths = headers.iter().filter(|h| h.field.equiv("Content-Length"));
    if let Some(te) = encodings.next() {
        if !te.value.as_str().trim().eq_ignore_ascii_case("chunked") || encodings.next().is_some() {
            return Err(RequestCreationError::BadFraming(
                501,
                "the only Transfer-Encoding supported is chunked",
            ));
        }
        if lengths.next().is_some() {
            return bad("a request may not carry both Transfer-Encoding and Content-Length");
        }
        return Ok(None);
    }
    let mut length = None;
    for h in lengths {
        let text = h.value.as_str().trim();
        let n = match text.parse::<usize>() {
            Ok(n) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return bad("invalid Content-Length"),
        };
        if length.is_some_and(|l| l != n) {
            return bad("conflicting Content-Length headers");
        }
        length = Some(n);
    }
    Ok(length)
}

/// Ends the connection's pending time when the body has been read to its end.
struct CompleteAtEnd<R> {
    inner: R,
    clock: Option<Arc<HeadClock>>,
}

impl<R: Read> Read for CompleteAtEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(clock) = self.clock.take() {
                clock.complete();
            }
        }
        Ok(n)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
pub(crate) fn new_request<R, W>(
    parts: RequestParts,
    mut source_data: R,
    writer: W,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let RequestParts {
        method,
        path,
        version,
        headers,
        remote_addr,
        clock,
        mut held,
    } = parts;
    // chinaport-proxy patch: the head has just been read (small bodies are read below)
    let arrived = std::time::Instant::now();
    let content_length = framing(&headers)?;
    let chunked =
        content_length.is_none() && headers.iter().any(|h| h.field.equiv("Transfer-Encoding"));

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers. chinaport-proxy patch: `Connection: upgrade` no longer reads the
    // connection to its end (the proxy upgrades nothing); the body is framed like any other.
    let mut complete_now = false;
    let reader = if let Some(content_length) = content_length {
        if content_length == 0 {
            complete_now = true;
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        } else if content_length <= 1024 && !expects_continue {
            // if the content-length is small enough, we just read everything into a buffer
            if let Some(held) = held.as_mut() {
                if !held.grow(content_length) {
                    return Err(RequestCreationError::OverBudget);
                }
            }

            let mut buffer = vec![0; content_length];
            let mut offset = 0;

            while offset != content_length {
                let read = source_data.read(&mut buffer[offset..])?;
                if read == 0 {
                    // the socket returned EOF, but we were before the expected content-length
                    // aborting
                    let info = "Connection has been closed before we received enough data";
                    let err = IoError::new(ErrorKind::ConnectionAborted, info);
                    return Err(RequestCreationError::CreationIoError(err));
                }

                offset += read;
            }
            complete_now = true;

            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            let (data_reader, _) = EqualReader::new(source_data, content_length);
            Box::new(CompleteAtEnd {
                inner: FusedReader::new(data_reader),
                clock: clock.clone(),
            }) as Box<dyn Read + Send + 'static>
        }
    } else if chunked {
        Box::new(CompleteAtEnd {
            inner: FusedReader::new(Decoder::new(source_data)),
            clock: clock.clone(),
        }) as Box<dyn Read + Send + 'static>
    } else {
        // if we have neither a Content-Length nor a Transfer-Encoding,
        // assuming that we have no data
        complete_now = true;
        Box::new(io::empty()) as Box<dyn Read + Send + 'static>
    };
    if complete_now {
        if let Some(clock) = &clock {
            clock.complete();
        }
    }

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: expects_continue,
        arrived,
        clock,
        held,
    })
}

impl Request {
    /// chinaport-proxy patch: when the request's head had been read, before its body: a
    /// request's time budget runs from here, not from when a thread got to it.
    #[inline]
    pub fn arrived(&self) -> std::time::Instant {
        self.arrived
    }

    /// chinaport-proxy patch: holds `bytes` more of the body against the server's memory
    /// budget, for as long as this request lives; `false` when the budget has no room (answer
    /// 503). Always `true` on a server without a budget.
    pub fn reserve_body(&mut self, bytes: usize) -> bool {
        match self.held.as_mut() {
            Some(held) => held.grow(bytes),
            None => true,
        }
    }

    /// chinaport-proxy patch: the connection closes after this request's answer (its body was
    /// not read to the end, say).
    pub fn close_after(&self) {
        if let Some(clock) = &self.clock {
            clock.mark_broken();
        }
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        Box::new(stream) as Box<dyn ReadWrite + Send>
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http_cp;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http_cp::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http_cp::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        self.extract_writer_impl()
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;
        // chinaport-proxy patch: answering ends the request's pending time; when the
        // connection cannot go on, the answer says so
        let mut response = response;
        if let Some(clock) = &self.clock {
            clock.complete();
            if clock.broken() {
                response = response.closing();
            }
        }

        let written = response
            .raw_print(
                writer.by_ref(),
                self.http_version.clone(),
                &self.headers,
                do_not_send_body,
                None,
            )
            .and_then(|_| writer.flush());
        // chinaport-proxy patch: an answer that could not be written (the client is gone, or
        // has not read for the write timeout: a pipelining client that never reads) ends the
        // connection instead of serving its next request (finding M7)
        if written.is_err() {
            if let Some(clock) = &self.clock {
                clock.mark_broken();
            }
        }
        Self::ignore_client_closing_errors(written)
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
