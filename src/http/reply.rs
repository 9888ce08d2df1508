//! What a handler answers: a status and a JSON body (or raw bytes), turned into a tiny_http
//! response that always carries `X-Request-ID`; error bodies always carry `request_id` too.

use serde_json::{Value, json};
use std::io::Cursor;
use tiny_http_cp::{Header, Response};

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    /// `{"error": message, "request_id": ...}`
    Error(String),
    Raw {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Body,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            body: Body::Json(value),
            headers: Vec::new(),
        }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: Body::Error(message.into()),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error message, when this is an error reply.
    pub fn error_message(&self) -> Option<&str> {
        match &self.body {
            Body::Error(m) => Some(m),
            _ => None,
        }
    }

    /// The JSON the client receives.
    pub fn body_json(&self, request_id: &str) -> Option<Value> {
        match &self.body {
            Body::Json(v) => Some(v.clone()),
            Body::Error(m) => Some(json!({"error": m, "request_id": request_id})),
            Body::Raw {
                bytes,
                content_type,
            } if content_type.starts_with("application/json") => serde_json::from_slice(bytes).ok(),
            Body::Raw { .. } => None,
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Cursor<Vec<u8>>> {
        let (bytes, content_type) = match self.body {
            Body::Json(v) => (
                v.to_string().into_bytes(),
                "application/json; charset=utf-8",
            ),
            Body::Error(m) => (
                json!({"error": m, "request_id": request_id})
                    .to_string()
                    .into_bytes(),
                "application/json; charset=utf-8",
            ),
            Body::Raw {
                bytes,
                content_type,
            } => (bytes, content_type),
        };
        let mut response = Response::from_data(bytes).with_status_code(self.status);
        let fixed = [
            ("Content-Type".to_string(), content_type.to_string()),
            ("X-Request-ID".to_string(), request_id.to_string()),
        ];
        for (name, value) in fixed.into_iter().chain(self.headers) {
            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(h);
            }
        }
        response
    }
}
