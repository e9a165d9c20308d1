//! What both sources share: the HTTP client, auth, and what a response
//! status means to the runtime.

use std::sync::Arc;
use std::time::Duration;
use tributary_sdk::{ConnectorEvent, ConnectorStats, Error, Secret};

pub struct Client {
    http: reqwest::Client,
    /// The API's base URL, e.g. `http://127.0.0.1:8080`.
    url: String,
    /// A bearer token (`token = "${FEED_TOKEN}"`): never in logs or errors.
    token: Option<Secret>,
    /// Where HTTP statuses are counted (`tributary_http_responses`).
    metrics: Arc<ConnectorStats>,
}

impl Client {
    pub fn new(url: String, token: Option<Secret>, metrics: Arc<ConnectorStats>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Client {
            http,
            url,
            token,
            metrics,
        }
    }

    /// GET (or POST `body`) `path`; the body of a 2xx answer.
    pub async fn call(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, Error> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let mut req = match &body {
            None => self.http.get(&url),
            Some(b) => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(b.to_string()),
        };
        if let Some(token) = &self.token {
            req = req.bearer_auth(token.expose());
        }
        let resp = req.send().await.map_err(|e| {
            self.metrics
                .record(ConnectorEvent::HttpFailure { reason: "connect" });
            Error::retryable(format!("{url}: {e}"))
        })?;
        let status = resp.status().as_u16();
        self.metrics.record(ConnectorEvent::HttpResponse { status });
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .map(Duration::from_secs);
        let text = resp
            .bytes()
            .await
            .map_err(|e| Error::retryable(format!("{url}: {e}")))?;
        match status {
            200..=299 => Ok(text.to_vec()),
            // Busy or broken for now: back off and try again.
            429 | 500..=599 => Err(Error::Retryable {
                message: format!("{url}: HTTP {status}"),
                retry_after,
            }),
            // The token: nothing works until a person changes it.
            401 | 403 => Err(Error::config(format!(
                "{url}: HTTP {status}: the token was refused"
            ))),
            _ => Err(Error::fatal(format!(
                "{url}: HTTP {status}: {}",
                String::from_utf8_lossy(&text)
            ))),
        }
    }
}
