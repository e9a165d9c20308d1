//! `tributary state ...`: a thin layer over `tributary_state::ops` (status,
//! diffs, the export format) and `Source::checkpoint_at` (reset targets),
//! which the admin server shares.

use crate::build;
use crate::cli::StateCommand;
use crate::exit::{CmdResult, Code, Failure};
use anyhow::anyhow;
use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::Arc;
use std::time::Duration;
use tributary_config::{ConnectorConfig, Needs};
use tributary_core::{Checkpoint, ResetPosition, StreamSpec};
use tributary_state::ops::{self, StateExport, StreamHealth, StreamReport};
use tributary_state::{StateStore, StoredCheckpoint};

pub async fn state(cmd: StateCommand) -> CmdResult {
    match cmd {
        StateCommand::List {
            config,
            json,
            older_than,
        } => {
            let config = build::load_for(&config, Needs::State)?;
            let older_than = staleness(&config, older_than.as_deref())?;
            let (store, running) = build::state_for_operator(&config)?;
            let rows = ops::report(store.as_ref(), now()?, older_than, running)
                .await
                .map_err(build::state_failure)?;
            if json {
                print_json(&rows)?;
                return Ok(Code::Success);
            }
            out!("connector `{}`, state in {}", config.name, store.describe());
            if rows.is_empty() {
                out!("no checkpoints committed yet");
                return Ok(Code::Success);
            }
            print_table(&rows);
            Ok(Code::Success)
        }
        StateCommand::Stuck {
            config,
            older_than,
            json,
        } => {
            let config = build::load_for(&config, Needs::State)?;
            let older_than = staleness(&config, older_than.as_deref())?;
            let (store, running) = build::state_for_operator(&config)?;
            let rows: Vec<StreamReport> = ops::report(store.as_ref(), now()?, older_than, running)
                .await
                .map_err(build::state_failure)?
                .into_iter()
                .filter(|r| r.status == StreamHealth::Stuck)
                .collect();
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                let limit = older_than
                    .map(|d| format!("advanced within {}", ops::human_age(secs(d))))
                    .unwrap_or_else(|| {
                        "no staleness limit (set --older-than or runtime.max_staleness)".into()
                    });
                out!("no stuck streams in connector `{}` ({limit})", config.name);
            } else {
                for r in &rows {
                    out!(
                        "{}\tstuck for {}: {}",
                        r.stream,
                        ops::human_age(r.age_seconds),
                        r.reason.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(if rows.is_empty() {
                Code::Success
            } else {
                Code::Stuck
            })
        }
        StateCommand::Get { config, stream } => {
            let config = build::load_for(&config, Needs::State)?;
            let (store, _) = build::state_for_operator(&config)?;
            let value = match stream {
                Some(s) => match store.load(&s).await.map_err(build::state_failure)? {
                    Some(c) => c.checkpoint.0,
                    None => {
                        return Err(Failure::new(
                            Code::Failure,
                            anyhow!(
                                "no checkpoint committed for stream `{s}` of connector `{}`",
                                config.name
                            ),
                        ))
                    }
                },
                None => {
                    let all = store.load_all().await.map_err(build::state_failure)?;
                    serde_json::Value::Object(
                        all.into_iter()
                            .map(|c| (c.stream, c.checkpoint.0))
                            .collect(),
                    )
                }
            };
            print_json(&value)?;
            Ok(Code::Success)
        }
        StateCommand::Reset {
            config,
            stream,
            all: _,
            to_now,
            to,
            to_available_end,
            dry_run,
        } => {
            let position = match (to_now, &to, to_available_end) {
                (true, _, _) => Some(ResetPosition::Now),
                (_, Some(text), _) => Some(ResetPosition::At(parse_datetime(text)?)),
                (_, _, true) => Some(ResetPosition::AvailableEnd),
                _ => None,
            };
            // Moving a stream asks its source where the position is, so the
            // source's settings must resolve; removing a checkpoint does not.
            let needs = if position.is_some() {
                Needs::All
            } else {
                Needs::State
            };
            let config = build::load_for(&config, needs)?;
            let (store, running) = build::state_for_operator(&config)?;
            match (stream, position) {
                (Some(s), Some(position)) => {
                    let current = store.load(&s).await.map_err(build::state_failure)?;
                    let source = build::source(&config, build::clock()?)?;
                    let spec = known_stream(&config, source.as_ref(), &s).await?;
                    let checkpoint = source
                        .checkpoint_at(&spec, current.as_ref().map(|c| &c.checkpoint), position)
                        .await
                        .map_err(crate::exit::source_failure)?;
                    let _ = source.close().await;
                    let what = format!("moved stream `{s}` of connector `{}` ({position})", config.name);
                    write_one(&config, store, running, &s, current, checkpoint, dry_run, &what).await
                }
                (stream, None) => {
                    let before = match &stream {
                        Some(s) => store
                            .load(s)
                            .await
                            .map_err(build::state_failure)?
                            .into_iter()
                            .collect(),
                        None => store.load_all().await.map_err(build::state_failure)?,
                    };
                    if dry_run {
                        print_dry_run(&config, running, before.iter().map(|c| (c.stream.as_str(), Some(&c.checkpoint), None)));
                        return Ok(Code::Success);
                    }
                    refuse_if_running(&config, store.as_ref(), running)?;
                    let removed = store
                        .reset(stream.as_deref())
                        .await
                        .map_err(build::state_failure)?;
                    match stream {
                        Some(s) if removed == 0 => out!("stream `{s}` of connector `{}` had no checkpoint; nothing to reset", config.name),
                        Some(s) => out!("reset stream `{s}` of connector `{}`: it will start from the beginning", config.name),
                        None => out!("reset {removed} stream(s) of connector `{}`: they will start from the beginning", config.name),
                    }
                    Ok(Code::Success)
                }
                (None, Some(_)) => Err(Failure::new(
                    Code::Config,
                    anyhow!("--to-now, --to and --to-available-end move one stream: name it with --stream"),
                )),
            }
        }
        StateCommand::Set {
            config,
            stream,
            json,
            dry_run,
        } => {
            let config = build::load_for(&config, Needs::State)?;
            let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
                Failure::new(Code::Config, anyhow!("--json is not valid JSON: {e}"))
            })?;
            let (store, running) = build::state_for_operator(&config)?;
            let current = store.load(&stream).await.map_err(build::state_failure)?;
            let what = format!("set stream `{stream}` of connector `{}`", config.name);
            write_one(
                &config,
                store,
                running,
                &stream,
                current,
                Checkpoint(value),
                dry_run,
                &what,
            )
            .await
        }
        StateCommand::Export { config } => {
            let config = build::load_for(&config, Needs::State)?;
            let (store, _) = build::state_for_operator(&config)?;
            let export = ops::export(store.as_ref(), &config.name, now()?)
                .await
                .map_err(build::state_failure)?;
            print_json(&export)?;
            Ok(Code::Success)
        }
        StateCommand::Import {
            config,
            file,
            dry_run,
        } => {
            let config = build::load_for(&config, Needs::State)?;
            let text = std::fs::read_to_string(&file).map_err(|e| {
                Failure::new(
                    Code::Failure,
                    anyhow!("cannot read {}: {e}", file.display()),
                )
            })?;
            let export = StateExport::parse(&text, &config.name)
                .map_err(|e| Failure::new(Code::Failure, anyhow!("{}: {e}", file.display())))?;
            let (store, running) = build::state_for_operator(&config)?;
            let before = store.load_all().await.map_err(build::state_failure)?;
            let mut names: Vec<&str> = before
                .iter()
                .map(|c| c.stream.as_str())
                .chain(export.streams.iter().map(|c| c.stream.as_str()))
                .collect();
            names.sort();
            names.dedup();
            let find = |list: &[StoredCheckpoint], n: &str| {
                list.iter()
                    .find(|c| c.stream == n)
                    .map(|c| c.checkpoint.clone())
            };
            let changes: Vec<(String, Option<Checkpoint>, Option<Checkpoint>)> = names
                .iter()
                .map(|n| (n.to_string(), find(&before, n), find(&export.streams, n)))
                .collect();
            if dry_run {
                print_dry_run(
                    &config,
                    running,
                    changes
                        .iter()
                        .map(|(n, b, a)| (n.as_str(), b.as_ref(), Some(a.as_ref()))),
                );
                return Ok(Code::Success);
            }
            refuse_if_running(&config, store.as_ref(), running)?;
            store
                .replace_all(&export.streams)
                .await
                .map_err(build::state_failure)?;
            out!(
                "imported {} stream(s) into connector `{}` from {} (exported at {})",
                export.streams.len(),
                config.name,
                file.display(),
                export
                    .exported_at
                    .to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            Ok(Code::Success)
        }
    }
}

/// Writes one operator checkpoint, or prints what it would change.
#[allow(clippy::too_many_arguments)]
async fn write_one(
    config: &ConnectorConfig,
    store: Arc<dyn StateStore>,
    running: bool,
    stream: &str,
    current: Option<StoredCheckpoint>,
    checkpoint: Checkpoint,
    dry_run: bool,
    what: &str,
) -> CmdResult {
    let before = current.as_ref().map(|c| &c.checkpoint);
    if dry_run {
        print_dry_run(config, running, [(stream, before, Some(Some(&checkpoint)))]);
        return Ok(Code::Success);
    }
    refuse_if_running(config, store.as_ref(), running)?;
    let changes = ops::diff(before.map(|c| &c.0), Some(&checkpoint.0));
    let entry = ops::operator_entry(stream, checkpoint, current.as_ref(), Utc::now());
    store.put(&[entry]).await.map_err(build::state_failure)?;
    out!("{what}");
    out!("{}", ops::render_diff(stream, &changes));
    Ok(Code::Success)
}

/// `(stream, before, after)`; `after` is `None` for "removed" and
/// `Some(None)` for "absent after".
fn print_dry_run<'a>(
    config: &ConnectorConfig,
    running: bool,
    changes: impl IntoIterator<
        Item = (
            &'a str,
            Option<&'a Checkpoint>,
            Option<Option<&'a Checkpoint>>,
        ),
    >,
) {
    out!("dry run: nothing is changed in connector `{}`", config.name);
    if running {
        out!("the connector is running: applying this is refused until it is stopped");
    }
    for (stream, before, after) in changes {
        let after = after.flatten();
        let diff = ops::diff(before.map(|c| &c.0), after.map(|c| &c.0));
        out!("{}", ops::render_diff(stream, &diff));
    }
}

fn refuse_if_running(
    config: &ConnectorConfig,
    store: &dyn StateStore,
    running: bool,
) -> Result<(), Failure> {
    if running {
        return Err(Failure::new(
            Code::StateLocked,
            anyhow!(
                "connector `{}` is running: its state store {} is in use by another tributary process. Stop the connector first; checkpoints are never changed under a running connector (like Kafka Connect's offsets API, which requires the connector STOPPED). `--dry-run` shows the change meanwhile",
                config.name,
                store.describe()
            ),
        ));
    }
    Ok(())
}

/// The stream by name, with the source's stream list in the error.
async fn known_stream(
    config: &ConnectorConfig,
    source: &dyn tributary_core::Source,
    name: &str,
) -> Result<StreamSpec, Failure> {
    let streams = source
        .discover()
        .await
        .map_err(|e| Failure::new(Code::CheckFailed, e))?;
    streams.into_iter().find(|s| s.name == name).ok_or_else(|| {
        Failure::new(
            Code::Config,
            anyhow!("connector `{}` has no stream `{name}`", config.name),
        )
    })
}

/// `--older-than`, else the config's `runtime.max_staleness`.
fn staleness(config: &ConnectorConfig, flag: Option<&str>) -> Result<Option<Duration>, Failure> {
    match flag {
        Some(text) => tributary_config::units::parse_duration(text)
            .map(Some)
            .map_err(|e| Failure::new(Code::Config, anyhow!("--older-than: {e}"))),
        None => Ok(config.runtime.max_staleness),
    }
}

fn parse_datetime(text: &str) -> Result<DateTime<Utc>, Failure> {
    tributary_sources::stripe::parse_instant(text).ok_or_else(|| {
        Failure::new(
            Code::Config,
            anyhow!("--to `{text}` is not a time: use RFC 3339 (2024-11-01T00:00:00Z) or a date (2024-11-01)"),
        )
    })
}

/// "Now" as the process clock says (`TRIBUTARY_CLOCK_START` moves it, so
/// staleness is tested without waiting a week).
fn now() -> Result<DateTime<Utc>, Failure> {
    Ok(build::clock()?.now())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    out!(
        "{}",
        serde_json::to_string_pretty(value).map_err(|e| Failure::new(Code::Failure, e))?
    );
    Ok(())
}

fn print_table(rows: &[StreamReport]) {
    out!(
        "{:<24} {:<25} {:>10}  {:<8} CHECKPOINT",
        "STREAM",
        "COMMITTED AT",
        "AGE",
        "STATUS"
    );
    for r in rows {
        let mut cp = r.checkpoint.0.to_string();
        if cp.len() > 80 {
            let cut = (0..=77)
                .rev()
                .find(|i| cp.is_char_boundary(*i))
                .unwrap_or(0);
            cp.truncate(cut);
            cp.push_str("...");
        }
        let status = match r.status {
            StreamHealth::Ok => "ok",
            StreamHealth::Running => "running",
            StreamHealth::Stuck => "stuck",
        };
        out!(
            "{:<24} {:<25} {:>10}  {:<8} {}",
            r.stream,
            r.committed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            ops::human_age(r.age_seconds),
            status,
            cp
        );
        if let Some(reason) = &r.reason {
            out!("{:<24} stuck: {reason}", "");
        }
    }
}
