//! Kafka Connect's error body, `{"error_code": STATUS, "message": TEXT}`,
//! for every refusal of the admin server's data routes, so scripts written
//! for Connect read our errors as they read its.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A refusal, answered with Kafka Connect's error body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error_code": self.status.as_u16(), "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

pub fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    api_error(status, message).into_response()
}

/// Kafka Connect's answer to a path it does not serve.
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "HTTP 404 Not Found")
}

/// Kafka Connect's answer to a method a path does not take.
pub async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "HTTP 405 Method Not Allowed",
    )
}
