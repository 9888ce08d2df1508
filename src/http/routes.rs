//! The route table: every endpoint the proxy serves, as (method, path) → handler, with whether it
//! is signed. 404, 405 and `Allow` come from this table alone, so a new endpoint is one line here
//! plus its handler.

use super::exchange::{Exchange, Input};
use super::reply::Reply;
use super::{
    App, card, ceb, compat, customs, health, metrics_page, openapi, rpc, status_page, transfer,
};
use tiny_http_cp::Method;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Answered before anything else: no body read, no authentication, no audit.
    Open,
    /// Open to this PC (a loopback address: the operator at its keyboard); from anywhere else,
    /// `Signed`.
    Local,
    /// The body is read and the request authenticated (when authentication is on) and audited.
    Signed,
}

pub type Handler = fn(&App, &Input, &mut Exchange) -> Reply;

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

/// Every route. Keep `docs/openapi.yaml` in step: a test compares the two.
pub static ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/",
        access: Access::Local,
        handler: status_page::get,
    },
    Route {
        method: Method::Get,
        path: "/metrics",
        access: Access::Open,
        handler: metrics_page::get,
    },
    Route {
        method: Method::Get,
        path: "/openapi.json",
        access: Access::Open,
        handler: openapi::get,
    },
    Route {
        method: Method::Get,
        path: "/health",
        access: Access::Open,
        handler: health::get,
    },
    Route {
        method: Method::Head,
        path: "/health",
        access: Access::Open,
        handler: health::get,
    },
    Route {
        method: Method::Post,
        path: "/rpc",
        access: Access::Signed,
        handler: rpc::post,
    },
    Route {
        method: Method::Post,
        path: "/api/customs179",
        access: Access::Signed,
        handler: customs::post_179,
    },
    Route {
        method: Method::Post,
        path: "/api/ceb/sign",
        access: Access::Signed,
        handler: ceb::sign,
    },
    Route {
        method: Method::Post,
        path: "/api/ceb/verify",
        access: Access::Signed,
        handler: ceb::verify,
    },
    Route {
        method: Method::Post,
        path: "/api/ceb/send",
        access: Access::Signed,
        handler: transfer::send,
    },
    Route {
        method: Method::Get,
        path: "/api/receipts",
        access: Access::Signed,
        handler: transfer::receipts,
    },
    Route {
        method: Method::Get,
        path: "/api/cert",
        access: Access::Signed,
        handler: card::info,
    },
    Route {
        method: Method::Get,
        path: "/api/cert/sign.cer",
        access: Access::Signed,
        handler: card::sign_cer,
    },
    Route {
        method: Method::Get,
        path: "/api/cert/env.cer",
        access: Access::Signed,
        handler: card::env_cer,
    },
    Route {
        method: Method::Post,
        path: "/api/ukey/restart",
        access: Access::Signed,
        handler: card::restart,
    },
    // the Java signer's API (compat.java_signer; docs/compat-java-signer.md)
    Route {
        method: Method::Post,
        path: "/rpc/eport/signature",
        access: Access::Signed,
        handler: compat::signature,
    },
    Route {
        method: Method::Get,
        path: "/rpc/eport/cert/download",
        access: Access::Signed,
        handler: compat::cert_download,
    },
    Route {
        method: Method::Post,
        path: "/rpc/eport/ukey/health/endpoint/RESTART",
        access: Access::Signed,
        handler: compat::health_restart,
    },
    Route {
        method: Method::Post,
        path: "/rpc/eport/ukey/health/endpoint/START",
        access: Access::Signed,
        handler: compat::health_start,
    },
    Route {
        method: Method::Post,
        path: "/rpc/eport/ukey/health/endpoint/STOP",
        access: Access::Signed,
        handler: compat::health_stop,
    },
    Route {
        method: Method::Post,
        path: "/rpc/eport/ukey/health/endpoint/REPAIR",
        access: Access::Signed,
        handler: compat::health_repair,
    },
    Route {
        method: Method::Post,
        path: "/rpc/eport/upload/179/data",
        access: Access::Signed,
        handler: compat::upload_179,
    },
];

/// The route a path belongs to, for metrics labels: the table's path, or `other`.
pub fn label(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|r| r.path == path)
        .map(|r| r.path)
        .unwrap_or("other")
}

/// What the table says about a request.
pub enum Found {
    Route(&'static Route),
    /// The path exists, the method does not: the `Allow` value.
    WrongMethod(String),
    NotFound,
}

pub fn find(method: &Method, path: &str) -> Found {
    let mut allowed = Vec::new();
    for route in ROUTES.iter().filter(|r| r.path == path) {
        if &route.method == method {
            return Found::Route(route);
        }
        allowed.push(route.method.as_str());
    }
    if allowed.is_empty() {
        Found::NotFound
    } else {
        Found::WrongMethod(allowed.join(", "))
    }
}

/// The answer for a request the table has no route for.
pub fn not_routed(found: &Found, path: &str) -> Reply {
    match found {
        Found::WrongMethod(allow) => Reply::error(405, format!("method not allowed; use {allow}"))
            .with_header("Allow", allow),
        _ => {
            let known: Vec<String> = ROUTES
                .iter()
                .filter(|r| r.method != Method::Head)
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            Reply::error(
                404,
                format!(
                    "no such endpoint: {path}; the endpoints are {}",
                    known.join(", ")
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_routes_and_refuses() {
        assert!(matches!(find(&Method::Post, "/rpc"), Found::Route(r) if r.path == "/rpc"));
        assert!(matches!(find(&Method::Get, "/rpc"), Found::WrongMethod(a) if a == "POST"));
        assert!(
            matches!(find(&Method::Delete, "/health"), Found::WrongMethod(a) if a == "GET, HEAD")
        );
        assert!(matches!(find(&Method::Get, "/nope"), Found::NotFound));
        let r = not_routed(&find(&Method::Get, "/nope"), "/nope");
        assert_eq!(r.status, 404);
        assert!(r.error_message().unwrap().contains("POST /api/ceb/sign"));
    }

    #[test]
    fn the_openapi_description_has_exactly_the_routes_of_the_table() {
        let spec: serde_json::Value =
            serde_json::from_str(super::super::openapi::openapi_json()).expect("JSON");
        let mut described: Vec<(String, String)> = spec["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .expect("operations")
                    .keys()
                    .map(|m| (m.to_ascii_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut table: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        described.sort();
        table.sort();
        assert_eq!(described, table, "docs/openapi.yaml and ROUTES differ");
    }

    #[test]
    fn every_route_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    a.path != b.path || a.method != b.method,
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
