//! MQTT topic filters: validation and matching (`+` one level, `#` the rest).
//! The broker already filters what it sends; matching here only decides
//! which mapping (and so which target) a message belongs to.

/// Why a filter is invalid, per MQTT 3.1.1 §4.7 / MQTT 5 §4.7.
pub(crate) fn check_filter(filter: &str) -> Result<(), String> {
    let inner = strip_share(filter)?;
    if inner.is_empty() {
        return Err("a topic filter must not be empty".into());
    }
    let levels: Vec<&str> = inner.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "`{filter}`: `#` must be a whole level and the last one (e.g. `sensors/#`)"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "`{filter}`: `+` must be a whole level (e.g. `sensors/+/temp`)"
            ));
        }
    }
    Ok(())
}

/// `$share/{group}/{filter}` subscribes to `{filter}`.
fn strip_share(filter: &str) -> Result<&str, String> {
    match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, inner)) if !group.is_empty() => Ok(inner),
            _ => Err(format!(
                "`{filter}`: a shared subscription is `$share/GROUP/FILTER`"
            )),
        },
        None => Ok(filter),
    }
}

/// Whether `topic` matches `filter`. Topics starting with `$` (broker
/// internals) match only filters that name their first level.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    let filter = strip_share(filter).unwrap_or(filter);
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    let mut first = true;
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return !(first && topic.starts_with('$')),
            (Some("+"), Some(_)) => {
                if first && topic.starts_with('$') {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_the_spec_says() {
        assert!(matches("sensors/+/temp", "sensors/a/temp"));
        assert!(!matches("sensors/+/temp", "sensors/a/b/temp"));
        assert!(!matches("sensors/+/temp", "sensors/temp"));
        assert!(matches("sensors/#", "sensors"));
        assert!(matches("sensors/#", "sensors/a/b"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("a/+", "a/"));
        assert!(matches("$share/g/a/+", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn malformed_filters_are_refused() {
        assert!(check_filter("a/#/b").is_err());
        assert!(check_filter("a/b#").is_err());
        assert!(check_filter("a/+b").is_err());
        assert!(check_filter("").is_err());
        assert!(check_filter("$share//a").is_err());
        assert!(check_filter("a/+/#").is_ok());
    }
}
