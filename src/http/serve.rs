//! One request end to end, in explicit phases: route lookup, body, authentication, handler,
//! then the log line, the audit record and the response. A panic in a handler answers 500 and
//! the thread lives on.

use super::exchange::{Exchange, Input};
use super::recent::RecentCall;
use super::reply::Reply;
use super::routes::{self, Access, Found};
use super::{App, audit, body};
use crate::auth::RequestParts;
use crate::auth::exposure::{self, Exposure};
use crate::logging::clean;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use tiny_http_cp::Request;

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

/// Handles one request and answers it.
pub fn handle(app: &App, mut request: Request) {
    let _counted = InFlight::enter(&app.in_flight);
    let mut ex = Exchange::new(request.arrived(), request.remote_addr().map(|a| a.ip()));
    let method = request.method().to_string();
    let path = path_of(request.url()).to_string();
    let request_id = ex.request_id.clone();
    let mut reply = guarded(&request_id, || serve(app, &mut request, &path, &mut ex));
    // journaled before the response goes out: a process killed after answering loses nothing;
    // a record that cannot be kept turns the answer into that error
    if let Err(refused) = audit::record(app, &ex, &reply) {
        reply = refused;
    }
    reply.headers.append(&mut ex.response_headers);
    // #26.1: the card that served it, whenever the card received one of the request's calls
    if ex.card_served.get()
        && let Some(cert_no) = app.ukey.status().cert_no()
    {
        reply.headers.push(("X-Cert-No".into(), cert_no));
    }
    if ex.scheme == Some(crate::config::Scheme::Hmac) {
        reply
            .headers
            .push(("x-mg-code".into(), reply.status.to_string()));
    }
    let access_line = || {
        log::info!(
            "[{request_id}] {} {} {}{}{} -> {} in {} ms{}",
            ex.client_ip_text(),
            clean(&method, 32),
            clean(&path, 256),
            if ex.ukey_method.is_some() { " " } else { "" },
            clean(ex.ukey_method.as_deref().unwrap_or(""), 128),
            reply.status,
            ex.arrived.elapsed().as_millis(),
            ex.trace_id
                .as_deref()
                .map(|t| format!(" trace={}", clean(t, 128)))
                .unwrap_or_default()
        )
    };
    // a caller nobody authenticated writes a bounded number of lines (M8): a flood cannot
    // rotate the log history away
    if ex.client.is_none() && (app.auth.is_some() || reply.status >= 400) {
        crate::logging::gated(access_line);
    } else {
        access_line();
    }
    observe(app, &ex, &path, &reply);
    audit::record_auth_failure(app, &ex, &method, &path);
    if let Err(e) = request.respond(reply.into_response(&request_id)) {
        log::debug!("[{request_id}] could not send the response: {e}");
    }
}

/// Open routes (health) are answered before anything else; every other request is read,
/// authenticated, and only then routed: an unauthenticated request never reaches the card, and
/// learns nothing of which paths exist.
fn serve(app: &App, request: &mut Request, path: &str, ex: &mut Exchange) -> Reply {
    if app.draining.load(Ordering::SeqCst) {
        // the last answer on this connection (the listener is closed; a retry goes elsewhere
        // or to the next start)
        request.close_after();
        return Reply::error(503, "proxy is shutting down").with_header("Retry-After", "1");
    }
    let found = routes::find(request.method(), path);
    let local = ex.from_this_pc();
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    if let Found::Route(route) = &found
        && (route.access == Access::Open || (route.access == Access::Local && local))
    {
        // the page for this PC answers only to this PC's names (DNS rebinding)
        if route.access == Access::Local
            && !exposure::host_allowed(header("Host").as_deref(), &app.config.server.allowed_hosts)
        {
            return Reply::error(
                403,
                "the status page answers to http://127.0.0.1 or http://localhost only; add other names to server.allowed_hosts",
            );
        }
        return (route.handler)(app, &head_of(request), ex);
    }
    let (origin, fetch_site) = (header("Origin"), header("Sec-Fetch-Site"));
    let mut input = head_of(request);
    input.body = match body::read(request, app.config.server.max_body_bytes) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    // past the open pages: a web page's request for another site never reaches the card (M10: text/plain CSRF)
    if let Some(why) = exposure::cross_site_refusal(
        origin.as_deref(),
        fetch_site.as_deref(),
        &app.config.server.allowed_origins,
    ) {
        return Reply::error(403, why);
    }
    // without a secret, only this PC may go further (#30.1)
    if !Exposure::of(&app.config).admits(local) {
        return Reply::error(403, exposure::NOT_THIS_PC);
    }
    if let Err(reply) = authenticate(app, request, path, &mut input, ex) {
        return reply;
    }
    if app.webhooks.audits() {
        // no room for its audit record: refused before the card is used, not served unaudited
        if let Err(why) = app.webhooks.audit_room(input.body.len()) {
            return audit::refused(why);
        }
        // parsed again, apart from the handler's parse: the record shows what the client sent
        ex.audit_request = Some(audit::request_summary(&input.body));
    }
    match found {
        Found::Route(route) => (route.handler)(app, &input, ex),
        other => routes::not_routed(&other, path),
    }
}

/// Checks the request's signature when authentication is on. A checksum-signed body comes back
/// without its signature field.
fn authenticate(
    app: &App,
    request: &Request,
    path: &str,
    input: &mut Input,
    ex: &mut Exchange,
) -> Result<(), Reply> {
    let Some(auth) = &app.auth else {
        return Ok(());
    };
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
        method: request.method().as_str(),
        path,
        query,
        authority: headers
            .iter()
            .find(|(n, _)| n == "host")
            .map(|(_, v)| v.as_str())
            .unwrap_or(""),
        headers: &headers,
        body: &input.body,
    };
    match auth.verify(&parts, ex.arrived_ms()) {
        Ok(ok) => {
            ex.client = Some(ok.client);
            ex.scheme = ok.scheme;
            ex.trace_id = ok.trace_id;
            ex.response_headers = ok.response_headers;
            if let Some(changed) = ok.body {
                input.body = changed; // checksum: the signature field is removed before it goes on
            }
            Ok(())
        }
        Err(e) => {
            crate::logging::gated(|| {
                log::warn!(
                    "[{}] {} authentication failed: {e}",
                    ex.request_id,
                    ex.client_ip_text()
                )
            });
            ex.auth_failure = Some(e.to_string());
            let mut reply = Reply::error(401, format!("authentication failed: {e}"));
            reply.headers = auth.failure_headers(&parts);
            Err(super::compat::on_auth_failure(app, path, reply))
        }
    }
}

/// What a handler may read of the request besides its body: the Content-Type (lower-cased),
/// the query and the language.
fn head_of(request: &Request) -> Input {
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
            .unwrap_or_default()
    };
    Input {
        body: Vec::new(),
        content_type: header("Content-Type").to_ascii_lowercase(),
        query: request
            .url()
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or("").to_string())
            .unwrap_or_default(),
        accept_language: header("Accept-Language"),
    }
}

/// Counts the request for `/metrics`, and keeps it for the status page (but for the pages that
/// only look).
fn observe(app: &App, ex: &Exchange, path: &str, reply: &Reply) {
    let route = routes::label(path);
    let metrics = crate::metrics::global();
    metrics.request(route, reply.status, ex.arrived.elapsed());
    if reply.status == 503 && reply.headers.iter().any(|(n, _)| n == "Retry-After") {
        crate::metrics::Metrics::count(&metrics.shed);
    }
    // the pages that only look (open, or open to this PC) are not calls
    if routes::ROUTES
        .iter()
        .any(|r| r.path == route && r.access != Access::Signed)
    {
        return;
    }
    app.recent.push(RecentCall {
        time_ms: crate::time::now_ms(),
        route: route.to_string(),
        ukey_method: ex.ukey_method.clone().unwrap_or_default(),
        status: reply.status,
        duration_ms: ex.arrived.elapsed().as_millis() as u64,
        request_id: ex.request_id.clone(),
        client_ip: ex.client_ip_text(),
    });
}

/// Runs a handler; a panic in it becomes a 500 reply instead of taking the thread down.
fn guarded(request_id: &str, handler: impl FnOnce() -> Reply) -> Reply {
    catch_unwind(AssertUnwindSafe(handler)).unwrap_or_else(|_| {
        log::error!("[{request_id}] handler panicked; answered 500");
        Reply::error(500, "internal error; the request was not completed")
    })
}

fn path_of(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
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
