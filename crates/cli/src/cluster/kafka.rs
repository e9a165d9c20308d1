//! The cluster's Kafka I/O: its topics, reading them, deploying and
//! undeploying connectors (shared by `tributary deploy|undeploy` and the
//! REST API), and the group membership `/workers` shows.

use super::{Cluster, ConfigEntry, Names};
use anyhow::{anyhow, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates the cluster's topics that are missing: the config and status
/// topics compacted with one partition, the assignment topic with one.
pub async fn ensure_topics(bootstrap: &str, names: &Names) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .context("cannot create a Kafka admin client")?;
    let brokers = {
        let c: BaseConsumer = client_config(bootstrap).create()?;
        tokio::task::spawn_blocking(move || c.fetch_metadata(None, TIMEOUT))
            .await?
            .map_err(|e| anyhow!("Kafka at {bootstrap} does not answer: {e}"))?
            .brokers()
            .len()
    };
    let replication = brokers.clamp(1, 3) as i32;
    let compact = [("cleanup.policy", "compact")];
    let topics = [
        (names.configs.as_str(), &compact[..]),
        (names.status.as_str(), &compact[..]),
        (names.assign.as_str(), &[][..]),
    ];
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, config)| {
            config.iter().fold(
                NewTopic::new(name, 1, TopicReplication::Fixed(replication)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let results = admin
        .create_topics(new.iter(), &AdminOptions::new())
        .await
        .map_err(|e| anyhow!("cannot create the cluster's topics on {bootstrap}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(anyhow!("cannot create topic `{t}`: {code}")),
        }
    }
    Ok(())
}

/// The watermarks of partition 0 of `topic`, waiting out a topic just
/// created (its partition has no leader for a moment).
fn watermarks(c: &BaseConsumer, bootstrap: &str, topic: &str) -> anyhow::Result<(i64, i64)> {
    let start = Instant::now();
    loop {
        match c.fetch_watermarks(topic, 0, TIMEOUT) {
            Ok(w) => return Ok(w),
            Err(e) if start.elapsed() > TIMEOUT => {
                return Err(anyhow!("cannot read topic `{topic}` on {bootstrap}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Every message of partition 0 of `topic` up to its end now, in order:
/// `(key, value)`, `None` for a tombstone.
pub fn read_to_end(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<(String, Option<Vec<u8>>)>> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("enable.auto.commit", "false")
        .set("group.id", "_tributary_cli")
        .set("enable.partition.eof", "false")
        .create()?;
    let exists = c
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| anyhow!("Kafka at {bootstrap} does not answer: {e}"))?
        .topics()
        .first()
        .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        // No worker or deploy has created the cluster yet: nothing in it.
        return Ok(Vec::new());
    }
    let (_, high) = watermarks(&c, bootstrap, topic)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let mut out = Vec::new();
    let start = Instant::now();
    let mut position = 0;
    while position < high {
        if start.elapsed() > TIMEOUT {
            return Err(anyhow!(
                "reading topic `{topic}` on {bootstrap} did not reach its end within {TIMEOUT:?}"
            ));
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => return Err(anyhow!("reading topic `{topic}`: {e}")),
            Some(Ok(m)) => {
                position = m.offset() + 1;
                let key = m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                out.push((key, m.payload().map(<[u8]>::to_vec)));
            }
        }
    }
    Ok(out)
}

/// Keeps reading partition 0 of `topic` from its beginning on a thread of
/// its own until `stop`, handing every message to `apply`; `caught_up` is
/// set once it reached the end the partition had when it started.
pub fn tail(
    bootstrap: &str,
    topic: &str,
    stop: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
    apply: impl Fn(&str, Option<&[u8]>) + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("enable.auto.commit", "false")
        .set("group.id", "_tributary_worker_tail")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    let (_, end) = watermarks(&c, bootstrap, topic)?;
    if end == 0 {
        caught_up.store(true, Ordering::Relaxed);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let topic = topic.to_string();
    Ok(std::thread::Builder::new()
        .name(format!("tail-{topic}"))
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match c.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(e)) => {
                        tracing::warn!(topic = %topic, "reading the cluster topic: {e}")
                    }
                    Some(Ok(m)) => {
                        let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                        apply(key.as_ref(), m.payload());
                        if m.offset() + 1 >= end {
                            caught_up.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
        })?)
}

/// The deployed connectors, read from the config topic.
pub fn read_configs(
    bootstrap: &str,
    names: &Names,
) -> anyhow::Result<BTreeMap<String, ConfigEntry>> {
    let mut configs = BTreeMap::new();
    for (key, value) in read_to_end(bootstrap, &names.configs)? {
        match value.map(|v| serde_json::from_slice::<ConfigEntry>(&v)) {
            None => {
                configs.remove(&key);
            }
            Some(Ok(e)) => {
                configs.insert(key, e);
            }
            Some(Err(_)) => {}
        }
    }
    Ok(configs)
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployed {
    Created,
    Updated,
    Unchanged,
}

/// Writes `text` as connector `name`'s config: a new connector gets the
/// lowest free slot (the assignment topic grows to hold it), a known one
/// keeps its slot and gets the next version. An identical config is left
/// alone, so its connector is not restarted.
pub async fn deploy(
    bootstrap: &str,
    names: &Names,
    name: &str,
    text: &str,
) -> anyhow::Result<(Deployed, ConfigEntry)> {
    ensure_topics(bootstrap, names).await?;
    let (b, n) = (bootstrap.to_string(), names.clone());
    let configs = tokio::task::spawn_blocking(move || read_configs(&b, &n)).await??;
    let (outcome, slot, version) = match configs.get(name) {
        Some(old) if old.config == text => return Ok((Deployed::Unchanged, old.clone())),
        Some(old) => (Deployed::Updated, old.slot, old.version + 1),
        None => {
            let used: std::collections::BTreeSet<i32> = configs.values().map(|e| e.slot).collect();
            let slot = (0..).find(|s| !used.contains(s)).unwrap_or(0);
            (Deployed::Created, slot, 1)
        }
    };
    ensure_slots(bootstrap, names, slot + 1).await?;
    let entry = ConfigEntry {
        name: name.to_string(),
        slot,
        version,
        config: text.to_string(),
        deployed_at: chrono::Utc::now(),
    };
    let value = serde_json::to_string(&entry)?;
    produce(bootstrap, &names.configs, name, Some(&value)).await?;
    Ok((outcome, entry))
}

/// Tombstones connector `name`'s config; an error naming the deployed
/// ones when it is not deployed.
pub async fn undeploy(bootstrap: &str, names: &Names, name: &str) -> anyhow::Result<()> {
    let (b, n) = (bootstrap.to_string(), names.clone());
    let configs = tokio::task::spawn_blocking(move || read_configs(&b, &n)).await??;
    if !configs.contains_key(name) {
        let known: Vec<&str> = configs.keys().map(String::as_str).collect();
        return Err(anyhow!(
            "connector `{name}` is not deployed in cluster `{}`; deployed: {}",
            names.cluster,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    produce(bootstrap, &names.configs, name, None).await
}

/// Grows the assignment topic to at least `slots` partitions; the group
/// sees them at its next metadata refresh and assigns them.
async fn ensure_slots(bootstrap: &str, names: &Names, slots: i32) -> anyhow::Result<()> {
    let have = {
        let c: BaseConsumer = client_config(bootstrap).create()?;
        let topic = names.assign.clone();
        tokio::task::spawn_blocking(move || {
            c.fetch_metadata(Some(&topic), TIMEOUT)
                .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
        })
        .await?
        .map_err(|e| anyhow!("cannot read topic `{}`: {e}", names.assign))?
    };
    if have as i32 >= slots {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create()?;
    let grow = NewPartitions::new(&names.assign, slots as usize);
    let results = admin
        .create_partitions([&grow], &AdminOptions::new())
        .await
        .map_err(|e| anyhow!("cannot add partitions to `{}`: {e}", names.assign))?;
    for r in results {
        match r {
            // Another deploy grew it first.
            Ok(_) | Err((_, RDKafkaErrorCode::InvalidPartitions)) => {}
            Err((t, code)) => return Err(anyhow!("cannot add partitions to `{t}`: {code}")),
        }
    }
    Ok(())
}

/// A producer for the cluster's own records: acknowledged by every
/// in-sync replica, idempotent.
pub fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    client_config(bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .context("cannot create a Kafka producer")
}

async fn produce(
    bootstrap: &str,
    topic: &str,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<()> {
    let p = producer(bootstrap)?;
    send(&p, topic, key, value).await
}

/// Sends one record and waits for its acknowledgement.
pub async fn send(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<()> {
    let mut record = FutureRecord::<str, str>::to(topic).key(key);
    if let Some(v) = value {
        record = record.payload(v);
    }
    p.send(record, TIMEOUT)
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow!("cannot write to topic `{topic}`: {e}"))
}

/// The members of the cluster's group as the broker's group coordinator
/// sees them: their client ids (the workers' ids) and hosts.
pub fn members(bootstrap: &str, names: &Names) -> anyhow::Result<Vec<(String, String)>> {
    let c: BaseConsumer = client_config(bootstrap).create()?;
    let groups = c
        .fetch_group_list(Some(names.group.as_str()), Duration::from_secs(10))
        .map_err(|e| anyhow!("cannot describe group `{}`: {e}", names.group))?;
    Ok(groups
        .groups()
        .iter()
        .flat_map(|g| g.members())
        .map(|m| (m.client_id().to_string(), m.client_host().to_string()))
        .collect())
}

/// Starts tailing the config and status topics into `cluster`; returns
/// once the config topic was read to its end (so a worker starting knows
/// every deployed connector) and a stop switch for both threads.
pub async fn follow(cluster: &Arc<Cluster>) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let configs_read = Arc::new(AtomicBool::new(false));
    let c = cluster.clone();
    let _ = tail(
        &cluster.bootstrap,
        &cluster.names.configs,
        stop.clone(),
        configs_read.clone(),
        move |k, v| c.apply_config(k, v),
    )?;
    let c = cluster.clone();
    let _ = tail(
        &cluster.bootstrap,
        &cluster.names.status,
        stop.clone(),
        Arc::new(AtomicBool::new(false)),
        move |k, v| c.apply_status(k, v),
    )?;
    let start = Instant::now();
    while !configs_read.load(Ordering::Relaxed) {
        if start.elapsed() > TIMEOUT {
            return Err(anyhow!(
                "could not read topic `{}` to its end within {TIMEOUT:?}",
                cluster.names.configs
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(stop)
}
