//! Secrets that cannot leak through `Debug`, `Display` or serialization, and a
//! process-wide redactor that scrubs known secret values from any text (log
//! lines, error messages, HTTP responses) as a backstop.

use std::fmt;
use std::sync::{OnceLock, RwLock};

const MASK: &str = "***";

/// A URL for messages and `Debug`: the user-info password, query values
/// named like a password (`sslpassword`) and query values holding a
/// registered secret (an API key) become `***`; the rest of the text is then
/// passed through [`redact`]. Query values are checked decoded, so a
/// percent-encoded key is caught too; the query is re-encoded only when a
/// value was masked.
pub fn mask_url(url: &url::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        // Only fails for URLs that cannot have credentials, which have none.
        let _ = url.set_password(Some(MASK));
    }
    if url.query().is_some() {
        let mut masked_any = false;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = k.to_ascii_lowercase().contains("password") || redact(&v) != v;
                masked_any |= secret;
                let v = if secret {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if masked_any {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    redact(url.as_str())
}

/// A credential. Printing it in any way shows `***`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value and registers it with the redactor.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The plain value, for the one place that needs it (an auth header, a DSN).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

fn registry() -> &'static RwLock<Vec<String>> {
    static REGISTRY: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Vec::new()))
}

/// Remembers a value that must never be shown. Very short values are ignored:
/// masking every `a` in a log would make logs unreadable and protect nothing.
pub fn register(value: &str) {
    if value.len() < 4 {
        return;
    }
    let mut secrets = registry().write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_string());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Replaces every registered secret in `text` with `***`.
pub fn redact(text: &str) -> String {
    let secrets = registry().read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_no_password_no_password_parameter_and_no_registered_key() {
        register("key-a9f3e1");
        let url = url::Url::parse(
            "postgres://loader:pw-123456@db:5432/w?sslmode=require&sslpassword=x&k=key%2Da9f3e1",
        )
        .unwrap();
        assert_eq!(
            mask_url(&url),
            "postgres://loader:***@db:5432/w?sslmode=require&sslpassword=***&k=***"
        );
        // Nothing to mask: the query keeps its original encoding.
        let plain = url::Url::parse("https://api.example.com/x?q=a%20b&page=2").unwrap();
        assert_eq!(mask_url(&plain), "https://api.example.com/x?q=a%20b&page=2");
    }

    #[test]
    fn secrets_never_print_and_are_redacted_from_text() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2-very-secret");
        assert_eq!(
            redact("auth failed for hunter2-very-secret at host"),
            "auth failed for *** at host"
        );
    }
}
