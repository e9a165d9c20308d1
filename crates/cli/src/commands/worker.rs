//! `tributary worker --cluster NAME --bootstrap HOST:PORT`: one member of
//! a cluster of workers sharing connectors over Kafka (see
//! [`crate::cluster`] for the topics and docs/distributed.md).
//!
//! The worker joins the cluster's consumer group on the assignment topic;
//! the group's rebalance callbacks hand it slots and take them away, and a
//! reconciler runs exactly the connectors whose config record names one of
//! its slots, at their current version. A connector runs as `tributary run`
//! runs it (the same build and supervision), under a stop switch of its
//! own: a revoked slot, an undeploy or a config change stops only that
//! connector, which drains and commits (or aborts its transaction) before
//! the slot is released to the group.

use crate::cluster::args::WorkerArgs;
use crate::cluster::kafka as ck;
use crate::cluster::{runnable_text, Cluster, ConfigEntry, ConnectorRecord, Names, WorkerRecord};
use crate::exit::{CmdResult, Code, Failure};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary_metrics::Registry;
use tributary_runtime::{ConnectorHandle, RuntimeEnv};

/// How long a revoked slot's connectors get to drain and commit before the
/// slot is released anyway (their transactions then get fenced).
const REVOKE_WAIT: Duration = Duration::from_secs(60);

/// What the group's callbacks tell the reconciler.
enum GroupEvent {
    Assigned(Vec<i32>),
    /// The slots are released once the sender is answered (or dropped).
    Revoked(Vec<i32>, std::sync::mpsc::SyncSender<()>),
}

struct GroupContext {
    events: mpsc::UnboundedSender<GroupEvent>,
}

impl ClientContext for GroupContext {}

fn slots(tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for GroupContext {
    /// Runs on the group thread, before librdkafka gives the slots up:
    /// blocks until their connectors stopped, so the next owner never
    /// starts one while it still writes (cooperative rebalancing revokes
    /// first and assigns in a second round).
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let lost = consumer.assignment_lost();
            let slots = slots(tpl);
            tracing::info!(
                ?slots,
                lost,
                "cluster: slots revoked; stopping their connectors"
            );
            let (ack, done) = std::sync::mpsc::sync_channel(1);
            if self.events.send(GroupEvent::Revoked(slots, ack)).is_ok() {
                let _ = done.recv_timeout(REVOKE_WAIT);
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let slots = slots(tpl);
                tracing::info!(?slots, "cluster: slots assigned");
                let _ = self.events.send(GroupEvent::Assigned(slots));
            }
            Rebalance::Error(e) => tracing::warn!("cluster: rebalance error: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Joins the group and polls it on a thread of its own until `stop`; then
/// leaves the group (its last revoke goes to a reconciler that is gone).
fn join_group(
    args: &WorkerArgs,
    names: &Names,
    worker_id: &str,
    events: mpsc::UnboundedSender<GroupEvent>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let session = args.session_timeout.as_millis().max(1000);
    let consumer: BaseConsumer<GroupContext> = ck::client_config(&args.bootstrap)
        .set("group.id", &names.group)
        .set("client.id", worker_id)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", session.to_string())
        .set(
            "heartbeat.interval.ms",
            (session / 4).clamp(250, 3000).to_string(),
        )
        .set("max.poll.interval.ms", "300000")
        // New slots (deployed connectors) are seen and assigned this fast.
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(GroupContext { events })?;
    consumer.subscribe(&[names.assign.as_str()])?;
    Ok(std::thread::Builder::new()
        .name("cluster-group".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                    tracing::warn!("cluster group: {e}");
                }
            }
            consumer.unsubscribe();
            for _ in 0..20 {
                consumer.poll(Duration::from_millis(50));
            }
            drop(consumer);
        })?)
}

/// A connector this worker runs.
struct Running {
    version: u64,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    handle: Option<Arc<ConnectorHandle>>,
    /// Why it could not be built (its config, on this worker).
    failed: Option<String>,
}

struct Worker {
    cluster: Arc<Cluster>,
    admin: Arc<crate::admin::AdminState>,
    work_dir: PathBuf,
    env: RuntimeEnv,
    owned: BTreeSet<i32>,
    running: BTreeMap<String, Running>,
    producer: rdkafka::producer::FutureProducer,
    record: WorkerRecord,
}

pub async fn worker(args: WorkerArgs) -> CmdResult {
    let names =
        Names::new(&args.cluster).map_err(|e| Failure::new(Code::Config, anyhow::anyhow!(e)))?;
    let fail = |e: anyhow::Error| Failure::new(Code::Failure, e);
    let clock = crate::build::clock()?;
    let metrics = Registry::new();
    let shutdown = CancellationToken::new();
    crate::commands::run::spawn_signal_handler(shutdown.clone());
    ck::ensure_topics(&args.bootstrap, &names)
        .await
        .map_err(fail)?;

    let listener = match &args.admin_addr {
        Some(a) => Some(crate::admin::bind(crate::admin::parse_addr(a)?).await?),
        None => None,
    };
    let token = crate::admin::load_token(args.admin_token_file.as_deref())?;
    let host = tributary_state::kafka::Owner::new().host;
    let url = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!("http://{a}"));
    let worker_id = match &listener {
        Some(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        None => format!("{host}-{}", std::process::id()),
    };
    let cluster = Cluster::new(names.clone(), args.bootstrap.clone(), worker_id.clone());
    let tail_stop = ck::follow(&cluster).await.map_err(fail)?;

    let connectors = crate::admin::Connectors::new(Vec::new());
    let admin_state = crate::admin::AdminState {
        connectors: connectors.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        rates: Default::default(),
        started: std::time::Instant::now(),
        worker_id: worker_id.clone(),
        cluster: Some(cluster.clone()),
    };
    let admin_done = CancellationToken::new();
    let admin = match listener {
        Some(l) => crate::admin::serve_on(l, token, admin_state, admin_done.clone())?.1,
        None => Arc::new(admin_state),
    };

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let group_stop = Arc::new(AtomicBool::new(false));
    let group =
        join_group(&args, &names, &worker_id, events_tx, group_stop.clone()).map_err(fail)?;
    tracing::info!(cluster = %names.cluster, worker = %worker_id, group = %names.group, "worker started; waiting for the group to assign connectors");

    let mut w = Worker {
        cluster: cluster.clone(),
        admin,
        work_dir: match &args.work_dir {
            Some(d) => d.clone(),
            None => std::env::current_dir().map_err(|e| fail(e.into()))?,
        },
        env: RuntimeEnv {
            clock,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        },
        owned: BTreeSet::new(),
        running: BTreeMap::new(),
        producer: ck::producer(&args.bootstrap).map_err(fail)?,
        record: WorkerRecord {
            id: worker_id.clone(),
            url,
            host,
            pid: std::process::id(),
            started_at: chrono::Utc::now(),
            at: chrono::Utc::now(),
            slots: Vec::new(),
        },
    };
    let mut changes = cluster.watch();
    let mut tick = tokio::time::interval(crate::cluster::STATUS_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = events.recv() => match event {
                Some(GroupEvent::Assigned(slots)) => {
                    w.owned.extend(slots);
                    w.reconcile().await;
                    w.publish().await;
                }
                Some(GroupEvent::Revoked(slots, ack)) => {
                    for s in &slots {
                        w.owned.remove(s);
                    }
                    w.reconcile().await;
                    w.publish().await;
                    let _ = ack.send(());
                }
                None => break,
            },
            _ = changes.changed() => {
                w.reconcile().await;
                w.publish().await;
            }
            _ = tick.tick() => {
                w.reap();
                w.publish().await;
            }
        }
    }
    tracing::info!("worker stopping: draining its connectors, then leaving the group");
    w.owned.clear();
    w.reconcile().await;
    w.forget_worker().await;
    // Releases the group thread's last revoke at once.
    drop(events);
    group_stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || group.join()).await;
    tail_stop.store(true, Ordering::Relaxed);
    admin_done.cancel();
    crate::commands::run::final_summary(&metrics);
    Ok(Code::Success)
}

impl Worker {
    /// Runs exactly the connectors of the owned slots at their current
    /// versions: stops the others (all at once, each draining and
    /// committing), then starts the missing ones.
    async fn reconcile(&mut self) {
        for name in self.cluster.take_restarts() {
            let failed = self.running.get(&name).is_some_and(|r| {
                r.failed.is_some()
                    || r.handle.as_ref().is_some_and(|h| {
                        matches!(h.phase(), tributary_runtime::ConnectorPhase::Failed { .. })
                    })
            });
            if failed {
                self.running.remove(&name);
            }
        }
        let configs = self.cluster.configs();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| {
                !configs
                    .get(*name)
                    .is_some_and(|e| self.owned.contains(&e.slot) && e.version == r.version)
            })
            .map(|(name, _)| name.clone())
            .collect();
        let mut stopping = Vec::new();
        for name in &stale {
            if let Some(r) = self.running.remove(name) {
                tracing::info!(connector = %name, "cluster: stopping connector (moved, changed or undeployed)");
                r.stop.cancel();
                stopping.push((name.clone(), r));
            }
        }
        for (name, r) in stopping {
            if let Some(task) = r.task {
                if tokio::time::timeout(REVOKE_WAIT, task).await.is_err() {
                    tracing::warn!(connector = %name, "did not stop within {REVOKE_WAIT:?}; its slot is released anyway");
                }
            }
            let key = format!("connector/{name}");
            if let Err(e) = ck::send(&self.producer, &self.cluster.names.status, &key, None).await {
                tracing::warn!("cluster status: {e:#}");
            }
        }
        for entry in configs.values() {
            if self.owned.contains(&entry.slot) && !self.running.contains_key(&entry.name) {
                let r = self.start(entry);
                self.running.insert(entry.name.clone(), r);
            }
        }
        self.admin.connectors.set(
            self.running
                .values()
                .filter_map(|r| r.handle.clone())
                .collect(),
        );
    }

    fn start(&self, entry: &ConfigEntry) -> Running {
        let stop = self.env.shutdown.child_token();
        let path = self.work_dir.join(format!("{}.toml", entry.name));
        let built = runnable_text(&self.cluster.names, &self.cluster.bootstrap, &entry.config)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|text| {
                let config = crate::build::load_text(&path, &text, &|n| std::env::var(n).ok())
                    .map_err(|f| format!("{:#}", f.error))?;
                if config.name != entry.name {
                    return Err(format!(
                        "{}: name: `{}` is deployed as `{}`",
                        path.display(),
                        config.name,
                        entry.name
                    ));
                }
                let parts = crate::commands::run::build_parts(
                    config,
                    &self.env.clock,
                    &self.env.metrics,
                    false,
                    None,
                )
                .map_err(|f| format!("{:#}", f.error))?;
                Ok((parts, text))
            });
        let (parts, text) = match built {
            Ok(b) => b,
            Err(reason) => {
                let reason = tributary_core::secret::redact(&reason);
                tracing::error!(connector = %entry.name, "cannot start: {reason}");
                return Running {
                    version: entry.version,
                    stop,
                    task: None,
                    handle: None,
                    failed: Some(reason),
                };
            }
        };
        let env = RuntimeEnv {
            clock: self.env.clock.clone(),
            metrics: self.env.metrics.clone(),
            shutdown: stop.clone(),
        };
        let handle = ConnectorHandle::new(&parts, &env);
        let rebuild = crate::commands::run::Rebuild {
            path,
            once: false,
            text: Some(text),
        };
        tracing::info!(connector = %entry.name, slot = entry.slot, version = entry.version, "cluster: starting connector");
        let h = handle.clone();
        let task = tokio::spawn(async move {
            match crate::commands::run::supervise(parts, env, h, rebuild).await {
                Ok(s) => {
                    tracing::info!(connector = %s.connector, committed = s.committed.values().sum::<u64>(), interrupted = s.interrupted, "connector stopped")
                }
                Err(e) => tracing::error!("{e}"),
            }
        });
        Running {
            version: entry.version,
            stop,
            task: Some(task),
            handle: Some(handle),
            failed: None,
        }
    }

    /// Forgets the tasks of connectors that ended on their own (finished
    /// or failed): they stay listed, with their end, until their slot or
    /// config changes.
    fn reap(&mut self) {
        for r in self.running.values_mut() {
            if r.task.as_ref().is_some_and(|t| t.is_finished()) {
                r.task = None;
            }
        }
    }

    /// Writes this worker's record and the status of each of its connectors.
    async fn publish(&mut self) {
        let now = chrono::Utc::now();
        self.record.at = now;
        self.record.slots = self.owned.iter().copied().collect();
        let names = &self.cluster.names;
        let mut out = vec![(
            format!("worker/{}", self.record.id),
            serde_json::to_string(&self.record).unwrap_or_default(),
        )];
        for (name, r) in &self.running {
            let (connect, view) = match (&r.handle, &r.failed) {
                (Some(h), _) => (
                    crate::admin::connect::status_json(h, &self.admin),
                    serde_json::to_value(crate::admin::view::connector_view(
                        h,
                        self.admin.clock.now(),
                        &self.admin.rates,
                    ))
                    .unwrap_or_default(),
                ),
                (None, reason) => (
                    serde_json::json!({
                        "name": name,
                        "connector": { "state": "FAILED", "worker_id": self.record.id, "trace": reason },
                        "tasks": [],
                        "type": "source",
                    }),
                    serde_json::Value::Null,
                ),
            };
            let record = ConnectorRecord {
                name: name.clone(),
                worker: self.record.id.clone(),
                version: r.version,
                connect,
                view,
                at: now,
            };
            out.push((
                format!("connector/{name}"),
                serde_json::to_string(&record).unwrap_or_default(),
            ));
        }
        for (key, value) in out {
            if let Err(e) = ck::send(&self.producer, &names.status, &key, Some(&value)).await {
                tracing::warn!("cluster status: {e:#}");
                return;
            }
        }
    }

    async fn forget_worker(&self) {
        let key = format!("worker/{}", self.record.id);
        if let Err(e) = ck::send(&self.producer, &self.cluster.names.status, &key, None).await {
            tracing::warn!("cluster status: {e:#}");
        }
    }
}
