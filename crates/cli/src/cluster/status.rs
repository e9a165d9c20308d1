//! `tributary status --cluster`: the whole cluster as any worker's admin
//! server knows it (`GET /cluster`): connectors with their worker, the
//! workers with their slots, and every running connector's streams.

use crate::admin::view::{table, StatusView};
use crate::cli::StatusArgs;
use crate::exit::{CmdResult, Code, Failure};
use serde_json::Value;

pub async fn status(args: &StatusArgs) -> CmdResult {
    let (url, text) = crate::commands::status::get(args, "/cluster").await?;
    let not_worker = |e: String| {
        Failure::new(
            Code::Failure,
            anyhow::anyhow!("{url} did not answer with a cluster ({e}); is it a worker's admin server (`tributary worker --admin-addr ...`)?"),
        )
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| not_worker(e.to_string()))?;
    let view: StatusView =
        serde_json::from_value(v["status"].clone()).map_err(|e| not_worker(e.to_string()))?;
    let connectors = v["connectors"].as_array().cloned().unwrap_or_default();
    let workers = v["workers"].as_array().cloned().unwrap_or_default();
    let failed: Vec<String> = connectors
        .iter()
        .filter(|c| c["state"] == "FAILED")
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect();
    if args.json {
        out!("{text}");
    } else {
        out!(
            "cluster `{}`: {} worker(s), {} connector(s)",
            v["cluster"].as_str().unwrap_or_default(),
            workers.len(),
            connectors.len()
        );
        let s = |v: &Value| match v {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Null | Value::String(_) => "-".to_string(),
            other => other.to_string(),
        };
        let mut rows = vec![["CONNECTOR", "STATE", "WORKER", "SLOT", "VERSION", "TRACE"]
            .map(String::from)
            .to_vec()];
        for c in &connectors {
            rows.push(vec![
                s(&c["name"]),
                s(&c["state"]),
                s(&c["worker_id"]),
                s(&c["slot"]),
                s(&c["version"]),
                c["trace"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ]);
        }
        out!("{}", columns(&rows));
        let mut rows = vec![["WORKER", "HOST", "SLOTS", "CONNECTORS"]
            .map(String::from)
            .to_vec()];
        for w in &workers {
            let list = |k: &str| {
                w[k].as_array()
                    .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            };
            rows.push(vec![
                s(&w["worker_id"]),
                s(&w["host"]),
                list("slots"),
                list("connectors"),
            ]);
        }
        out!("{}", columns(&rows));
        out!("{}", table(&view).trim_end());
    }
    if !failed.is_empty() {
        err!(
            "{} connector(s) failed: {}",
            failed.len(),
            failed.join(", ")
        );
        return Ok(Code::Stuck);
    }
    crate::commands::status::exit_for(&view)
}

/// Rows as left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths = vec![0usize; rows.first().map_or(0, Vec::len)];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
