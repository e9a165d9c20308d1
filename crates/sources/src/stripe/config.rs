//! The `[source]` table of `type = "stripe_reporting"`: seed 004's
//! connector options in TOML. Kafka Connect property names are in the
//! docs where there was one.

use crate::http::client::RateLimit;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_config::units::{de_duration, de_opt_duration};
use tributary_core::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeReportingConfig {
    /// A secret or restricted key with the Reporting permission, from
    /// `${STRIPE_API_KEY}`; sent as `Authorization: Bearer`.
    pub api_key: Secret,
    /// The API host; another one for a simulator or a proxy.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Where Stripe serves report files (`result.url`). The key is sent only
    /// to this host and `base_url`'s.
    #[serde(default = "default_files_url")]
    pub files_url: String,
    /// Report types, e.g. `balance.summary.1`; each is read in every timezone.
    pub report_types: Vec<String>,
    /// IANA zones passed as `parameters[timezone]`; one stream per report
    /// type × timezone.
    #[serde(default = "default_timezones")]
    pub timezones: Vec<String>,
    /// `parameters[columns][]` by report type; absent: the type's default columns.
    #[serde(default)]
    pub columns: BTreeMap<String, Vec<String>>,
    /// Columns forming the record key by report type (a natural id such as
    /// `balance_transaction_id`); absent: report type, timezone, interval and
    /// row number.
    #[serde(default)]
    pub key_columns: BTreeMap<String, Vec<String>>,
    /// `interval_start` of a stream's first round: RFC 3339 or `YYYY-MM-DD`
    /// (UTC). Absent: the report type's `data_available_start`.
    pub start: Option<String>,
    /// Longest interval one report run covers; a longer gap is read in
    /// several runs, one after the other. Absent: one run up to
    /// `data_available_end`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub max_interval: Option<Duration>,
    /// `stripe.report.max.wait.ms`: how long a round waits for a report run.
    /// Past it the run id stays in the checkpoint and the next round waits
    /// on the same run; the stream never wedges (seed 004).
    #[serde(default = "default_max_wait", deserialize_with = "de_duration")]
    pub max_wait: Duration,
    /// First wait between two status checks of a pending run; doubles up to
    /// `poll_interval_max`.
    #[serde(default = "default_poll_interval", deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    #[serde(
        default = "default_poll_interval_max",
        deserialize_with = "de_duration"
    )]
    pub poll_interval_max: Duration,
    /// Failed report runs in a row before the stream is marked stuck.
    #[serde(default = "default_max_failures")]
    pub max_consecutive_failures: u32,
    /// Wait before creating a new run after a failed one; doubles per failure.
    #[serde(default = "default_failure_backoff", deserialize_with = "de_duration")]
    pub failure_backoff: Duration,
    /// Per API call.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// For downloading one report file.
    #[serde(default = "default_download_timeout", deserialize_with = "de_duration")]
    pub download_timeout: Duration,
    /// Sent as `Stripe-Version`; absent: the account's default API version.
    pub stripe_version: Option<String>,
    /// Requests in flight at once across streams.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    pub rate_limit: Option<RateLimit>,
}

fn default_base_url() -> String {
    "https://api.stripe.com".into()
}
fn default_files_url() -> String {
    "https://files.stripe.com".into()
}
fn default_timezones() -> Vec<String> {
    vec!["UTC".into()]
}
fn default_max_wait() -> Duration {
    Duration::from_secs(3600)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_poll_interval_max() -> Duration {
    Duration::from_secs(60)
}
fn default_max_failures() -> u32 {
    5
}
fn default_failure_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_download_timeout() -> Duration {
    Duration::from_secs(1800)
}
fn default_concurrency() -> usize {
    4
}

/// Default schedule when the file sets none: hourly, so a round starts soon
/// after Stripe moves `data_available_end`.
pub const DEFAULT_CRON: &str = "0 0 * * * ?";
