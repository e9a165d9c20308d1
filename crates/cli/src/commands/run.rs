use crate::build;
use crate::cli::RunArgs;
use crate::exit::{CmdResult, Code, Failure};
use indicatif::MultiProgress;
use std::io::IsTerminal;
use tokio_util::sync::CancellationToken;
use tributary_metrics::Registry;
use tributary_runtime::{run_connector_with, ConnectorHandle, ConnectorParts, RuntimeEnv};

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
        let mut config = build::load(path)?;
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
        // Built before `--once` overrides the schedule, so checkpoints still
        // record the configured schedule's next run.
        let source =
            build::source_reporting(&config, clock.clone(), metrics.connector(&config.name))?;
        if args.once {
            config.schedule = tributary_core::Schedule::Once;
            for o in config.streams.values_mut() {
                o.schedule = None;
            }
        }
        let sink = build::sink(&config)?;
        let state = build::state(&config)?;
        all_parts.push(ConnectorParts {
            config,
            source,
            sink,
            state,
        });
    }

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let env = RuntimeEnv {
        clock,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let progress_done = CancellationToken::new();
    let progress = multi.map(|m| crate::progress::spawn(m, metrics.clone(), progress_done.clone()));

    let handles: Vec<_> = all_parts
        .iter()
        .map(|p| ConnectorHandle::new(p, &env))
        .collect();
    // Stopped after the connectors, so it reports their end; the process
    // exits right after anyway.
    let admin_done = CancellationToken::new();
    if let Some((addr, token)) = admin {
        let state = crate::admin::AdminState {
            connectors: handles.clone(),
            metrics: metrics.clone(),
            clock: env.clock.clone(),
            rates: Default::default(),
        };
        if let Err(e) = crate::admin::serve(addr, token, state, admin_done.clone()).await {
            progress_done.cancel();
            return Err(e);
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    for (parts, handle) in all_parts.into_iter().zip(handles) {
        tracing::info!(connector = %parts.config.name, "starting");
        tasks.spawn(run_connector_with(parts, env.clone(), handle));
    }
    let mut failed = 0usize;
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
    if failed > 0 {
        return Err(Failure::new(
            Code::Failure,
            anyhow::anyhow!("{failed} connector(s) stopped with an error (see the log above)"),
        ));
    }
    Ok(Code::Success)
}

/// First SIGINT/SIGTERM: drain and commit, then exit 0. Second: exit now (130).
fn spawn_signal_handler(shutdown: CancellationToken) {
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
                eprintln!("forced stop: uncommitted records will be read again on the next run");
                std::process::exit(Code::Forced as i32);
            }
        }
    });
}
