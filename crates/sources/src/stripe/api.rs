//! The few Stripe Reporting API calls the connector makes, on the shared
//! HTTP client (auth, rate limit, concurrency bound, error classes), and
//! the objects they return (`reporting.report_type`, `reporting.report_run`,
//! `file`), typed to the fields we read.

use crate::http::client::{HttpClient, HttpError, HttpErrorKind, HttpRequest, Method};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone, Deserialize)]
pub struct ReportType {
    pub data_available_start: i64,
    pub data_available_end: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReportRun {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub result: Option<FileObject>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileObject {
    pub url: Option<String>,
}

/// What a new run asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest<'a> {
    pub report_type: &'a str,
    pub interval_start: DateTime<Utc>,
    pub interval_end: DateTime<Utc>,
    pub timezone: &'a str,
    pub columns: Option<&'a [String]>,
}

/// The Stripe endpoints, with the key already in the client.
#[derive(Debug, Clone)]
pub struct StripeApi {
    pub client: HttpClient,
    pub base: Url,
    pub files: Url,
    pub stripe_version: Option<String>,
    pub download_timeout: Duration,
}

impl StripeApi {
    fn request(&self, method: Method, url: Url) -> HttpRequest {
        let mut r = HttpRequest::new(method, url);
        if let Some(v) = &self.stripe_version {
            r.headers.push(("Stripe-Version".into(), v.clone()));
        }
        r
    }

    fn url(&self, path: &str) -> Result<Url, HttpError> {
        self.base
            .join(path)
            .map_err(|e| HttpError::new(HttpErrorKind::Invalid, format!("`{path}`: {e}")))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<T, HttpError> {
        parse(self.client.execute(&self.request(Method::Get, url)).await?)
    }

    pub async fn report_type(&self, id: &str) -> Result<ReportType, HttpError> {
        self.get(self.url(&format!("v1/reporting/report_types/{}", encode(id)))?)
            .await
    }

    pub async fn report_run(&self, id: &str) -> Result<ReportRun, HttpError> {
        self.get(self.url(&format!("v1/reporting/report_runs/{}", encode(id)))?)
            .await
    }

    /// Creates a run with `idempotency_key` (Stripe's "Idempotent
    /// requests"): sent again with the same key and parameters, Stripe
    /// answers the run it created the first time. True with the run when
    /// this is such a replay (`Idempotent-Replayed: true`).
    pub async fn create_run(
        &self,
        run: &RunRequest<'_>,
        idempotency_key: &str,
    ) -> Result<(ReportRun, bool), HttpError> {
        let mut form = vec![
            ("report_type".to_string(), run.report_type.to_string()),
            (
                "parameters[interval_start]".to_string(),
                run.interval_start.timestamp().to_string(),
            ),
            (
                "parameters[interval_end]".to_string(),
                run.interval_end.timestamp().to_string(),
            ),
            ("parameters[timezone]".to_string(), run.timezone.to_string()),
        ];
        for c in run.columns.unwrap_or_default() {
            form.push(("parameters[columns][]".to_string(), c.clone()));
        }
        let mut request = self.request(Method::Post, self.url("v1/reporting/report_runs")?);
        request.form = Some(form);
        request
            .headers
            .push(("Idempotency-Key".into(), idempotency_key.to_string()));
        let response = self.client.execute(&request).await?;
        let replayed = response
            .headers
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        Ok((parse(response)?, replayed))
    }

    /// Whether the API key may be sent to `url`: only to Stripe's own
    /// hosts as configured, never to wherever a response points.
    pub fn trusted_file_url(&self, url: &Url) -> bool {
        [&self.files, &self.base].iter().any(|t| {
            t.scheme() == url.scheme()
                && t.host_str() == url.host_str()
                && t.port_or_known_default() == url.port_or_known_default()
        })
    }

    /// Streams the file at `url` into `out`.
    pub async fn download(
        &self,
        url: Url,
        out: &mut (impl std::io::Write + Send),
    ) -> Result<u64, HttpError> {
        let mut request = self.request(Method::Get, url);
        request
            .headers
            .push(("Accept".into(), "text/csv, */*".into()));
        self.client
            .download(&request, self.download_timeout, out)
            .await
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    response: crate::http::client::HttpResponse,
) -> Result<T, HttpError> {
    response
        .parse_json(None, |b| serde_json::from_slice(b).map(Some))?
        .ok_or_else(|| {
            HttpError::new(
                HttpErrorKind::Malformed,
                "Stripe answered 204 No Content where an object was expected",
            )
        })
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// A Unix timestamp as a time; `None` when out of range.
pub fn from_unix(t: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t, 0)
}
