//! The WebSocket feed simulator for `bench/streaming.sh`, and the baseline
//! client it is measured against.
//!
//! ```text
//! wssim serve --total N [--bytes B] [--port P]   # first stdout line: ws://127.0.0.1:PORT/feed
//! wssim read URL N OUT                           # read N messages, append each as a line to OUT
//! ```
//!
//! `read` is the baseline: the same transport with no parsing, no
//! checkpoints and no fsync, only the bytes written out.

use futures::StreamExt;
use std::io::Write as _;
use tokio_tungstenite::tungstenite::Message;
use tributary_testkit::sim::websocket::{WsSim, WsSimConfig};

const USAGE: &str = "usage: wssim serve --total N [--bytes B] [--port P] | wssim read URL N OUT";

fn number(v: Option<String>, what: &str) -> Result<u64, String> {
    v.ok_or_else(|| format!("{what} is missing\n{USAGE}"))?
        .parse()
        .map_err(|_| format!("{what}: not a number\n{USAGE}"))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("{e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("serve") => {
            let mut config = WsSimConfig {
                total: 1_000_000,
                message_bytes: 100,
                ..WsSimConfig::default()
            };
            let mut port = 0;
            while let Some(flag) = args.next() {
                let value = number(args.next(), &flag)?;
                match flag.as_str() {
                    "--total" => config.total = value,
                    "--bytes" => config.message_bytes = value as usize,
                    "--port" => port = value as u16,
                    other => return Err(format!("unknown flag {other}\n{USAGE}")),
                }
            }
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string())?;
            let sim = WsSim::serve(listener, config);
            println!("{}", sim.url());
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            std::future::pending::<()>().await;
            Ok(())
        }
        Some("read") => {
            let url = args.next().ok_or(USAGE)?;
            let n = number(args.next(), "N")?;
            let out = args.next().ok_or(USAGE)?;
            let file = std::fs::File::create(&out).map_err(|e| e.to_string())?;
            let mut file = std::io::BufWriter::with_capacity(256 << 10, file);
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let mut seen = 0;
            while seen < n {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        file.write_all(t.as_bytes()).map_err(|e| e.to_string())?;
                        file.write_all(b"\n").map_err(|e| e.to_string())?;
                        seen += 1;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err(format!("closed after {seen} messages")),
                }
            }
            file.flush().map_err(|e| e.to_string())?;
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    }
}
