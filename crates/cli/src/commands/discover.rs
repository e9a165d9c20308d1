use crate::build;
use crate::exit::{CmdResult, Code, Failure};
use serde_json::json;
use std::path::Path;

/// Prints the source's streams as JSON, with where each is routed and when it runs.
pub async fn discover(path: &Path) -> CmdResult {
    let config = build::load(path)?;
    let source = build::source(&config, build::clock()?)?;
    let streams = source
        .discover()
        .await
        .map_err(|e| Failure::new(Code::CheckFailed, anyhow::anyhow!("source: {e}")))?;
    let out: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "primary_key": s.primary_key,
                "cursor_field": s.cursor_field,
                "json_schema": s.json_schema,
                "target": config.target_for(&s.name),
                "schedule": describe_schedule(config.schedule_for(&s.name)),
            })
        })
        .collect();
    // Tables a stream's records route themselves to (a bridged connector's).
    let routed: Vec<serde_json::Value> = source
        .routed_targets()
        .iter()
        .map(|t| {
            json!({
                "name": t.spec.name,
                "primary_key": t.spec.primary_key,
                "json_schema": t.spec.json_schema,
                "target": t.target,
            })
        })
        .collect();
    let mut doc = json!({ "connector": config.name, "streams": out });
    if !routed.is_empty() {
        doc["tables"] = json!(routed);
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Failure::new(Code::Failure, e))?;
    out!("{text}");
    Ok(Code::Success)
}

fn describe_schedule(s: &tributary_core::Schedule) -> serde_json::Value {
    match s {
        tributary_core::Schedule::Once => json!("once"),
        tributary_core::Schedule::Interval(d) => json!({ "interval_seconds": d.as_secs_f64() }),
        tributary_core::Schedule::Cron(c) => {
            json!({ "cron": c.expression(), "timezone": c.timezone().name() })
        }
    }
}
