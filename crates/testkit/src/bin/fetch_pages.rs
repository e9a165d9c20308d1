//! Benchmark baseline: fetches every page of the REST simulator's offset
//! endpoint sequentially and only reads the body bytes.
//!
//! ```text
//! fetch_pages URL PAGE_SIZE      # URL = http://127.0.0.1:PORT/items/offset
//! ```
//!
//! The record count comes from `"total":N` in the first page; every later
//! page is counted as `min(PAGE_SIZE, remaining)`.

use std::time::Instant;

/// `N` of the last `"total":N` in `body`.
fn total_of(body: &[u8]) -> Option<u64> {
    let key = b"\"total\":";
    let at = body.windows(key.len()).rposition(|w| w == key)? + key.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let full = format!("{url}{sep}offset={offset}&limit={limit}");
    let resp = client
        .get(&full)
        .send()
        .await
        .map_err(|e| format!("GET {full}: {e}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("GET {full}: reading body: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {full}: HTTP {status}"));
    }
    Ok(body.to_vec())
}

async fn run(url: &str, page_size: u64) -> Result<(), String> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let first = fetch(&client, url, 0, page_size).await?;
    let total = total_of(&first).ok_or("no \"total\" in the first page")?;
    let mut bytes = first.len() as u64;
    let mut pages = 1u64;
    let mut offset = page_size;
    while offset < total {
        bytes += fetch(&client, url, offset, page_size).await?.len() as u64;
        pages += 1;
        offset += page_size;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "records={total} pages={pages} bytes={bytes} secs={secs:.3} records_per_sec={:.0} mib_per_sec={:.1}",
        total as f64 / secs,
        bytes as f64 / secs / (1024.0 * 1024.0)
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, page_size) = match args.as_slice() {
        [url, size] => match size.parse::<u64>() {
            Ok(n) if n > 0 => (url.clone(), n),
            _ => {
                eprintln!("PAGE_SIZE must be a positive integer");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!(
                "usage: fetch_pages URL PAGE_SIZE   (URL = http://127.0.0.1:PORT/items/offset)"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&url, page_size).await {
        eprintln!("fetch_pages: {e}");
        std::process::exit(1);
    }
}
