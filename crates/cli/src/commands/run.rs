use crate::build;
use crate::cli::RunArgs;
use crate::exit::{CmdResult, Code, Failure};
use indicatif::MultiProgress;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tributary_config::ConnectorConfig;
use tributary_core::Clock;
use tributary_metrics::Registry;
use tributary_runtime::{
    run_connector_with, ConnectorHandle, ConnectorParts, RunSummary, RuntimeEnv,
};
use tributary_state::StateStore;

pub fn progress_enabled(args: &RunArgs) -> bool {
    !args.no_progress && std::io::stderr().is_terminal()
}

pub async fn run(args: RunArgs, multi: Option<MultiProgress>) -> CmdResult {
    // Build everything before starting anything: a typo in the third config
    // must not leave the first two running.
    let mut all_parts = Vec::new();
    let clock = build::clock()?;
    let metrics = Registry::new();
    let admin = match &args.admin_addr {
        Some(addr) => Some((
            crate::admin::parse_addr(addr)?,
            crate::admin::load_token(args.admin_token_file.as_deref())?,
        )),
        None => None,
    };
    let mut names = std::collections::BTreeMap::new();
    for path in &args.configs {
        let config = build::load(path)?;
        if let Some(other) = names.insert(config.name.clone(), path.clone()) {
            return Err(Failure::new(
                Code::Config,
                anyhow::anyhow!(
                    "{}: name: connector name `{}` is also used by {}; names must be unique (they key the state)",
                    path.display(),
                    config.name,
                    other.display()
                ),
            ));
        }
        let parts = build_parts(config, &clock, &metrics, args.once, None)?;
        all_parts.push((path.clone(), parts));
    }

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let env = RuntimeEnv {
        clock,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let progress_done = CancellationToken::new();
    let progress = multi.map(|m| {
        crate::progress::spawn(m, metrics.clone(), env.clock.clone(), progress_done.clone())
    });

    let handles: Vec<_> = all_parts
        .iter()
        .map(|(_, p)| ConnectorHandle::new(p, &env))
        .collect();
    // Stopped after the connectors, so it reports their end; the process
    // exits right after anyway.
    let admin_done = CancellationToken::new();
    if let Some((addr, token)) = admin {
        let state = crate::admin::AdminState {
            connectors: crate::admin::Connectors::new(handles.clone()),
            metrics: metrics.clone(),
            clock: env.clock.clone(),
            rates: Default::default(),
            started: std::time::Instant::now(),
            worker_id: String::new(),
            cluster: None,
        };
        if let Err(e) = crate::admin::serve(addr, token, state, admin_done.clone()).await {
            progress_done.cancel();
            return Err(e);
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    for ((path, parts), handle) in all_parts.into_iter().zip(handles) {
        tracing::info!(connector = %parts.config.name, "starting");
        let rebuild = Rebuild {
            path,
            once: args.once,
            text: None,
        };
        tasks.spawn(supervise(parts, env.clone(), handle, rebuild));
    }
    let mut failed = 0usize;
    // Connectors stopped by their config (checked against the source once
    // it answered): exit 2 when that is all that failed.
    let mut config_failed = 0usize;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(summary)) => {
                let total: u64 = summary.committed.values().sum();
                let per_stream: Vec<String> = summary
                    .committed
                    .iter()
                    .map(|(s, n)| format!("{s}: {n}"))
                    .collect();
                tracing::info!(
                    connector = %summary.connector,
                    committed = total,
                    streams = %per_stream.join(", "),
                    interrupted = summary.interrupted,
                    "connector stopped"
                );
            }
            Ok(Err(e)) => {
                failed += 1;
                if matches!(
                    e.downcast_ref::<tributary_runtime::RuntimeError>(),
                    Some(tributary_runtime::RuntimeError::Config { .. })
                ) {
                    config_failed += 1;
                }
                tracing::error!("{e}");
            }
            Err(e) => {
                failed += 1;
                tracing::error!("connector task panicked: {e}");
            }
        }
    }
    progress_done.cancel();
    admin_done.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    final_summary(&metrics);
    if failed > 0 {
        let code = if config_failed == failed {
            Code::Config
        } else {
            Code::Failure
        };
        return Err(Failure::new(
            code,
            anyhow::anyhow!("{failed} connector(s) stopped with an error (see the log above)"),
        ));
    }
    Ok(Code::Success)
}

/// One line per stream once every connector ended, failed or not: what it
/// committed, what went to the dead-letter file, and why it failed.
pub(crate) fn final_summary(metrics: &Registry) {
    for s in metrics.snapshot() {
        let dead = s.bad_records_dead_lettered;
        match s.failed_reason() {
            Some(reason) => tracing::error!(
                connector = %s.connector,
                stream = %s.stream,
                committed = s.records_committed,
                dead_letters = dead,
                error = %tributary_core::secret::redact(reason),
                "stream summary: failed"
            ),
            None if dead > 0 => tracing::warn!(
                connector = %s.connector,
                stream = %s.stream,
                committed = s.records_committed,
                dead_letters = dead,
                "stream summary: bad records went to the dead-letter file"
            ),
            None => tracing::info!(
                connector = %s.connector,
                stream = %s.stream,
                committed = s.records_committed,
                dead_letters = dead,
                "stream summary"
            ),
        }
    }
}

/// Source, sink and state of a connector. `state` is the store a resumed
/// connector keeps (this process holds its lock).
pub(crate) fn build_parts(
    mut config: ConnectorConfig,
    clock: &Arc<dyn Clock>,
    metrics: &Registry,
    once: bool,
    state: Option<Arc<dyn StateStore>>,
) -> Result<ConnectorParts, Failure> {
    // Built before `--once` overrides the schedule, so checkpoints still
    // record the configured schedule's next run.
    let source = build::source_reporting(&config, clock.clone(), metrics.connector(&config.name))?;
    if once {
        config.schedule = tributary_core::Schedule::Once;
        for o in config.streams.values_mut() {
            o.schedule = None;
        }
    }
    let state = match state {
        Some(state) => state,
        None => build::state(&config)?,
    };
    let sink = build::sink(&config, Some(&state))?;
    Ok(ConnectorParts {
        config,
        source,
        sink,
        state,
    })
}

/// What a resumed connector is rebuilt from: its config file as it is now,
/// so an operator can fix a config while the connector is stopped; or, for
/// a connector a worker runs, the text it was deployed with (`path` then
/// only names it and is the base of its relative paths).
pub(crate) struct Rebuild {
    pub path: PathBuf,
    pub once: bool,
    pub text: Option<String>,
}

impl Rebuild {
    fn load(&self) -> Result<ConnectorConfig, Failure> {
        match &self.text {
            None => build::load(&self.path),
            Some(text) => build::load_text(&self.path, text, &|n| std::env::var(n).ok()),
        }
    }
}

/// Runs a connector until it ends; when an operator stopped or paused it
/// through the admin server, waits for their resume (or a shutdown) and runs
/// it again from its committed checkpoints; after a restart, at once.
pub(crate) async fn supervise(
    mut parts: ConnectorParts,
    env: RuntimeEnv,
    handle: Arc<ConnectorHandle>,
    rebuild: Rebuild,
) -> anyhow::Result<RunSummary> {
    loop {
        // The run's own stop token: cancelled by an operator's stop (or a
        // shutdown) during this run, even if a resume already replaced it.
        let stop = handle.stop_token();
        let summary = run_connector_with(parts, env.clone(), handle.clone()).await?;
        if !stop.is_cancelled() || env.shutdown.is_cancelled() {
            return Ok(summary);
        }
        if handle.take_restart() {
            tracing::info!(connector = %summary.connector, "restarting from the committed checkpoints (asked through the admin server)");
        } else {
            if handle.is_paused() {
                tracing::info!(connector = %summary.connector, "paused through the admin server until it is resumed");
            } else {
                tracing::info!(connector = %summary.connector, "stopped through the admin server; offsets can be changed until it is resumed");
            }
            tokio::select! {
                _ = env.shutdown.cancelled() => return Ok(summary),
                _ = handle.resumed() => {}
            }
            tracing::info!(connector = %summary.connector, "resuming from the committed checkpoints");
        }
        let state = Some(handle.state_store().clone());
        parts = rebuild
            .load()
            .and_then(|config| build_parts(config, &env.clock, &env.metrics, rebuild.once, state))
            .map_err(|f| f.error)?;
    }
}

/// First SIGINT/SIGTERM: drain and commit, then exit 0. Second: exit now (130).
pub(crate) fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    return;
                }
            };
        for n in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                tracing::info!("shutting down: draining in-flight batches and committing (interrupt again to stop immediately)");
                shutdown.cancel();
            } else {
                err!("forced stop: uncommitted records will be read again on the next run");
                std::process::exit(Code::Forced as i32);
            }
        }
    });
}
