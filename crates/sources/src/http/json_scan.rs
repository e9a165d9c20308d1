//! Byte scans of JSON text: the page reader's fast path.
//!
//! Two kinds. The *checked* scans ([`checked_value_end`]) validate as they
//! go and answer `None` for anything they are not sure is valid JSON; the
//! page reader then reads the page again with serde_json, which either
//! accepts it after all or reports the error with its position. So being
//! stricter than serde_json (a lower nesting limit) costs only speed, and
//! the tests hold the scans to serde_json's answer on every input they try.
//! The *unchecked* scans ([`value_end`], [`string_end`]) only find where a
//! value ends in text already validated, so they need no more than quotes,
//! backslashes and brackets.
//!
//! Why not a crate: serde_json's own validating pass over a page (a
//! `Vec<&RawValue>`) was a quarter of the source's CPU time, and it cannot
//! be asked where a value ends without building something per value;
//! sonic-rs' checked iterators and jiter were slower still (bench/README.md).
//! This scan does the same checks at a fraction of the cost, because it has
//! nothing to build: it only needs to know where each record ends.

use crate::object_text::string_stop;

/// Containers open at once beyond which a checked scan gives up: they are
/// tracked in one 128-bit word, and below serde_json's limit for building
/// a value (128), so everything outside the records that the scan accepts
/// serde_json parses. A deeper page is left to serde_json.
const MAX_DEPTH: usize = 120;

#[inline(always)]
pub(super) fn skip_whitespace(text: &[u8], at: usize) -> usize {
    // Most pages are compact: the first byte usually settles it.
    match text.get(at) {
        Some(b' ' | b'\t' | b'\n' | b'\r') => skip_whitespace_run(text, at + 1),
        _ => at,
    }
}

/// [`skip_whitespace`] that notes whether there was any: the value being
/// scanned is then not compact (the branch taken only then, so compact
/// text pays nothing for the question).
#[inline(always)]
fn skip_noting(text: &[u8], at: usize, notes: &mut Notes) -> usize {
    match text.get(at) {
        Some(b' ' | b'\t' | b'\n' | b'\r') => {
            notes.spaced = true;
            skip_whitespace_run(text, at + 1)
        }
        _ => at,
    }
}

/// What a checked scan noticed about a value it accepted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Notes {
    /// Whitespace between tokens: the text is valid but not compact (a
    /// pretty-printed record would span lines of NDJSON output).
    pub spaced: bool,
    /// Why a strict parser would refuse the value although its syntax is
    /// JSON's: a number beyond the range of a double (`1e999`), or a lone
    /// UTF-16 surrogate escape (`"\ud800"`). serde_json's `Value`, Go's
    /// `encoding/json` and most databases reject both.
    pub not_strict: Option<&'static str>,
}

fn skip_whitespace_run(text: &[u8], mut at: usize) -> usize {
    while text
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// Just past the valid JSON value that starts at `at`, with `depth`
/// containers already open around it; `None` when it is not one. What it
/// noticed on the way goes into `notes`.
pub(super) fn checked_value_end(
    text: &[u8],
    mut at: usize,
    depth: usize,
    notes: &mut Notes,
) -> Option<usize> {
    // The containers open inside the value, innermost in the lowest bit:
    // 1 for an object, 0 for an array (no allocation per value).
    let mut objects: u128 = 0;
    let mut open = 0usize;
    let limit = MAX_DEPTH.checked_sub(depth)?;
    'value: loop {
        match *text.get(at)? {
            b'"' => at = checked_string_end(text, at, notes)?,
            // Empty containers count towards the limit too, as in serde_json.
            b'{' | b'[' if open == limit => return None,
            b'{' => {
                at = skip_noting(text, at + 1, notes);
                if text.get(at) == Some(&b'}') {
                    at += 1;
                } else {
                    objects = objects << 1 | 1;
                    open += 1;
                    at = checked_member_name(text, at, notes)?;
                    continue 'value;
                }
            }
            b'[' => {
                at = skip_noting(text, at + 1, notes);
                if text.get(at) == Some(&b']') {
                    at += 1;
                } else {
                    objects <<= 1;
                    open += 1;
                    continue 'value;
                }
            }
            b't' => at = literal_end(text, at, b"true")?,
            b'f' => at = literal_end(text, at, b"false")?,
            b'n' => at = literal_end(text, at, b"null")?,
            b'-' | b'0'..=b'9' => at = checked_number_end(text, at, notes)?,
            _ => return None,
        }
        // A value ended: close what it ends, or go on to the next one.
        loop {
            if open == 0 {
                return Some(at);
            }
            let in_object = objects & 1 == 1;
            at = skip_noting(text, at, notes);
            match *text.get(at)? {
                b',' => {
                    at = skip_noting(text, at + 1, notes);
                    if in_object {
                        at = checked_member_name(text, at, notes)?;
                    }
                    continue 'value;
                }
                b'}' if in_object => {}
                b']' if !in_object => {}
                _ => return None,
            }
            objects >>= 1;
            open -= 1;
            at += 1;
        }
    }
}

/// From a member's name at `at` to the start of its value.
pub(super) fn checked_member_name(text: &[u8], at: usize, notes: &mut Notes) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let at = skip_noting(text, checked_string_end(text, at, notes)?, notes);
    (text.get(at) == Some(&b':')).then(|| skip_noting(text, at + 1, notes))
}

/// The UTF-16 unit of the four hex digits at `at`, if they are four.
fn hex_unit(text: &[u8], at: usize) -> Option<u16> {
    let hex = text.get(at..at + 4)?;
    let mut unit = 0u16;
    for b in hex {
        unit = unit << 4 | (*b as char).to_digit(16)? as u16;
    }
    Some(unit)
}

/// Just past the valid string that opens at `at` (a `"`).
fn checked_string_end(text: &[u8], at: usize, notes: &mut Notes) -> Option<usize> {
    let mut i = at + 1;
    loop {
        i = string_stop(text, i);
        match *text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                i += 1;
                match *text.get(i)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 1,
                    b'u' => {
                        let unit = hex_unit(text, i + 1)?;
                        i += 5;
                        if (0xD800..0xE000).contains(&unit) {
                            // A high surrogate needs a low one right after it.
                            let paired = unit < 0xDC00
                                && text.get(i..i + 2) == Some(b"\\u")
                                && hex_unit(text, i + 2)
                                    .is_some_and(|low| (0xDC00..0xE000).contains(&low));
                            if paired {
                                i += 6;
                            } else {
                                notes.not_strict = Some("a lone UTF-16 surrogate escape");
                            }
                        }
                    }
                    _ => return None,
                }
            }
            // A raw control character.
            _ => return None,
        }
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; what follows
/// is checked by the caller, as after any value. A number beyond a
/// double's range is noted (only numbers with an exponent or hundreds of
/// digits can be, so only those are converted).
fn checked_number_end(text: &[u8], mut at: usize, notes: &mut Notes) -> Option<usize> {
    let start = at;
    let digits = |at: usize| {
        let n = text[at.min(text.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        (n > 0).then_some(at + n)
    };
    if text.get(at) == Some(&b'-') {
        at += 1;
    }
    at = match text.get(at)? {
        // A leading zero stands alone: `01` is not a number.
        b'0' if text.get(at + 1).is_some_and(u8::is_ascii_digit) => return None,
        b'0' => at + 1,
        _ => digits(at)?,
    };
    if text.get(at) == Some(&b'.') {
        at = digits(at + 1)?;
    }
    let mut exponent = false;
    if matches!(text.get(at), Some(b'e' | b'E')) {
        exponent = true;
        at += 1;
        if matches!(text.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        at = digits(at)?;
    }
    if exponent || at - start > 300 {
        let number = std::str::from_utf8(&text[start..at]).ok()?;
        if number.parse::<f64>().map_or(true, f64::is_infinite) {
            notes.not_strict = Some("a number beyond the range of a double");
        }
    }
    Some(at)
}

/// Validated JSON text without the whitespace between its tokens: the same
/// value on one line (strings keep theirs; a raw newline cannot be inside
/// one).
pub(super) fn compact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        match b {
            b'"' => {
                let end = string_end(bytes, at);
                out.extend_from_slice(&bytes[at..end]);
                at = end;
            }
            b' ' | b'\t' | b'\n' | b'\r' => at += 1,
            _ => {
                out.push(b);
                at += 1;
            }
        }
    }
    // Only ASCII whitespace between whole tokens was dropped.
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

fn literal_end(text: &[u8], at: usize, literal: &[u8]) -> Option<usize> {
    let end = at + literal.len();
    (text.get(at..end)? == literal).then_some(end)
}

/// Just past the string that opens at `at` (a `"` of validated text).
pub(super) fn string_end(text: &[u8], at: usize) -> usize {
    let mut i = at + 1;
    while let Some(j) = memchr::memchr2(b'"', b'\\', &text[i.min(text.len())..]) {
        if text[i + j] == b'\\' {
            // An escape is `\X` or `\uXXXX`: neither hides a quote after X.
            i += j + 2;
        } else {
            return i + j + 1;
        }
    }
    text.len()
}

/// Just past the value that starts at `at` in validated text.
pub(super) fn value_end(text: &[u8], at: usize) -> usize {
    match text.get(at) {
        Some(b'"') => string_end(text, at),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&b) = text.get(i) {
                match b {
                    b'"' => {
                        i = string_end(text, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            text.len()
        }
        // A number or literal runs to the next delimiter.
        _ => {
            let rest = &text[at.min(text.len())..];
            at + rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len())
        }
    }
}

/// `rounds` copies of `samples`, each with one to three random edits drawn
/// towards JSON's own bytes (those that are not UTF-8 left out), for tests
/// that hold a scan to serde_json's answers.
#[cfg(test)]
pub(super) fn mutations<'a>(
    samples: &'a [&str],
    rounds: usize,
) -> impl Iterator<Item = String> + 'a {
    const ALPHABET: &[u8] = b"{}[],:\"\\ \t\n0123456789-+.eEuabfnrtlsx\x01\x1f";
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    (0..rounds).filter_map(move |round| {
        let mut bytes = samples[round % samples.len()].as_bytes().to_vec();
        for _ in 0..1 + next(3) {
            let at = next(bytes.len() + 1);
            let byte = ALPHABET[next(ALPHABET.len())];
            match next(3) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
        }
        String::from_utf8(bytes).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_text::STRING_STOPS;
    use serde::de::IgnoredAny;

    /// The whole text is one valid value, by the checked scan.
    fn scan_accepts(text: &str) -> bool {
        let bytes = text.as_bytes();
        let start = skip_whitespace(bytes, 0);
        checked_value_end(bytes, start, 0, &mut Notes::default())
            .is_some_and(|end| skip_whitespace(bytes, end) == bytes.len())
    }

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<IgnoredAny>(text).is_ok()
    }

    const SAMPLES: &[&str] = &[
        r#"{"data":[{"id":1,"name":"x","tags":["a","b"],"n":null},{"id":2,"ok":true,"f":false}],"total":2}"#,
        r#"[{"a":-0.5e-3,"b":1E+9,"c":0,"d":-12,"e":"\u00e9\n\t\"\\\/\b\f\r"}]"#,
        r#" { "nested" : { "x" : [ [ ] , { } , [ 1 , [ 2 ] ] ] } , "s" : "]}\"{[" } "#,
        r#"{"é ✓":"caf\u00E9","k":[true,false,null]}"#,
        "[1,2.25,3e5,0.0,-0,1.5E-7]",
        r#""just a string""#,
        "12",
        "null",
    ];

    #[test]
    fn agrees_with_serde_json_on_hand_picked_inputs() {
        let invalid = [
            "",
            " ",
            "{",
            "}",
            "[",
            "[1,]",
            "[,1]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1 "b":2}"#,
            "[01]",
            "[1.]",
            "[.5]",
            "[-]",
            "[1e]",
            "[1e+]",
            "[+1]",
            "[1x]",
            "[tru]",
            "[truex]",
            "[nul]",
            "[NaN]",
            "[Infinity]",
            r#"["a\x"]"#,
            r#"["\u12"]"#,
            r#"["\u12G4"]"#,
            "[\"tab\there\"]",
            "[\"nl\nhere\"]",
            "[\"\u{1}\"]",
            r#"["unterminated]"#,
            "[1] 2",
            "[1]]",
            "{}}",
            r#"{"a":}"#,
            r#"{"a"}"#,
            r#"{,}"#,
            "[\"\\",
            "\"\\u00",
            "-",
            "--1",
            "1.2.3",
            "[1e5e5]",
            "[0x10]",
            "[1 2]",
            r#"{"a":1}{"#,
            "'a'",
            "[\u{a0}1]",
        ];
        for text in invalid {
            assert!(!serde_accepts(text), "serde_json accepts {text:?}");
            assert!(!scan_accepts(text), "scan accepts {text:?}");
        }
        let valid = [
            "[\"\u{7f}\"]",
            r#"["\ud800"]"#,
            "[1e400]",
            "\n\r\t [ ] \n",
            r#"{"a":{"a":{"a":{}}}}"#,
            "[99999999999999999999999]",
        ];
        for text in SAMPLES.iter().chain(&valid) {
            assert!(serde_accepts(text), "serde_json rejects {text:?}");
            assert!(scan_accepts(text), "scan rejects {text:?}");
        }
    }

    /// Random edits of valid pages, drawn towards JSON's own bytes, must be
    /// judged as serde_json judges them (nesting is kept below the limit).
    #[test]
    fn agrees_with_serde_json_on_mutated_pages() {
        let (mut accepted, mut rejected) = (0, 0);
        for text in mutations(SAMPLES, 40_000) {
            let serde = serde_accepts(&text);
            assert_eq!(scan_accepts(&text), serde, "{text:?}");
            if serde {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        // Both answers are well represented, so neither side is trivial.
        assert!(
            accepted > 2_000 && rejected > 2_000,
            "{accepted} / {rejected}"
        );
    }

    #[test]
    fn a_value_ends_where_serde_json_says() {
        let text = br#"[{"id":1,"s":"a,]}"}  ,  -2.5e3,"x\"y",[[]],true]"#;
        let mut values = Vec::new();
        let mut at = 1;
        loop {
            let end = checked_value_end(text, at, 1, &mut Notes::default()).unwrap();
            assert_eq!(value_end(text, at), end, "unchecked scan");
            values.push(std::str::from_utf8(&text[at..end]).unwrap());
            at = skip_whitespace(text, end);
            if text[at] == b']' {
                break;
            }
            at = skip_whitespace(text, at + 1);
        }
        assert_eq!(
            values,
            [
                r#"{"id":1,"s":"a,]}"}"#,
                "-2.5e3",
                r#""x\"y""#,
                "[[]]",
                "true"
            ]
        );
        assert_eq!(
            checked_value_end(br#"{"a":1"#, 0, 0, &mut Notes::default()),
            None,
            "unclosed"
        );
    }

    /// The word-at-a-time scan stops where a byte-at-a-time one does, for
    /// every byte value at every position of a word.
    #[test]
    fn string_stops_are_found_in_any_position() {
        let naive = |text: &[u8], at: usize| {
            (at..text.len())
                .find(|&i| STRING_STOPS[text[i] as usize])
                .unwrap_or(text.len())
        };
        for stop in 0..=255u8 {
            for position in 0..20 {
                for filler in [b'a', 0x7f, 0x80, 0xc3, 0xff, b' '] {
                    let mut text = vec![filler; 20];
                    text[position] = stop;
                    // A stop after the first must not hide it.
                    if position + 2 < text.len() {
                        text[position + 2] = b'"';
                    }
                    for at in [0, 1, 3] {
                        assert_eq!(
                            string_stop(&text, at),
                            naive(&text, at),
                            "{stop:#x} at {position} in {filler:#x}, from {at}"
                        );
                    }
                }
            }
        }
    }

    fn notes(text: &str) -> Notes {
        let mut notes = Notes::default();
        let bytes = text.as_bytes();
        let end = checked_value_end(bytes, 0, 0, &mut notes);
        assert_eq!(end, Some(bytes.len()), "{text}");
        notes
    }

    /// What a strict parser refuses is exactly what serde_json's `Value`
    /// refuses among the inputs its syntax check accepts.
    #[test]
    fn values_strict_parsers_refuse_are_noted() {
        let refused = [
            "[1e999]",
            "[-1e400]",
            r#"{"a":1E+309}"#,
            r#"["\ud800"]"#,
            r#"["\udc00x"]"#,
            r#"["\ud800\u0041"]"#,
            r#"["\ud800\ud800"]"#,
            r#"{"\udfff":1}"#,
        ];
        for text in refused {
            assert!(notes(text).not_strict.is_some(), "{text}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text}"
            );
        }
        let fine = [
            "[1e308]",
            "[1e-999]",
            "[12345678901234567890123]",
            r#"["\ud83d\ude00"]"#,
            r#"["\uD83D\uDE00 \u00e9"]"#,
            "[0.5E-3]",
        ];
        for text in fine {
            assert_eq!(notes(text).not_strict, None, "{text}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
        }
        let big = format!("[{}]", "9".repeat(400));
        assert!(notes(&big).not_strict.is_some());
        assert!(serde_json::from_str::<serde_json::Value>(&big).is_err());
    }

    #[test]
    fn spacing_is_noted_and_compacted() {
        assert!(!notes(r#"{"a":[1,{"b":"x y"}],"c":null}"#).spaced);
        for text in [
            "{\n  \"a\": [1, 2],\n  \"s\": \"in string\\n \\\" {\"\n}",
            "[ 1 ]",
            "{\"a\" :1}",
            "{\"a\":\t1}",
        ] {
            assert!(notes(text).spaced, "{text}");
            let compacted = compact(text);
            assert!(!notes(&compacted).spaced, "{compacted}");
            assert!(!compacted.contains('\n'));
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&compacted).unwrap(),
                serde_json::from_str::<serde_json::Value>(text).unwrap()
            );
        }
        assert_eq!(compact("{ \"k\" : \"a  b\" }"), r#"{"k":"a  b"}"#);
    }

    #[test]
    fn nesting_beyond_the_limit_is_left_to_serde_json() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(scan_accepts(&deep(MAX_DEPTH)));
        assert!(!scan_accepts(&deep(MAX_DEPTH + 1)));
        assert!(serde_accepts(&deep(MAX_DEPTH + 1)), "so it must read it");
        assert_eq!(
            checked_value_end(b"[1]", 0, MAX_DEPTH, &mut Notes::default()),
            None
        );
    }
}
