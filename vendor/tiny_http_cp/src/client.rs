use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use crate::common::{HTTPVersion, Method};
use crate::connection::Connection;
use crate::util::admission::{PendingSlot, PendingSource};
use crate::util::head_deadline::{HeadClock, HeadDeadlineReader};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{MemoryBudget, Request, Reservation};

/// chinaport-proxy patch: longest header line (request line included) accepted, in bytes.
const MAX_HEADER_LINE: usize = 8 * 1024;
/// chinaport-proxy patch: most header lines accepted in one request.
const MAX_HEADERS: usize = 100;
/// chinaport-proxy patch: most bytes of one request head (request line and headers), so that
/// a connection's head costs at most this much memory.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<HeadDeadlineReader<RefinedTcpStream>>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<HeadDeadlineReader<RefinedTcpStream>>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // chinaport-proxy patch: bounds the time a request head and body may take
    head_clock: Arc<HeadClock>,

    // chinaport-proxy patch: heads and bodies are counted against this
    budget: Option<Arc<MemoryBudget>>,
}

/// chinaport-proxy patch: what bounds one connection.
#[derive(Default)]
pub(crate) struct ConnectionOptions {
    /// A handle on the same socket, whose read timeout the deadlines shorten.
    pub socket: Option<Connection>,
    pub header_timeout: Option<std::time::Duration>,
    pub body_timeout: Option<std::time::Duration>,
    pub idle_timeout: Option<std::time::Duration>,
    /// Counts the connection as pending for its host until its first request is complete.
    pub pending: Option<PendingSlot>,
    /// Counts its later requests' heads the same way.
    pub pending_source: Option<PendingSource>,
    pub budget: Option<Arc<MemoryBudget>>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader,
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed,
    ReadIoError(IoError),
    /// chinaport-proxy patch: HTTP/2.0 or 3.0 on an HTTP/1 connection
    UnsupportedVersion,
    /// chinaport-proxy patch: a body whose length cannot be known for sure (status, reason)
    BadFraming(u16, &'static str),
    /// chinaport-proxy patch: the memory budget for heads and bodies is spent
    OverBudget,
}

impl ClientConnection {
    /// chinaport-proxy patch: like `new`, with deadlines for heads and bodies, the host's
    /// pending count and the memory budget.
    pub(crate) fn with_options(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        options: ConnectionOptions,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let head_clock = HeadClock::new(
            options.header_timeout,
            options.body_timeout,
            options.idle_timeout,
            options.pending,
            options.pending_source,
        );
        let socket = if options.header_timeout.is_some() || options.body_timeout.is_some() {
            options.socket
        } else {
            None
        };
        let reader = HeadDeadlineReader::new(read_socket, socket, head_clock.clone());

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, reader));
        let first_header = source.next_reader();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            head_clock,
            budget: options.budget,
        }
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    fn read_next_line(&mut self) -> IoResult<AsciiString> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        // chinaport-proxy patch: the bytes are taken from the buffer a slice at a time (they
        // used to come through a chain of `read` calls, one per byte); what is consumed, the
        // line's end and its bound are as before.
        loop {
            let available = match self.next_header_source.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF"));
            }
            let mut used = 0;
            let mut line_ended = false;
            let mut too_long = false;
            for &byte in available {
                // chinaport-proxy patch: bound a header line so a client cannot grow it forever
                if buf.len() >= MAX_HEADER_LINE {
                    too_long = true;
                    break;
                }
                used += 1;
                if byte == b'\n' && prev_byte_was_cr {
                    line_ended = true;
                    break;
                }
                prev_byte_was_cr = byte == b'\r';
                buf.push(byte);
            }
            self.next_header_source.consume(used);
            if too_long {
                return Err(IoError::new(ErrorKind::InvalidData, "header line too long"));
            }
            if line_ended {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf)
                    .map_err(|_| IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"));
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        self.head_clock.begin_head();
        let mut held = self.budget.as_ref().map(|b| b.reservation());
        let head = self.read_head(&mut held);
        self.head_clock.end_head();
        let (method, path, version, headers) = head?;
        // chinaport-proxy patch: refused before a Request exists, whose writer would otherwise
        // still be held while the 505 is written (the connection deadlocked, finding H1)
        if version > (1, 1) {
            return Err(ReadError::UnsupportedVersion);
        }
        self.build_request(method, path, version, headers, held)
    }

    /// The request line and the headers.
    fn read_head(
        &mut self,
        held: &mut Option<Reservation>,
    ) -> Result<(Method, String, HTTPVersion, Vec<crate::Header>), ReadError> {
        let mut head_bytes = 0;
        let mut count = |line: &AsciiString, held: &mut Option<Reservation>| {
            // chinaport-proxy patch: the whole head is bounded, and held against the budget
            head_bytes += line.len() + 2;
            if head_bytes > MAX_HEAD_BYTES {
                return Err(ReadError::ReadIoError(IoError::new(
                    ErrorKind::InvalidData,
                    "request head too large",
                )));
            }
            let fits = held.as_mut().is_none_or(|r| r.grow(line.len() + 2));
            if fits {
                Ok(())
            } else {
                Err(ReadError::OverBudget)
            }
        };
        // reading the request line
        let (method, path, version) = {
            let line = self.read_next_line().map_err(ReadError::ReadIoError)?;
            count(&line, held)?;
            parse_request_line(line.as_str().trim())?
        };

        // getting all headers
        let mut headers = Vec::new();
        loop {
            let line = self.read_next_line().map_err(ReadError::ReadIoError)?;
            if line.is_empty() {
                break;
            };
            count(&line, held)?;
            // chinaport-proxy patch: bound the number of header lines too
            if headers.len() >= MAX_HEADERS {
                return Err(ReadError::ReadIoError(IoError::new(
                    ErrorKind::InvalidData,
                    "too many header lines",
                )));
            }
            headers.push(match FromStr::from_str(line.as_str().trim()) {
                Ok(h) => h,
                _ => return Err(ReadError::WrongHeader),
            });
        }

        Ok((method, path, version, headers))
    }

    fn build_request(
        &mut self,
        method: Method,
        path: String,
        version: HTTPVersion,
        headers: Vec<crate::Header>,
        held: Option<Reservation>,
    ) -> Result<Request, ReadError> {
        // building the writer for the request
        let writer = self.sink.next_writer();

        // follow-up for next potential request
        let mut data_source = self.source.next_reader();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            crate::request::RequestParts {
                method,
                path,
                version,
                headers,
                remote_addr: self.remote_addr.as_ref().ok().copied().flatten(),
                clock: Some(self.head_clock.clone()),
                held,
            },
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => ReadError::ExpectationFailed,
                request::RequestCreationError::BadFraming(status, why) => {
                    ReadError::BadFraming(status, why)
                }
                request::RequestCreationError::OverBudget => ReadError::OverBudget,
            }
        })?;

        // return the request
        Ok(request)
    }

    /// chinaport-proxy patch: answers a request that will not be handled, and ends the
    /// connection (where the next request would start is not known). No `Request` exists at
    /// this point, so no earlier writer is held.
    fn refuse(&mut self, status: u16, message: &str, retry_after: bool) {
        use crate::{Header, Response, StatusCode};
        let writer = self.sink.next_writer();
        let body = format!("{{\"error\":\"{message}\"}}");
        let mut response = Response::from_string(body)
            .with_status_code(StatusCode(status))
            .closing();
        let mut headers = vec![("Content-Type", "application/json")];
        if retry_after {
            headers.push(("Retry-After", "1"));
        }
        for (name, value) in headers {
            if let Ok(h) = Header::from_bytes(name, value) {
                response.add_header(h);
            }
        }
        let _ = response.raw_print(writer, HTTPVersion(1, 1), &[], false, None);
        self.no_more_requests = true;
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come;
        // chinaport-proxy patch: or a deadline passed, or an answer could not be written
        if self.no_more_requests || self.head_clock.broken() {
            return None;
        }

        let rq = match self.read() {
            Ok(rq) => rq,
            Err(e) => {
                match e {
                    ReadError::WrongRequestLine => {
                        self.refuse(400, "malformed request line", false)
                    }
                    ReadError::WrongHeader => self.refuse(400, "malformed header line", false),
                    ReadError::ReadIoError(ref err) if err.kind() == ErrorKind::TimedOut => {
                        self.refuse(408, "the request took too long to arrive", false)
                    }
                    ReadError::ExpectationFailed => {
                        self.refuse(417, "unsupported Expect header", false)
                    }
                    ReadError::ReadIoError(ref err) if err.kind() == ErrorKind::InvalidData => {
                        // chinaport-proxy patch: header line too long or too many header lines
                        self.refuse(431, "request header too large", false)
                    }
                    ReadError::ReadIoError(ref err) if err.kind() == ErrorKind::InvalidInput => {
                        self.refuse(400, "request head is not ASCII", false)
                    }
                    ReadError::UnsupportedVersion => self.refuse(
                        505,
                        "this server only supports HTTP versions 1.0 and 1.1",
                        false,
                    ),
                    ReadError::BadFraming(status, why) => self.refuse(status, why, false),
                    ReadError::OverBudget => {
                        self.refuse(503, "too many requests being read, try again shortly", true)
                    }
                    ReadError::ReadIoError(_) => {}
                }
                return None;
            }
        };

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // returning the request
        Some(rq)
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }

    /// chinaport-proxy patch (#32.4): the real parser, fed mutated and random heads through a
    /// socket pair with a fixed-seed generator: it never panics, every request it yields can be
    /// read and answered, and each connection ends (no read waits past the input's end).
    #[cfg(unix)]
    #[test]
    fn mutated_heads_never_panic_or_hang_the_parser() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        use std::time::{Duration, Instant};

        const SEEDS: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /rpc HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
        ];
        const SPECIAL: [u8; 9] = [b'\r', b'\n', b':', b' ', 0, 0xff, b'\t', b'0', b'-'];
        let mut state: u64 = 0x5EED_1234_ABCD_0001;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let started = Instant::now();
        let mut cases = 0;
        while started.elapsed() < Duration::from_secs(1) {
            let mut input = SEEDS[(next() % SEEDS.len() as u64) as usize].to_vec();
            for _ in 0..1 + next() % 8 {
                let at = (next() % (input.len() as u64 + 1)) as usize;
                let byte = if next() % 2 == 0 {
                    SPECIAL[(next() % SPECIAL.len() as u64) as usize]
                } else {
                    next() as u8
                };
                match next() % 4 {
                    0 if at < input.len() => input[at] = byte,
                    1 => input.insert(at, byte),
                    2 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.truncate(at.max(1)),
                }
            }
            let (server, mut client) = UnixStream::pair().unwrap();
            server
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            client.write_all(&input).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let (read, write) =
                crate::util::RefinedTcpStream::new(crate::connection::Connection::from(server))
                    .unwrap();
            let connection = super::ClientConnection::with_options(
                write,
                read,
                super::ConnectionOptions::default(),
            );
            let case = Instant::now();
            for mut rq in connection {
                let mut body = Vec::new();
                let _ = rq.as_reader().take(1 << 20).read_to_end(&mut body);
                let _ = rq.respond(crate::Response::from_string("ok"));
                assert!(case.elapsed() < Duration::from_secs(2), "{:?}", input);
            }
            assert!(case.elapsed() < Duration::from_secs(2), "{:?}", input);
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer);
            assert!(
                answer.is_empty() || answer.starts_with(b"HTTP/1."),
                "{:?} answered {:?}",
                String::from_utf8_lossy(&input),
                String::from_utf8_lossy(&answer)
            );
            cases += 1;
        }
        eprintln!("{} mutated heads parsed", cases);
        assert!(cases > 100, "only {} cases", cases);
    }
}
