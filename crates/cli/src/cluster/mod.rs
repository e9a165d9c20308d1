//! Workers that share connectors over Kafka (`tributary worker`), as Kafka
//! Connect's distributed workers do: Kafka is the only coordinator.
//!
//! A cluster `C` is four topics on one Kafka cluster ([`Names`]):
//!
//! - `_tributary_configs_C` (compacted, one partition): key the connector
//!   name, value a [`ConfigEntry`]: the TOML text as it was deployed, its
//!   `${ENV}`/`${file:...}` references unresolved (each worker resolves them
//!   when it starts the connector), and the connector's *slot*; a tombstone
//!   undeploys it.
//! - `_tributary_assign_C`: one partition per slot, never read or written.
//!   Every worker subscribes to it in the consumer group `_tributary_C` with
//!   `partition.assignment.strategy = cooperative-sticky`, so the broker's
//!   group coordinator decides which worker owns which slot, notices a
//!   worker that stopped heartbeating (`session.timeout.ms`) and moves only
//!   the slots that must move. A worker runs the connectors of its slots.
//! - `_tributary_status_C` (compacted): each worker's record and each
//!   running connector's status, written by the worker running it, so any
//!   worker answers for the whole cluster.
//! - `_tributary_offsets_C`: the checkpoints of connectors deployed without
//!   a `[state]` of their own (the Kafka state store).
//!
//! Fencing is not ours either: a connector's Kafka transactions use the
//! transactional id `tributary-{connector}` on whichever worker runs it, so
//! a worker that lost its slot while frozen can never commit again.

pub mod args;
pub mod kafka;
pub mod rest;
pub mod status;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often a worker writes its own record and its connectors' statuses.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

/// A status record older than this is not believed: its worker is gone.
pub const STATUS_STALE: Duration = Duration::from_secs(10);

/// The topics and group of one cluster.
#[derive(Debug, Clone)]
pub struct Names {
    pub cluster: String,
    pub configs: String,
    pub status: String,
    pub assign: String,
    pub offsets: String,
    pub group: String,
}

impl Names {
    /// The names of cluster `cluster`; refused when it cannot be part of a
    /// topic name.
    pub fn new(cluster: &str) -> Result<Names, String> {
        let valid = !cluster.is_empty()
            && cluster.len() <= 200
            && cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(format!(
                "--cluster `{cluster}`: a cluster name is 1 to 200 of a-z, A-Z, 0-9, `.`, `_`, `-` (it names Kafka topics)"
            ));
        }
        Ok(Names {
            cluster: cluster.to_string(),
            configs: format!("_tributary_configs_{cluster}"),
            status: format!("_tributary_status_{cluster}"),
            assign: format!("_tributary_assign_{cluster}"),
            offsets: format!("_tributary_offsets_{cluster}"),
            group: format!("_tributary_{cluster}"),
        })
    }
}

/// A deployed connector, the value of its config record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub name: String,
    /// The partition of the assignment topic that carries it.
    pub slot: i32,
    /// Bumped by every change: the version a status was written for.
    pub version: u64,
    /// The TOML text as deployed, references unresolved.
    pub config: String,
    pub deployed_at: chrono::DateTime<chrono::Utc>,
}

/// A worker's own record in the status topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub id: String,
    /// `http://HOST:PORT` of its admin server, where writes about its
    /// connectors are forwarded; none without `--admin-addr`.
    pub url: Option<String>,
    pub host: String,
    pub pid: u32,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The slots the group assigned it.
    pub slots: Vec<i32>,
}

/// A connector's status as the worker running it wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectorRecord {
    pub name: String,
    pub worker: String,
    pub version: u64,
    /// Kafka Connect's status document (`GET /connectors/{name}/status`).
    pub connect: Value,
    /// tributary's own view of it (`GET /status/{name}`).
    pub view: Value,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// What one worker knows of the cluster: the config and status topics as
/// read so far (both are tailed for the worker's whole life).
pub struct Cluster {
    pub names: Names,
    pub bootstrap: String,
    /// This worker's id (its admin address, else `host-pid`).
    pub worker_id: String,
    configs: RwLock<BTreeMap<String, ConfigEntry>>,
    workers: RwLock<BTreeMap<String, WorkerRecord>>,
    statuses: RwLock<BTreeMap<String, ConnectorRecord>>,
    /// Bumped on every config change, for the worker's reconciler.
    changed: tokio::sync::watch::Sender<u64>,
    /// Failed connectors of this worker an operator asked to restart.
    restarts: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("cluster", &self.names.cluster)
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(names: Names, bootstrap: String, worker_id: String) -> Arc<Cluster> {
        Arc::new(Cluster {
            names,
            bootstrap,
            worker_id,
            configs: RwLock::default(),
            workers: RwLock::default(),
            statuses: RwLock::default(),
            changed: tokio::sync::watch::channel(0).0,
            restarts: Default::default(),
        })
    }

    pub fn configs(&self) -> BTreeMap<String, ConfigEntry> {
        self.configs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn config(&self, name: &str) -> Option<ConfigEntry> {
        self.configs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Workers whose record is recent, by id.
    pub fn live_workers(&self) -> BTreeMap<String, WorkerRecord> {
        let now = chrono::Utc::now();
        self.workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, w)| fresh(w.at, now))
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect()
    }

    /// The status of `name` written by a live worker running its current
    /// version, if any.
    pub fn status(&self, name: &str) -> Option<ConnectorRecord> {
        let now = chrono::Utc::now();
        let workers = self.live_workers();
        let record = self
            .statuses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()?;
        (fresh(record.at, now) && workers.contains_key(&record.worker)).then_some(record)
    }

    /// Asks this worker's reconciler to start failed connector `name` again.
    pub fn request_restart(&self, name: &str) {
        self.restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_string());
        self.changed.send_modify(|n| *n += 1);
    }

    /// The restarts asked for since the last call.
    pub fn take_restarts(&self) -> Vec<String> {
        std::mem::take(&mut *self.restarts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Subscribes to config changes.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Applies one message of the config topic.
    pub fn apply_config(&self, key: &str, value: Option<&[u8]>) {
        let mut configs = self.configs.write().unwrap_or_else(|e| e.into_inner());
        match value.map(serde_json::from_slice::<ConfigEntry>) {
            None => {
                configs.remove(key);
            }
            Some(Ok(entry)) => {
                configs.insert(key.to_string(), entry);
            }
            Some(Err(e)) => {
                tracing::warn!(topic = %self.names.configs, key, "ignoring a config record that is not a tributary connector: {e}");
                return;
            }
        }
        drop(configs);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Applies one message of the status topic.
    pub fn apply_status(&self, key: &str, value: Option<&[u8]>) {
        if let Some(id) = key.strip_prefix("worker/") {
            let mut workers = self.workers.write().unwrap_or_else(|e| e.into_inner());
            match value.and_then(|v| serde_json::from_slice::<WorkerRecord>(v).ok()) {
                Some(w) => {
                    workers.insert(id.to_string(), w);
                }
                None => {
                    workers.remove(id);
                }
            }
        } else if let Some(name) = key.strip_prefix("connector/") {
            let mut statuses = self.statuses.write().unwrap_or_else(|e| e.into_inner());
            match value.and_then(|v| serde_json::from_slice::<ConnectorRecord>(v).ok()) {
                Some(r) => {
                    statuses.insert(name.to_string(), r);
                }
                None => {
                    statuses.remove(name);
                }
            }
        }
    }
}

fn fresh(at: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> bool {
    (now - at).to_std().map_or(true, |age| age <= STATUS_STALE)
}

/// The TOML text a worker runs for `entry`: as deployed, with the cluster's
/// state topic added when the connector has no `[state]` of its own (a
/// local state file would not follow the connector to another worker).
pub fn runnable_text(names: &Names, bootstrap: &str, text: &str) -> Result<String, String> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("not TOML: {}", e.message()))?;
    match doc.get("state") {
        None => Ok(format!(
            "{}\n[state]\nurl = \"kafka://{bootstrap}/{}\"\n",
            text.trim_end(),
            names.offsets
        )),
        Some(state) => {
            let url = state.get("url").and_then(|u| u.as_str()).unwrap_or("");
            if url.is_empty() {
                return Err(
                    "[state]: a connector run by workers keeps its checkpoints where every worker reads them: give `[state] url = \"kafka://...\"` (or `postgres://...`), or leave `[state]` out for the cluster's state topic".into(),
                );
            }
            Ok(text.to_string())
        }
    }
}

/// Checks a config before it is written to the config topic, with what can
/// be checked where it is deployed from: TOML, its `name`, a state every
/// worker can reach, and the sections that reach the state store (the
/// source's and sink's secrets need only resolve on the workers; a worker
/// that cannot start the connector reports it FAILED with the reason).
pub fn check_text(
    path: &std::path::Path,
    names: &Names,
    bootstrap: &str,
    name: &str,
    text: &str,
) -> Result<(), String> {
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        format!("{}: not TOML: {}", path.display(), e.message())
    })?;
    match doc.get("name").and_then(|n| n.as_str()) {
        Some(n) if n == name => {}
        Some(n) => return Err(format!("{}: name: `{n}` is not `{name}`", path.display())),
        None => return Err(format!("{}: missing key `name`", path.display())),
    }
    let runnable =
        runnable_text(names, bootstrap, text).map_err(|e| format!("{}: {e}", path.display()))?;
    tributary_config::load_str_for(
        path,
        &runnable,
        &|n| std::env::var(n).ok(),
        tributary_config::Needs::State,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_name_must_fit_in_a_topic_name() {
        let n = Names::new("prod-1").unwrap();
        assert_eq!(n.configs, "_tributary_configs_prod-1");
        assert_eq!(n.group, "_tributary_prod-1");
        let e = Names::new("a b").unwrap_err();
        assert!(e.contains("--cluster `a b`"), "{e}");
        assert!(Names::new("").is_err());
    }

    #[test]
    fn a_connector_without_state_gets_the_cluster_state_topic() {
        let n = Names::new("c").unwrap();
        let text = "name = \"x\"\n[sink]\ntype = \"stdout\"\n";
        let run = runnable_text(&n, "k:9092", text).unwrap();
        assert!(
            run.ends_with("[state]\nurl = \"kafka://k:9092/_tributary_offsets_c\"\n"),
            "{run}"
        );
        let own = "name = \"x\"\n[state]\nurl = \"postgres://db/s\"\n";
        assert_eq!(runnable_text(&n, "k:9092", own).unwrap(), own);
        let local = "name = \"x\"\n[state]\ndir = \"here\"\n";
        assert!(runnable_text(&n, "k:9092", local)
            .unwrap_err()
            .starts_with("[state]: a connector run by workers"));
    }

    #[test]
    fn stale_status_records_are_not_believed() {
        let c = Cluster::new(Names::new("c").unwrap(), "k:9092".into(), "me".into());
        let now = chrono::Utc::now();
        let worker = |at| {
            serde_json::to_vec(&WorkerRecord {
                id: "w1".into(),
                url: None,
                host: "h".into(),
                pid: 1,
                started_at: at,
                at,
                slots: vec![0],
            })
            .unwrap()
        };
        let record = |at| {
            serde_json::to_vec(&ConnectorRecord {
                name: "x".into(),
                worker: "w1".into(),
                version: 1,
                connect: Value::Null,
                view: Value::Null,
                at,
            })
            .unwrap()
        };
        c.apply_status("worker/w1", Some(&worker(now)));
        c.apply_status("connector/x", Some(&record(now)));
        assert_eq!(c.status("x").map(|r| r.worker), Some("w1".into()));
        let old = now - chrono::Duration::seconds(60);
        c.apply_status("worker/w1", Some(&worker(old)));
        assert!(c.status("x").is_none(), "its worker is gone");
        c.apply_status("worker/w1", Some(&worker(now)));
        c.apply_status("connector/x", None);
        assert!(c.status("x").is_none(), "tombstoned");
    }
}
