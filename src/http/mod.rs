//! The HTTP front: the hardened listening socket, the threads that serve connections, and one
//! route table (`routes`) that every request goes through. Handlers, one file per route family,
//! return a `Reply`; only this folder talks to tiny_http.
//!
//! Data flows one way: `serve` (route, body, auth) → handler → `ukey` / `customs` → `reply` →
//! `audit`.

pub mod audit;
pub mod body;
pub mod card;
pub mod ceb;
pub mod compat;
pub mod customs;
pub mod domain;
pub mod exchange;
pub mod health;
pub mod metrics_page;
pub mod openapi;
pub mod recent;
pub mod reply;
pub mod routes;
pub mod rpc;
pub mod serve;
pub mod status_page;
pub mod transfer;

use crate::auth::Authenticator;
use crate::config::{Config, ServerConfig};
use crate::customs::upload::Customs;
use crate::mask::Masker;
use crate::ukey::Ukey;
use crate::webhook::Webhooks;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Why the HTTP server could not start.
#[derive(Debug)]
pub enum StartError {
    PortInUse(SocketAddr),
    Bind(SocketAddr, std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::PortInUse(addr) => write!(
                f,
                "port {} is already in use on {} (is chinaport-proxy already running on port {}?)",
                addr.port(),
                addr.ip(),
                addr.port()
            ),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Everything a handler needs. Shared read-only by all threads.
pub struct App {
    pub config: Config,
    pub ukey: Ukey,
    pub masker: Masker,
    pub started: Instant,
    /// `None` when no secret and no client is configured.
    pub auth: Option<Authenticator>,
    pub webhooks: Webhooks,
    /// Requests being handled now (drained on shutdown).
    pub in_flight: AtomicUsize,
    /// Set on shutdown: new requests on open connections get 503.
    pub draining: AtomicBool,
    pub customs: Customs,
    /// Bounds the audit records of failed authentication.
    pub failed_auth: audit::FailedAuthGate,
    /// The last calls, for the status page.
    pub recent: recent::Recent,
    /// The transfer client's folders and store (issue 27); `None`: off. Set by `main`.
    pub transfer: Option<Arc<crate::transfer::Transfer>>,
}

impl App {
    pub fn new(
        config: Config,
        ukey: Ukey,
        masker: Masker,
        webhooks: Webhooks,
        tls: &crate::outbound::TlsTrust,
    ) -> Result<App, String> {
        let auth = Authenticator::from_config(&config.auth)?;
        Ok(App {
            ukey,
            masker,
            started: Instant::now(),
            auth,
            webhooks,
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            customs: Customs::with_timeout(
                &config.customs.upload_url,
                Duration::from_millis(config.customs.timeout_ms),
                tls,
            ),
            failed_auth: audit::FailedAuthGate::default(),
            recent: recent::Recent::default(),
            transfer: None,
            config,
        })
    }
}

/// Bytes of request heads and bodies held at once, across all connections, before a request is
/// complete (finding M6): a body that would go past it is answered 503 with `Retry-After`. Each
/// head is also at most `tiny_http_cp::MAX_HEAD_BYTES` (32 KiB). See docs/limits.md.
pub const MEMORY_BUDGET_BYTES: usize = 128 * 1024 * 1024;

/// The running HTTP server. Each connection is served on its own thread (tiny_http's), which
/// answers its requests one after the other: there is no worker pool and no queue in front of
/// the handlers, so the number of requests in progress is bounded by the connection caps alone.
pub struct HttpServer {
    http: tiny_http_cp::Server,
    pub addr: SocketAddr,
}

/// Binds the listening socket. (Idle and slow clients are bounded per accepted connection, see
/// `HttpServer::start`: timeouts on the listener itself would also time out `accept()` on Linux.)
pub fn bind(config: &ServerConfig) -> Result<TcpListener, StartError> {
    let addr = SocketAddr::new(config.host, config.port);
    let err = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            StartError::PortInUse(addr)
        } else {
            StartError::Bind(addr, e)
        }
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    // On Unix, SO_REUSEADDR only allows rebinding past TIME_WAIT. On Windows it would let a second
    // process steal the port, so it is left off there and a second copy fails with WSAEADDRINUSE.
    #[cfg(unix)]
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    Ok(socket.into())
}

impl HttpServer {
    /// Serves `listener`, every request handled by `serve::handle` on its connection's thread.
    pub fn start(listener: TcpListener, app: Arc<App>) -> std::io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        let server = &app.config.server;
        let timeout = Some(Duration::from_millis(server.read_timeout_ms));
        let limits = tiny_http_cp::ConnectionLimits {
            max_connections: server.max_connections,
            max_connections_per_ip: server.max_connections_per_ip,
            header_timeout: Some(Duration::from_millis(server.header_timeout_ms)),
            body_timeout: Some(Duration::from_millis(server.body_timeout_ms)),
            over_capacity_response: over_capacity_response(),
            read_timeout: timeout,
            write_timeout: timeout,
            memory_budget: MEMORY_BUDGET_BYTES,
        };
        let handler: tiny_http_cp::RequestHandler = {
            let app = app.clone();
            Arc::new(move |request| serve::handle(&app, request))
        };
        let http = tiny_http_cp::Server::from_listener_with_handler(listener, limits, handler)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(HttpServer { http, addr })
    }

    /// The graceful stop: no new connections, new requests on open ones answered 503, and up to
    /// `limit` for the requests in flight to finish.
    pub fn drain(self, app: &App, limit: Duration) {
        log::info!(
            "stop requested: no new connections; letting {} request(s) finish (up to {} s)",
            app.in_flight.load(Ordering::SeqCst),
            limit.as_secs()
        );
        self.http.close_listener();
        app.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        while app.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = app.in_flight.load(Ordering::SeqCst);
        if left > 0 {
            log::warn!(
                "{left} request(s) still running after {} s; stopping anyway",
                limit.as_secs()
            );
        }
    }
}

fn over_capacity_response() -> Vec<u8> {
    let body = r#"{"error":"too many open connections, try again shortly"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
