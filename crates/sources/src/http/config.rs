//! The `[source]` table of `type = "http"`: any REST API described in TOML.

use super::auth::AuthConfig;
use super::client::RateLimit;
use super::pagination::PaginationConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_config::units::{de_duration, de_opt_duration};

/// `[source]` with `type = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Scheme, host and optional path prefix: `https://api.example.com/v2`.
    pub base_url: String,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Headers sent with every request (templated).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters sent with every request (templated).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Values templates can use as `{{ vars.NAME }}`.
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// Per-request timeout; a timeout is retried and shrinks the page size.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Requests in flight at once across all streams (seed 001 runs 8).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Window slices (`step`) of one stream whose first page is requested
    /// at once; records still arrive in window order.
    #[serde(default = "default_window_concurrency")]
    pub window_concurrency: usize,
    /// Requests per second across all streams, with a burst allowance.
    pub rate_limit: Option<RateLimit>,
    /// Floor of adaptive page-size shrinking.
    #[serde(default = "default_min_page_size")]
    pub min_page_size: u64,
    /// One stream per table: `[source.streams.NAME]`.
    pub streams: BTreeMap<String, HttpStreamConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_concurrency() -> usize {
    8
}
fn default_window_concurrency() -> usize {
    4
}
fn default_min_page_size() -> u64 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
}

/// `[source.streams.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStreamConfig {
    /// Appended to `base_url`; templated (`/invoices/{{ parent.id }}/lines`).
    pub path: String,
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body (POST), every string templated.
    pub body: Option<toml::Value>,
    /// Where the records are: JSONPath (`$.data[*]`) or dotted path (`data`).
    pub records: Option<String>,
    /// Keep only records matching this JSONPath filter (`@.status == 'active'`).
    pub filter: Option<String>,
    /// Fields forming the record key.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// `{ type = "offset", page_size = 100 }`, ..., or `{ type = "keyset", ... }`.
    #[serde(default)]
    pub pagination: StreamPagination,
    pub incremental: Option<IncrementalConfig>,
    /// Iterate this stream's requests over the records of another stream;
    /// each parent record is `{{ parent.FIELD }}` in templates.
    pub parent: Option<ParentConfig>,
}

/// Pagination of one stream: the styles of [`PaginationConfig`] plus
/// `keyset`, which the engine drives itself because it needs the cursor
/// value and key of the last record on the page.
#[derive(Debug, Clone, Default)]
pub enum StreamPagination {
    #[default]
    None,
    Styled(PaginationConfig),
    Keyset(KeysetConfig),
}

impl<'de> Deserialize<'de> for StreamPagination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        let kind = table.get("type").and_then(|v| v.as_str()).unwrap_or("");
        const KINDS: &[&str] = &[
            "none",
            "offset",
            "page_number",
            "cursor",
            "next_url",
            "link_header",
            "keyset",
        ];
        if !KINDS.contains(&kind) {
            let hint = tributary_config::did_you_mean(kind, KINDS)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(serde::de::Error::custom(format!(
                "unknown pagination type `{kind}`; expected one of {}{hint}",
                KINDS.join(", ")
            )));
        }
        if kind == "keyset" {
            let mut t = table.clone();
            t.remove("type");
            return KeysetConfig::deserialize(toml::Value::Table(t))
                .map(StreamPagination::Keyset)
                .map_err(serde::de::Error::custom);
        }
        let styled = PaginationConfig::deserialize(toml::Value::Table(table))
            .map_err(serde::de::Error::custom)?;
        Ok(match styled {
            PaginationConfig::None => StreamPagination::None,
            other => StreamPagination::Styled(other),
        })
    }
}

/// Keyset pagination: every page asks for records after the last one seen,
/// by (cursor value, key). Safe when records change or share a cursor value
/// while the window is paged; the API must order by (cursor, key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysetConfig {
    /// Records per page (sent as `size_param`).
    pub page_size: u64,
    #[serde(default = "default_size_param")]
    pub size_param: String,
    /// Trust a page shorter than `page_size` to be the last one, saving
    /// the one request per window that confirms the end (an empty page).
    /// Only for APIs known never to return fewer records than asked for
    /// before the end: one that caps the page size loses the rest.
    #[serde(default)]
    pub stop_on_short_page: bool,
}

fn default_size_param() -> String {
    "limit".into()
}

/// `incremental = { type = "datetime", cursor_field = "updated_at", ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum IncrementalConfig {
    Datetime {
        /// The record field the API filters and orders on.
        cursor_field: String,
        /// First window's start (in `format`, or RFC 3339); absent: the first run's start time.
        start: Option<String>,
        /// `rfc3339` (default) or a strftime pattern such as `%Y-%m-%d %H:%M:%S`.
        #[serde(default = "default_format")]
        format: String,
        /// Zone of datetimes written with a pattern (default UTC).
        #[serde(default = "default_timezone")]
        timezone: String,
        /// Slice windows: `P1D`, `PT6H`, `6h`.
        step: Option<String>,
        /// Smallest step adaptive shrinking reaches (default: one hour).
        min_step: Option<String>,
        /// Re-read this much before the last processed datetime, for
        /// writes that become visible after their timestamp.
        #[serde(default, deserialize_with = "de_opt_duration")]
        lookback: Option<Duration>,
        /// A window ends this long before the earlier of our clock and the
        /// API's (`Date` header); default 30 s, `"0s"` to end at the clock.
        #[serde(default, deserialize_with = "de_opt_duration")]
        lag: Option<Duration>,
    },
    Id {
        cursor_field: String,
        /// Largest id already loaded, if any.
        start: Option<toml::Value>,
    },
}

fn default_format() -> String {
    "rfc3339".into()
}
fn default_timezone() -> String {
    "UTC".into()
}

/// `parent = { stream = "invoices" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentConfig {
    pub stream: String,
}
