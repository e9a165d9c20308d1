//! Turns a config file into the parts the runtime drives: the one place that
//! knows every source, sink and state backend.

use crate::exit::{Code, Failure};
use std::path::Path;
use std::sync::Arc;
use tributary_config::{ConnectorConfig, Needs, StateConfig};
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
        tributary_sources::apply_defaults(&mut config)
            .map_err(|e| Failure::new(Code::Config, e))?;
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
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
    let mut ctx = tributary_sources::SourceContext::from_config(config, clock);
    ctx.metrics = metrics;
    tributary_sources::build(&config.source, &ctx)
        .map(Arc::from)
        .map_err(|e| Failure::new(Code::Config, e))
}

pub fn sink(config: &ConnectorConfig) -> Result<Box<dyn Sink>, Failure> {
    let ctx = tributary_sinks::SinkContext {
        connector: config.name.clone(),
        bad_records: config.bad_records.policy,
        state_url: match &config.state {
            StateConfig::Url(url) => Some(url.clone()),
            StateConfig::Embedded { .. } => None,
        },
        flush_interval: config.runtime.flush_interval,
    };
    tributary_sinks::build(&config.sink, &ctx).map_err(|e| Failure::new(Code::Config, e))
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
        StateConfig::Url(url)
            if url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("kafka://")) =>
        {
            KafkaStore::open(url, &config.name)
                .map(|s| {
                    // The sink's transactions write the checkpoints; the
                    // store's own writes (operators) are transactions too.
                    if config.kafka_transactions() {
                        s.transactional()
                    } else {
                        s
                    }
                })
                .map(|s| Arc::new(s) as Arc<dyn StateStore>)
                .map_err(|e| {
                    Failure::new(
                        Code::Config,
                        config.document.error("state.url", e.to_string()),
                    )
                })
        }
        StateConfig::Url(url) => {
            let scheme = url.split("://").next().unwrap_or(url);
            Err(Failure::new(
                Code::Config,
                anyhow::anyhow!(
                    "{}: state: the `{scheme}` state backend is not available in this build; use `[state] dir = \"...\"` (the embedded store) or `url = \"kafka://host:port/topic\"`",
                    config.document.path.display()
                ),
            ))
        }
    }
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
