use crate::build;
use crate::exit::{CmdResult, Code, Failure};
use std::path::Path;

/// Validates the config, then asks the source and sink to prove they can
/// connect, without reading or writing data.
pub async fn check(path: &Path) -> CmdResult {
    let config = build::load(path)?;
    out!(
        "config   ok: connector `{}` ({})",
        config.name,
        path.display()
    );
    let source = build::source(&config, build::clock()?)?;
    let mut sink = build::sink(&config, None)?;
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
    out!(
        "source   ok: type `{}` with {} stream(s): {}",
        config.source.kind,
        streams.len(),
        names.join(", ")
    );
    sink.check().await.map_err(|e| check_failed("sink", e))?;
    out!("sink     ok: type `{}`", config.sink.kind);
    match &config.state {
        tributary_config::StateConfig::Embedded { dir } => {
            out!("state    ok: embedded store in {}", dir.display())
        }
        tributary_config::StateConfig::Url(_) => {
            build::state(&config)?;
        }
    }
    Ok(Code::Success)
}
