//! A real headless Chromium driven over W3C WebDriver (Debian's `chromium`
//! and `chromium-driver`, installed by `scripts/setup`), for tests that check
//! what a person sees on a page.
//!
//! The protocol is a handful of JSON requests, spoken here with reqwest
//! rather than through a WebDriver crate, to keep the test build small.
//! Page state is read with one script (`innerText`, the rendered text) so a
//! page that re-renders itself never leaves a stale element in our hands.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port for chromedriver")
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session
    /// with a fresh profile. Panics with the fix when the tools are missing.
    pub fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/setup installs it)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            rt,
            _profile: profile,
        };
        let start = Instant::now();
        loop {
            let ready = browser
                .call(reqwest::Method::GET, "/status", None)
                .ok()
                .and_then(|v| v["ready"].as_bool())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not become ready on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = browser._profile.path().display().to_string();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,900",
                    format!("--user-data-dir={profile}"),
                ]
            }
        }}});
        let created = browser
            .call(reqwest::Method::POST, "/session", Some(caps))
            .unwrap_or_else(|e| panic!("chromium did not start: {e}"));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`, or the driver's error message.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method, &url)
                .timeout(Duration::from_secs(60));
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(v["value"].clone())
            } else {
                Err(format!("{status}: {}", v["value"]))
            }
        })
    }

    pub fn goto(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/session/{}/url", self.session),
            Some(json!({ "url": url })),
        )
        .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    }

    /// Runs `script` (a function body that `return`s JSON) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            &format!("/session/{}/execute/sync", self.session),
            Some(json!({ "script": script, "args": [] })),
        )
        .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// The rendered text of every element matching `css`, as a person reads it.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let script = format!(
            "return Array.from(document.querySelectorAll({})).map(e => e.innerText);",
            Value::String(css.to_string())
        );
        match self.eval(&script) {
            Value::Array(a) => a
                .into_iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Polls every 200 ms until `cond` holds, for up to `timeout`; the panic
    /// shows what the page said last.
    pub fn wait_for(&self, timeout: Duration, what: &str, mut cond: impl FnMut(&Browser) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > timeout {
                let body = self.texts("body").join("\n");
                panic!("timed out after {timeout:?} waiting for {what}; the page shows:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call(
                reqwest::Method::DELETE,
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
