//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http_cp::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http_cp::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http_cp::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http_cp::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http_cp::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http_cp::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::net::{IpAddr, Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::{ClientConnection, ConnectionOptions};
use connection::Connection;
use util::admission::{Admission, Decision};
use util::MessagesQueue;

pub use client::MAX_HEAD_BYTES;
pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;
pub use util::budget::{MemoryBudget, Reservation};

mod client;
mod common;
mod connection;
mod request;
mod response;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

/// chinaport-proxy patch: how long a connection refused only because its host is at its
/// pending limit waits for its whole request, or for its host to drop below the limit, before
/// it is refused after all.
const PROMOTION_GRACE: Duration = Duration::from_secs(1);

/// chinaport-proxy patch: what a connection's thread needs to serve it.
struct Front {
    limits: ConnectionLimits,
    admission: Arc<Admission>,
    handler: Option<RequestHandler>,
    messages: Arc<MessagesQueue<Message>>,
}

impl Front {
    /// Waits up to `PROMOTION_GRACE` for a whole request to arrive on `sock` (`Some(None)`) or
    /// for its host to drop below its pending limit (`Some(Some(slot))`), looking every few
    /// milliseconds; `None`: neither, refuse it.
    fn wait_for_turn(
        &self,
        sock: &Connection,
        ip: Option<IpAddr>,
    ) -> Option<Option<util::admission::PendingSlot>> {
        let started = std::time::Instant::now();
        loop {
            if sock.holds_complete_request() {
                return Some(None);
            }
            if let Some(slot) = ip.and_then(|ip| self.admission.try_pending(ip)) {
                return Some(Some(slot));
            }
            if started.elapsed() >= PROMOTION_GRACE {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Serves `sock` until it ends, then closes it with a lingering close.
    fn serve(
        &self,
        sock: Connection,
        ip: Option<IpAddr>,
        _slot: &util::admission::ConnectionSlot,
        pending: Option<util::admission::PendingSlot>,
    ) {
        let limits = &self.limits;
        // chinaport-proxy patch: bound idle and slow clients
        if sock
            .set_timeouts(limits.read_timeout, limits.write_timeout)
            .is_err()
        {
            return;
        }
        let (Ok(deadlines), Ok(mut lingering)) = (sock.try_clone(), sock.try_clone()) else {
            return;
        };
        let Ok((read_closable, write_closable)) = util::RefinedTcpStream::new(sock) else {
            return;
        };
        let client = ClientConnection::with_options(
            write_closable,
            read_closable,
            ConnectionOptions {
                socket: Some(deadlines),
                header_timeout: limits.header_timeout,
                body_timeout: limits.body_timeout,
                idle_timeout: limits.read_timeout,
                pending,
                pending_source: self.admission.pending_source(ip),
                budget: Some(self.admission.budget().clone()),
            },
        );
        match &self.handler {
            Some(handler) => {
                // chinaport-proxy patch: answered here, one after the other; then the client
                // reads the last answer before the close
                client.for_each(|rq| handler(rq));
                util::refuse::linger(&mut lingering);
            }
            // upstream's queue: the answers are written later, by whoever took the requests,
            // and the write half's drop ends the connection
            None => client.for_each(|rq| self.messages.push(rq.into())),
        }
    }
}

// the server is shared between threads
const _: fn() = || {
    fn shared<T: Sync + Send>() {}
    shared::<Server>();
};

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_limits(listener, ConnectionLimits::default())
    }

    /// chinaport-proxy patch: like `from_listener_with_limits`, but every request is handed to
    /// `handler` on its connection's own thread, which answers it before the next request on
    /// that connection is read. No queue stands between a connection and its handler, so the
    /// number of requests being handled is the number of connections, bounded by `limits`, and
    /// a connection waiting for its answer is not reading (no read timeout can cut it).
    /// `recv()` gets nothing from such a server.
    pub fn from_listener_with_handler<L: Into<Listener>>(
        listener: L,
        limits: ConnectionLimits,
        handler: RequestHandler,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::start(listener, limits, Some(handler))
    }

    /// chinaport-proxy patch: like `from_listener`, but within `limits` (see
    /// `ConnectionLimits`).
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        limits: ConnectionLimits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::start(listener, limits, None)
    }

    fn start<L: Into<Listener>>(
        listener: L,
        limits: ConnectionLimits,
        handler: Option<RequestHandler>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let server = listener.into();
        let local_addr = server.local_addr()?;
        log::debug!("Server listening on {}", local_addr);
        let budget = Arc::new(MemoryBudget::new(limits.memory_budget));
        let admission = Admission::new(
            limits.max_connections,
            limits.max_connections_per_ip,
            budget,
        );
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let front = Arc::new(Front {
            limits,
            admission,
            handler,
            messages: messages.clone(),
        });
        thread::spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                let sock = match server.accept() {
                    Ok((sock, _)) => sock,
                    // chinaport-proxy patch: one failed accept (a client that reset before we
                    // took it, or file descriptors running out under a flood) must not end the
                    // accept loop for good; pause briefly so a persistent error cannot spin.
                    Err(e) => {
                        log::warn!("Error accepting new client: {}", e);
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let ip: Option<IpAddr> = sock.peer_addr().ok().flatten().map(|a| a.ip());
                // chinaport-proxy patch: admission (util/admission.rs); a refused connection
                // reads its request and is answered on a thread of its own (util/refuse.rs)
                let decision = front.admission.decide(ip, || sock.holds_complete_request());
                let front = front.clone();
                match decision {
                    Decision::Serve { slot, pending } => {
                        tasks_pool.spawn(Box::new(move || {
                            front.serve(sock, ip, &slot, pending);
                        }));
                    }
                    Decision::Refuse {
                        refusal,
                        promotable,
                    } => {
                        tasks_pool.spawn(Box::new(move || {
                            // its host is at its pending limit: its request may still be on
                            // the way, or the host's other connections about to complete theirs
                            // (a batch opening many connections at once)
                            if promotable {
                                if let Some(pending) = front.wait_for_turn(&sock, ip) {
                                    if let Some(slot) = front.admission.promote() {
                                        drop(refusal);
                                        front.serve(sock, ip, &slot, pending);
                                        return;
                                    }
                                }
                            }
                            util::refuse::refuse(sock, &front.limits.over_capacity_response);
                            drop(refusal);
                        }));
                    }
                    Decision::RefuseNow => {
                        util::refuse::refuse_now(sock, &front.limits.over_capacity_response);
                    }
                }
            }
            log::debug!("Terminating accept thread");
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::other("thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// chinaport-proxy patch: stops accepting new connections and frees the port, while the
    /// connections already open go on being served (for a graceful shutdown, when workers still
    /// hold the server and it cannot be dropped yet).
    pub fn close_listener(&self) {
        self.close.store(true, Relaxed);
        // wake the accept thread, which then sees the flag and ends, dropping the listener
        // (without Unix sockets, on Windows, the pattern always matches)
        #[allow(irrefutable_let_patterns)]
        if let ListenAddr::IP(addr) = &self.listening_addr {
            let mut addr = *addr;
            if addr.ip().is_unspecified() {
                let loopback: std::net::IpAddr = if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                };
                addr.set_ip(loopback);
            }
            if let Ok(stream) = TcpStream::connect(addr) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// chinaport-proxy patch: what `from_listener_with_handler` calls for every request.
pub type RequestHandler = Arc<dyn Fn(Request) + Send + Sync + 'static>;

/// chinaport-proxy patch: limits applied by the accept loop and each connection.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Connections served at once; one more is refused with `over_capacity_response`.
    pub max_connections: usize,
    /// Connections one client address may hold *without a complete request* (not yet sent a
    /// whole request, or in the middle of a head or body); one more is refused the same way
    /// (unless its whole request has already arrived). Connections whose request is complete
    /// do not count: one host's parallel calls are not capped.
    pub max_connections_per_ip: usize,
    /// A request head must be complete this long after its first byte, else 408 and close.
    pub header_timeout: Option<Duration>,
    /// A request body must be complete this long after its head, else 408 and close.
    pub body_timeout: Option<Duration>,
    /// Raw HTTP response written to a refused connection, after its request has been read
    /// (within bounds); the connection is then closed with a lingering close.
    pub over_capacity_response: Vec<u8>,
    /// Read timeout of every accepted connection: an idle or slow client is cut after it.
    pub read_timeout: Option<Duration>,
    /// Write timeout of every accepted connection; an answer not written within it closes
    /// the connection.
    pub write_timeout: Option<Duration>,
    /// Bytes of request heads and bodies held at once across all connections (heads here,
    /// bodies through `Request::reserve_body`); past it, 503.
    pub memory_budget: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: usize::MAX,
            max_connections_per_ip: usize::MAX,
            header_timeout: None,
            body_timeout: None,
            read_timeout: None,
            write_timeout: None,
            over_capacity_response: b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(),
            memory_budget: usize::MAX,
        }
    }
}
