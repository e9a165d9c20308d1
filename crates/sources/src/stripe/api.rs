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
    pub report_type: String,
    #[serde(default)]
    pub parameters: RunParameters,
    #[serde(default)]
    pub result: Option<FileObject>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RunParameters {
    #[serde(default)]
    pub interval_start: Option<i64>,
    #[serde(default)]
    pub interval_end: Option<i64>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub columns: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileObject {
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RunList {
    data: Vec<ReportRun>,
    has_more: bool,
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

impl RunRequest<'_> {
    /// Whether `run` was created with exactly these parameters: then it is
    /// ours (a crash came between creating it and committing its id) or an
    /// identical one, and either gives the same data.
    pub fn matches(&self, run: &ReportRun) -> bool {
        let p = &run.parameters;
        run.report_type == self.report_type
            && p.interval_start == Some(self.interval_start.timestamp())
            && p.interval_end == Some(self.interval_end.timestamp())
            && p.timezone.as_deref().unwrap_or("UTC") == self.timezone
            && p.columns.as_deref() == self.columns
    }
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

/// How far back [`StripeApi::find_run`] looks for a run a crash orphaned.
const ADOPT_PAGES: usize = 5;

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

    pub async fn create_run(&self, run: &RunRequest<'_>) -> Result<ReportRun, HttpError> {
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
        parse(self.client.execute(&request).await?)
    }

    /// The newest run created since `since` with exactly `wanted`'s
    /// parameters and not failed, looking through a few pages of the list.
    pub async fn find_run(
        &self,
        wanted: &RunRequest<'_>,
        since: DateTime<Utc>,
    ) -> Result<Option<ReportRun>, HttpError> {
        let mut after: Option<String> = None;
        for _ in 0..ADOPT_PAGES {
            let mut url = self.url("v1/reporting/report_runs")?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", "100");
                q.append_pair("created[gte]", &since.timestamp().to_string());
                if let Some(a) = &after {
                    q.append_pair("starting_after", a);
                }
            }
            let page: RunList = self.get(url).await?;
            if let Some(run) = page
                .data
                .iter()
                .find(|r| r.status != "failed" && wanted.matches(r))
            {
                return Ok(Some(run.clone()));
            }
            match page.data.last() {
                Some(last) if page.has_more => after = Some(last.id.clone()),
                _ => return Ok(None),
            }
        }
        Ok(None)
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
