//! `{{ path }}` substitution for URLs, query params, headers and request bodies.
//!
//! Templates are parsed once, when the config is loaded, so a typo such as an
//! unclosed `{{` is a config error naming the template, not a failure at the
//! first request hours later. Rendering looks the paths up in one JSON
//! context that the reader assembles (`window`, `parent`, `position`,
//! `config`, ...), which keeps this module ignorant of where values come from.
//!
//! Values are inserted as they are: no URL encoding happens here, because the
//! same template may end up in a header, a body or a query parameter (where
//! `url`'s serializer encodes it anyway).

use serde_json::Value;

use super::records::lookup_dotted;

/// A string with `{{ path }}` placeholders (whitespace inside the braces is
/// optional). Paths are dotted (`window.start`, `parent.id`,
/// `position.cursor`, `config.account`); numeric segments index arrays
/// (`items.0.id`).
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Path(String),
}

/// A placeholder whose path is not in the render context: a config mistake
/// (a misspelt path) or a value the reader has not set yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}` refers to `{path}`, which is not set")]
pub struct TemplateError {
    pub path: String,
    pub template: String,
}

impl Template {
    /// Parses `text`. Errors (an unclosed `{{`, an empty or malformed path)
    /// are messages meant for a config error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!(
                    "template `{text}` has a `{{{{` without a matching `}}}}`"
                ));
            };
            let path = after[..close].trim();
            check_path(path).map_err(|why| format!("template `{text}`: {why}"))?;
            parts.push(Part::Path(path.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// Fills in the placeholders from `ctx`. Strings go in raw, numbers and
    /// booleans as their JSON text, objects and arrays as compact JSON, and
    /// null as nothing (an unset optional value such as the first page's
    /// cursor should not render as the word `null`).
    pub fn render(&self, ctx: &Value) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Path(path) => {
                    let value = lookup_dotted(ctx, path).ok_or_else(|| self.missing(path))?;
                    push_value(&mut out, value);
                }
            }
        }
        Ok(out)
    }

    /// True when there is nothing to substitute, so callers can render once
    /// up front instead of per request.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The placeholder paths, in order of appearance, for config validation
    /// (e.g. rejecting `parent.id` in a stream that has no parent).
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Path(path) => Some(path.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The text the template was parsed from, for messages.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path when the whole template is exactly one placeholder.
    fn sole_placeholder(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Path(path)] => Some(path),
            _ => None,
        }
    }

    fn missing(&self, path: &str) -> TemplateError {
        TemplateError {
            path: path.to_string(),
            template: self.text.clone(),
        }
    }
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("`{{ }}` needs a path, e.g. `{{ window.start }}`".to_string());
    }
    if let Some(bad) = path
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '{' | '}'))
    {
        return Err(format!(
            "`{path}` is not a dotted path (unexpected `{bad}`); write e.g. `{{{{ parent.id }}}}`"
        ));
    }
    if path.split('.').any(str::is_empty) {
        return Err(format!(
            "`{path}` has an empty segment; write e.g. `{{{{ parent.id }}}}`"
        ));
    }
    Ok(())
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        // Display for Value is compact JSON and cannot fail.
        other => out.push_str(&other.to_string()),
    }
}

/// Renders every string inside a JSON value (e.g. a POST body). A string that
/// is exactly one placeholder takes the JSON value at that path, so numbers
/// stay numbers and objects stay objects. Object keys are not templated.
///
/// A string that is not a valid template is kept as it is: bodies are checked
/// with [`json_placeholders`] when the config is loaded, so by now such a
/// string can only be a literal the user meant.
pub fn render_json(value: &Value, ctx: &Value) -> Result<Value, TemplateError> {
    match value {
        Value::String(s) if s.contains("{{") => {
            let Ok(template) = Template::parse(s) else {
                return Ok(value.clone());
            };
            match template.sole_placeholder() {
                Some(path) => lookup_dotted(ctx, path)
                    .cloned()
                    .ok_or_else(|| template.missing(path)),
                None => template.render(ctx).map(Value::String),
            }
        }
        Value::Array(items) => items
            .iter()
            .map(|item| render_json(item, ctx))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (key, item) in map {
                out.insert(key.clone(), render_json(item, ctx)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Every placeholder path in the strings of a JSON value, or the first
/// malformed template: validates a body template at config load.
pub fn json_placeholders(value: &Value) -> Result<Vec<String>, String> {
    fn walk(value: &Value, out: &mut Vec<String>) -> Result<(), String> {
        match value {
            Value::String(s) if s.contains("{{") => {
                let template = Template::parse(s)?;
                out.extend(template.placeholders().map(str::to_string));
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, out)?;
                }
            }
            Value::Object(map) => {
                for item in map.values() {
                    walk(item, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(value, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "window": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"},
            "parent": {"id": 42, "active": true, "tags": ["a", "b"]},
            "position": {"cursor": null},
            "items": [{"id": "first"}, {"id": "second"}],
            "config": {"account": "acme"}
        })
    }

    #[test]
    fn renders_strings_numbers_bools_and_nulls() {
        let t = Template::parse("/accounts/{{config.account}}/orders?since={{ window.start }}")
            .unwrap();
        assert_eq!(
            t.render(&ctx()).unwrap(),
            "/accounts/acme/orders?since=2024-01-01T00:00:00Z"
        );
        let t =
            Template::parse("{{ parent.id }}-{{parent.active}}-[{{ position.cursor }}]").unwrap();
        assert_eq!(t.render(&ctx()).unwrap(), "42-true-[]");
        let t = Template::parse("{{ items.1.id }} {{ parent.tags }}").unwrap();
        assert_eq!(t.render(&ctx()).unwrap(), "second [\"a\",\"b\"]");
    }

    #[test]
    fn static_templates_and_placeholders() {
        let t = Template::parse("https://api.example.com/v1/users").unwrap();
        assert!(t.is_static());
        assert_eq!(t.placeholders().count(), 0);
        assert_eq!(
            t.render(&Value::Null).unwrap(),
            "https://api.example.com/v1/users"
        );
        assert_eq!(t.as_str(), "https://api.example.com/v1/users");

        let t = Template::parse("{{a.b}}x{{  c  }}").unwrap();
        assert!(!t.is_static());
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["a.b", "c"]);
        // A lone closing brace pair is literal text.
        let t = Template::parse("a }} b").unwrap();
        assert!(t.is_static());
        assert_eq!(t.render(&Value::Null).unwrap(), "a }} b");
    }

    #[test]
    fn parse_errors_name_the_template() {
        let err = Template::parse("/x/{{ parent.id").unwrap_err();
        assert!(err.contains("/x/{{ parent.id"), "{err}");
        assert!(err.contains("without a matching"), "{err}");
        let err = Template::parse("/x/{{ }}").unwrap_err();
        assert!(err.contains("needs a path"), "{err}");
        let err = Template::parse("{{ a b }}").unwrap_err();
        assert!(err.contains("not a dotted path"), "{err}");
        let err = Template::parse("{{ a..b }}").unwrap_err();
        assert!(err.contains("empty segment"), "{err}");
    }

    #[test]
    fn a_missing_path_names_the_path_and_the_template() {
        let t = Template::parse("/x/{{ parent.name }}").unwrap();
        let err = t.render(&ctx()).unwrap_err();
        assert_eq!(err.path, "parent.name");
        assert_eq!(err.template, "/x/{{ parent.name }}");
        assert_eq!(
            err.to_string(),
            "template `/x/{{ parent.name }}` refers to `parent.name`, which is not set"
        );
        // Out-of-range index and indexing into a scalar are missing too.
        assert!(Template::parse("{{ items.5.id }}")
            .unwrap()
            .render(&ctx())
            .is_err());
        assert!(Template::parse("{{ parent.id.x }}")
            .unwrap()
            .render(&ctx())
            .is_err());
    }

    #[test]
    fn render_json_keeps_types_for_sole_placeholders() {
        let body = json!({
            "account": "{{ config.account }}",
            "parent": "{{parent.id}}",
            "flags": ["{{ parent.active }}", "id-{{ parent.id }}", 7, null],
            "range": {"from": "{{ window.start }}", "cursor": "{{ position.cursor }}"},
            "literal": "no placeholders",
            "broken": "{{ not closed"
        });
        let out = render_json(&body, &ctx()).unwrap();
        assert_eq!(
            out,
            json!({
                "account": "acme",
                "parent": 42,
                "flags": [true, "id-42", 7, null],
                "range": {"from": "2024-01-01T00:00:00Z", "cursor": null},
                "literal": "no placeholders",
                "broken": "{{ not closed"
            })
        );
        let err = render_json(&json!({"a": ["{{ nope }}"]}), &ctx()).unwrap_err();
        assert_eq!(err.path, "nope");
    }

    #[test]
    fn json_placeholders_validates_bodies() {
        let body = json!({"a": "{{ x.y }}", "b": ["{{z}}-{{ w }}"], "c": 1});
        assert_eq!(json_placeholders(&body).unwrap(), ["x.y", "z", "w"]);
        assert!(json_placeholders(&json!({"a": ["{{ oops"]})).is_err());
    }
}
