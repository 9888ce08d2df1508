//! The HTTP front: the hardened listening socket, the worker threads, request IDs, routing,
//! body limits and panic isolation. Handlers return a `Reply`; only this module talks to tiny_http.

pub mod customs;
pub mod reply;
pub mod rpc;

use crate::auth::{Authenticator, RequestParts};
use crate::config::{Config, ServerConfig};
use crate::mask::Masker;
use crate::ukey::{Ukey, now_ms};
use crate::webhook::{Audit, Webhooks};
use customs::{self as customs_api, Customs};
use reply::{Body, Reply};
use serde_json::{Value, json};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tiny_http::{Method, Request};

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

/// Everything a handler needs. Shared read-only by all workers.
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
}

impl App {
    pub fn new(
        config: Config,
        ukey: Ukey,
        masker: Masker,
        webhooks: Webhooks,
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
            customs: Customs::new(
                &config.customs.upload_url,
                Duration::from_millis(config.customs.timeout_ms),
                config.webhook.tls_roots == "system",
            ),
            config,
        })
    }
}

/// The running HTTP server: its address and its workers.
pub struct HttpServer {
    http: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    pub addr: SocketAddr,
}

/// Binds the listening socket. (Idle and slow clients are bounded per accepted connection, see
/// `HttpServer::start`: timeouts on the listener itself would also time out `accept()` on Linux.)
pub fn bind(config: &ServerConfig) -> Result<TcpListener, StartError> {
    let ip: IpAddr = config.host.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let addr = SocketAddr::new(ip, config.port);
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
    /// Serves `listener` with `config.server.workers` worker threads.
    pub fn start(listener: TcpListener, app: Arc<App>) -> std::io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        let timeout = Some(Duration::from_millis(app.config.server.read_timeout_ms));
        let limits = tiny_http::ConnectionLimits {
            max_connections: app.config.server.max_connections,
            over_capacity_response: over_capacity_response(),
            read_timeout: timeout,
            write_timeout: timeout,
        };
        let http = tiny_http::Server::from_listener_with_limits(listener, None, limits)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let http = Arc::new(http);
        let mut workers = Vec::new();
        for n in 0..app.config.server.workers {
            let http = http.clone();
            let app = app.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("http-{n}"))
                    .spawn(move || worker(&http, &app))?,
            );
        }
        Ok(HttpServer {
            http,
            workers,
            addr,
        })
    }

    /// Stops accepting connections; open ones are still served (for draining).
    pub fn close_listener(&self) {
        self.http.close_listener();
    }

    /// Wakes idle workers so that they end. A worker still inside a request is not waited for:
    /// the caller has drained what it meant to drain.
    pub fn stop(self) {
        for _ in &self.workers {
            self.http.unblock();
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

fn worker(http: &tiny_http::Server, app: &App) {
    while let Ok(request) = http.recv() {
        handle(app, request);
    }
}

/// What is known about one request while it is handled: its ID, the UKey method it calls, and
/// whether (and with what request body) it is audited.
pub struct Exchange {
    pub request_id: String,
    pub started: Instant,
    pub ukey_method: Option<String>,
    /// Set once the request passed authentication and reached routing: it is then audited.
    pub audit_request: Option<Value>,
    /// Who signed it, with which scheme, and the caller's trace id (x-mg-traceid).
    pub client: Option<String>,
    pub scheme: &'static str,
    pub trace_id: Option<String>,
    /// Headers the authentication scheme adds to the response.
    pub response_headers: Vec<(String, String)>,
    /// The request's Content-Type, lower-cased.
    pub content_type: String,
}

/// Counts a request in `App::in_flight` for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Handles one request end to end. A panic inside the handler answers 500; the worker lives on.
fn handle(app: &App, mut request: Request) {
    let _counted = InFlight::enter(&app.in_flight);
    let mut ex = Exchange {
        request_id: uuid::Uuid::new_v4().to_string(),
        started: Instant::now(),
        ukey_method: None,
        audit_request: None,
        client: None,
        scheme: "",
        trace_id: None,
        response_headers: Vec::new(),
        content_type: String::new(),
    };
    let method = request.method().to_string();
    let path = path_of(request.url()).to_string();
    let mut reply = guarded(&ex.request_id.clone(), || serve(app, &mut request, &mut ex));
    reply.headers.append(&mut ex.response_headers);
    if ex.scheme == "hmac" {
        reply
            .headers
            .push(("x-mg-code".into(), reply.status.to_string()));
    }
    let request_id = &ex.request_id;
    log::info!(
        "[{request_id}] {method} {path}{}{} -> {} in {} ms{}",
        if ex.ukey_method.is_some() { " " } else { "" },
        ex.ukey_method.as_deref().unwrap_or(""),
        reply.status,
        ex.started.elapsed().as_millis(),
        ex.trace_id
            .as_deref()
            .map(|t| format!(" trace={t}"))
            .unwrap_or_default()
    );
    // journaled before the response goes out: a process killed after answering loses nothing
    audit(app, &ex, &reply);
    if let Err(e) = request.respond(reply.into_response(request_id)) {
        log::debug!("[{request_id}] could not send the response: {e}");
    }
}

/// Health is answered before anything else; every other request is read, authenticated, and only
/// then routed (an unauthenticated request never reaches the card).
fn serve(app: &App, request: &mut Request, ex: &mut Exchange) -> Reply {
    let path = path_of(request.url()).to_string();
    let method = request.method().clone();
    if app.draining.load(Ordering::SeqCst) {
        return Reply::error(503, "proxy is shutting down");
    }
    if path == "/health" && matches!(method, Method::Get | Method::Head) {
        return health(app);
    }
    ex.content_type = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().to_ascii_lowercase())
        .unwrap_or_default();
    let mut body = match read_body(request, app.config.server.max_body_bytes) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    if let Some(auth) = &app.auth {
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect();
        let url = request.url().split('#').next().unwrap_or("");
        let query = url.find('?').map(|i| &url[i..]).unwrap_or("");
        let parts = RequestParts {
            method: method.as_str(),
            path: &path,
            query,
            authority: headers
                .iter()
                .find(|(n, _)| n == "host")
                .map(|(_, v)| v.as_str())
                .unwrap_or(""),
            headers: &headers,
            body: &body,
        };
        match auth.verify(&parts, now_ms()) {
            Ok(ok) => {
                ex.client = Some(ok.client);
                ex.scheme = ok.scheme;
                ex.trace_id = ok.trace_id;
                ex.response_headers = ok.response_headers;
                if let Some(changed) = ok.body {
                    body = changed; // checksum: the signature field is removed before it goes on
                }
            }
            Err(e) => {
                log::warn!("[{}] authentication failed: {e}", ex.request_id);
                let mut reply = Reply::error(401, format!("authentication failed: {e}"));
                reply.headers = auth.failure_headers(&parts);
                return reply;
            }
        }
    }
    ex.audit_request = Some(request_summary(&body));
    route(app, &method, &path, &body, ex)
}

/// The request as an audit record shows it: its JSON, or an excerpt of what it was.
fn request_summary(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
            json!({"body": text, "bytes": body.len()})
        }
    }
}

fn audit(app: &App, ex: &Exchange, reply: &Reply) {
    let Some(request) = &ex.audit_request else {
        return;
    };
    let response = reply.body_json(&ex.request_id).unwrap_or(Value::Null);
    let error = match reply.error_message() {
        Some(m) => m.to_string(),
        None if !reply.is_success() => rpc::frame_errors(&response).join("; "),
        None => String::new(),
    };
    app.webhooks.audit(Audit {
        request_id: &ex.request_id,
        client: ex.client.as_deref(),
        trace_id: ex.trace_id.as_deref(),
        method: ex.ukey_method.as_deref().unwrap_or(""),
        request: request.clone(),
        response,
        success: reply.is_success(),
        error: &error,
        duration_ms: ex.started.elapsed().as_millis() as u64,
    });
}

/// Runs a handler; a panic in it becomes a 500 reply instead of taking the worker down.
fn guarded(request_id: &str, handler: impl FnOnce() -> Reply) -> Reply {
    catch_unwind(AssertUnwindSafe(handler)).unwrap_or_else(|_| {
        log::error!("[{request_id}] handler panicked; answered 500");
        Reply::error(500, "internal error; the request was not completed")
    })
}

fn path_of(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

fn route(app: &App, method: &Method, path: &str, body: &[u8], ex: &mut Exchange) -> Reply {
    match (path, method) {
        ("/rpc", Method::Post) => handle_rpc(app, body, ex),
        ("/rpc", _) => method_not_allowed("POST"),
        ("/api/customs179", Method::Post) => {
            ex.ukey_method = Some("customs179".into());
            let reply = customs_api::handle(&app.customs, &app.ukey, body, &ex.request_id);
            report_operation_failure(app, "cus-sec_SpcSignDataAsPEM", &reply, &ex.request_id);
            reply
        }
        ("/api/customs179", _) => method_not_allowed("POST"),
        ("/api/ceb/sign", Method::Post) => {
            ex.ukey_method = Some("ceb.sign".into());
            let reply = crate::customs::ceb::handle(
                &app.ukey,
                &app.config.ceb.signature_method,
                body,
                &ex.content_type,
                &ex.request_id,
            );
            report_operation_failure(app, "cus-sec_SpcSignDataAsPEM", &reply, &ex.request_id);
            reply
        }
        ("/api/ceb/sign", _) => method_not_allowed("POST"),
        ("/health", _) => method_not_allowed("GET"),
        _ => Reply::error(
            404,
            format!("no such endpoint: {path}; use POST /rpc, /api/customs179 or /api/ceb/sign"),
        ),
    }
}

fn method_not_allowed(allowed: &'static str) -> Reply {
    Reply::error(405, format!("method not allowed; use {allowed}")).with_header("Allow", allowed)
}

fn handle_rpc(app: &App, body: &[u8], ex: &mut Exchange) -> Reply {
    let request_id = ex.request_id.as_str();
    let call = match rpc::parse_call(body) {
        Ok(c) => c,
        Err(e) => return Reply::error(400, e),
    };
    ex.ukey_method = Some(call.method.clone());
    if log::log_enabled!(log::Level::Debug) {
        let args = app.masker.masked(&Value::Object(call.args.clone()));
        log::debug!("[{request_id}] rpc {} args {}", call.method, args);
    }
    let mut reply = rpc::execute(&app.ukey, &call, request_id);
    if let Body::Json(frame) = &mut reply.body {
        app.masker.mask_value(frame);
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("[{request_id}] rpc {} answer {}", call.method, frame);
        }
    }
    report_operation_failure(app, &call.method, &reply, request_id);
    reply
}

/// A card that said no, or did not answer in time, is reported to the failure webhook. (A lost
/// connection is reported once per outage by the UKey thread, not once per call.)
fn report_operation_failure(app: &App, method: &str, reply: &Reply, request_id: &str) {
    let (error, errors) = match &reply.body {
        Body::Json(frame) if reply.status == 400 => {
            // /rpc answers the card's frame; customs179 nests it under "ukey"
            let errors = rpc::frame_errors(frame.get("ukey").unwrap_or(frame));
            (
                format!("UKey operation {method} failed: {}", errors.join("; ")),
                errors,
            )
        }
        Body::Error(m) if m.contains("did not answer") => (m.clone(), vec![m.clone()]),
        _ => return,
    };
    app.webhooks.failure(
        "operation_failure",
        &error,
        method,
        &errors,
        Some(request_id),
    );
}

/// Reads the body, at most `limit` bytes: a larger one is answered 413 without being read.
pub fn read_body(request: &mut Request, limit: usize) -> Result<Vec<u8>, Reply> {
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

fn health(app: &App) -> Reply {
    let status = app.ukey.status();
    let connected = status.connected.load(std::sync::atomic::Ordering::SeqCst);
    let probe_ms = status
        .last_probe_ms
        .load(std::sync::atomic::Ordering::SeqCst);
    let probe_ok = status
        .last_probe_ok
        .load(std::sync::atomic::Ordering::SeqCst);
    let healthy = connected && probe_ok;
    let backlog = app.webhooks.backlog();
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "connected": connected,
        "cert_no": status.cert_no(),
        "last_probe": {
            "time_ms": if probe_ms == 0 { None } else { Some(probe_ms) },
            "ok": probe_ok,
        },
        "last_error": status.last_error().map(|e| app.masker.mask_str(&e)),
        "in_flight": status.in_flight.load(std::sync::atomic::Ordering::SeqCst),
        "webhook_backlog": {"events": backlog.0, "bytes": backlog.1, "dropped": backlog.2},
        "uptime_s": app.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
        "time_ms": now_ms(),
    });
    Reply::json(if healthy { 200 } else { 503 }, body)
}

#[cfg(test)]
mod tests {
    use super::{guarded, path_of};
    use crate::http::reply::Reply;

    #[test]
    fn a_panicking_handler_answers_500_and_the_thread_goes_on() {
        let worker = std::thread::spawn(|| {
            let first = guarded("r1", || panic!("boom"));
            let second = guarded("r2", || Reply::json(200, serde_json::json!({})));
            (
                first.status,
                first.error_message().map(str::to_owned),
                second.status,
            )
        });
        let (first, message, second) = worker.join().expect("the worker thread survived");
        assert_eq!(first, 500);
        assert!(message.unwrap().contains("internal error"));
        assert_eq!(second, 200);
    }

    #[test]
    fn path_drops_query() {
        assert_eq!(path_of("/rpc?x=1"), "/rpc");
        assert_eq!(path_of("/rpc"), "/rpc");
        assert_eq!(path_of("/a#b"), "/a");
    }
}
