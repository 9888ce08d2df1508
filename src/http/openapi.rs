//! `GET /openapi.json`: the API description, `docs/openapi.yaml` (written in JSON, which is YAML
//! too, so that it is served as it is). A test keeps it and the route table in step.

use super::App;
use super::exchange::{Exchange, Input};
use super::reply::{Body, Reply};

pub fn get(_: &App, _: &Input, _: &mut Exchange) -> Reply {
    Reply {
        status: 200,
        body: Body::Raw {
            bytes: openapi_json().as_bytes().to_vec(),
            content_type: "application/json; charset=utf-8",
        },
        headers: Vec::new(),
    }
}

pub const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

/// The description without the YAML comment lines at its top: JSON.
pub fn openapi_json() -> &'static str {
    &OPENAPI[OPENAPI.find('{').unwrap_or(0)..]
}
