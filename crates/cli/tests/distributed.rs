//! Workers sharing connectors over Kafka (`tributary worker`), through the
//! binary against the shared Apache Kafka broker: several worker processes
//! of one cluster on this machine, connectors deployed with `tributary
//! deploy` and the REST API, generator and file sources into Kafka with
//! exactly-once. Outputs are read back with `read_committed`: after kill
//! -9, a rolling restart, a worker joining and a frozen (fenced) worker,
//! every record is there once.

use serde_json::json;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use tributary_testkit::cli::*;
use tributary_testkit::kafka::{key_counts, unique, Isolation, Kafka};

/// Short, so the tests are quick: the broker's minimum.
const SESSION: Duration = Duration::from_secs(6);

/// What `${TRIB_TEST_CLIENT_ID}` is on the workers (and only there).
const CLIENT_ID: &str = "tributary-distributed-test";

fn workspace() -> Workspace {
    Workspace::new(env!("CARGO_BIN_EXE_tributary"))
}

struct Cluster {
    ws: Workspace,
    broker: Kafka,
    name: String,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            ws: workspace(),
            broker: Kafka::shared(),
            name: unique("cl"),
        }
    }

    fn worker(&self) -> AdminProcess {
        let session = format!("{}s", SESSION.as_secs());
        let mut cmd = self.ws.cmd(&[
            "worker",
            "--cluster",
            &self.name,
            "--bootstrap",
            &self.broker.brokers(),
            "--admin-addr",
            "127.0.0.1:0",
            "--session-timeout",
            &session,
        ]);
        cmd.env("TRIBUTARY_LOG", "info")
            .env("TRIB_TEST_CLIENT_ID", CLIENT_ID);
        AdminProcess::spawn(cmd)
    }

    fn deploy(&self, files: &[&std::path::Path]) -> String {
        let mut args = vec!["deploy".to_string()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        args.extend([
            "--cluster".into(),
            self.name.clone(),
            "--bootstrap".into(),
            self.broker.brokers(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.ws.run(&args);
        assert_exit(&o, 0);
        stdout(&o)
    }

    fn generator(&self, name: &str, total: u64, rate: u64) -> std::path::PathBuf {
        self.ws.write(
            &format!("{name}.toml"),
            &format!(
                r#"name = "{name}"
[source]
type = "generator"
seed = 7
[source.streams.users]
record_type = "user"
rate = {rate}
total = {total}
[runtime]
batch_size = 100
max_retries = 30
backoff_max = "1s"
[sink]
type = "kafka"
brokers = "{b}"
exactly_once = true
[sink.properties]
"client.id" = "${{TRIB_TEST_CLIENT_ID}}"
"#,
                b = self.broker.brokers()
            ),
        )
    }

    /// A file connector following `data/{name}.ndjson` (absolute: the
    /// workers' directory is not the test's).
    fn file(&self, name: &str) -> std::path::PathBuf {
        let data = self.ws.write(&format!("data/{name}.ndjson"), "");
        self.ws.write(
            &format!("{name}.toml"),
            &format!(
                r#"name = "{name}"
[source]
type = "file"
[source.streams.events]
path = "{path}"
format = "ndjson"
primary_key = ["id"]
follow = true
[runtime]
flush_records = 1000
max_retries = 30
backoff_max = "1s"
[sink]
type = "kafka"
brokers = "{b}"
exactly_once = true
"#,
                path = data.display(),
                b = self.broker.brokers()
            ),
        )
    }

    /// Keys of `topic` a `read_committed` consumer sees (empty before it exists).
    fn keys(&self, topic: &str) -> BTreeMap<i64, usize> {
        if !self.broker.topics().iter().any(|t| t == topic) {
            return BTreeMap::new();
        }
        key_counts(&self.broker.read_all_as(topic, Isolation::ReadCommitted))
    }

    /// Waits until `topic` holds `1..=n` and asserts each is there once.
    fn assert_exactly_once(&self, topic: &str, n: i64, timeout: Duration) {
        let start = Instant::now();
        loop {
            let seen = self.keys(topic);
            let outside: Vec<&i64> = seen.keys().filter(|i| **i < 1 || **i > n).collect();
            assert!(
                outside.is_empty(),
                "{topic}: ids outside 1..={n}: {outside:?}"
            );
            let duplicated: usize = seen.values().map(|c| c - 1).sum();
            assert_eq!(duplicated, 0, "{topic}: duplicates read_committed");
            if seen.len() as i64 == n {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{topic}: {} of {n} ids after {timeout:?} (missing e.g. {:?})",
                seen.len(),
                (1..=n).find(|i| !seen.contains_key(i))
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Connector -> (Connect state, worker id) from `GET /connectors?expand=status`.
fn owners(w: &AdminProcess) -> BTreeMap<String, (String, String)> {
    let (code, v) = w.call("GET", "/connectors?expand=status", None, None);
    assert_eq!(code, 200, "{v}");
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(name, e)| {
            let c = &e["status"]["connector"];
            (
                name.clone(),
                (
                    c["state"].as_str().unwrap_or_default().to_string(),
                    c["worker_id"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// The worker id of a worker process: its admin address.
fn id(w: &AdminProcess) -> String {
    w.url.trim_start_matches("http://").to_string()
}

/// Waits until every one of `names` is RUNNING on a worker that is not in
/// `not_on`; returns how long it took and the owners.
fn wait_running(
    w: &AdminProcess,
    names: &[String],
    not_on: &[String],
    timeout: Duration,
) -> (Duration, BTreeMap<String, (String, String)>) {
    let start = Instant::now();
    loop {
        let now = owners(w);
        let ok = names.iter().all(|n| {
            now.get(n)
                .is_some_and(|(s, worker)| s == "RUNNING" && !not_on.contains(worker))
        });
        if ok {
            return (start.elapsed(), now);
        }
        assert!(
            start.elapsed() < timeout,
            "not all of {names:?} RUNNING off {not_on:?} within {timeout:?}: {now:?}\nlog:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `w`'s `/workers` lists exactly `ids`.
fn wait_members(w: &AdminProcess, ids: &[String], timeout: Duration) {
    let mut want = ids.to_vec();
    want.sort();
    let start = Instant::now();
    loop {
        let (code, v) = w.call("GET", "/workers", None, None);
        let got: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|w| w["worker_id"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if code == 200 && got == want {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "workers {got:?} (HTTP {code}), expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How often `w` logged `message` about connector `name`.
fn logged(w: &AdminProcess, message: &str, name: &str) -> usize {
    let field = format!("connector={name}");
    w.log()
        .lines()
        .filter(|l| l.contains(message) && l.split_whitespace().any(|t| t == field))
        .count()
}

/// How often `w` started connector `name`.
fn starts(w: &AdminProcess, name: &str) -> usize {
    logged(w, "cluster: starting connector", name)
}

/// How often `w` stopped connector `name` (moved, changed, undeployed).
fn stops(w: &AdminProcess, name: &str) -> usize {
    logged(w, "cluster: stopping connector", name)
}

fn signal(w: &AdminProcess, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &w.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig}");
}

/// Six connectors: four generators of `total` records and two file
/// connectors fed `total` lines over the run by a thread.
struct Load {
    generators: Vec<String>,
    files: Vec<String>,
    total: u64,
}

impl Load {
    fn deploy(c: &Cluster, total: u64, rate: u64) -> Load {
        let generators: Vec<String> = (0..4).map(|i| format!("{}-g{i}", c.name)).collect();
        let files: Vec<String> = (0..2).map(|i| format!("{}-f{i}", c.name)).collect();
        let mut paths = Vec::new();
        for g in &generators {
            paths.push(c.generator(g, total, rate));
        }
        for f in &files {
            paths.push(c.file(f));
        }
        let refs: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
        let out = c.deploy(&refs);
        assert_eq!(out.matches("deployed to cluster").count(), 6, "{out}");
        Load {
            generators,
            files,
            total,
        }
    }

    fn names(&self) -> Vec<String> {
        self.generators.iter().chain(&self.files).cloned().collect()
    }

    /// Feeds the file connectors `total` lines, 100 every `every`.
    fn feed(&self, c: &Cluster, every: Duration) -> std::thread::JoinHandle<()> {
        let files: Vec<std::path::PathBuf> = self
            .files
            .iter()
            .map(|f| c.ws.path(&format!("data/{f}.ndjson")))
            .collect();
        let total = self.total;
        std::thread::spawn(move || {
            let mut next = 1;
            while next <= total {
                let to = (next + 99).min(total);
                let lines: String = (next..=to)
                    .map(|i| format!("{{\"id\":{i},\"v\":\"x{i}\"}}\n"))
                    .collect();
                for f in &files {
                    use std::io::Write;
                    let mut file = std::fs::OpenOptions::new().append(true).open(f).unwrap();
                    file.write_all(lines.as_bytes()).unwrap();
                }
                next = to + 1;
                std::thread::sleep(every);
            }
        })
    }

    fn assert_exactly_once(&self, c: &Cluster) {
        for g in &self.generators {
            c.assert_exactly_once(
                &format!("{g}.users"),
                self.total as i64,
                Duration::from_secs(180),
            );
        }
        for f in &self.files {
            c.assert_exactly_once(
                &format!("{f}.events"),
                self.total as i64,
                Duration::from_secs(180),
            );
        }
    }
}

#[test]
fn kill_9_of_one_of_three_workers_moves_its_connectors_and_loses_nothing() {
    let c = Cluster::new();
    let workers: Vec<AdminProcess> = (0..3).map(|_| c.worker()).collect();
    let ids: Vec<String> = workers.iter().map(id).collect();
    // 40 s of generator output: a loaded machine has taken 20 s to start
    // all six, and a connector that finished before the kill could not be
    // seen running after it.
    let load = Load::deploy(&c, 8000, 200);
    let feed = load.feed(&c, Duration::from_millis(250));
    let (_, before) = wait_running(&workers[0], &load.names(), &[], Duration::from_secs(60));
    // Spread over the three by the cooperative-sticky assignor.
    for i in &ids {
        assert!(
            before.values().any(|(_, w)| w == i),
            "worker {i} runs nothing: {before:?}"
        );
    }
    // Let every connector commit a few transactions first.
    std::thread::sleep(Duration::from_secs(3));
    let mut workers = workers;
    let mut victim = workers.remove(1);
    let victim_id = id(&victim);
    let moved: Vec<String> = before
        .iter()
        .filter(|(_, (_, w))| *w == victim_id)
        .map(|(n, _)| n.clone())
        .collect();
    victim.child.kill().expect("kill -9");
    let _ = victim.child.wait();
    let (took, after) = wait_running(
        &workers[0],
        &load.names(),
        std::slice::from_ref(&victim_id),
        SESSION + Duration::from_secs(10) + Duration::from_secs(5),
    );
    eprintln!("kill -9 → {moved:?} RUNNING elsewhere after {took:?}: {after:?}");
    assert!(
        took <= SESSION + Duration::from_secs(10),
        "connectors of the killed worker ran again after {took:?}"
    );
    // The survivors kept theirs.
    for (n, (_, w)) in &before {
        if *w != victim_id {
            assert_eq!(&after[n].1, w, "{n} moved though its worker lives");
        }
    }
    feed.join().unwrap();
    load.assert_exactly_once(&c);
    wait_members(
        &workers[0],
        &[ids[0].clone(), ids[2].clone()],
        Duration::from_secs(30),
    );
}

#[test]
fn a_rolling_restart_of_all_three_workers_under_load_loses_nothing() {
    let c = Cluster::new();
    let mut workers: Vec<AdminProcess> = (0..3).map(|_| c.worker()).collect();
    let load = Load::deploy(&c, 8000, 300);
    let feed = load.feed(&c, Duration::from_millis(300));
    wait_running(&workers[0], &load.names(), &[], Duration::from_secs(60));
    for i in 0..3 {
        let old = workers.remove(0);
        let old_id = id(&old);
        assert_eq!(old.stop(), Some(0), "a worker stops cleanly on SIGTERM");
        let fresh = c.worker();
        workers.push(fresh);
        let ids: Vec<String> = workers.iter().map(id).collect();
        wait_members(&workers[0], &ids, Duration::from_secs(60));
        wait_running(
            &workers[0],
            &load.names(),
            &[old_id],
            Duration::from_secs(60),
        );
        eprintln!("restarted worker {i}");
    }
    feed.join().unwrap();
    load.assert_exactly_once(&c);
}

#[test]
fn a_fourth_worker_takes_over_some_connectors_while_the_others_keep_running() {
    let c = Cluster::new();
    let mut workers: Vec<AdminProcess> = (0..3).map(|_| c.worker()).collect();
    let load = Load::deploy(&c, 6000, 300);
    let feed = load.feed(&c, Duration::from_millis(300));
    let (_, before) = wait_running(&workers[0], &load.names(), &[], Duration::from_secs(60));
    workers.push(c.worker());
    let fourth = id(&workers[3]);
    let start = Instant::now();
    let after = loop {
        let now = owners(&workers[0]);
        if now.values().any(|(s, w)| s == "RUNNING" && *w == fourth) {
            break now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the 4th worker got nothing: {now:?}\n{}",
            workers[3].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let moved: Vec<&String> = after
        .iter()
        .filter(|(_, (_, w))| *w == fourth)
        .map(|(n, _)| n)
        .collect();
    // Six slots over four workers: the newcomer gets one or two; the
    // connectors that did not move were never stopped (cooperative).
    assert!((1..=2).contains(&moved.len()), "moved: {moved:?}");
    for (name, (_, w)) in &before {
        if moved.contains(&name) {
            continue;
        }
        let owner = workers.iter().find(|p| id(p) == *w).expect("owner");
        assert_eq!(starts(owner, name), 1, "{name} was restarted on {w}");
        assert_eq!(stops(owner, name), 0, "{name} was stopped on {w}");
    }
    feed.join().unwrap();
    load.assert_exactly_once(&c);
}

#[test]
fn a_worker_frozen_past_its_session_is_fenced_and_rejoins() {
    let c = Cluster::new();
    let mut workers: Vec<AdminProcess> = (0..2).map(|_| c.worker()).collect();
    let ids: Vec<String> = workers.iter().map(id).collect();
    let load = Load::deploy(&c, 6000, 300);
    let feed = load.feed(&c, Duration::from_millis(300));
    let (_, before) = wait_running(&workers[1], &load.names(), &[], Duration::from_secs(60));
    let frozen_id = ids[0].clone();
    assert!(before.values().any(|(_, w)| *w == frozen_id), "{before:?}");
    std::thread::sleep(Duration::from_secs(2));
    signal(&workers[0], "-STOP");
    // Its connectors move to the other worker, whose transactional ids
    // fence the frozen one's producers.
    wait_running(
        &workers[1],
        &load.names(),
        std::slice::from_ref(&frozen_id),
        SESSION + Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(2));
    signal(&workers[0], "-CONT");
    // It finds out, stops what it ran, and rejoins the group.
    wait_until(
        Duration::from_secs(60),
        "the thawed worker noticing",
        || workers[0].log().contains("lost=true") || workers[0].log().contains("fenced"),
    );
    wait_members(&workers[1], &ids, Duration::from_secs(60));
    feed.join().unwrap();
    load.assert_exactly_once(&c);
    // Its late writes were written and aborted: only read_uncommitted sees them.
    let late: usize = load
        .generators
        .iter()
        .map(|g| {
            let all = key_counts(
                &c.broker
                    .read_all_as(&format!("{g}.users"), Isolation::ReadUncommitted),
            );
            all.values().map(|n| n - 1).sum::<usize>()
        })
        .sum();
    eprintln!("records written by the frozen worker and aborted: {late}");
    assert!(
        late > 0,
        "the frozen worker's open transactions held records"
    );
    workers.clear();
}

#[test]
fn deploy_change_and_undeploy_through_the_cli_and_rest() {
    let c = Cluster::new();
    let workers: Vec<AdminProcess> = (0..2).map(|_| c.worker()).collect();
    let a = format!("{}-a", c.name);
    let b = format!("{}-b", c.name);
    let out = c.deploy(&[
        &c.generator(&a, 1_000_000, 20),
        &c.generator(&b, 1_000_000, 20),
    ]);
    assert!(
        out.contains(&format!("{a}: deployed to cluster {} (slot 0)", c.name)),
        "{out}"
    );
    assert!(
        out.contains(&format!("{b}: deployed to cluster {} (slot 1)", c.name)),
        "{out}"
    );
    let (_, owners0) = wait_running(
        &workers[0],
        &[a.clone(), b.clone()],
        &[],
        Duration::from_secs(60),
    );
    let owner_of = |n: &str, owners: &BTreeMap<String, (String, String)>| {
        let w = &owners[n].1;
        workers
            .iter()
            .position(|p| id(p) == *w)
            .expect("a known worker")
    };
    // The same file again changes nothing.
    assert!(c
        .deploy(&[&c.ws.path(&format!("{a}.toml"))])
        .contains(&format!("{a}: unchanged")));
    // A change restarts that connector alone.
    let wa = owner_of(&a, &owners0);
    let wb = owner_of(&b, &owners0);
    c.generator(&a, 1_000_000, 25);
    let out = c.deploy(&[&c.ws.path(&format!("{a}.toml"))]);
    assert!(
        out.contains(&format!("{a}: config changed (version 2)")),
        "{out}"
    );
    wait_until(Duration::from_secs(30), "a restarted", || {
        starts(&workers[wa], &a) == 2
    });
    wait_running(
        &workers[0],
        &[a.clone(), b.clone()],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(starts(&workers[wb], &b), 1, "b was restarted by a's change");
    let (_, cfg) = workers[1 - wa].call("GET", &format!("/connectors/{a}/config"), None, None);
    assert_eq!(cfg["source.streams.users.rate"], "25", "{cfg}");

    // REST: create on one worker, change and delete through the other.
    let r = format!("{}-r", c.name);
    let toml = std::fs::read_to_string(c.generator(&r, 1_000_000, 20)).unwrap();
    let (code, body) = workers[0].call(
        "POST",
        "/connectors",
        None,
        Some(json!({ "name": r, "config": toml })),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["config"]["source.type"], "generator", "{body}");
    let (code, body) = workers[0].call(
        "POST",
        "/connectors",
        None,
        Some(json!({ "name": r, "config": toml })),
    );
    assert_eq!(
        (code, body["message"].clone()),
        (409, json!(format!("Connector {r} already exists")))
    );
    let (_, owners1) = wait_running(
        &workers[1],
        std::slice::from_ref(&r),
        &[],
        Duration::from_secs(60),
    );
    let wr = owner_of(&r, &owners1);
    // The flat map (Connect's shape) as the new config.
    let (_, mut flat) = workers[1].call("GET", &format!("/connectors/{r}/config"), None, None);
    flat["source.streams.users.rate"] = json!("30");
    let (code, body) =
        workers[1 - wr].call("PUT", &format!("/connectors/{r}/config"), None, Some(flat));
    assert_eq!(code, 200, "{body}");
    wait_until(Duration::from_secs(30), "r restarted", || {
        starts(&workers[wr], &r) == 2
    });
    wait_running(
        &workers[0],
        std::slice::from_ref(&r),
        &[],
        Duration::from_secs(30),
    );
    // A request about a connector of the other worker is forwarded there.
    let (code, offsets) =
        workers[1 - wr].call("GET", &format!("/connectors/{r}/offsets"), None, None);
    assert_eq!(code, 200, "{offsets}");
    assert_eq!(
        offsets["offsets"][0]["partition"]["stream"], "users",
        "{offsets}"
    );
    let (code, view) = workers[1 - wr].call("GET", &format!("/status/{r}"), None, None);
    assert_eq!((code, view["name"].clone()), (200, json!(r)));

    wait_running(
        &workers[0],
        &[a.clone(), b.clone(), r.clone()],
        &[],
        Duration::from_secs(30),
    );
    // `tributary status --cluster` from either worker. Each worker learns
    // the others' states from the status topic, so a view may lag the
    // worker that was asked above by a moment: it must catch up.
    for w in &workers {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = c.ws.run(&["status", "--cluster", "--admin-addr", &id(w)]);
            assert_exit(&o, 0);
            let text = stdout(&o);
            assert!(
                text.contains(&format!(
                    "cluster `{}`: 2 worker(s), 3 connector(s)",
                    c.name
                )),
                "{text}"
            );
            let not_running: Vec<&str> = [&a, &b, &r]
                .into_iter()
                .map(|n| {
                    text.lines()
                        .find(|l| l.starts_with(n.as_str()))
                        .unwrap_or_default()
                })
                .filter(|line| !line.contains("RUNNING"))
                .collect();
            if not_running.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not RUNNING after 30 s: {not_running:?}\n{text}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    let (code, _) = workers[1].call("DELETE", &format!("/connectors/{r}"), None, None);
    assert_eq!(code, 204);
    let o = c.ws.run(&[
        "undeploy",
        &a,
        "--cluster",
        &c.name,
        "--bootstrap",
        &c.broker.brokers(),
    ]);
    assert_exit(&o, 0);
    wait_until(Duration::from_secs(30), "only b left", || {
        let (_, names) = workers[0].call("GET", "/connectors", None, None);
        names == json!([b])
    });
    wait_until(Duration::from_secs(30), "a and r stopped", || {
        stops(&workers[wa], &a) == 2 && stops(&workers[wr], &r) == 2
    });
    assert_eq!(stops(&workers[wb], &b), 0);
    let o = c.ws.run(&[
        "undeploy",
        &a,
        "--cluster",
        &c.name,
        "--bootstrap",
        &c.broker.brokers(),
    ]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains(&format!(
            "connector `{a}` is not deployed in cluster `{}`; deployed: {b}",
            c.name
        )),
        "{}",
        stderr(&o)
    );
    // Bad configs are refused before anything is written, naming file and key.
    let bad = c.ws.write(
        "bad-state.toml",
        "name = \"x\"\n[source]\ntype = \"generator\"\n[source.streams.u]\nrecord_type = \"user\"\n[sink]\ntype = \"stdout\"\n[state]\ndir = \"local\"\n",
    );
    let typo = c.ws.write(
        "bad-key.toml",
        "name = \"y\"\n[source]\ntype = \"generator\"\n[source.streams.u]\nrecord_type = \"user\"\n[runtime]\nbatch_sise = 5\n[sink]\ntype = \"stdout\"\n",
    );
    for (file, message) in [
        (&bad, "bad-state.toml: [state]: a connector run by workers keeps its checkpoints where every worker reads them"),
        (&typo, "bad-key.toml:7: runtime.batch_sise: unknown key `batch_sise` (did you mean `batch_size`?)"),
    ] {
        let o = c.ws.run(&[
            "deploy",
            file.to_str().unwrap(),
            "--cluster",
            &c.name,
            "--bootstrap",
            &c.broker.brokers(),
        ]);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(message), "{}", stderr(&o));
    }
    let (_, names) = workers[0].call("GET", "/connectors", None, None);
    assert_eq!(names, json!([b]));
    // References stay references in the config topic; the workers resolve them.
    let names = format!("_tributary_configs_{}", c.name);
    let record = c
        .broker
        .read_all(&names)
        .into_iter()
        .find(|m| m.key.as_deref() == Some(b.as_str()))
        .expect("b's config record");
    let value = record.value.unwrap_or_default();
    assert!(value.contains("${TRIB_TEST_CLIENT_ID}"), "{value}");
    assert!(!value.contains(CLIENT_ID), "{value}");
}
