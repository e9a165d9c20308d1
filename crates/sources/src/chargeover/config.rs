//! The `[source]` table of `type = "chargeover"`: seed 000's options in TOML.

use crate::http::client::RateLimit;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_config::units::{de_duration, de_opt_duration};
use tributary_core::Secret;

/// `[source]` with `type = "chargeover"`. Kafka Connect property names are
/// in each field's doc; `tributary convert` maps them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeOverConfig {
    /// `chargeover.subdomain`: `your-company` for `https://your-company.chargeover.com`.
    pub subdomain: Option<String>,
    /// Another host, e.g. a simulator: `http://127.0.0.1:8080/api/v3`.
    pub base_url: Option<String>,
    /// `chargeover.username` (HTTP basic auth).
    pub username: String,
    /// `chargeover.password`.
    pub password: Secret,
    /// `chargeover.timezone`: zone of datetimes in requests and state, and
    /// of the default cron schedule.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// `batch.size`: records per API call (ChargeOver's `limit`).
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// `chargeover.entities`.
    #[serde(default = "default_entities")]
    pub entities: Vec<String>,
    /// `chargeover.incremental.datetime.fields`; default `mod_datetime`.
    #[serde(default)]
    pub datetime_fields: BTreeMap<String, String>,
    /// `chargeover.entity.id.fields`; default `{entity}_id`.
    #[serde(default)]
    pub id_fields: BTreeMap<String, String>,
    /// `initial.datetime`: `YYYY-MM-DD HH:MM:SS` in `timezone`; default: now.
    #[serde(default)]
    pub initial_datetime: BTreeMap<String, String>,
    /// `chargeover.{entity}.query.params`: a query string appended to every call.
    #[serde(default)]
    pub query_params: BTreeMap<String, String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Requests in flight at once across entities.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Stay under the plan's API limit.
    pub rate_limit: Option<RateLimit>,
    /// A window ends this long before the earlier of our clock and
    /// ChargeOver's (its `Date` header), so edits stamped by a clock running
    /// behind ours, or committed a little late, are in a later window.
    /// Default 30 s; `"0s"` ends windows at the clock.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub lag: Option<Duration>,
    /// Every run re-reads this much before the last processed datetime,
    /// for edits that become visible later than `lag` after their
    /// `mod_datetime`. Default none. Re-read records arrive again.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub lookback: Option<Duration>,
    /// Trust a page with fewer than `batch_size` records to be the last.
    /// Default false: only an empty page ends a query, which costs two
    /// cheap requests per window and loses nothing when the API caps
    /// `limit` below `batch_size`.
    #[serde(default)]
    pub stop_on_short_page: bool,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_batch_size() -> u64 {
    500
}
fn default_entities() -> Vec<String> {
    ["customer", "invoice", "payment", "subscription"]
        .map(String::from)
        .to_vec()
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_concurrency() -> usize {
    4
}

/// ChargeOver's datetime format in `where` filters and records.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// seed 000's default `incremental.schedule.cron`: daily at midnight.
pub const DEFAULT_CRON: &str = "0 0 0 * * ?";
