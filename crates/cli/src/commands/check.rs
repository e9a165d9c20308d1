use crate::build;
use crate::exit::{CmdResult, Code, Failure};
use std::path::Path;
use std::time::Duration;
use tributary_config::StateConfig;

/// How long `check` waits for a Kafka state store's brokers: long enough
/// for a slow cluster, short enough that a wrong address is reported
/// while the user still waits.
const STATE_CHECK_WAIT: Duration = Duration::from_secs(10);

/// Runs every validation `run` would, without reading or writing data:
/// every config error of the file (not only the first), the source's
/// connectivity and streams, the per-stream overrides against them, the
/// sink's connectivity and rights on the targets, and the state store.
/// Each part's line is printed once it passed; `ok` comes last, after all.
pub async fn check(path: &Path) -> CmdResult {
    let clock = build::clock()?;
    let build::Built {
        config,
        source,
        mut sink,
    } = build::load_all(path, &clock)?;
    let check_failed = |what: &str, e: tributary_core::ConnectorError| {
        Failure::new(Code::CheckFailed, anyhow::anyhow!("{what}: {e}"))
    };
    source
        .check()
        .await
        .map_err(|e| check_failed("source", e))?;
    let streams = source
        .discover()
        .await
        .map_err(|e| check_failed("source", e))?;
    let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    config
        .check_stream_overrides(&names)
        .map_err(|e| Failure::new(Code::Config, e))?;
    out!(
        "config   ok: connector `{}` ({})",
        config.name,
        path.display()
    );
    out!(
        "source   ok: type `{}` with {} stream(s): {}",
        config.source.kind,
        streams.len(),
        names.join(", ")
    );
    sink.set_streams(&[config.sink_streams(&streams), source.routed_targets()].concat());
    sink.check().await.map_err(|e| check_failed("sink", e))?;
    out!("sink     ok: type `{}`", config.sink.kind);
    match &config.state {
        StateConfig::Embedded { dir } => {
            out!("state    ok: embedded store in {}", dir.display())
        }
        StateConfig::Url(url) => {
            let store =
                build::url_store(&config, url).map_err(|e| Failure::new(Code::Config, e))?;
            let found = store
                .check(STATE_CHECK_WAIT)
                .await
                .map_err(|e| Failure::new(Code::CheckFailed, e))?;
            out!("state    ok: kafka store, {found}");
        }
    }
    out!("ok: connector `{}` is ready to run", config.name);
    Ok(Code::Success)
}
