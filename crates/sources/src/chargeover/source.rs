//! The `chargeover` source: one stream per entity on the shared API engine.

use super::config::{ChargeOverConfig, DATETIME_FORMAT, DEFAULT_CRON};
use super::listing::EntityListing;
use crate::http::auth::{AuthConfig, Authenticator};
use crate::http::client::{ClientOptions, HttpClient, HttpRequest, Method};
use crate::http::engine::{ApiCheckpoint, ApiReader, DatetimeCursor, Incremental, StreamPlan};
use crate::http::window::DatetimeFormat;
use crate::SourceContext;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tributary_config::{
    ConfigError, ConnectorConfig, MetadataConfig, SectionConfig, TimestampFormat,
};
use tributary_core::{
    Checkpoint, CheckpointSummary, ConnectorError, RunProgress, Schedule, Source, StreamReader,
    StreamSpec,
};

pub struct ChargeOverSource {
    client: HttpClient,
    base: url::Url,
    plans: BTreeMap<String, Arc<StreamPlan>>,
    specs: Vec<StreamSpec>,
    format: DatetimeFormat,
}

/// Seed 000's defaults for what lives outside `[source]`: the cron schedule
/// (daily at midnight in the ChargeOver timezone) and the metadata field
/// names `_entity_type`, `_ingestion_timestamp` (Unix ms) and `_load_mode`.
pub fn apply_defaults(config: &mut ConnectorConfig) -> Result<(), ConfigError> {
    if !config.schedule_configured {
        let timezone = config
            .source
            .table
            .get("timezone")
            .and_then(|v| v.as_str())
            .unwrap_or("UTC")
            .to_string();
        config.schedule = Schedule::cron(DEFAULT_CRON, &timezone)
            .map_err(|e| config.source.error("timezone", e.to_string()))?;
    }
    if !config.metadata_configured {
        config.metadata = MetadataConfig {
            enabled: true,
            stream_field: "_entity_type".into(),
            ingested_at_field: "_ingestion_timestamp".into(),
            ingested_at_format: TimestampFormat::UnixMs,
            load_mode_field: "_load_mode".into(),
        };
    }
    Ok(())
}

/// Without `initial_datetime` an entity starts at its first run, as the Kafka
/// Connect connector did: everything modified before is never read, and a
/// user who expected a full load sees nothing and no error. Said once per
/// config file and process, however often the source is built.
fn warn_missing_initial_datetime(section: &SectionConfig, cfg: &ChargeOverConfig) {
    static WARNED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let missing: Vec<&str> = cfg
        .entities
        .iter()
        .filter(|e| !cfg.initial_datetime.contains_key(*e))
        .map(String::as_str)
        .collect();
    let Some(first) = missing.first() else {
        return;
    };
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.contains(&section.document.path) {
        return;
    }
    warned.push(section.document.path.clone());
    let at = section.error(
        "initial_datetime",
        format!(
            "no start for {}: records modified before the first run are skipped (only changes from then on are loaded); to load older data set e.g. `[source.initial_datetime]` `{first} = \"2020-01-01 00:00:00\"` (in `timezone`) before the first run, or `tributary state reset --to` later",
            missing.join(", ")
        ),
    );
    tracing::warn!("{at}");
}

impl ChargeOverSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        let cfg: ChargeOverConfig = section.parse()?;
        let base = match (&cfg.subdomain, &cfg.base_url) {
            (_, Some(url)) => url.trim_end_matches('/').to_string(),
            (Some(sub), None) => {
                let plain =
                    !sub.is_empty() && sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !plain {
                    return Err(section.error(
                        "subdomain",
                        format!("`{sub}` is not a subdomain: use `your-company`, not a full URL (set `base_url` to use another host)"),
                    ));
                }
                format!("https://{sub}.chargeover.com/api/v3")
            }
            (None, None) => {
                return Err(section.error(
                    "subdomain",
                    "`subdomain` is required (e.g. subdomain = \"your-company\"), or `base_url`",
                ))
            }
        };
        let base = url::Url::parse(&format!("{base}/"))
            .map_err(|e| section.error("base_url", format!("`{base}` is not a URL: {e}")))?;
        if cfg.entities.is_empty() {
            return Err(section.error("entities", "list at least one entity, e.g. [\"customer\"]"));
        }
        if cfg.batch_size == 0 || cfg.batch_size > 500 {
            return Err(section.error(
                "batch_size",
                format!(
                    "{} is outside ChargeOver's limit of 1 to 500 records per call",
                    cfg.batch_size
                ),
            ));
        }
        if cfg.max_concurrency == 0 {
            return Err(section.error("max_concurrency", "must be at least 1"));
        }
        let tz = tributary_core::schedule::parse_timezone(&cfg.timezone)
            .map_err(|e| section.error("timezone", e.to_string()))?;
        let format =
            DatetimeFormat::new(DATETIME_FORMAT, tz).map_err(|e| section.error("timezone", e))?;
        for (table, map) in [
            ("datetime_fields", cfg.datetime_fields.keys()),
            ("id_fields", cfg.id_fields.keys()),
            ("initial_datetime", cfg.initial_datetime.keys()),
            ("query_params", cfg.query_params.keys()),
        ] {
            for entity in map {
                if cfg.entities.contains(entity) {
                    continue;
                }
                // Kafka Connect configs often keep mappings for entities they
                // do not track; those are ignored. A near-miss is a typo.
                let known: Vec<&str> = cfg.entities.iter().map(String::as_str).collect();
                let suggestion = tributary_config::did_you_mean(entity, &known);
                if suggestion.is_some() {
                    let mut e = section.error(
                        &format!("{table}.{entity}"),
                        format!(
                            "`{entity}` is not in `entities` ({})",
                            cfg.entities.join(", ")
                        ),
                    );
                    e.suggestion = suggestion;
                    return Err(e);
                }
                tracing::warn!(key = %format!("source.{table}.{entity}"), "ignored: `{entity}` is not in `entities`");
            }
        }
        let client = HttpClient::new(
            ClientOptions {
                timeout: cfg.timeout,
                rate_limit: cfg.rate_limit,
                max_concurrency: cfg.max_concurrency,
                user_agent: format!("tributary/{}", env!("CARGO_PKG_VERSION")),
            },
            Authenticator::new(AuthConfig::Basic {
                username: cfg.username.clone(),
                password: cfg.password.clone(),
            }),
        )
        .map_err(|e| section.error("username", e.to_string()))?
        .with_metrics(ctx.metrics.clone())
        .with_clock(ctx.clock.clone());

        warn_missing_initial_datetime(section, &cfg);
        let mut plans = BTreeMap::new();
        let mut specs = Vec::new();
        for entity in &cfg.entities {
            let datetime_field = cfg
                .datetime_fields
                .get(entity)
                .cloned()
                .unwrap_or_else(|| "mod_datetime".into());
            let id_field = cfg
                .id_fields
                .get(entity)
                .cloned()
                .unwrap_or_else(|| format!("{entity}_id"));
            let start = match cfg.initial_datetime.get(entity) {
                Some(text) => Some(format.parse(text).ok_or_else(|| {
                    section.error(
                        &format!("initial_datetime.{entity}"),
                        format!("`{text}` is not a datetime in YYYY-MM-DD HH:MM:SS format"),
                    )
                })?),
                None => None,
            };
            let extra_params = match cfg.query_params.get(entity) {
                Some(q) => {
                    let pairs: Vec<(String, String)> =
                        url::form_urlencoded::parse(q.trim_start_matches('?').as_bytes())
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect();
                    if let Some((k, _)) = pairs
                        .iter()
                        .find(|(k, _)| matches!(k.as_str(), "where" | "order" | "limit" | "offset"))
                    {
                        return Err(section.error(
                            &format!("query_params.{entity}"),
                            format!(
                                "`{k}` is set by the connector (windows and paging); remove it"
                            ),
                        ));
                    }
                    pairs
                }
                None => Vec::new(),
            };
            let url = base.join(entity).map_err(|e| {
                section.error("entities", format!("`{entity}` cannot be a URL path: {e}"))
            })?;
            let listing = EntityListing {
                client: client.clone(),
                entity: entity.clone(),
                url,
                datetime_field: datetime_field.clone(),
                id_field: id_field.clone(),
                extra_params,
                stop_on_short_page: cfg.stop_on_short_page,
            };
            specs.push(StreamSpec {
                primary_key: vec![id_field.clone()],
                cursor_field: Some(datetime_field),
                ..StreamSpec::new(entity.clone())
            });
            plans.insert(
                entity.clone(),
                Arc::new(StreamPlan {
                    stream: entity.clone(),
                    listing: Arc::new(listing),
                    incremental: Incremental::Datetime(DatetimeCursor {
                        format: format.clone(),
                        start,
                        step: None,
                        min_step: Duration::from_secs(3600),
                        lookback: cfg.lookback.unwrap_or_default(),
                        lag: cfg.lag.unwrap_or(tributary_core::window::DEFAULT_LAG),
                    }),
                    key_fields: vec![id_field],
                    string_keys: true,
                    page_size: Some(cfg.batch_size),
                    min_page_size: 10,
                    clock: ctx.clock.clone(),
                    api_clock: Some(client.api_clock()),
                    schedule: ctx.schedule_for(entity).clone(),
                    // One window per run: nothing to fetch ahead.
                    window_concurrency: 1,
                    max_retries: ctx.max_retries,
                }),
            );
        }
        Ok(ChargeOverSource {
            client,
            base,
            plans,
            specs,
            format,
        })
    }
}

#[async_trait::async_trait]
impl Source for ChargeOverSource {
    /// One single-record call to the first entity: proves host and credentials.
    async fn check(&self) -> Result<(), ConnectorError> {
        let Some(first) = self.specs.first() else {
            return Ok(());
        };
        let mut url = self
            .base
            .join(&first.name)
            .map_err(|e| ConnectorError::config(e.to_string()))?;
        url.query_pairs_mut().append_pair("limit", "1");
        self.client
            .execute(&HttpRequest {
                method: Method::Get,
                url,
                headers: vec![("Accept".into(), "application/json".into())],
                body: None,
                form: None,
            })
            .await
            .map_err(|e| e.into_connector_error())?;
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>, ConnectorError> {
        Ok(self.specs.clone())
    }

    async fn open(
        &self,
        stream: &StreamSpec,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Box<dyn StreamReader>, ConnectorError> {
        let plan = self
            .plans
            .get(&stream.name)
            .ok_or_else(|| ConnectorError::config(format!("no entity `{}`", stream.name)))?;
        Ok(Box::new(ApiReader::new(plan.clone(), checkpoint)?))
    }

    fn run_progress(&self, _stream: &StreamSpec, checkpoint: &Checkpoint) -> RunProgress {
        ApiCheckpoint::run_progress(checkpoint, Some(&self.format))
    }

    async fn checkpoint_at(
        &self,
        stream: &StreamSpec,
        _current: Option<&Checkpoint>,
        position: tributary_core::ResetPosition,
    ) -> Result<Checkpoint, ConnectorError> {
        let plan = self
            .plans
            .get(&stream.name)
            .ok_or_else(|| ConnectorError::config(format!("no entity `{}`", stream.name)))?;
        crate::http::engine::checkpoint_at(plan, position)
    }

    fn summarize(&self, _stream: &StreamSpec, checkpoint: &Checkpoint) -> CheckpointSummary {
        ApiCheckpoint::summarize(checkpoint, Some(&self.format))
    }
}
