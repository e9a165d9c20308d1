//! The system's TLS roots, read one certificate at a time when a chain is
//! verified instead of whole for every TLS context.
//!
//! Every TLS client in the process (reqwest, sqlx, the MQTT and WebSocket
//! sources) builds its context with native-tls on the system OpenSSL, which
//! parses the whole CA bundle (~140 certificates) twice per context: once
//! for OpenSSL's default file and once for the file openssl-probe found,
//! the same file. sqlx builds a context per connection, the HTTP client at
//! start even for `http://` URLs, so a run that moves nothing spent most of
//! its time there (issue 25: 48% of a no-change PostgreSQL run in libcrypto,
//! 0.03–0.06 s of an HTTP one), and a `sslmode=prefer` connection never
//! verifies a certificate at all.
//!
//! OpenSSL's other lookup, the hashed directory (`/etc/ssl/certs` with its
//! `<hash>.0` links), holds the same certificates and reads only the one an
//! issuer name asks for, when verification asks for it. native-tls already
//! adds that directory; pointing the default file at an empty one leaves it
//! as the only source, so trust is what it was, loaded lazily.
//!
//! Only where a hashed directory exists, and only when `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` are unset or name that same system store (the bundle
//! inside the directory, the directory itself: many images export them so);
//! any other value, a private CA's file or directory, is left as given.

use std::path::Path;

/// Where distributions keep the hashed directory (openssl-probe's list).
const HASHED_DIRS: &[&str] = &[
    "/etc/ssl/certs",
    "/etc/pki/tls/certs",
    "/etc/openssl/certs",
    "/usr/local/share/certs",
    "/var/ssl/certs",
];

/// An existing file without certificates: OpenSSL loads nothing from it.
const EMPTY: &str = "/dev/null";

/// Must run before any other thread starts (it sets environment variables).
pub fn defer_loading() {
    let Some(dir) = HASHED_DIRS
        .iter()
        .copied()
        .find(|d| is_hashed(Path::new(d)))
    else {
        return;
    };
    let same = |p: &Path| p.canonicalize().ok() == Path::new(dir).canonicalize().ok();
    let file_is_system =
        std::env::var_os("SSL_CERT_FILE").is_none_or(|f| Path::new(&f).parent().is_some_and(same));
    let dir_is_system = std::env::var_os("SSL_CERT_DIR").is_none_or(|d| same(Path::new(&d)));
    if !file_is_system || !dir_is_system {
        return;
    }
    if !Path::new(EMPTY).exists() {
        return;
    }
    std::env::set_var("SSL_CERT_DIR", dir);
    std::env::set_var("SSL_CERT_FILE", EMPTY);
}

/// Whether `dir` has OpenSSL's `<8 hex digits>.<n>` links.
fn is_hashed(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        match name.split_once('.') {
            Some((hash, n)) => {
                hash.len() == 8
                    && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    && !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
            }
            None => false,
        }
    })
}
