//! Secrets that cannot leak through `Debug`, `Display` or serialization, and a
//! process-wide redactor that scrubs known secret values from any text (log
//! lines, error messages, HTTP responses) as a backstop.
//!
//! The redactor masks a secret only where it is the secret: the password of
//! any `scheme://user:password@host` in the text (found by its structure, so
//! whatever the password is), and registered values by substring only when
//! they are distinctive. A password that reads as one ordinary word
//! (`postgres`, `admin`) would otherwise turn every occurrence of that word
//! (the URL scheme, the user name, a database name) into `***` and make the
//! message useless while protecting nothing the structure does not.

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

    /// Wraps a value that may be a whole URL or DSN (`url = "${DATABASE_URL}"`):
    /// only its credentials are registered ([`register_credentials`]), so
    /// the host, database and user stay readable in messages.
    pub fn credentials_of(value: impl Into<String>) -> Self {
        let value = value.into();
        register_credentials(&value);
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

/// Remembers a value that must never be shown. Values that are not
/// [distinctive](is_distinctive) are not kept: masking every `a` or every
/// `postgres` in a log would make logs unreadable and protect nothing.
pub fn register(value: &str) {
    if !is_distinctive(value) {
        return;
    }
    let mut secrets = registry().write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_string());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Registers what is secret in a value that may be a URL: the password
/// (as written and percent-decoded) and query values named like a password
/// of a `scheme://...` URL; any other value whole.
pub fn register_credentials(value: &str) {
    let parsed = url::Url::parse(value)
        .ok()
        .filter(|u| u.has_host() && value.contains("://"));
    let Some(parsed) = parsed else {
        register(value);
        return;
    };
    if let Some(pw) = parsed.password() {
        register(pw);
        if let Ok(decoded) = percent_encoding::percent_decode_str(pw).decode_utf8() {
            register(&decoded);
        }
    }
    for (k, v) in parsed.query_pairs() {
        if k.to_ascii_lowercase().contains("password") || k.eq_ignore_ascii_case("token") {
            register(&v);
        }
    }
}

/// Whether a secret can be masked by substring without masking ordinary
/// text: anything but one plain word (letters only, at most 12, with no
/// capital after the first), a very short value, or a whole URL (whose
/// password is masked by structure). The others are masked by structure
/// only (URL passwords, [`Secret`]'s own `Display`).
pub fn is_distinctive(value: &str) -> bool {
    let plain_word = value.len() <= 12
        && value.chars().all(|c| c.is_ascii_alphabetic())
        && value.chars().skip(1).all(|c| c.is_ascii_lowercase());
    let url = value.contains("://") && url::Url::parse(value).is_ok();
    value.len() >= 4 && !plain_word && !url
}

/// Masks the password of every `scheme://user:password@host` in `text`,
/// whatever the password is (registered or not).
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the path, the query, or where the URL
        // ends in prose.
        let end = tail
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>' | ')' | ','
                    )
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) if colon + 1 < userinfo.len() && &userinfo[colon + 1..] != MASK => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(MASK);
                        out.push_str(&authority[at..]);
                    }
                    _ => out.push_str(authority),
                }
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks URL passwords in `text`, then every distinctive registered secret.
pub fn redact(text: &str) -> String {
    let mut out = mask_url_passwords(text);
    let secrets = registry().read().unwrap_or_else(|e| e.into_inner());
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
    fn only_the_password_of_a_url_is_masked_even_when_it_is_a_common_word() {
        register("postgres");
        register_credentials("postgres://loader:Pw-77x%40y@db.internal:5432/shop");
        assert_eq!(
            redact("connecting to postgres://postgres:postgres@127.0.0.1:5432/nosuchdb: refused"),
            "connecting to postgres://postgres:***@127.0.0.1:5432/nosuchdb: refused"
        );
        assert_eq!(
            redact("user postgres has no CREATE on schema public"),
            "user postgres has no CREATE on schema public"
        );
        // The URL's host, user and database stay; its password (both
        // spellings) is masked wherever it appears.
        assert_eq!(
            redact("cannot query loader@db.internal:5432/shop with Pw-77x@y or Pw-77x%40y"),
            "cannot query loader@db.internal:5432/shop with *** or ***"
        );
        assert_eq!(
            redact("kafka://u:s3cret@broker:9092/t and https://host/x?q=1"),
            "kafka://u:***@broker:9092/t and https://host/x?q=1"
        );
        assert!(is_distinctive("hunter2"));
        assert!(is_distinctive("CorrectHorse"));
        assert!(!is_distinctive("postgres"));
        assert!(!is_distinctive("Admin"));
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
