//! The `http` source: validates the config into one [`StreamPlan`] per
//! stream, then opens [`ApiReader`]s on them.

use super::auth::Authenticator;
use super::client::{ClientOptions, HttpClient};
use super::config::{HttpSourceConfig, HttpStreamConfig, IncrementalConfig, StreamPagination};
use super::engine::{ApiCheckpoint, ApiReader, DatetimeCursor, Incremental, PageQuery, StreamPlan};
use super::listing::{ChildListing, GenericListing, RequestTemplate};
use super::pagination::Paginator;
use super::raw_page::RawSelection;
use super::records::RecordSelector;
use super::template::Template;
use super::window::DatetimeFormat;
use crate::SourceContext;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tributary_config::units::parse_duration;
use tributary_config::{ConfigError, SectionConfig};
use tributary_core::{
    Checkpoint, CheckpointSummary, ConnectorError, RunProgress, Source, StreamReader, StreamSpec,
};

pub struct HttpSource {
    plans: BTreeMap<String, Arc<StreamPlan>>,
    specs: Vec<StreamSpec>,
    /// Listings without a parent, for `check`.
    probes: Vec<Arc<GenericListing>>,
}

impl HttpSource {
    pub fn from_section(section: &SectionConfig, ctx: &SourceContext) -> Result<Self, ConfigError> {
        let cfg: HttpSourceConfig = section.parse()?;
        if cfg.streams.is_empty() {
            return Err(section.error(
                "streams",
                "at least one stream is required, e.g. [source.streams.items] with path = \"/items\"",
            ));
        }
        let base = cfg.base_url.trim_end_matches('/').to_string();
        url::Url::parse(&base).map_err(|e| {
            section.error("base_url", format!("`{}` is not a URL: {e}", cfg.base_url))
        })?;
        if cfg.window_concurrency == 0 {
            return Err(section.error("window_concurrency", "must be at least 1"));
        }
        if cfg.max_concurrency == 0 {
            return Err(section.error("max_concurrency", "must be at least 1"));
        }
        if let Some(r) = &cfg.rate_limit {
            if !(r.requests_per_second.is_finite() && r.requests_per_second > 0.0) {
                return Err(section.error(
                    "rate_limit.requests_per_second",
                    "must be a positive number",
                ));
            }
        }
        let client = HttpClient::new(
            ClientOptions {
                timeout: cfg.timeout,
                rate_limit: cfg.rate_limit,
                max_concurrency: cfg.max_concurrency,
                user_agent: format!("tributary/{}", env!("CARGO_PKG_VERSION")),
            },
            Authenticator::new(cfg.auth.clone()),
        )
        .map_err(|e| section.error("rate_limit", e.to_string()))?
        .with_metrics(ctx.metrics.clone())
        .with_clock(ctx.clock.clone());
        let vars = serde_json::to_value(&cfg.vars).unwrap_or(Value::Null);

        let mut listings = BTreeMap::new();
        for (name, s) in &cfg.streams {
            let listing = build_listing(section, &cfg, &base, name, s, &client, &vars)?;
            listings.insert(name.clone(), Arc::new(listing));
        }
        let mut plans = BTreeMap::new();
        let mut specs = Vec::new();
        let mut probes = Vec::new();
        for (name, s) in &cfg.streams {
            let key = |k: &str| format!("streams.{name}.{k}");
            let listing: Arc<dyn super::engine::Listing> = match &s.parent {
                None => {
                    probes.push(listings[name].clone());
                    listings[name].clone()
                }
                Some(p) => {
                    let Some(parent) = listings.get(&p.stream) else {
                        let known: Vec<&str> = cfg.streams.keys().map(String::as_str).collect();
                        let mut e = section.error(
                            &key("parent.stream"),
                            format!(
                                "no stream named `{}`; streams: {}",
                                p.stream,
                                known.join(", ")
                            ),
                        );
                        e.suggestion = tributary_config::did_you_mean(&p.stream, &known);
                        return Err(e);
                    };
                    if p.stream == *name || cfg.streams[&p.stream].parent.is_some() {
                        return Err(section.error(
                            &key("parent.stream"),
                            "a parent must be a stream without a parent of its own",
                        ));
                    }
                    Arc::new(ChildListing::new(parent.clone(), listings[name].clone()))
                }
            };
            // A child without its own cursor reads the parent's window: its
            // requests run per parent record of that window.
            let own = s.incremental.as_ref().or_else(|| {
                s.parent
                    .as_ref()
                    .and_then(|p| cfg.streams[&p.stream].incremental.as_ref())
                    .filter(|i| matches!(i, IncrementalConfig::Datetime { .. }))
            });
            let incremental = incremental(section, name, own)?;
            let page_size = match &s.pagination {
                StreamPagination::Keyset(k) => Some(k.page_size),
                StreamPagination::Styled(p) => Paginator::new(p).page_size(),
                StreamPagination::None => None,
            };
            if let StreamPagination::Keyset(_) = &s.pagination {
                if s.primary_key.is_empty() || !matches!(incremental, Incremental::Datetime(_)) {
                    return Err(section.error(
                        &key("pagination"),
                        "keyset pagination needs `primary_key` and a datetime `incremental` cursor",
                    ));
                }
            }
            let cursor_field = match &s.incremental {
                Some(IncrementalConfig::Datetime { cursor_field, .. })
                | Some(IncrementalConfig::Id { cursor_field, .. }) => Some(cursor_field.clone()),
                None => None,
            };
            specs.push(StreamSpec {
                primary_key: s.primary_key.clone(),
                cursor_field,
                ..StreamSpec::new(name.clone())
            });
            plans.insert(
                name.clone(),
                Arc::new(StreamPlan {
                    stream: name.clone(),
                    listing,
                    incremental,
                    key_fields: s.primary_key.clone(),
                    string_keys: false,
                    page_size,
                    min_page_size: cfg.min_page_size,
                    clock: ctx.clock.clone(),
                    api_clock: Some(client.api_clock()),
                    schedule: ctx.schedule_for(name).clone(),
                    window_concurrency: cfg.window_concurrency,
                    max_retries: ctx.max_retries,
                }),
            );
        }
        Ok(HttpSource {
            plans,
            specs,
            probes,
        })
    }

    fn plan(&self, stream: &str) -> Result<&Arc<StreamPlan>, ConnectorError> {
        self.plans
            .get(stream)
            .ok_or_else(|| ConnectorError::config(format!("no stream named `{stream}`")))
    }
}

fn build_listing(
    section: &SectionConfig,
    cfg: &HttpSourceConfig,
    base: &str,
    name: &str,
    s: &HttpStreamConfig,
    client: &HttpClient,
    vars: &Value,
) -> Result<GenericListing, ConfigError> {
    let key = |k: &str| format!("streams.{name}.{k}");
    let template =
        |k: &str, text: &str| Template::parse(text).map_err(|e| section.error(&key(k), e));
    let path = if s.path.starts_with('/') || s.path.is_empty() {
        s.path.clone()
    } else {
        format!("/{}", s.path)
    };
    let url = template("path", &format!("{base}{path}"))?;
    let mut params = Vec::new();
    for (n, v) in cfg.params.iter().chain(&s.params) {
        params.push((n.clone(), template(&format!("params.{n}"), v)?));
    }
    let mut headers = Vec::new();
    for (n, v) in cfg.headers.iter().chain(&s.headers) {
        headers.push((n.clone(), template(&format!("headers.{n}"), v)?));
    }
    let body = match &s.body {
        Some(b) => {
            Some(serde_json::to_value(b).map_err(|e| section.error(&key("body"), e.to_string()))?)
        }
        None => None,
    };
    let selector = RecordSelector::new(s.records.as_deref(), s.filter.as_deref()).map_err(|e| {
        section.error(
            &key(if s.filter.is_some() {
                "filter"
            } else {
                "records"
            }),
            e,
        )
    })?;
    let paginator = match &s.pagination {
        StreamPagination::Styled(p) => Some(Paginator::new(p)),
        _ => None,
    };
    let cursor_field = match &s.incremental {
        Some(IncrementalConfig::Datetime { cursor_field, .. }) => Some(cursor_field.clone()),
        _ => None,
    };
    let is_parent = cfg
        .streams
        .values()
        .any(|o| o.parent.as_ref().is_some_and(|p| p.stream == name));
    let mut field_paths: Vec<&str> = s.primary_key.iter().map(String::as_str).collect();
    if let Some(
        IncrementalConfig::Datetime { cursor_field, .. }
        | IncrementalConfig::Id { cursor_field, .. },
    ) = &s.incremental
    {
        field_paths.push(cursor_field);
    }
    let pagination_paths = paginator
        .as_ref()
        .map(Paginator::body_paths)
        .unwrap_or_default();
    let raw = RawSelection::plan(&selector, is_parent, &field_paths, &pagination_paths);
    Ok(GenericListing {
        client: client.clone(),
        request: RequestTemplate {
            method: s.method,
            url,
            params,
            headers,
            body,
        },
        selector,
        records_path: s.records.clone(),
        pagination: s.pagination.clone(),
        paginator,
        cursor_field,
        key_fields: s.primary_key.clone(),
        vars: vars.clone(),
        raw,
    })
}

fn incremental(
    section: &SectionConfig,
    name: &str,
    cfg: Option<&IncrementalConfig>,
) -> Result<Incremental, ConfigError> {
    let key = |k: &str| format!("streams.{name}.incremental.{k}");
    match cfg {
        None => Ok(Incremental::None),
        Some(IncrementalConfig::Id {
            cursor_field,
            start,
        }) => Ok(Incremental::Id {
            cursor_field: cursor_field.clone(),
            start: start.as_ref().and_then(|v| serde_json::to_value(v).ok()),
        }),
        Some(IncrementalConfig::Datetime {
            start,
            format,
            timezone,
            step,
            min_step,
            lookback,
            lag,
            ..
        }) => {
            let tz = tributary_core::schedule::parse_timezone(timezone)
                .map_err(|e| section.error(&key("timezone"), e.to_string()))?;
            let format =
                DatetimeFormat::new(format, tz).map_err(|e| section.error(&key("format"), e))?;
            let start = match start {
                Some(s) => Some(format.parse(s).ok_or_else(|| {
                    section.error(
                        &key("start"),
                        format!(
                            "`{s}` is not a datetime in the stream's format (e.g. `{}`)",
                            format.format(chrono::Utc::now())
                        ),
                    )
                })?),
                None => None,
            };
            let duration = |k: &str, v: &Option<String>| -> Result<Option<Duration>, ConfigError> {
                match v.as_deref().map(parse_duration).transpose() {
                    // A zero slice would never advance through the window.
                    Ok(Some(Duration::ZERO)) => {
                        Err(section.error(&key(k), format!("`{k}` must be longer than zero")))
                    }
                    r => r.map_err(|e| section.error(&key(k), e)),
                }
            };
            Ok(Incremental::Datetime(DatetimeCursor {
                format,
                start,
                step: duration("step", step)?,
                min_step: duration("min_step", min_step)?.unwrap_or(Duration::from_secs(3600)),
                lookback: lookback.unwrap_or_default(),
                lag: lag.unwrap_or(tributary_core::window::DEFAULT_LAG),
            }))
        }
    }
}

#[async_trait::async_trait]
impl Source for HttpSource {
    async fn check(&self) -> Result<(), ConnectorError> {
        // One small request per top-level stream over an empty-ish window:
        // proves the URL, TLS and credentials without reading data.
        let now = chrono::Utc::now();
        for probe in &self.probes {
            let format = DatetimeFormat::rfc3339();
            let window = super::engine::WindowBounds {
                start: now - chrono::Duration::seconds(1),
                end: now,
                start_text: format.format(now - chrono::Duration::seconds(1)),
                end_text: format.format(now),
            };
            let query = PageQuery {
                window: Some(window),
                last_id: None,
                position: None,
                page_size: Some(1),
            };
            probe.fetch_with(&query, None).await?;
        }
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
        let plan = self.plan(&stream.name)?;
        Ok(Box::new(ApiReader::new(plan.clone(), checkpoint)?))
    }

    async fn checkpoint_at(
        &self,
        stream: &StreamSpec,
        _current: Option<&Checkpoint>,
        position: tributary_core::ResetPosition,
    ) -> Result<Checkpoint, ConnectorError> {
        super::engine::checkpoint_at(self.plan(&stream.name)?, position)
    }

    fn run_progress(&self, stream: &StreamSpec, checkpoint: &Checkpoint) -> RunProgress {
        let format = self
            .plans
            .get(&stream.name)
            .and_then(|p| match &p.incremental {
                Incremental::Datetime(d) => Some(d.format.clone()),
                _ => None,
            });
        ApiCheckpoint::run_progress(checkpoint, format.as_ref())
    }

    fn summarize(&self, stream: &StreamSpec, checkpoint: &Checkpoint) -> CheckpointSummary {
        let format = self
            .plans
            .get(&stream.name)
            .and_then(|p| match &p.incremental {
                Incremental::Datetime(d) => Some(d.format.clone()),
                _ => None,
            });
        ApiCheckpoint::summarize(checkpoint, format.as_ref())
    }
}
