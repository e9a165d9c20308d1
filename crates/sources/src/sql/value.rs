//! The JSON side of the type mapping, shared by the three databases: what
//! a column becomes ([`Kind`], also its JSON Schema) and the exact text
//! forms of timestamps, floats, bytes and UUIDs.

use base64::Engine;
use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

/// What a column's values become in JSON, independent of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Always null (PostgreSQL `void`, MySQL's type of `SELECT NULL`).
    Null,
    Bool,
    Integer,
    /// Floating point; NaN and infinities become the strings `"NaN"`,
    /// `"Infinity"`, `"-Infinity"` (JSON has no numbers for them).
    Float,
    /// Exact decimal as a string (`"12.50"`), never through a float.
    Decimal,
    Text,
    /// Base64 (standard alphabet, padded).
    Bytes,
    /// The column's JSON document itself.
    Json,
    Uuid,
    /// `YYYY-MM-DD`.
    Date,
    /// `HH:MM:SS[.ffffff]`, with `±HH:MM` for `timetz`, and MySQL's
    /// `[-]HHH:MM:SS` durations.
    Time,
    /// RFC 3339 in UTC (`2024-01-02T03:04:05.123456Z`). `naive`: the column
    /// has no time zone and is interpreted in the source's `timezone`.
    Timestamp {
        naive: bool,
    },
    /// ISO 8601 duration (`P1Y2M3DT4H5M6.5S`).
    Interval,
    /// `192.168.0.1`, `10.0.0.0/8`, MAC addresses, bit strings: text.
    Network,
    Array(Box<Kind>),
    /// SQLite without a declared type: whatever each value is stored as.
    Dynamic,
}

impl Kind {
    /// JSON Schema of the values (without nullability).
    pub fn json_schema(&self) -> Value {
        match self {
            Kind::Null => json!({"type": "null"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::Integer => json!({"type": "integer"}),
            Kind::Float => json!({"type": ["number", "string"]}),
            Kind::Decimal => json!({"type": "string", "format": "decimal"}),
            Kind::Text | Kind::Network => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Json | Kind::Dynamic => json!({}),
            Kind::Uuid => json!({"type": "string", "format": "uuid"}),
            Kind::Date => json!({"type": "string", "format": "date"}),
            Kind::Time => json!({"type": "string", "format": "time"}),
            Kind::Timestamp { .. } => json!({"type": "string", "format": "date-time"}),
            Kind::Interval => json!({"type": "string", "format": "duration"}),
            Kind::Array(e) => json!({"type": "array", "items": e.json_schema()}),
        }
    }

    /// JSON Schema allowing null too.
    pub fn nullable_schema(&self) -> Value {
        let mut s = self.json_schema();
        if let Some(obj) = s.as_object_mut() {
            match obj.get_mut("type") {
                Some(Value::String(t)) => {
                    let t = std::mem::take(t);
                    if t != "null" {
                        obj.insert("type".into(), json!([t, "null"]));
                    }
                }
                Some(Value::Array(ts)) => ts.push(json!("null")),
                _ => {}
            }
        }
        s
    }
}

/// Time zone handling for naive timestamps, with a fast path for UTC.
#[derive(Debug, Clone, Copy)]
pub struct Zone {
    pub tz: Tz,
    utc: bool,
}

impl Zone {
    pub fn new(tz: Tz) -> Self {
        Zone {
            tz,
            utc: tz == chrono_tz::UTC || tz == chrono_tz::Etc::UTC,
        }
    }

    /// The instant a wall-clock time in this zone stands for. In the hour a
    /// DST change repeats, the earlier instant; in the hour it skips, the
    /// offset in effect before the gap (as PostgreSQL does).
    pub fn to_utc(self, naive: NaiveDateTime) -> DateTime<Utc> {
        if self.utc {
            return naive.and_utc();
        }
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
            LocalResult::None => {
                let before = naive
                    .checked_sub_signed(chrono::Duration::hours(3))
                    .unwrap_or(naive);
                let offset = self.tz.offset_from_utc_datetime(&before).fix();
                naive
                    .checked_sub_signed(chrono::Duration::seconds(offset.local_minus_utc() as i64))
                    .unwrap_or(naive)
                    .and_utc()
            }
        }
    }

    /// The wall-clock time of an instant in this zone.
    pub fn to_local(self, t: DateTime<Utc>) -> NaiveDateTime {
        if self.utc {
            return t.naive_utc();
        }
        t.with_timezone(&self.tz).naive_local()
    }
}

/// RFC 3339 in UTC with as many fraction digits as needed (0, 3, 6 or 9):
/// exact, so a timestamp read back from a checkpoint compares equal.
pub fn fmt_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Appends `"` [`fmt_utc`] `"` without allocating: the text of every
/// timestamp cell, so it is written digit by digit for years 0 to 9999
/// (other years and leap seconds, rare, through `fmt_utc`).
pub fn write_utc(t: DateTime<Utc>, out: &mut bytes::BytesMut) {
    use chrono::{Datelike, Timelike};
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        out.extend_from_slice(b"\"");
        out.extend_from_slice(fmt_utc(t).as_bytes());
        out.extend_from_slice(b"\"");
        return;
    }
    // `"YYYY-MM-DDTHH:MM:SS` then `.f{3,6,9}` then `Z"`.
    let mut s = *b"\"0000-00-00T00:00:00.000000000Z\"";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for k in (at..at + width).rev() {
            s[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(1, 4, year as u32);
    put(6, 2, t.month());
    put(9, 2, t.day());
    put(12, 2, t.hour());
    put(15, 2, t.minute());
    put(18, 2, t.second());
    let (value, width) = if nanos == 0 {
        (0, 0)
    } else if nanos % 1_000_000 == 0 {
        (nanos / 1_000_000, 3)
    } else if nanos % 1000 == 0 {
        (nanos / 1000, 6)
    } else {
        (nanos, 9)
    };
    put(21, width, value);
    let end = if width == 0 { 20 } else { 21 + width };
    out.extend_from_slice(&s[..end]);
    out.extend_from_slice(b"Z\"");
}

/// A wall-clock time without zone: `2024-01-02T03:04:05.123456`.
pub fn fmt_naive(t: NaiveDateTime) -> String {
    let mut s = fmt_utc(t.and_utc());
    s.pop(); // the `Z`
    s
}

/// Parses a checkpointed or configured timestamp: RFC 3339 (an instant) or
/// a wall-clock time without offset (`T` or space between date and time).
pub fn parse_time(s: &str) -> Option<TimeValue> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(TimeValue::Instant(t.with_timezone(&Utc)));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(TimeValue::Naive(t));
        }
    }
    None
}

/// A parsed timestamp: with or without an offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeValue {
    Instant(DateTime<Utc>),
    Naive(NaiveDateTime),
}

/// A float as JSON; non-finite values as strings.
pub fn float(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// A 4-byte float as the JSON number of its shortest decimal form, so
/// `0.1::real` is `0.1`, not `0.10000000149011612`.
pub fn float4(f: f32) -> Value {
    if !f.is_finite() {
        return float(f as f64);
    }
    let shortest = f.to_string();
    float(shortest.parse::<f64>().unwrap_or(f as f64))
}

pub fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The canonical hyphenated lowercase form of a 16-byte UUID.
pub fn uuid(bytes: &[u8]) -> Result<Value, String> {
    if bytes.len() != 16 {
        return Err(format!("a UUID has 16 bytes, got {}", bytes.len()));
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    Ok(Value::String(s))
}

/// Whether a soft-delete column's value marks the row deleted: anything but
/// null, `false`, `0`, `""`, `"0"`, `"false"`, `"f"`, `"n"`, `"no"`.
pub fn is_deleted(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "f" | "n" | "no"
        ),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_exact_and_zones_handle_dst() {
        let t = NaiveDateTime::parse_from_str("2024-01-02 03:04:05.123456", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
        assert_eq!(fmt_utc(t.and_utc()), "2024-01-02T03:04:05.123456Z");
        assert_eq!(fmt_naive(t), "2024-01-02T03:04:05.123456");
        let whole =
            NaiveDateTime::parse_from_str("2024-01-02 03:04:05", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(fmt_utc(whole.and_utc()), "2024-01-02T03:04:05Z");
        assert_eq!(
            parse_time("2024-01-02T03:04:05.123456Z"),
            Some(TimeValue::Instant(t.and_utc()))
        );
        assert_eq!(
            parse_time("2024-01-02T03:04:05.123456"),
            Some(TimeValue::Naive(t))
        );

        let ny = Zone::new(chrono_tz::America::New_York);
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            fmt_utc(ny.to_utc(at("2024-01-15 12:00"))),
            "2024-01-15T17:00:00Z"
        );
        // Fall back: 01:30 happens twice; the first (EDT).
        assert_eq!(
            fmt_utc(ny.to_utc(at("2024-11-03 01:30"))),
            "2024-11-03T05:30:00Z"
        );
        // Spring forward: 02:30 does not exist; EST's offset applies.
        assert_eq!(
            fmt_utc(ny.to_utc(at("2024-03-10 02:30"))),
            "2024-03-10T07:30:00Z"
        );
        assert_eq!(
            ny.to_local(ny.to_utc(at("2024-01-15 12:00"))),
            at("2024-01-15 12:00")
        );
    }

    #[test]
    fn written_timestamps_are_fmt_utc_quoted() {
        for text in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.100Z",
            "2024-01-02T03:04:05.123456Z",
            "0001-12-31T23:59:59.000001Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let t = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            let mut out = bytes::BytesMut::new();
            write_utc(t, &mut out);
            assert_eq!(&out[..], format!("\"{}\"", fmt_utc(t)).as_bytes(), "{text}");
        }
        let far = chrono::NaiveDate::from_ymd_opt(10000, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        let mut out = bytes::BytesMut::new();
        write_utc(far, &mut out);
        assert_eq!(&out[..], format!("\"{}\"", fmt_utc(far)).as_bytes());
    }

    #[test]
    fn floats_uuids_and_soft_deletes() {
        assert_eq!(float4(0.1), json!(0.1));
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(float(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(
            uuid(&[
                0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
                0x0a, 0x11
            ])
            .unwrap(),
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        for (v, d) in [
            (json!(null), false),
            (json!(false), false),
            (json!(true), true),
            (json!(0), false),
            (json!(1), true),
            (json!("2024-01-01T00:00:00Z"), true),
            (json!("N"), false),
            (json!("yes"), true),
        ] {
            assert_eq!(is_deleted(&v), d, "{v}");
        }
        assert_eq!(
            Kind::Integer.nullable_schema(),
            json!({"type": ["integer", "null"]})
        );
        assert_eq!(
            Kind::Float.nullable_schema(),
            json!({"type": ["number", "string", "null"]})
        );
    }
}
