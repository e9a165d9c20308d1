//! Pages as real APIs send them (issue 18), through the binary against the
//! REST simulator: page sizes capped below the one asked for, pretty-printed
//! and BOM-prefixed bodies, `null`/missing/duplicated records keys, values
//! strict JSON parsers refuse, throttling and maintenance answers, and a
//! fuzz of hundreds of mutated pages. Every test asserts the exact records
//! delivered, that every output line is one record a strict parser reads
//! (serde_json's `Value` refuses `1e999` and lone surrogates), and what
//! went to the dead-letter file.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::Duration;
use tributary_testkit::cli::*;
use tributary_testkit::sim::rest::{RestSim, RestSimConfig};

struct Env {
    ws: Workspace,
    sim: RestSim,
    _rt: tokio::runtime::Runtime,
}

fn setup(items: usize, max_page_size: usize) -> Env {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(RestSim::start_with(RestSimConfig {
        items,
        max_page_size,
        ..RestSimConfig::default()
    }));
    Env {
        ws: Workspace::new(env!("CARGO_BIN_EXE_tributary")),
        sim,
        _rt: rt,
    }
}

impl Env {
    fn config(&self, stream: &str, extra: &str) -> String {
        let text = format!(
            r#"
name = "api"
{extra}

[source]
type = "http"
base_url = "{}"

[source.streams.items]
primary_key = ["id"]
{stream}

[sink]
type = "file"
dir = "out"

[runtime]
max_retries = 2
backoff_initial = "5ms"
backoff_max = "20ms"
"#,
            self.sim.base_url()
        );
        self.ws.write("api.toml", &text);
        self.ws.path("api.toml").to_string_lossy().into_owned()
    }

    fn run(&self, cfg: &str) -> Output {
        let mut cmd = self.ws.cmd(&["run", "--once", cfg]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        wait_output(cmd.spawn().unwrap(), Duration::from_secs(300))
    }

    /// Ids delivered and how often; every line must be one record that a
    /// strict parser reads (`Workspace::output` parses each line with
    /// serde_json's `Value`, which refuses `1e999` and lone surrogates).
    fn delivered(&self) -> BTreeMap<i64, usize> {
        let lines = self.ws.output_lines("out", "api.items");
        for line in &lines {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a line a strict parser refuses ({e}): {line:?}"));
            assert!(
                v.get("id").is_some(),
                "a line that is no whole record: {line:?}"
            );
        }
        counts(&self.ws.output("out", "api.items"), "id")
    }

    fn dead_letters(&self) -> Vec<Value> {
        let path = self.ws.path(".tributary/dead_letter/api.ndjson");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn limits(&self) -> Vec<u64> {
        self.sim
            .requests()
            .iter()
            .filter_map(|r| r.param("limit").and_then(|l| l.parse().ok()))
            .collect()
    }
}

fn once(ids: impl IntoIterator<Item = i64>) -> BTreeMap<i64, usize> {
    ids.into_iter().map(|i| (i, 1)).collect()
}

const OFFSET: &str = r#"path = "/items/offset"
records = "data"
pagination = { type = "offset", page_size = 100 }"#;

/// The reported loss: an API that caps `limit` (here at 30) answered the
/// first page short, and the listing ended there. Every style now reads on
/// until the API says the listing is over.
#[test]
fn an_api_capping_the_page_size_loses_nothing() {
    let styles = [
        OFFSET,
        r#"path = "/items/page"
records = "data"
pagination = { type = "page_number", page_size = 100 }"#,
        r#"path = "/items/keyset"
records = "data"
params = { updated_since = "{{ keyset.value }}", after_id = "{{ keyset.id }}", updated_before = "{{ window.end }}" }
pagination = { type = "keyset", page_size = 100 }
incremental = { type = "datetime", cursor_field = "updated_at", start = "2024-01-01T00:00:00Z" }"#,
    ];
    for stream in styles {
        let env = setup(250, 30);
        let cfg = env.config(stream, "");
        let o = env.run(&cfg);
        assert_exit(&o, 0);
        assert_eq!(env.delivered(), once(1..=250), "{stream}");
        // Nine pages of at most 30, then one empty page confirms the end
        // (the read-ahead may ask past it; nothing past it is used).
        let answered: Vec<_> = env.sim.requests();
        assert!(answered.len() >= 10, "{stream}: {}", answered.len());
        // A datetime-windowed stream first reads the API's clock (its `Date`
        // header) with one one-record request; every page asks for 100.
        let limits = env.limits();
        let clock_reads = limits.iter().filter(|l| **l == 1).count();
        assert!(clock_reads <= 1, "{stream}: {limits:?}");
        assert!(
            limits.iter().all(|l| *l == 100 || *l == 1),
            "{stream}: {limits:?}"
        );
    }
}

/// `stop_on_short_page = true` trusts an API known to fill its pages: no
/// confirming request, and against a capping API it loses records, as the
/// docs warn.
#[test]
fn trusted_short_pages_save_the_confirming_request() {
    let stream = format!("{OFFSET}\n").replace(
        "page_size = 100 }",
        "page_size = 100, stop_on_short_page = true }",
    );
    let env = setup(250, 10_000);
    let cfg = env.config(&stream, "");
    assert_exit(&env.run(&cfg), 0);
    assert_eq!(env.delivered(), once(1..=250));
    let offsets: Vec<String> = env
        .sim
        .requests()
        .iter()
        .filter_map(|r| r.param("offset").map(str::to_string))
        .collect();
    let asked: std::collections::BTreeSet<u64> =
        offsets.iter().map(|o| o.parse().unwrap()).collect();
    assert!(
        [0, 100, 200].iter().all(|o| asked.contains(o)) && asked.iter().all(|o| *o <= 500),
        "no confirming request, only read-ahead: {offsets:?}"
    );

    let env = setup(250, 30);
    let cfg = env.config(&stream, "");
    assert_exit(&env.run(&cfg), 0);
    assert_eq!(env.delivered(), once(1..=30), "the documented risk");
}

/// Pretty-printed pages made one record span many lines of NDJSON output.
#[test]
fn pretty_printed_and_bom_prefixed_pages_give_one_record_per_line() {
    let env = setup(120, 10_000);
    env.sim.rewrite_bodies(|_, body| {
        let mut out = b"\xEF\xBB\xBF".to_vec();
        out.extend(tributary_testkit::sim::pretty(body));
        out
    });
    let cfg = env.config(OFFSET, "");
    let o = env.run(&cfg);
    assert_exit(&o, 0);
    assert_eq!(env.delivered(), once(1..=120));
    let lines = env.ws.output_lines("out", "api.items");
    assert_eq!(lines.len(), 120);
    assert!(
        lines[0].starts_with(r#"{"id":1,"updated_at":"2024-01-01T00:00:00Z","name":"item 1","#),
        "{}",
        lines[0]
    );
    assert!(env.dead_letters().is_empty());
}

/// `data: null`, no `data`, or `data` twice with `[]` last: the page is
/// retried, then handed whole to the bad-record policy, and the listing
/// goes on after it. It never ends the listing with exit 0.
#[test]
fn null_missing_and_duplicated_records_keys_are_bad_pages_not_the_end() {
    type Damage = fn(&str) -> String;
    let damages: [(&str, Damage); 3] = [
        ("null", |b| {
            b.replacen(r#""data":["#, r#""data":null,"was":["#, 1)
        }),
        ("missing", |b| b.replacen(r#""data":"#, r#""items":"#, 1)),
        ("duplicate", |b| {
            format!("{},\"data\":[]}}", &b[..b.len() - 1])
        }),
    ];
    for (name, damage) in damages {
        // Persistent on the second page: dead-lettered, the rest delivered.
        let env = setup(300, 10_000);
        env.sim.rewrite_bodies(move |target, body| {
            let text = String::from_utf8(body.to_vec()).unwrap();
            if target.contains("offset=100&") {
                damage(&text).into_bytes()
            } else {
                body.to_vec()
            }
        });
        let cfg = env.config(OFFSET, "[bad_records]\npolicy = \"dead_letter\"");
        let o = env.run(&cfg);
        assert_exit(&o, 0);
        let mut expected = once(1..=100);
        expected.extend(once(201..=300));
        assert_eq!(env.delivered(), expected, "{name}");
        let dead = env.dead_letters();
        assert_eq!(dead.len(), 1, "{name}: {dead:?}");
        let raw = dead[0]["raw"].as_str().unwrap();
        assert!(raw.contains(r#""id":101,"#), "{name}: {raw}");
        let tries = env
            .sim
            .requests()
            .iter()
            .filter(|r| r.param("offset") == Some("100"))
            .count();
        assert!(
            (3..=4).contains(&tries),
            "{name}: the first attempt and max_retries = 2 (one may be a read-ahead): {tries}"
        );

        // With the default policy (`fail`) the run fails and the checkpoint
        // stays before the page.
        let env = setup(300, 10_000);
        env.sim.rewrite_bodies(move |target, body| {
            let text = String::from_utf8(body.to_vec()).unwrap();
            if target.contains("offset=100&") {
                damage(&text).into_bytes()
            } else {
                body.to_vec()
            }
        });
        let cfg = env.config(OFFSET, "");
        let o = env.run(&cfg);
        assert_ne!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        assert_eq!(env.delivered(), once(1..=100), "{name}");
    }
}

/// A bad page that recovers on a retry costs nothing.
#[test]
fn a_transiently_bad_page_is_retried_and_read() {
    let env = setup(300, 10_000);
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = served.clone();
    env.sim.rewrite_bodies(move |target, body| {
        if target.contains("offset=100&")
            && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2
        {
            br#"{"data":null}"#.to_vec()
        } else {
            body.to_vec()
        }
    });
    let cfg = env.config(OFFSET, "[bad_records]\npolicy = \"dead_letter\"");
    assert_exit(&env.run(&cfg), 0);
    assert_eq!(env.delivered(), once(1..=300));
    assert!(env.dead_letters().is_empty());
}

/// `1e999` and a lone surrogate reached the output as-is, lines strict
/// parsers refuse. They are bad records now, whole in the dead-letter file.
#[test]
fn values_strict_parsers_refuse_are_dead_lettered_whole() {
    let env = setup(50, 10_000);
    env.sim.rewrite_bodies(|_, body| {
        String::from_utf8(body.to_vec())
            .unwrap()
            .replace(r#""amount":79.19"#, r#""amount":1e999"#)
            .replace(r#""name":"item 7""#, r#""name":"\ud800 item 7""#)
            .into_bytes()
    });
    let stream = OFFSET.replace("page_size = 100", "page_size = 10");
    let cfg = env.config(&stream, "[bad_records]\npolicy = \"dead_letter\"");
    assert_exit(&env.run(&cfg), 0);
    let dead = env.dead_letters();
    let dead_ids: Vec<i64> = dead
        .iter()
        .map(|d| {
            let raw = d["raw"].as_str().unwrap();
            assert!(raw.contains("1e999") || raw.contains(r"\ud800"), "{raw}");
            let id = raw.split(r#""id":"#).nth(1).unwrap();
            id[..id.find(',').unwrap()].parse().unwrap()
        })
        .collect();
    assert!(
        dead_ids.contains(&1) && dead_ids.contains(&7),
        "{dead_ids:?}"
    );
    let delivered = env.delivered();
    let expected: BTreeMap<i64, usize> = once((1..=50).filter(|i| !dead_ids.contains(i)));
    assert_eq!(delivered, expected);
    assert_eq!(delivered.len() + dead_ids.len(), 50);
}

/// A 429 and a 503 with `Retry-After` do not shrink pages; a 504 does, and
/// sizes grow back after successes.
#[test]
fn page_sizes_shrink_only_where_size_is_the_cause_and_grow_back() {
    let env = setup(3_000, 10_000);
    env.sim.fail_next(2, 429, Some(0));
    let cfg = env.config(OFFSET, "");
    assert_exit(&env.run(&cfg), 0);
    assert_eq!(env.delivered(), once(1..=3_000));
    assert!(env.limits().iter().all(|l| *l == 100), "{:?}", env.limits());

    let env = setup(3_000, 10_000);
    env.sim.fail_next(2, 503, Some(0));
    let cfg = env.config(OFFSET, "");
    assert_exit(&env.run(&cfg), 0);
    assert_eq!(env.delivered(), once(1..=3_000));
    assert!(env.limits().iter().all(|l| *l == 100), "{:?}", env.limits());

    let env = setup(3_000, 10_000);
    env.sim.fail_next(2, 504, None);
    let cfg = env.config(OFFSET, "");
    assert_exit(&env.run(&cfg), 0);
    assert_eq!(env.delivered(), once(1..=3_000));
    let limits = env.limits();
    assert_eq!(limits[..3], [100, 50, 25], "{limits:?}");
    // Additive increase: 25 + 25 per page back to 100 (read-ahead at a
    // stale size is requested again, so a size may appear a few times).
    let back = limits.iter().rposition(|l| *l != 100).unwrap();
    assert!(back < 20, "back to 100 within a few pages: {limits:?}");
    assert!(limits.contains(&50) && limits.contains(&75), "{limits:?}");
    assert!(limits[back + 1..].iter().all(|l| *l == 100));
}

/// Hundreds of mutated pages: every record of a readable page arrives
/// exactly once; every record a strict parser refuses, and every page that
/// is not readable, is whole in the dead-letter file; nothing panics, and
/// the run ends with exit 0 under `dead_letter`.
#[test]
fn fuzzed_pages_deliver_every_valid_record_once_or_dead_letter_it_whole() {
    const PAGES: usize = 300;
    const PER_PAGE: usize = 4;
    let env = setup(PAGES * PER_PAGE, 10_000);
    // The damage of page `p` is fixed (retries meet the same page).
    let damage_of = |page: usize| -> usize {
        let mut x = (page as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        (x % 12) as usize
    };
    env.sim.rewrite_bodies(move |target, body| {
        let offset: usize = target
            .split("offset=")
            .nth(1)
            .and_then(|t| t.split('&').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        mutate(damage_of(offset / PER_PAGE), body)
    });
    let stream = OFFSET.replace("page_size = 100", &format!("page_size = {PER_PAGE}"));
    let cfg = env.config(&stream, "[bad_records]\npolicy = \"dead_letter\"");
    let o = env.run(&cfg);
    assert_exit(&o, 0);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));

    let dead = env.dead_letters();
    let dead_raw: Vec<&str> = dead.iter().map(|d| d["raw"].as_str().unwrap()).collect();
    let mut expected = BTreeMap::new();
    let (mut bad_pages, mut bad_records) = (0, 0);
    for page in 0..PAGES {
        let ids = (page * PER_PAGE + 1..=(page + 1) * PER_PAGE).map(|i| i as i64);
        match damage_of(page) {
            // Unreadable pages: whole in the dead letters, their records not delivered.
            TRUNCATE | NULL | MISSING | DUPLICATE => {
                bad_pages += 1;
                let first = page * PER_PAGE + 1;
                assert!(
                    dead_raw
                        .iter()
                        .any(|r| r.contains(&format!("\"id\":{first},"))
                            || r.contains(&format!("\"id\": {first},"))),
                    "page {page} is not in the dead letters"
                );
            }
            // One record refused by strict parsers; the others delivered.
            HUGE | SURROGATE => {
                bad_records += 1;
                let first = page * PER_PAGE + 1;
                assert!(
                    dead_raw
                        .iter()
                        .any(|r| r.starts_with(&format!("{{\"id\":{first},"))),
                    "record {first} is not in the dead letters whole"
                );
                expected.extend(ids.skip(1).map(|i| (i, 1)));
            }
            _ => expected.extend(ids.map(|i| (i, 1))),
        }
    }
    assert!(
        bad_pages > 50 && bad_records > 20,
        "{bad_pages} / {bad_records}"
    );
    assert_eq!(env.delivered(), expected);
    assert_eq!(dead.len(), bad_pages + bad_records);
}

const TRUNCATE: usize = 0;
const NULL: usize = 1;
const MISSING: usize = 2;
const DUPLICATE: usize = 3;
const HUGE: usize = 4;
const SURROGATE: usize = 5;
const PRETTY: usize = 6;
const BOM: usize = 7;

/// One damage of a compact simulator page `{"data":[...],"total":N}`.
fn mutate(damage: usize, body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let empty = text.starts_with(r#"{"data":[]"#);
    if empty {
        return body.to_vec();
    }
    match damage {
        TRUNCATE => text.as_bytes()[..text.len() * 2 / 3].to_vec(),
        NULL => text
            .replacen(r#""data":["#, r#""data":null,"rest":["#, 1)
            .into_bytes(),
        MISSING => text.replacen(r#""data":"#, r#""dat":"#, 1).into_bytes(),
        DUPLICATE => format!("{},\"data\":[]}}", &text[..text.len() - 1]).into_bytes(),
        // The first record of the page.
        HUGE => text
            .replacen(r#""amount":"#, r#""amount":1e999,"was":"#, 1)
            .into_bytes(),
        SURROGATE => text
            .replacen(r#""name":""#, r#""name":"\udc00"#, 1)
            .into_bytes(),
        PRETTY => tributary_testkit::sim::pretty(body),
        BOM => [b"\xEF\xBB\xBF".as_slice(), body].concat(),
        // Pretty with CRLF line ends and tabs.
        8 => String::from_utf8(tributary_testkit::sim::pretty(body))
            .unwrap()
            .replace('\n', "\r\n\t")
            .into_bytes(),
        _ => body.to_vec(),
    }
}
