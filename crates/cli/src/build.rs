//! Turns a config file into the parts the runtime drives: the one place that
//! knows every source, sink and state backend.

use crate::exit::{Code, Failure};
use std::path::Path;
use std::sync::Arc;
use tributary_config::{ConfigError, ConnectorConfig, Needs, StateConfig};
use tributary_core::{Clock, ShiftedClock, Sink, Source, SystemClock};
use tributary_state::{EmbeddedStore, KafkaStore, StateError, StateStore, StoreAccess};

pub fn load(path: &Path) -> Result<ConnectorConfig, Failure> {
    load_for(path, Needs::All)
}

/// [`load`] resolving only what the command needs (`tributary state`
/// commands need the state store, not the source's credentials). Prints the
/// config's warnings.
pub fn load_for(path: &Path, needs: Needs) -> Result<ConnectorConfig, Failure> {
    let mut config =
        tributary_config::load_file_for(path, needs).map_err(|e| Failure::new(Code::Config, e))?;
    if needs == Needs::All {
        crate::app::registry()
            .apply_defaults(&mut config)
            .map_err(|e| Failure::new(Code::Config, e))?;
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// [`load`] for a config that is not in a file (the admin server's
/// validation), with `${NAME}` looked up in `env`; `path` names it in errors.
pub fn load_text(
    path: &Path,
    text: &str,
    env: tributary_config::EnvLookup<'_>,
) -> Result<ConnectorConfig, Failure> {
    let mut config = tributary_config::load_str_with_env(path, text, env)
        .map_err(|e| Failure::new(Code::Config, e))?;
    crate::app::registry()
        .apply_defaults(&mut config)
        .map_err(|e| Failure::new(Code::Config, e))?;
    Ok(config)
}

/// The file (or `text` given for it) loaded, with the sources' defaults.
fn config_text(path: &Path, text: Option<&str>) -> Result<ConnectorConfig, ConfigError> {
    let mut config = match text {
        None => tributary_config::load_file(path)?,
        Some(text) => tributary_config::load_str(path, text)?,
    };
    crate::app::registry().apply_defaults(&mut config)?;
    Ok(config)
}

/// `check` reports at most this many config errors of one file.
pub const MAX_CONFIG_ERRORS: usize = 20;

/// A connector as `check` validates it: every section typed and built.
pub struct Built {
    pub config: ConnectorConfig,
    pub source: Arc<dyn Source>,
    pub sink: Box<dyn Sink>,
}

/// Loads the file and builds its source, sink and state store, reporting
/// every config error found (up to [`MAX_CONFIG_ERRORS`], in line order),
/// not only the first: after each error its `key = value` is blanked out
/// (lines kept) and the file loaded again. It stops at an error that
/// blanking cannot get past (a missing key, a table) and drops a "missing
/// key" that only the blanking caused.
pub fn load_all(path: &Path, clock: &Arc<dyn Clock>) -> Result<Built, Failure> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut blanked: Vec<String> = Vec::new();
    let mut text: Option<String> = None;
    'retry: loop {
        let found = match build_all(path, text.as_deref(), clock) {
            Ok(built) if errors.is_empty() => {
                for w in &built.config.warnings {
                    tracing::warn!("{w}");
                }
                return Ok(built);
            }
            Ok(_) => break,
            Err(found) => found,
        };
        if text.is_none() {
            match std::fs::read_to_string(path) {
                Ok(t) => text = Some(t),
                Err(_) => {
                    errors.extend(found);
                    break;
                }
            }
        }
        let mut next = text.clone().unwrap_or_default();
        let mut progressed = false;
        for error in found {
            let caused_by_blanking = error.message.starts_with("missing key")
                && blanked
                    .iter()
                    .any(|k| error.message.contains(&format!("`{k}`")));
            if caused_by_blanking || errors.contains(&error) {
                continue;
            }
            if let Some(t) = error
                .key
                .as_deref()
                .and_then(|k| tributary_config::blank_key(&next, k))
            {
                next = t;
                progressed = true;
            }
            if let Some(k) = &error.key {
                blanked.push(k.rsplit('.').next().unwrap_or(k).to_string());
            }
            errors.push(error);
            if errors.len() >= MAX_CONFIG_ERRORS {
                break 'retry;
            }
        }
        if !progressed {
            break;
        }
        text = Some(next);
    }
    errors.sort_by_key(|e| e.line.unwrap_or(0));
    let mut errors = errors.into_iter().map(anyhow::Error::new);
    let first = errors
        .next()
        .unwrap_or_else(|| anyhow::anyhow!("{}: invalid config", path.display()));
    let mut failure = Failure::new(Code::Config, first);
    failure.more = errors.collect();
    Err(failure)
}

/// One attempt of [`load_all`]: the errors of the source, the sink and the
/// state store are independent, so all of them are returned.
fn build_all(
    path: &Path,
    text: Option<&str>,
    clock: &Arc<dyn Clock>,
) -> Result<Built, Vec<ConfigError>> {
    let config = config_text(path, text).map_err(|e| vec![e])?;
    let source = try_source(&config, clock.clone(), Arc::default());
    let sink = try_sink(&config, None);
    let state = match &config.state {
        StateConfig::Url(url) => url_store(&config, url).map(|_| ()),
        StateConfig::Embedded { .. } => Ok(()),
    };
    match (source, sink, state) {
        (Ok(source), Ok(sink), Ok(())) => Ok(Built {
            config,
            source,
            sink,
        }),
        (source, sink, state) => Err([source.err(), sink.err(), state.err()]
            .into_iter()
            .flatten()
            .collect()),
    }
}

/// The clock of the whole process. `TRIBUTARY_CLOCK_START` (RFC 3339) starts
/// it at another instant, for end-to-end tests of schedules and windows
/// ("the connector was down for three days") that must not sleep.
pub fn clock() -> Result<Arc<dyn Clock>, Failure> {
    match std::env::var("TRIBUTARY_CLOCK_START") {
        Ok(start) => {
            let start = chrono::DateTime::parse_from_rfc3339(&start).map_err(|e| {
                Failure::new(
                    Code::Config,
                    anyhow::anyhow!("TRIBUTARY_CLOCK_START=`{start}` is not an RFC 3339 time: {e}"),
                )
            })?;
            Ok(Arc::new(ShiftedClock::starting_at(
                start.with_timezone(&chrono::Utc),
            )))
        }
        Err(_) => Ok(Arc::new(SystemClock)),
    }
}

pub fn source(config: &ConnectorConfig, clock: Arc<dyn Clock>) -> Result<Arc<dyn Source>, Failure> {
    source_reporting(config, clock, Arc::default())
}

/// [`source`], reporting what only the source sees (HTTP statuses,
/// rate-limit waits) on the connector's entry in the process's metrics.
pub fn source_reporting(
    config: &ConnectorConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<tributary_metrics::ConnectorStats>,
) -> Result<Arc<dyn Source>, Failure> {
    try_source(config, clock, metrics).map_err(|e| Failure::new(Code::Config, e))
}

fn try_source(
    config: &ConnectorConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<tributary_metrics::ConnectorStats>,
) -> Result<Arc<dyn Source>, ConfigError> {
    let mut ctx = tributary_sources::SourceContext::from_config(config, clock);
    ctx.metrics = metrics;
    crate::app::registry()
        .build(&config.source, &ctx)
        .map(Arc::from)
}

/// The sink; `state` is the connector's store when it runs, which a Kafka
/// sink with `exactly_once` commits through (one read of the state topic
/// for both).
pub fn sink(
    config: &ConnectorConfig,
    state: Option<&Arc<dyn StateStore>>,
) -> Result<Box<dyn Sink>, Failure> {
    try_sink(config, state).map_err(|e| Failure::new(Code::Config, e))
}

fn try_sink(
    config: &ConnectorConfig,
    state: Option<&Arc<dyn StateStore>>,
) -> Result<Box<dyn Sink>, ConfigError> {
    let ctx = tributary_sinks::SinkContext {
        connector: config.name.clone(),
        bad_records: config.bad_records.policy,
        state_url: match &config.state {
            StateConfig::Url(url) => Some(url.clone()),
            StateConfig::Embedded { .. } => None,
        },
        flush_interval: config.runtime.flush_interval,
        kafka_state: state.and_then(|s| Arc::clone(s).kafka()),
    };
    tributary_sinks::build(&config.sink, &ctx)
}

/// How long a starting connector waits for a `tributary state` command that
/// briefly holds the embedded store's lock.
const OPERATOR_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

pub fn state(config: &ConnectorConfig) -> Result<Arc<dyn StateStore>, Failure> {
    match &config.state {
        StateConfig::Embedded { dir } => {
            EmbeddedStore::open_waiting(dir, &config.name, OPERATOR_LOCK_PATIENCE)
                .map(|s| Arc::new(s) as Arc<dyn StateStore>)
                .map_err(state_failure)
        }
        StateConfig::Url(url) => url_store(config, url)
            .map(|s| Arc::new(s) as Arc<dyn StateStore>)
            .map_err(|e| Failure::new(Code::Config, e)),
    }
}

/// The store a `[state] url` names (parsed; nothing connects yet).
pub fn url_store(config: &ConnectorConfig, url: &str) -> Result<KafkaStore, ConfigError> {
    let kafka = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("kafka://"));
    if !kafka {
        let scheme = url.split("://").next().unwrap_or(url);
        return Err(config.document.error(
            "state.url",
            format!("the `{scheme}` state backend is not available in this build; use `[state] dir = \"...\"` (the embedded store) or `url = \"kafka://host:port/topic\"`"),
        ));
    }
    KafkaStore::open(url, &config.name)
        .map(|s| {
            // The sink's transactions write the checkpoints; the store's
            // own writes (operators) are transactions too.
            if config.kafka_transactions() {
                s.transactional()
            } else {
                s
            }
        })
        .map_err(|e| config.document.error("state.url", e.to_string()))
}

/// The state store for `tributary state` commands, and whether the
/// connector is running: while it holds the embedded store, reads come from
/// the snapshot it keeps and every write is refused.
pub fn state_for_operator(
    config: &ConnectorConfig,
) -> Result<(Arc<dyn StateStore>, bool), Failure> {
    match &config.state {
        StateConfig::Embedded { dir } => {
            match EmbeddedStore::open_or_snapshot(dir, &config.name).map_err(state_failure)? {
                StoreAccess::Exclusive(s) => Ok((Arc::new(s), false)),
                StoreAccess::Running(s) => Ok((Arc::new(s), true)),
            }
        }
        StateConfig::Url(_) => state(config).map(|s| (s, false)),
    }
}

pub fn state_failure(e: StateError) -> Failure {
    let code = match e {
        StateError::Locked { .. } | StateError::Fenced { .. } => Code::StateLocked,
        _ => Code::Failure,
    };
    Failure::new(code, e)
}
