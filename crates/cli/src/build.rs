//! Turns a config file into the parts the runtime drives: the one place that
//! knows every source, sink and state backend.

use crate::exit::{Code, Failure};
use std::path::Path;
use std::sync::Arc;
use tributary_config::{ConnectorConfig, StateConfig};
use tributary_core::{Sink, Source};
use tributary_state::{EmbeddedStore, StateError, StateStore};

pub fn load(path: &Path) -> Result<ConnectorConfig, Failure> {
    tributary_config::load_file(path).map_err(|e| Failure::new(Code::Config, e))
}

pub fn source(config: &ConnectorConfig) -> Result<Arc<dyn Source>, Failure> {
    let ctx = tributary_sources::SourceContext::new(config.name.clone(), config.runtime.batch_size);
    tributary_sources::build(&config.source, &ctx)
        .map(Arc::from)
        .map_err(|e| Failure::new(Code::Config, e))
}

pub fn sink(config: &ConnectorConfig) -> Result<Box<dyn Sink>, Failure> {
    let ctx = tributary_sinks::SinkContext {
        connector: config.name.clone(),
    };
    tributary_sinks::build(&config.sink, &ctx).map_err(|e| Failure::new(Code::Config, e))
}

pub fn state(config: &ConnectorConfig) -> Result<Arc<dyn StateStore>, Failure> {
    match &config.state {
        StateConfig::Embedded { dir } => EmbeddedStore::open(dir, &config.name)
            .map(|s| Arc::new(s) as Arc<dyn StateStore>)
            .map_err(state_failure),
        StateConfig::Url(url) => {
            let scheme = url.split("://").next().unwrap_or(url);
            Err(Failure::new(
                Code::Config,
                anyhow::anyhow!(
                    "{}: state: the `{scheme}` state backend is not available in this build; use `[state] dir = \"...\"` (the embedded store)",
                    config.document.path.display()
                ),
            ))
        }
    }
}

pub fn state_failure(e: StateError) -> Failure {
    let code = match e {
        StateError::Locked { .. } => Code::StateLocked,
        _ => Code::Failure,
    };
    Failure::new(code, e)
}
