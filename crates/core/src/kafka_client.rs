//! Checks on librdkafka client properties shared by every Kafka client of
//! the workspace (source, sink, state store), made before librdkafka sees
//! them so the error can name the config key.

/// A SASL `security.protocol` without `sasl.mechanism`: librdkafka would
/// fall back to GSSAPI (Kerberos) and fail with "No provider for SASL
/// mechanism GSSAPI", which names no key and no fix.
pub fn sasl_problem(protocol: Option<&str>, mechanism: Option<&str>) -> Option<String> {
    let protocol = protocol?;
    let sasl = protocol.to_ascii_uppercase().starts_with("SASL_");
    if !sasl || mechanism.is_some_and(|m| !m.trim().is_empty()) {
        return None;
    }
    Some(format!(
        "`security.protocol = {protocol}` needs `sasl.mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER); without it librdkafka tries Kerberos (GSSAPI)"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sasl_without_a_mechanism_is_named() {
        use super::sasl_problem;
        assert!(sasl_problem(Some("SASL_SSL"), None).is_some());
        assert!(sasl_problem(Some("sasl_plaintext"), Some(" ")).is_some());
        assert!(sasl_problem(Some("SASL_SSL"), Some("PLAIN")).is_none());
        assert!(sasl_problem(Some("SSL"), None).is_none());
        assert!(sasl_problem(None, None).is_none());
    }
}
