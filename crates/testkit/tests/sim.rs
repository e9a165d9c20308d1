//! The HTTP simulators, driven with reqwest as a connector would.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tributary_testkit::sim::{ChargeOverSim, RestAuth, RestSim, RestSimConfig};

fn dt(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn url_with(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(base).unwrap();
    if !params.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

fn ids(values: &[Value], field: &str) -> Vec<i64> {
    values.iter().map(|v| v[field].as_i64().unwrap()).collect()
}

// ------------------------------------------------------------- ChargeOver

struct Co {
    sim: ChargeOverSim,
    http: reqwest::Client,
}

impl Co {
    async fn new() -> Co {
        Co {
            sim: ChargeOverSim::start("api-user", "s3cret-pass").await,
            http: reqwest::Client::new(),
        }
    }

    async fn get_as(&self, path: &str, params: &[(&str, &str)], pass: &str) -> (u16, Value) {
        let url = url_with(&format!("{}/{path}", self.sim.base_url()), params);
        let resp = self
            .http
            .get(url)
            .basic_auth("api-user", Some(pass))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        self.get_as(path, params, "s3cret-pass").await
    }

    /// Pages `entity` by offset until a short page; returns the records.
    async fn page_all(&self, entity: &str, limit: usize, extra: &[(&str, &str)]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let (l, o) = (limit.to_string(), offset.to_string());
            let mut params = vec![("limit", l.as_str()), ("offset", o.as_str())];
            params.extend_from_slice(extra);
            let (status, body) = self.get(entity, &params).await;
            assert_eq!(status, 200, "{body}");
            let page = body["response"].as_array().unwrap().clone();
            let n = page.len();
            out.extend(page);
            if n < limit {
                return out;
            }
            offset += limit;
        }
    }
}

#[tokio::test]
async fn chargeover_offset_pages_return_every_id_once() {
    let co = Co::new().await;
    co.sim.generate(
        "customer",
        1234,
        dt("2024-01-01 00:00:00"),
        chrono::Duration::minutes(7),
    );
    let all = co
        .page_all("customer", 500, &[("order", "customer_id:ASC")])
        .await;
    assert_eq!(ids(&all, "customer_id"), (1..=1234).collect::<Vec<_>>());

    // Envelope, as documented.
    let (status, body) = co.get("customer", &[("limit", "1")]).await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], 200);
    assert_eq!(body["status"], "OK");
    assert_eq!(body["message"], "");
    assert!(body["details"].is_object());
    assert_eq!(body["response"][0]["customer_id"], 1);
    assert_eq!(body["response"][0]["mod_datetime"], "2024-01-01 00:00:00");

    // limit is clamped to 500; default is 10.
    let (_, body) = co.get("customer", &[("limit", "1000")]).await;
    assert_eq!(body["response"].as_array().unwrap().len(), 500);
    let (_, body) = co.get("customer", &[]).await;
    assert_eq!(body["response"].as_array().unwrap().len(), 10);
    let (status, body) = co.get("customer", &[("limit", "ten")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "Error");
    assert_eq!(body["response"], false);
}

#[tokio::test]
async fn chargeover_where_with_escaped_colons_and_commas() {
    let co = Co::new().await;
    co.sim.generate(
        "invoice",
        100,
        dt("2024-01-01 00:00:00"),
        chrono::Duration::hours(1),
    );
    // Record i has mod_datetime 2024-01-01 00:00 + (i-1)h: the window
    // [2024-01-02, 2024-01-03) holds ids 25..=48.
    let filter = r"mod_datetime:GTE:2024-01-02 00\:00\:00,mod_datetime:LT:2024-01-03 00\:00\:00";
    let got = co
        .page_all(
            "invoice",
            10,
            &[("where", filter), ("order", "mod_datetime:ASC")],
        )
        .await;
    assert_eq!(ids(&got, "invoice_id"), (25..=48).collect::<Vec<_>>());

    let (_, count) = co.get("invoice/_count", &[("where", filter)]).await;
    assert_eq!(count["response"], 24);

    // Unescaped colons and unknown operators are malformed.
    let (status, body) = co
        .get(
            "invoice",
            &[("where", "mod_datetime:GTE:2024-01-02 00:00:00")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 400);
    let (status, _) = co
        .get("invoice", &[("where", "invoice_id:NOT_EQUALS:3")])
        .await;
    assert_eq!(status, 400);

    // The other documented operators.
    co.sim.insert(
        "invoice",
        serde_json::json!({"invoice_id": 500, "name": "Doe, John", "mod_datetime": null, "note": "Example:ID"}),
    );
    let one = |body: &Value| ids(body["response"].as_array().unwrap(), "invoice_id");
    let (_, b) = co
        .get("invoice", &[("where", r"name:EQUALS:Doe\, John")])
        .await;
    assert_eq!(one(&b), vec![500]);
    let (_, b) = co
        .get("invoice", &[("where", r"note:EQUALS:Example\:ID")])
        .await;
    assert_eq!(one(&b), vec![500]);
    let (_, b) = co
        .get("invoice", &[("where", "mod_datetime:IS:NULL")])
        .await;
    assert_eq!(one(&b), vec![500]);
    let (_, b) = co
        .get(
            "invoice",
            &[("where", "mod_datetime:ISNOT:NULL,invoice_id:LTE:3")],
        )
        .await;
    assert_eq!(one(&b), vec![1, 2, 3]);
    let (_, b) = co
        .get(
            "invoice",
            &[("where", "invoice_id:GT:97,invoice_id:NOTEQUALS:99")],
        )
        .await;
    assert_eq!(one(&b), vec![98, 100, 500]);
    let (_, b) = co.get("invoice", &[("where", "name:CONTAINS:john")]).await;
    assert_eq!(one(&b), vec![500]);
    // Dates compare chronologically with datetimes.
    let (_, b) = co
        .get(
            "invoice",
            &[("where", "mod_datetime:LT:2024-01-01 02\\:00\\:00")],
        )
        .await;
    assert_eq!(one(&b), vec![1, 2]);
}

#[tokio::test]
async fn chargeover_order_by_several_keys() {
    let co = Co::new().await;
    for (id, at) in [
        (1, "2024-01-01 00:00:02"),
        (2, "2024-01-01 00:00:01"),
        (3, "2024-01-01 00:00:02"),
        (4, "2024-01-01 00:00:01"),
        (10, "2024-01-01 00:00:00"),
    ] {
        co.sim.insert(
            "customer",
            serde_json::json!({"customer_id": id, "mod_datetime": at}),
        );
    }
    let co = &co;
    let order = |o: &'static str| async move {
        let (status, body) = co.get("customer", &[("order", o)]).await;
        assert_eq!(status, 200, "{body}");
        ids(body["response"].as_array().unwrap(), "customer_id")
    };
    assert_eq!(
        order("mod_datetime:ASC,customer_id:ASC").await,
        vec![10, 2, 4, 1, 3]
    );
    assert_eq!(
        order("mod_datetime:ASC,customer_id:DESC").await,
        vec![10, 4, 2, 3, 1]
    );
    assert_eq!(order("mod_datetime:DESC").await, vec![1, 3, 2, 4, 10]);
    // Numeric, not lexicographic, id order.
    assert_eq!(order("customer_id:DESC").await, vec![10, 4, 3, 2, 1]);
    let (status, _) = co
        .get("customer", &[("order", "customer_id:SIDEWAYS")])
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn chargeover_auth_single_records_and_unknown_entities() {
    let co = Co::new().await;
    co.sim.generate(
        "customer",
        3,
        dt("2024-01-01 00:00:00"),
        chrono::Duration::minutes(1),
    );

    let (status, body) = co.get_as("customer", &[], "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], 401);
    assert_eq!(body["status"], "Error");
    assert_eq!(body["response"], false);
    assert!(!body.to_string().contains("wrong"));
    let resp = co
        .http
        .get(format!("{}/customer", co.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    let (status, body) = co.get("customer/2", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["customer_id"], 2);
    let (status, body) = co.get("customer/99", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], "Error");
    let (status, body) = co.get("customers", &[]).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("not supported"));

    // Aliases and custom id fields.
    co.sim.register_entity("package", "package_id");
    co.sim
        .insert("package", serde_json::json!({"package_id": 7}));
    co.sim.alias("subscription", "package");
    let (status, body) = co.get("subscription", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"][0]["package_id"], 7);
}

#[tokio::test]
async fn chargeover_faults_and_request_log() {
    let co = Co::new().await;
    co.sim.generate(
        "payment",
        5,
        dt("2024-01-01 00:00:00"),
        chrono::Duration::minutes(1),
    );

    co.sim.fail_next(1, 429, Some(7));
    let url = url_with(
        &format!("{}/payment", co.sim.base_url()),
        &[
            ("limit", "5"),
            ("expand", "customer"),
            ("fields", "payment_id,amount"),
        ],
    );
    let send = || {
        co.http
            .get(&url)
            .basic_auth("api-user", Some("s3cret-pass"))
            .send()
    };
    let resp = send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], 429);

    co.sim.fail_next(1, 503, None);
    let resp = send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_none());

    co.sim.truncate_next(1);
    let resp = send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bytes = resp.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());

    co.sim.slow_next(1, Duration::from_millis(300));
    let started = Instant::now();
    let resp = send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["response"].as_array().unwrap().len(), 5);

    let log = co.sim.requests();
    assert_eq!(log.len(), 4);
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 503, 200, 200]
    );
    assert_eq!(log[0].path, "/api/v3/payment");
    assert_eq!(log[0].param("expand"), Some("customer"));
    assert_eq!(log[0].param("fields"), Some("payment_id,amount"));
    assert!(log[0].header("authorization").is_some());
    assert_eq!(co.sim.request_count(), 4);
}

#[tokio::test]
async fn chargeover_modify_during_paging_moves_records_out_of_an_offset_window() {
    let co = Co::new().await;
    co.sim.generate(
        "customer",
        100,
        dt("2024-01-01 00:00:00"),
        chrono::Duration::minutes(1),
    );
    co.sim.set_now(dt("2025-01-01 00:00:00"));
    co.sim.modify_during_paging("customer", 2);
    let window = r"mod_datetime:GTE:2024-01-01 00\:00\:00,mod_datetime:LT:2024-06-01 00\:00\:00";
    let got = co
        .page_all(
            "customer",
            10,
            &[("where", window), ("order", "mod_datetime:ASC")],
        )
        .await;
    let seen: BTreeSet<i64> = ids(&got, "customer_id").into_iter().collect();
    let moved: Vec<Value> = co
        .sim
        .records("customer")
        .into_iter()
        .filter(|r| !seen.contains(&r["customer_id"].as_i64().unwrap()))
        .collect();
    assert!(!moved.is_empty() && seen.len() + moved.len() == 100);
    for r in &moved {
        assert_eq!(r["mod_datetime"], "2025-01-01 00:00:00", "{r}");
        assert_eq!(r["version"], 2);
    }
    // The next window finds them.
    co.sim.modify_during_paging("customer", 0);
    let next = co
        .page_all(
            "customer",
            10,
            &[
                ("where", r"mod_datetime:GTE:2024-06-01 00\:00\:00"),
                ("order", "mod_datetime:ASC"),
            ],
        )
        .await;
    assert_eq!(next.len(), moved.len());
}

#[tokio::test]
async fn chargeover_modify_returned_during_paging_shows_the_offset_skip_bug() {
    let co = Co::new().await;
    co.sim.generate(
        "customer",
        100,
        dt("2024-01-01 00:00:00"),
        chrono::Duration::minutes(1),
    );
    co.sim.set_now(dt("2025-01-01 00:00:00"));
    co.sim.modify_returned_during_paging("customer", 3);
    let window = r"mod_datetime:GTE:2024-01-01 00\:00\:00,mod_datetime:LT:2024-06-01 00\:00\:00";
    let got = co
        .page_all(
            "customer",
            10,
            &[("where", window), ("order", "mod_datetime:ASC")],
        )
        .await;
    let seen: BTreeSet<i64> = ids(&got, "customer_id").into_iter().collect();
    // Records never modified (version 1) were never returned: skipped.
    let skipped: Vec<i64> = co
        .sim
        .records("customer")
        .into_iter()
        .filter(|r| r["version"] == 1 && !seen.contains(&r["customer_id"].as_i64().unwrap()))
        .map(|r| r["customer_id"].as_i64().unwrap())
        .collect();
    assert!(
        !skipped.is_empty(),
        "offset paging should have skipped records"
    );
}

// ------------------------------------------------------------------- REST

async fn get_json(http: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, value)
}

fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let value = headers.get("link")?.to_str().ok()?;
    value.split(", ").find_map(|part| {
        let (url, rel) = part.split_once("; ")?;
        (rel == "rel=\"next\"").then(|| url.trim_matches(|c| c == '<' || c == '>').to_string())
    })
}

const N: i64 = 257;

#[tokio::test]
async fn rest_every_pagination_style_returns_every_id_in_order() {
    let sim = RestSim::start(N as usize).await;
    let base = sim.base_url();
    let http = reqwest::Client::new();
    let expected: Vec<i64> = (1..=N).collect();

    // offset
    let mut got = Vec::new();
    let mut offset = 0;
    loop {
        let url = format!("{base}/items/offset?offset={offset}&limit=20");
        let (status, _, body) = get_json(&http, &url).await;
        assert_eq!(status, 200);
        assert_eq!(body["total"], N);
        let page = body["data"].as_array().unwrap();
        got.extend(ids(page, "id"));
        if page.len() < 20 {
            break;
        }
        offset += 20;
    }
    assert_eq!(got, expected, "offset");

    // page
    let mut got = Vec::new();
    let mut page = 1;
    loop {
        let url = format!("{base}/items/page?page={page}&per_page=20");
        let (_, _, body) = get_json(&http, &url).await;
        assert_eq!(body["page"], page);
        got.extend(ids(body["data"].as_array().unwrap(), "id"));
        if page >= body["total_pages"].as_i64().unwrap() {
            break;
        }
        page += 1;
    }
    assert_eq!(got, expected, "page");

    // cursor
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/items/cursor?cursor={c}&limit=20"),
            None => format!("{base}/items/cursor?limit=20"),
        };
        let (_, _, body) = get_json(&http, &url).await;
        got.extend(ids(body["data"].as_array().unwrap(), "id"));
        if !body["has_more"].as_bool().unwrap() {
            assert!(body["next_cursor"].is_null());
            break;
        }
        cursor = Some(body["next_cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(got, expected, "cursor");

    // next-url
    let mut got = Vec::new();
    let mut url = format!("{base}/items/next-url?limit=20");
    loop {
        let (_, _, body) = get_json(&http, &url).await;
        got.extend(ids(body["results"].as_array().unwrap(), "id"));
        match body["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&format!("{base}/items/next-url?after=")));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(got, expected, "next-url");

    // Link header
    let mut got = Vec::new();
    let mut url = format!("{base}/items/link?page=1&per_page=20");
    loop {
        let (_, headers, body) = get_json(&http, &url).await;
        got.extend(ids(body.as_array().unwrap(), "id"));
        match next_link(&headers) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(got, expected, "link");

    // keyset on (updated_at, id)
    let mut got = Vec::new();
    let mut after: Option<(String, i64)> = None;
    loop {
        let url = match &after {
            Some((since, id)) => url_with(
                &format!("{base}/items/keyset"),
                &[
                    ("updated_since", since),
                    ("after_id", &id.to_string()),
                    ("limit", "20"),
                ],
            ),
            None => format!("{base}/items/keyset?limit=20"),
        };
        let (_, _, body) = get_json(&http, &url).await;
        let page = body["data"].as_array().unwrap();
        got.extend(ids(page, "id"));
        match page.last() {
            Some(last) if page.len() == 20 => {
                after = Some((
                    last["updated_at"].as_str().unwrap().to_string(),
                    last["id"].as_i64().unwrap(),
                ))
            }
            _ => break,
        }
    }
    assert_eq!(got, expected, "keyset");

    // keyset by id only
    let mut got = Vec::new();
    let mut after_id = 0;
    loop {
        let url = format!("{base}/items/keyset?after_id={after_id}&limit=20");
        let (_, _, body) = get_json(&http, &url).await;
        let page = body["data"].as_array().unwrap();
        got.extend(ids(page, "id"));
        match page.last() {
            Some(last) => after_id = last["id"].as_i64().unwrap(),
            None => break,
        }
    }
    assert_eq!(got, expected, "keyset by id");

    // POST search
    let mut got = Vec::new();
    let mut page = 1;
    loop {
        let resp = http
            .post(format!("{base}/items/search"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"page":{page},"page_size":20,"filter":{{}}}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        got.extend(ids(body["items"].as_array().unwrap(), "id"));
        if !body["has_more"].as_bool().unwrap() {
            break;
        }
        page += 1;
    }
    assert_eq!(got, expected, "search");

    // The loop endpoint never advances.
    let (_, _, a) = get_json(&http, &format!("{base}/items/loop?limit=5")).await;
    let c = a["next_cursor"].as_str().unwrap();
    let (_, _, b) = get_json(&http, &format!("{base}/items/loop?limit=5&cursor={c}")).await;
    assert_eq!(a["next_cursor"], b["next_cursor"]);
    assert_eq!(a["data"], b["data"]);
    assert_eq!(b["has_more"], true);
}

#[tokio::test]
async fn rest_windows_single_and_lines() {
    let sim = RestSim::start(100).await; // item i at 2024-01-01T00:00Z + (i-1) min
    let base = sim.base_url();
    let http = reqwest::Client::new();
    let url = url_with(
        &format!("{base}/items/offset"),
        &[
            ("updated_since", "2024-01-01T00:10:00Z"),
            ("updated_before", "2024-01-01T00:20:00Z"),
            ("limit", "100"),
        ],
    );
    let (_, _, body) = get_json(&http, &url).await;
    assert_eq!(
        ids(body["data"].as_array().unwrap(), "id"),
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(body["total"], 10);
    assert_eq!(body["data"][0]["updated_at"], "2024-01-01T00:10:00Z");

    // Only updated_since on keyset: inclusive.
    let url = url_with(
        &format!("{base}/items/keyset"),
        &[("updated_since", "2024-01-01T01:00:00Z")],
    );
    let (_, _, body) = get_json(&http, &url).await;
    assert_eq!(
        ids(body["data"].as_array().unwrap(), "id"),
        (61..=100).collect::<Vec<_>>()
    );

    let (status, _, body) = get_json(&http, &format!("{base}/items/single")).await;
    assert_eq!(status, 200);
    assert_eq!(body["item"]["id"], 1);
    let (_, _, body) = get_json(&http, &format!("{base}/items/single?id=42")).await;
    assert_eq!(body["item"]["name"], "item 42");

    for id in [1, 2, 3] {
        let (status, _, body) = get_json(&http, &format!("{base}/items/{id}/lines")).await;
        assert_eq!(status, 200);
        let lines = body["data"].as_array().unwrap();
        assert!((2..=3).contains(&lines.len()));
        assert!(lines.iter().all(|l| l["item_id"] == id));
    }
    let (status, _, _) = get_json(&http, &format!("{base}/items/9999/lines")).await;
    assert_eq!(status, 404);

    // Bad input is a 400, never a crash.
    for bad in [
        "/items/offset?limit=-1",
        "/items/offset?limit=0",
        "/items/page?page=0",
        "/items/cursor?cursor=%25%25",
        "/items/offset?updated_since=yesterday",
        "/items/keyset?after_id=x",
    ] {
        let (status, _, body) = get_json(&http, &format!("{base}{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let resp = http
        .post(format!("{base}/items/search"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn rest_deletion_log_lists_removals_in_order_after_a_sequence_number() {
    let sim = RestSim::start(5).await;
    sim.set_now(utc("2024-02-01T00:00:00Z"));
    let base = sim.base_url();
    let http = reqwest::Client::new();
    let (_, _, body) = get_json(&http, &format!("{base}/items/deleted")).await;
    assert_eq!(body, serde_json::json!({"data": []}));
    assert!(sim.remove(4));
    assert!(sim.remove(2));
    assert!(!sim.remove(2), "a second removal logs nothing");
    let (_, _, body) = get_json(&http, &format!("{base}/items/deleted")).await;
    assert_eq!(
        body["data"],
        serde_json::json!([
            {"seq": 1, "id": 4, "deleted_at": "2024-02-01T00:00:00Z"},
            {"seq": 2, "id": 2, "deleted_at": "2024-02-01T00:00:00Z"},
        ])
    );
    let (_, _, body) = get_json(&http, &format!("{base}/items/deleted?after=1&limit=5")).await;
    assert_eq!(ids(body["data"].as_array().unwrap(), "id"), vec![2]);
    let (_, _, body) = get_json(&http, &format!("{base}/items/keyset?after_id=0")).await;
    assert_eq!(ids(body["data"].as_array().unwrap(), "id"), vec![1, 3, 5]);
    let (status, _, _) = get_json(&http, &format!("{base}/items/deleted?after=x")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn rest_static_auth_modes_reject_without_echoing_secrets() {
    let http = reqwest::Client::new();
    let cases = [
        RestAuth::Basic {
            username: "u".into(),
            password: "pw-123".into(),
        },
        RestAuth::Bearer {
            token: "tok-123".into(),
        },
        RestAuth::ApiKeyHeader {
            key: "key-123".into(),
        },
        RestAuth::ApiKeyQuery {
            key: "key-456".into(),
        },
    ];
    for auth in cases {
        let sim = RestSim::start_with(RestSimConfig {
            items: 3,
            auth: auth.clone(),
            ..RestSimConfig::default()
        })
        .await;
        let url = format!("{}/items/offset", sim.base_url());
        let (good, bad) = match &auth {
            RestAuth::Basic { password, .. } => (
                http.get(&url).basic_auth("u", Some(password)),
                http.get(&url).basic_auth("u", Some("guess-wrong")),
            ),
            RestAuth::Bearer { token } => (
                http.get(&url).bearer_auth(token),
                http.get(&url).bearer_auth("guess-wrong"),
            ),
            RestAuth::ApiKeyHeader { key } => (
                http.get(&url).header("X-API-Key", key),
                http.get(&url).header("X-API-Key", "guess-wrong"),
            ),
            RestAuth::ApiKeyQuery { key } => (
                http.get(format!("{url}?api_key={key}")),
                http.get(format!("{url}?api_key=guess-wrong")),
            ),
            _ => unreachable!(),
        };
        let resp = good.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{auth:?}");
        let resp = bad.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("\"error\""), "{text}");
        assert!(!text.contains("guess-wrong"), "{text}");
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?} without credentials");
        assert!(
            !format!("{auth:?}").contains("123"),
            "Debug redacts secrets"
        );
    }
}

async fn fetch_token(http: &reqwest::Client, base: &str, secret: &str) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id=app&client_secret={secret}"
        ))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn rest_oauth_tokens_expire_and_are_renewed() {
    let sim = RestSim::start_with(RestSimConfig {
        items: 5,
        auth: RestAuth::OAuth2 {
            client_id: "app".into(),
            client_secret: "shh".into(),
            token_lifetime: Duration::from_secs(3600),
        },
        ..RestSimConfig::default()
    })
    .await;
    let base = sim.base_url();
    let http = reqwest::Client::new();
    let data = format!("{base}/items/offset");

    let (status, body) = fetch_token(&http, &base, "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(sim.tokens_issued(), 0);

    let (status, body) = fetch_token(&http, &base, "shh").await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_string();
    let resp = http.get(&data).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    sim.expire_tokens_now();
    let resp = http.get(&data).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("invalid_token") && !text.contains(&token),
        "{text}"
    );

    // Client credentials by HTTP Basic work too.
    let resp = http
        .post(format!("{base}/oauth/token"))
        .basic_auth("app", Some("shh"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let fresh = body["access_token"].as_str().unwrap();
    assert_ne!(fresh, token);
    let resp = http.get(&data).bearer_auth(fresh).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(sim.tokens_issued(), 2);

    // A zero lifetime: expired at once.
    sim.set_auth(RestAuth::OAuth2 {
        client_id: "app".into(),
        client_secret: "shh".into(),
        token_lifetime: Duration::ZERO,
    });
    let (_, body) = fetch_token(&http, &base, "shh").await;
    let short = body["access_token"].as_str().unwrap();
    let resp = http.get(&data).bearer_auth(short).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn rest_faults() {
    let sim = RestSim::start(50).await;
    let base = sim.base_url();
    let http = reqwest::Client::new();

    sim.fail_when_limit_above(100, 504);
    let (status, _, body) = get_json(&http, &format!("{base}/items/offset?limit=500")).await;
    assert_eq!(status, 504, "{body}");
    let (status, _, _) = get_json(&http, &format!("{base}/items/page?per_page=101")).await;
    assert_eq!(status, 504);
    let (status, _, _) = get_json(&http, &format!("{base}/items/offset?limit=100")).await;
    assert_eq!(status, 200);

    sim.fail_next(2, 429, Some(3));
    for _ in 0..2 {
        let resp = http
            .get(format!("{base}/items/offset"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()["retry-after"], "3");
    }
    sim.truncate_next(1);
    let resp = http
        .get(format!("{base}/items/cursor"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).is_err());
    let (status, _, body) = get_json(&http, &format!("{base}/items/cursor")).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 50);

    sim.slow_next(1, Duration::from_millis(250));
    let started = Instant::now();
    let (status, _, _) = get_json(&http, &format!("{base}/items/single")).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(250));

    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![504, 504, 200, 429, 429, 200, 200, 200]);
    assert_eq!(sim.requests()[0].param("limit"), Some("500"));
}

#[tokio::test]
async fn rest_modify_during_paging() {
    // Unreturned: the modified items leave the window and a later one has them.
    let sim = RestSim::start(100).await;
    sim.set_now(utc("2025-01-01T00:00:00Z"));
    sim.modify_during_paging(3);
    let base = sim.base_url();
    let http = reqwest::Client::new();
    let page_window = |since: &'static str, before: Option<&'static str>| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let mut got = Vec::new();
            let mut offset = 0;
            loop {
                let (o, mut params) = (offset.to_string(), vec![("updated_since", since)]);
                if let Some(b) = before {
                    params.push(("updated_before", b));
                }
                params.push(("offset", &o));
                params.push(("limit", "10"));
                let url = url_with(&format!("{base}/items/offset"), &params);
                let (status, _, body) = get_json(&http, &url).await;
                assert_eq!(status, 200);
                let page = body["data"].as_array().unwrap();
                got.extend(ids(page, "id"));
                if page.len() < 10 {
                    return got;
                }
                offset += 10;
            }
        }
    };
    let seen = page_window("2024-01-01T00:00:00Z", Some("2024-06-01T00:00:00Z")).await;
    assert!(seen.len() < 100);
    let moved: Vec<Value> = sim
        .items()
        .into_iter()
        .filter(|v| !seen.contains(&v["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(seen.len() + moved.len(), 100);
    assert!(moved
        .iter()
        .all(|v| v["updated_at"] == "2025-01-01T00:00:00Z" && v["version"] == 2));
    sim.modify_during_paging(0);
    let later = page_window("2024-06-01T00:00:00Z", None).await;
    assert_eq!(later.len(), moved.len());

    // Returned: never-modified items are skipped by offset paging...
    let sim2 = RestSim::start(100).await;
    sim2.set_now(utc("2025-01-01T00:00:00Z"));
    sim2.modify_returned_during_paging(3);
    let base2 = sim2.base_url();
    let mut seen = BTreeSet::new();
    let mut offset = 0;
    loop {
        let url = format!(
            "{base2}/items/offset?offset={offset}&limit=10&updated_before=2024-06-01T00:00:00Z"
        );
        let (_, _, body) = get_json(&http, &url).await;
        let page = body["data"].as_array().unwrap();
        seen.extend(ids(page, "id"));
        if page.len() < 10 {
            break;
        }
        offset += 10;
    }
    let skipped = sim2
        .items()
        .into_iter()
        .filter(|v| v["version"] == 1 && !seen.contains(&v["id"].as_i64().unwrap()))
        .count();
    assert!(skipped > 0, "offset paging should skip unmodified items");

    // ...but not by keyset paging under the same edits.
    let sim3 = RestSim::start(100).await;
    sim3.set_now(utc("2025-01-01T00:00:00Z"));
    sim3.modify_returned_during_paging(3);
    let base3 = sim3.base_url();
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base3}/items/cursor?limit=10&updated_before=2024-06-01T00:00:00Z");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (_, _, body) = get_json(&http, &url).await;
        seen.extend(ids(body["data"].as_array().unwrap(), "id"));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let missed = sim3
        .items()
        .into_iter()
        .filter(|v| v["version"] == 1 && !seen.contains(&v["id"].as_i64().unwrap()))
        .count();
    assert_eq!(missed, 0, "keyset paging skips nothing");
}

#[tokio::test]
async fn rest_serves_a_large_dataset_in_big_pages() {
    let sim = RestSim::start_bench(100_000, 1000).await;
    let http = reqwest::Client::new();
    let url = format!("{}/items/offset?offset=99000&limit=1000", sim.base_url());
    let (status, _, body) = get_json(&http, &url).await;
    assert_eq!(status, 200);
    assert_eq!(body["total"], 100_000);
    let page = body["data"].as_array().unwrap();
    assert_eq!(page.len(), 1000);
    assert_eq!(page[999]["id"], 100_000);
}
