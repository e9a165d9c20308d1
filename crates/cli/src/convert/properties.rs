//! A reader for Java `.properties` files, following the rules of
//! `java.util.Properties::load` that Kafka Connect worker and connector
//! files rely on: `#` and `!` comment lines, `key=value`, `key:value` and
//! `key value` separators, whitespace around keys and separators, backslash
//! line continuations, and the `\:` `\=` `\ ` `\\` `\t` `\n` `\r` `\f`
//! `\uXXXX` escapes (with UTF-16 surrogate pairs).
//!
//! Written by hand: there is no well-kept Rust crate for this. The one that
//! exists, `java-properties` (2.0.0), is not a workspace dependency, brings
//! `regex`, `lazy_static` and `encoding_rs` along, and its `read` returns a
//! `HashMap`, losing the order and lines `tributary convert` reports. The
//! format is small enough to follow exactly here, tested rule by rule below.

/// One `key = value` pair, unescaped, with the line its logical line starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
    /// 1-based.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line where the logical line with the error starts.
    pub line: usize,
    pub message: String,
}

/// Java's whitespace in properties files: space, tab, form feed.
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Every property in file order. A key given twice appears twice; as in Java,
/// the later one wins when the caller collects them into a map.
pub fn parse(text: &str) -> Result<Vec<Property>, ParseError> {
    let mut out = Vec::new();
    let mut lines = natural_lines(text).into_iter();
    while let Some((line, raw)) = lines.next() {
        let first = raw.trim_start_matches(is_ws);
        // A comment line is never continued, even if it ends with `\`.
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = first.to_string();
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                // Leading whitespace of a continuation line is dropped; an
                // empty continuation line ends the logical line.
                Some((_, next)) => logical.push_str(next.trim_start_matches(is_ws)),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push(Property {
            key: unescape(key).map_err(|message| ParseError { line, message })?,
            value: unescape(value).map_err(|message| ParseError { line, message })?,
            line,
        });
    }
    Ok(out)
}

/// Lines ended by `\n`, `\r` or `\r\n`, numbered from 1.
fn natural_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let (mut start, mut i, mut number) = (0, 0, 1);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                out.push((number, &text[start..i]));
                i += 1;
            }
            b'\r' => {
                out.push((number, &text[start..i]));
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
            }
            _ => {
                i += 1;
                continue;
            }
        }
        start = i;
        number += 1;
    }
    if start < text.len() {
        out.push((number, &text[start..]));
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits a logical line (leading whitespace already removed) into its raw,
/// still escaped key and value, as `Properties.load` does: the key ends at
/// the first unescaped `=`, `:` or whitespace; whitespace, then at most one
/// `=` or `:` (if the key did not already end on one), then whitespace
/// separate it from the value. Trailing whitespace belongs to the value.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut key_end = line.len();
    let mut value_start = line.len();
    let mut has_separator = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if !escaped && (c == '=' || c == ':') {
            key_end = i;
            value_start = i + 1;
            has_separator = true;
            break;
        }
        if !escaped && is_ws(c) {
            key_end = i;
            value_start = i + c.len_utf8();
            break;
        }
        escaped = c == '\\' && !escaped;
    }
    let rest = &line[value_start..];
    let mut skip = 0;
    for c in rest.chars() {
        if is_ws(c) {
            skip += c.len_utf8();
        } else if !has_separator && (c == '=' || c == ':') {
            has_separator = true;
            skip += 1;
        } else {
            break;
        }
    }
    (&line[..key_end], &rest[skip..])
}

/// Resolves escapes: `\t` `\n` `\r` `\f`, `\uXXXX` (exactly four hex digits;
/// a surrogate pair of two escapes makes one character), and any other
/// `\c` stands for `c`.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let unit = hex4(&mut chars)?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        let low = match (chars.next(), chars.next()) {
                            (Some('\\'), Some('u')) => hex4(&mut chars)?,
                            _ => return Err(unpaired(unit)),
                        };
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(unpaired(unit));
                        }
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(unpaired(unit)),
                    u => u,
                };
                // Every value outside the surrogate range is a valid char.
                out.extend(char::from_u32(code));
            }
            Some(other) => out.push(other),
            // A lone trailing backslash stands for nothing.
            None => {}
        }
    }
    Ok(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Result<u32, String> {
    let digits: String = chars.by_ref().take(4).collect();
    if digits.len() == 4 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(u32::from_str_radix(&digits, 16).unwrap_or(0))
    } else {
        Err(format!(
            "malformed \\uXXXX escape `\\u{digits}`: expected four hex digits"
        ))
    }
}

fn unpaired(unit: u32) -> String {
    format!("malformed \\uXXXX escape: unpaired UTF-16 surrogate `\\u{unit:04X}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    fn one(text: &str) -> (String, String) {
        let mut all = pairs(text);
        assert_eq!(all.len(), 1, "{text:?} → {all:?}");
        all.remove(0)
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn separators_and_surrounding_whitespace() {
        assert_eq!(one("a=b"), kv("a", "b"));
        assert_eq!(one("a:b"), kv("a", "b"));
        assert_eq!(one("a b"), kv("a", "b"));
        assert_eq!(one("  \t a \t=\t b"), kv("a", "b"));
        assert_eq!(one("a   :   b"), kv("a", "b"));
        // Only one separator is consumed; a second is part of the value.
        assert_eq!(one("a==b"), kv("a", "=b"));
        assert_eq!(one("a = = b"), kv("a", "= b"));
        assert_eq!(one("a b = c"), kv("a", "b = c"));
        // Trailing whitespace is kept, as Java does.
        assert_eq!(one("a=b  "), kv("a", "b  "));
        // A key alone has an empty value.
        assert_eq!(one("lonely"), kv("lonely", ""));
        assert_eq!(one("lonely="), kv("lonely", ""));
        // The value keeps later separators and colons.
        assert_eq!(
            one("initial.datetime=customer:2024-01-01 00:00:00"),
            kv("initial.datetime", "customer:2024-01-01 00:00:00")
        );
    }

    #[test]
    fn comments_and_blank_lines() {
        let text = "# comment\n! also a comment\n   # indented comment\n\n \t \nk=v\n# trailing \\\nnext=1\n";
        assert_eq!(pairs(text), vec![kv("k", "v"), kv("next", "1")]);
        // `#` inside a value is not a comment.
        assert_eq!(one("k=a#b"), kv("k", "a#b"));
    }

    #[test]
    fn continuations() {
        assert_eq!(
            one("list=customer,\\\n    invoice,\\\n\t payment"),
            kv("list", "customer,invoice,payment")
        );
        // A continuation line starting with `#` is not a comment.
        assert_eq!(one("k=a\\\n#b"), kv("k", "a#b"));
        // An even number of backslashes is an escaped backslash, no continuation.
        assert_eq!(pairs("k=a\\\\\nj=b"), vec![kv("k", "a\\"), kv("j", "b")]);
        // Three: an escaped backslash, then a continuation.
        assert_eq!(one("k=a\\\\\\\n  b"), kv("k", "a\\b"));
        // Continuation at end of file, and onto an empty line.
        assert_eq!(one("k=a\\"), kv("k", "a"));
        assert_eq!(pairs("k=a\\\n\nj=b"), vec![kv("k", "a"), kv("j", "b")]);
        // The key may be continued too.
        assert_eq!(
            one("chargeover.\\\n  subdomain=x"),
            kv("chargeover.subdomain", "x")
        );
    }

    #[test]
    fn line_endings_and_numbers() {
        let props = parse("a=1\r\nb=2\rc=3\\\r\n  3\nd=4").unwrap();
        let got: Vec<(&str, &str, usize)> = props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str(), p.line))
            .collect();
        assert_eq!(
            got,
            vec![("a", "1", 1), ("b", "2", 2), ("c", "33", 3), ("d", "4", 5)]
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(one("a\\:b\\=c\\ d=v"), kv("a:b=c d", "v"));
        assert_eq!(one("k=C:\\\\dir\\\\file"), kv("k", "C:\\dir\\file"));
        assert_eq!(one("k=\\t\\n\\r\\f"), kv("k", "\t\n\r\x0c"));
        assert_eq!(one("k=caf\\u00e9 \\u00C9"), kv("k", "café É"));
        assert_eq!(one("k=\\uD83D\\uDE00"), kv("k", "😀"));
        // Any other escaped character stands for itself.
        assert_eq!(one("k=\\q\\#\\!"), kv("k", "q#!"));
        assert_eq!(one("k=\\=x"), kv("k", "=x"));
        // UTF-8 text passes through.
        assert_eq!(one("ключ=значение"), kv("ключ", "значение"));
    }

    #[test]
    fn malformed_unicode_escapes_name_the_line() {
        let e = parse("a=1\nb=\\u12G4\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("\\u12G4"), "{}", e.message);
        assert_eq!(parse("b=\\u12").unwrap_err().line, 1);
        assert!(parse("b=\\uD83D")
            .unwrap_err()
            .message
            .contains("surrogate"));
    }
}
