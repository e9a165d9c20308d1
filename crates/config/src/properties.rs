//! Client properties passed through to a library as they are written
//! (`[sink.properties]` of the Kafka sink and source: any librdkafka key).
//!
//! Pass-through tables are where credentials end up (`sasl.password`,
//! `ssl.key.password`, `sasl.oauthbearer.client.secret`), and the connector
//! cannot know every key a library accepts. So every value whose key names a
//! credential is registered with the redactor as soon as it is read, and
//! `Debug` shows it as `***`.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use tributary_core::secret;

/// `key = value` pairs; values may be written as strings, integers, floats
/// or booleans and are passed on as their text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties(BTreeMap<String, String>);

impl ClientProperties {
    /// Whether a key's value is a credential: its name says password,
    /// secret, a private key or a JAAS config (which embeds a password).
    pub fn is_sensitive(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        [
            "password",
            "secret",
            "jaas",
            "key.pem",
            "private",
            "token",
            "credential",
        ]
        .iter()
        .any(|w| k.contains(w))
            || k.ends_with(".key")
    }

    /// A SASL protocol without a mechanism, as `(key, message)`; see
    /// [`tributary_core::kafka_client::sasl_problem`].
    pub fn sasl_problem(&self) -> Option<(&'static str, String)> {
        let mechanism = self.get("sasl.mechanism").or(self.get("sasl.mechanisms"));
        tributary_core::kafka_client::sasl_problem(self.get("security.protocol"), mechanism)
            .map(|m| ("security.protocol", m))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        if Self::is_sensitive(&key) {
            secret::register(&value);
        }
        self.0.insert(key, value);
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if Self::is_sensitive(k) {
                m.entry(k, &"***");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl<'de> Deserialize<'de> for ClientProperties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            S(String),
            I(i64),
            F(f64),
            B(bool),
        }
        let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
        let mut out = ClientProperties::default();
        for (k, v) in raw {
            let v = match v {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => b.to_string(),
            };
            out.insert(k, v);
        }
        Ok(out)
    }
}

/// `brokers = "a:9092,b:9092"` or `brokers = ["a:9092", "b:9092"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Brokers {
    List(Vec<String>),
    One(String),
}

impl Brokers {
    /// librdkafka's `bootstrap.servers`: comma-separated, trimmed.
    pub fn joined(&self) -> String {
        match self {
            Brokers::One(s) => s.trim().to_string(),
            Brokers::List(l) => l.iter().map(|s| s.trim()).collect::<Vec<_>>().join(","),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_registered_others_shown() {
        let p: ClientProperties = toml::from_str(
            "\"sasl.password\" = \"pw-0f9e8d7c\"\n\"linger.ms\" = 5\n\"enable.ssl.certificate.verification\" = false\n",
        )
        .unwrap();
        assert_eq!(p.get("linger.ms"), Some("5"));
        assert_eq!(p.get("enable.ssl.certificate.verification"), Some("false"));
        assert_eq!(
            format!("{p:?}"),
            r#"{"enable.ssl.certificate.verification": "false", "linger.ms": "5", "sasl.password": "***"}"#
        );
        assert_eq!(secret::redact("login pw-0f9e8d7c"), "login ***");
        assert!(ClientProperties::is_sensitive("ssl.key.password"));
        assert!(ClientProperties::is_sensitive("sasl.jaas.config"));
        assert!(!ClientProperties::is_sensitive("bootstrap.servers"));
    }
}
