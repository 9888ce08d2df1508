//! `GET /openapi.json`: the API description, `docs/openapi.yaml` (written in JSON, which is YAML
//! too), served compact (build.rs). A test keeps it and the route table in step.

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

/// `docs/openapi.yaml` as build.rs leaves it: its JSON, without comment lines or indentation.
const OPENAPI_COMPACT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// The description as served: JSON.
pub fn openapi_json() -> &'static str {
    OPENAPI_COMPACT
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_served_description_is_the_file_in_the_tree() {
        let file = include_str!("../../docs/openapi.yaml");
        let file: serde_json::Value =
            serde_json::from_str(&file[file.find('{').unwrap()..]).unwrap();
        let served: serde_json::Value = serde_json::from_str(super::openapi_json()).unwrap();
        assert_eq!(served, file);
    }
}
