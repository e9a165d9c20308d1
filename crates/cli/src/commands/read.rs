use crate::build;
use crate::cli::ReadArgs;
use crate::exit::{CmdResult, Code, Failure};
use std::io::Write;
use tributary_core::Poll;
use tributary_runtime::Transform;

/// Prints up to `limit` records of one stream as NDJSON, starting from the
/// committed checkpoint (or the beginning). Nothing is committed, so a preview
/// never changes what the next `run` delivers.
pub async fn read(args: ReadArgs) -> CmdResult {
    let config = build::load(&args.config)?;
    let source = build::source(&config, build::clock()?)?;
    let streams = source
        .discover()
        .await
        .map_err(|e| Failure::new(Code::CheckFailed, anyhow::anyhow!("source: {e}")))?;
    let Some(spec) = streams.iter().find(|s| s.name == args.stream) else {
        let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
        let hint = tributary_config::did_you_mean(&args.stream, &names)
            .map(|best| format!(" (did you mean `{best}`?)"))
            .unwrap_or_default();
        return Err(Failure::new(
            Code::Config,
            anyhow::anyhow!(
                "no stream `{}` in connector `{}`{hint}; streams: {}",
                args.stream,
                config.name,
                names.join(", ")
            ),
        ));
    };
    let checkpoint = if args.from_start {
        None
    } else {
        build::state(&config)?
            .load(&spec.name)
            .await
            .map_err(build::state_failure)?
            .map(|c| c.checkpoint)
    };
    let transform = Transform::new(&spec.name, &config.metadata);
    let in_stream = |e: tributary_core::ConnectorError| {
        let mut f = crate::exit::source_failure(e);
        f.error = anyhow::anyhow!("stream `{}`: {}", spec.name, f.error);
        f
    };
    let mut reader = source.open(spec, checkpoint).await.map_err(in_stream)?;
    let mut printed = 0usize;
    let mut out = std::io::stdout().lock();
    while printed < args.limit {
        let polled = reader.poll().await.map_err(in_stream)?;
        let Poll::Batch(mut batch) = polled else {
            break;
        };
        for bad in &batch.bad_records {
            err!("bad record at {}: {}", bad.location, bad.error);
        }
        transform.apply(&mut batch.records, batch.load_mode, chrono::Utc::now());
        for r in batch.records.iter().take(args.limit - printed) {
            let mut line = Vec::new();
            r.value
                .write_json(&mut line)
                .map_err(|e| Failure::new(Code::Failure, e))?;
            line.push(b'\n');
            if let Err(e) = out.write_all(&line) {
                return stdout_failed(e);
            }
            printed += 1;
        }
    }
    if let Err(e) = out.flush() {
        return stdout_failed(e);
    }
    let _ = reader.close().await;
    Ok(Code::Success)
}

/// The reader of stdout went away (`| head -1`): stop quietly; the command
/// then ends with the status a shell reports for a program SIGPIPE ended,
/// as `cat` would. Any other write error is one.
fn stdout_failed(e: std::io::Error) -> CmdResult {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        crate::exit::STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
        return Ok(Code::Success);
    }
    Err(Failure::new(
        Code::Failure,
        anyhow::anyhow!("cannot write to stdout: {e}"),
    ))
}
