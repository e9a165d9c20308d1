//! Runs the paginated REST simulator until killed.
//!
//! ```text
//! restsim [--items N] [--port P] [--page-size N] [--max-page-size N] [--step-secs S]
//! ```
//!
//! The first line on stdout is the base URL, `http://127.0.0.1:PORT`.

use std::io::Write as _;
use std::net::SocketAddr;
use tributary_testkit::sim::{RestSim, RestSimConfig};

const USAGE: &str =
    "usage: restsim [--items N] [--port P] [--page-size N] [--max-page-size N] [--step-secs S]";

fn parse_args() -> Result<RestSimConfig, String> {
    let mut config = RestSimConfig {
        items: 1000,
        ..RestSimConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{flag}: not a number: {v}\n{USAGE}"))
        };
        match flag.as_str() {
            "--items" => config.items = number(&value)? as usize,
            "--port" => {
                let port = u16::try_from(number(&value)?)
                    .map_err(|_| format!("--port: out of range: {value}"))?;
                config.addr = SocketAddr::from(([127, 0, 0, 1], port));
            }
            "--page-size" => config.default_page_size = number(&value)? as usize,
            "--max-page-size" => config.max_page_size = number(&value)? as usize,
            "--step-secs" => {
                config.step = chrono::Duration::seconds(
                    i64::try_from(number(&value)?).map_err(|_| "--step-secs: too large")?,
                )
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() {
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let items = config.items;
    let sim = match RestSim::try_start_with(config).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("restsim: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", sim.base_url());
    let _ = out.flush();
    drop(out);
    eprintln!("restsim: serving {items} items at {}", sim.base_url());
    std::future::pending::<()>().await;
}
