//! The MQTT side of `bench/streaming.sh`: a paced QoS 1 publisher whose
//! messages carry their publish time, a baseline subscriber, and the
//! latency report.
//!
//! ```text
//! mqttbench publish TOPIC N RATE          # N messages at RATE/s: {"n": i, "id": i, "ts": unix ms}
//! mqttbench subscribe TOPIC N             # baseline: QoS 1 subscriber (auto acks), prints latencies
//! mqttbench latency FIELD FILE...         # p50/p99/max of FIELD - ts over NDJSON lines
//! ```

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::io::BufRead as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str =
    "usage: mqttbench publish TOPIC N RATE | subscribe TOPIC N | latency FIELD FILE...";

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn options(name: &str) -> MqttOptions {
    let mut o = MqttOptions::new(tributary_testkit::mqtt::unique(name), "127.0.0.1", 1883);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_outgoing_inflight_upper_limit(2000);
    o.set_receive_maximum(Some(u16::MAX));
    o
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("publish") if args.len() == 4 => {
            publish(
                &args[1],
                args[2].parse().unwrap_or(0),
                args[3].parse().unwrap_or(1),
            )
            .await
        }
        Some("subscribe") if args.len() == 3 => {
            subscribe(&args[1], args[2].parse().unwrap_or(0)).await
        }
        Some("latency") if args.len() >= 3 => latency(&args[1], &args[2..]),
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(2);
    }
}

/// Publishes in ticks of 1 ms so the rate holds without bursts.
async fn publish(topic: &str, n: u64, rate: u64) -> Result<(), String> {
    let (client, mut eventloop) = AsyncClient::new(options("pub"), 10_000);
    let driver = tokio::spawn(async move {
        let mut acked = 0u64;
        while acked < n {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    });
    let start = Instant::now();
    for i in 1..=n {
        let due = start + Duration::from_secs_f64((i - 1) as f64 / rate as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let payload = format!("{{\"n\":{i},\"id\":{i},\"ts\":{:.3}}}", now_ms());
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
    }
    driver.await.map_err(|e| e.to_string())??;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("published {n} in {secs:.2}s ({:.0}/s)", n as f64 / secs);
    Ok(())
}

/// The baseline: a QoS 1 subscriber that acknowledges at once and keeps nothing.
async fn subscribe(topic: &str, n: u64) -> Result<(), String> {
    let (client, mut eventloop) = AsyncClient::new(options("sub"), 10_000);
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let mut latencies = Vec::with_capacity(n as usize);
    let mut first: Option<Instant> = None;
    while (latencies.len() as u64) < n {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => println!("subscribed"),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                first.get_or_insert_with(Instant::now);
                let v: serde_json::Value =
                    serde_json::from_slice(&p.payload).map_err(|e| e.to_string())?;
                latencies.push(now_ms() - v["ts"].as_f64().unwrap_or(0.0));
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    eprintln!("received {n} in {secs:.2}s");
    report(latencies);
    Ok(())
}

fn latency(field: &str, files: &[String]) -> Result<(), String> {
    let mut latencies = Vec::new();
    for f in files {
        let file = std::fs::File::open(f).map_err(|e| format!("{f}: {e}"))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            if let (Some(at), Some(ts)) = (v[field].as_f64(), v["ts"].as_f64()) {
                latencies.push(at - ts);
            }
        }
    }
    report(latencies);
    Ok(())
}

fn report(mut l: Vec<f64>) {
    if l.is_empty() {
        println!("no samples");
        return;
    }
    l.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "samples {} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        l.len(),
        at(0.5),
        at(0.99),
        l[l.len() - 1]
    );
}
