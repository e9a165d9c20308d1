//! ChargeOver pages as a real account may send them (issue 18): `limit`
//! capped below `batch_size`, pretty-printed envelopes. The binary against
//! the ChargeOver simulator on 127.0.0.1.

use chrono::NaiveDateTime;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::sim::chargeover::ChargeOverSim;

const USER: &str = "api-user";
const PASSWORD: &str = "s3cret-Pa55word";

struct Env {
    ws: Workspace,
    sim: ChargeOverSim,
    _rt: tokio::runtime::Runtime,
}

fn setup() -> Env {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(ChargeOverSim::start(USER, PASSWORD));
    Env {
        ws: Workspace::new(env!("CARGO_BIN_EXE_tributary")),
        sim,
        _rt: rt,
    }
}

impl Env {
    fn config(&self, extra_source: &str) -> String {
        let text = format!(
            r#"
name = "billing"

[source]
type = "chargeover"
base_url = "{base}"
username = "{USER}"
password = "${{CHARGEOVER_PASSWORD}}"
entities = ["customer"]
batch_size = 500
{extra_source}

[source.initial_datetime]
customer = "2024-01-01 00:00:00"

[sink]
type = "file"
dir = "out"

[runtime]
backoff_initial = "10ms"
backoff_max = "100ms"
"#,
            base = self.sim.base_url()
        );
        self.ws.write("billing.toml", &text);
        self.ws.path("billing.toml").to_string_lossy().into_owned()
    }

    fn run(&self, cfg: &str) -> Output {
        let mut cmd = self.ws.cmd(&["run", "--once", cfg]);
        cmd.env("CHARGEOVER_PASSWORD", PASSWORD)
            .env("TRIBUTARY_CLOCK_START", "2024-06-01T00:00:00Z")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wait_output(cmd.spawn().unwrap(), Duration::from_secs(300))
    }

    /// Ids delivered and how often; every line is one record a strict
    /// parser reads.
    fn delivered(&self) -> BTreeMap<i64, usize> {
        let lines = self.ws.output_lines("out", "billing.customer");
        for line in &lines {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one record per line ({e}): {line:?}"));
            assert!(v.get("customer_id").is_some(), "{line:?}");
        }
        let mut out = BTreeMap::new();
        for line in &lines {
            let v: Value = serde_json::from_str(line).unwrap();
            let id = v["customer_id"].as_str().map_or_else(
                || v["customer_id"].as_i64().unwrap(),
                |s| s.parse().unwrap(),
            );
            *out.entry(id).or_insert(0) += 1;
        }
        out
    }
}

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// The reported loss: an account whose API caps `limit` at 100 answered
/// the first page of 500 short, and the window ended there (5,493 of
/// 5,893 versions lost, exit 0). Here 5,893 records, a quarter of them
/// sharing a datetime with their neighbour.
#[test]
fn a_capped_limit_loses_nothing() {
    let env = setup();
    env.sim.set_max_limit(100);
    env.sim.generate(
        "customer",
        5_893,
        dt("2024-01-02 00:00:00"),
        chrono::Duration::seconds(0),
    );
    // Spread them out: groups of four share a datetime.
    for id in 1..=5_893i64 {
        let mut r = env.sim.get("customer", id).unwrap();
        let at = dt("2024-01-02 00:00:00") + chrono::Duration::minutes((id - 1) / 4);
        r["mod_datetime"] = Value::String(at.format("%Y-%m-%d %H:%M:%S").to_string());
        env.sim.insert("customer", r);
    }
    let cfg = env.config("");
    let o = env.run(&cfg);
    assert_exit(&o, 0);
    let expected: BTreeMap<i64, usize> = (1..=5_893).map(|i| (i, 1)).collect();
    assert_eq!(env.delivered(), expected);
    let limits: Vec<String> = env
        .sim
        .requests()
        .iter()
        .filter_map(|r| r.param("limit").map(str::to_string))
        .collect();
    // The first request reads ChargeOver's clock (its `Date` header) with a
    // one-record page; every page after it asks for 500.
    assert_eq!(limits[0], "1", "{limits:?}");
    assert!(limits[1..].iter().all(|l| l == "500"), "{limits:?}");
    // 59 pages of at most 100, each followed by a cheap tie query, and an
    // empty page that confirms the end.
    assert!(limits.len() <= 1 + 2 * 60 + 2, "{}", limits.len());
}

/// Pretty-printed envelopes: one record per output line.
#[test]
fn pretty_printed_envelopes_give_one_record_per_line() {
    let env = setup();
    env.sim.generate(
        "customer",
        700,
        dt("2024-01-02 00:00:00"),
        chrono::Duration::seconds(30),
    );
    env.sim.pretty_bodies();
    let cfg = env.config("");
    assert_exit(&env.run(&cfg), 0);
    let expected: BTreeMap<i64, usize> = (1..=700).map(|i| (i, 1)).collect();
    assert_eq!(env.delivered(), expected);
    assert_eq!(env.ws.output_lines("out", "billing.customer").len(), 700);
}
