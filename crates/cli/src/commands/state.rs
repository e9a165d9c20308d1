use crate::build;
use crate::cli::StateCommand;
use crate::exit::{CmdResult, Code, Failure};
use chrono::Utc;
use serde_json::json;

pub async fn state(cmd: StateCommand) -> CmdResult {
    match cmd {
        StateCommand::List { config, json } => {
            let config = build::load(&config)?;
            let store = build::state(&config)?;
            let all = store.load_all().await.map_err(build::state_failure)?;
            if json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|c| {
                        json!({
                            "stream": c.stream,
                            "checkpoint": c.checkpoint,
                            "committed_at": c.committed_at,
                            "advanced_at": c.advanced_at,
                            "age_seconds": (Utc::now() - c.advanced_at).num_seconds(),
                        })
                    })
                    .collect();
                out!(
                    "{}",
                    serde_json::to_string_pretty(&rows)
                        .map_err(|e| Failure::new(Code::Failure, e))?
                );
                return Ok(Code::Success);
            }
            out!("connector `{}`, state in {}", config.name, store.describe());
            if all.is_empty() {
                out!("no checkpoints committed yet");
                return Ok(Code::Success);
            }
            out!(
                "{:<24} {:<25} {:>10}  CHECKPOINT",
                "STREAM",
                "COMMITTED AT",
                "AGE"
            );
            for c in &all {
                let mut cp = c.checkpoint.0.to_string();
                if cp.len() > 80 {
                    let cut = (0..=77)
                        .rev()
                        .find(|i| cp.is_char_boundary(*i))
                        .unwrap_or(0);
                    cp.truncate(cut);
                    cp.push_str("...");
                }
                out!(
                    "{:<24} {:<25} {:>10}  {}",
                    c.stream,
                    c.committed_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    age((Utc::now() - c.advanced_at).num_seconds()),
                    cp
                );
            }
            Ok(Code::Success)
        }
        StateCommand::Get { config, stream } => {
            let config = build::load(&config)?;
            let store = build::state(&config)?;
            let value = match stream {
                Some(s) => match store.load(&s).await.map_err(build::state_failure)? {
                    Some(c) => c.checkpoint.0,
                    None => {
                        return Err(Failure::new(
                            Code::Failure,
                            anyhow::anyhow!(
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
            out!(
                "{}",
                serde_json::to_string_pretty(&value).map_err(|e| Failure::new(Code::Failure, e))?
            );
            Ok(Code::Success)
        }
        StateCommand::Reset {
            config,
            stream,
            all: _,
        } => {
            let config = build::load(&config)?;
            let store = build::state(&config)?;
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
    }
}

fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}
