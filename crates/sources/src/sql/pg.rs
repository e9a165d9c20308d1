//! PostgreSQL values to JSON.
//!
//! sqlx receives results in PostgreSQL's binary format; this module decodes
//! those bytes directly, with one decoder resolved per column from its type
//! (`type_info().name()`, and its kind for arrays, domains and enums) once
//! per statement. Owning the decoding keeps it exact where sqlx's typed
//! decoders would not be (a `numeric(10,2)` keeps its scale: `"1.50"`, not
//! `"1.5000"`; NaN and infinities survive), handles every array
//! dimensionality, and avoids an intermediate Rust value per cell.

use super::value::{self, Kind, Zone};
use bytes::{BufMut, BytesMut};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value;
use sqlx::postgres::{PgTypeInfo, PgTypeKind};
use sqlx::TypeInfo;
use std::fmt::Write;

/// How one column's bytes become JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum PgDecoder {
    Bool,
    Int2,
    Int4,
    Int8,
    /// `oid` and other unsigned 4-byte identifiers.
    Oid,
    Float4,
    Float8,
    Numeric,
    Money,
    Text,
    /// The internal one-byte `"char"` type.
    Char,
    Json,
    Jsonb,
    /// A text column listed in `json_columns`: parsed as JSON.
    TextJson,
    Bytea,
    Uuid,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Inet,
    MacAddr,
    MacAddr8,
    Bit,
    Void,
    Array(Box<PgDecoder>),
}

/// A resolved column: its decoder and, when it can be part of a keyset,
/// the type its checkpointed value is cast to in SQL.
#[derive(Debug, Clone)]
pub struct PgColumn {
    pub decoder: PgDecoder,
    pub cast: Option<String>,
}

impl PgColumn {
    /// Resolves a column's type; `None` when the type has no JSON mapping.
    pub fn resolve(t: &PgTypeInfo, as_json: bool) -> Option<PgColumn> {
        match t.kind() {
            PgTypeKind::Domain(base) => PgColumn::resolve(base, as_json),
            PgTypeKind::Enum(_) => Some(PgColumn {
                decoder: if as_json {
                    PgDecoder::TextJson
                } else {
                    PgDecoder::Text
                },
                cast: Some(super::ident::quote(
                    super::dialect::Dialect::Postgres,
                    t.name(),
                )),
            }),
            PgTypeKind::Array(elem) => {
                let e = PgColumn::resolve(elem, false)?;
                Some(PgColumn {
                    decoder: PgDecoder::Array(Box::new(e.decoder)),
                    cast: None,
                })
            }
            PgTypeKind::Simple | PgTypeKind::Pseudo => {
                let name = t.name().to_ascii_uppercase();
                let (decoder, cast) = match name.as_str() {
                    "BOOL" => (PgDecoder::Bool, Some("bool")),
                    "INT2" => (PgDecoder::Int2, Some("int2")),
                    "INT4" => (PgDecoder::Int4, Some("int4")),
                    "INT8" => (PgDecoder::Int8, Some("int8")),
                    "OID" | "XID" | "CID" | "REGCLASS" | "REGPROC" | "REGTYPE" => {
                        (PgDecoder::Oid, None)
                    }
                    "FLOAT4" => (PgDecoder::Float4, None),
                    "FLOAT8" => (PgDecoder::Float8, None),
                    "NUMERIC" => (PgDecoder::Numeric, Some("numeric")),
                    "MONEY" => (PgDecoder::Money, None),
                    "TEXT" | "UNKNOWN" | "XML" | "CITEXT" => (PgDecoder::Text, Some("text")),
                    "VARCHAR" => (PgDecoder::Text, Some("varchar")),
                    // sqlx displays `bpchar` (blank-padded `char(n)`) as CHAR.
                    "CHAR" | "BPCHAR" => (PgDecoder::Text, Some("bpchar")),
                    "NAME" => (PgDecoder::Text, Some("name")),
                    "\"CHAR\"" => (PgDecoder::Char, None),
                    "JSON" => (PgDecoder::Json, None),
                    "JSONB" => (PgDecoder::Jsonb, None),
                    "BYTEA" => (PgDecoder::Bytea, None),
                    "UUID" => (PgDecoder::Uuid, Some("uuid")),
                    "DATE" => (PgDecoder::Date, Some("date")),
                    "TIME" => (PgDecoder::Time, Some("time")),
                    "TIMETZ" => (PgDecoder::TimeTz, None),
                    "TIMESTAMP" => (PgDecoder::Timestamp, Some("timestamp")),
                    "TIMESTAMPTZ" => (PgDecoder::TimestampTz, Some("timestamptz")),
                    "INTERVAL" => (PgDecoder::Interval, None),
                    "INET" | "CIDR" => (PgDecoder::Inet, None),
                    "MACADDR" => (PgDecoder::MacAddr, None),
                    "MACADDR8" => (PgDecoder::MacAddr8, None),
                    "BIT" | "VARBIT" => (PgDecoder::Bit, None),
                    "VOID" => (PgDecoder::Void, None),
                    _ => return None,
                };
                let decoder = match decoder {
                    PgDecoder::Text if as_json => PgDecoder::TextJson,
                    d => d,
                };
                Some(PgColumn {
                    decoder,
                    cast: cast.map(str::to_string),
                })
            }
            PgTypeKind::Composite(_) | PgTypeKind::Range(_) => None,
        }
    }
}

impl PgDecoder {
    pub fn kind(&self) -> Kind {
        match self {
            PgDecoder::Bool => Kind::Bool,
            PgDecoder::Int2 | PgDecoder::Int4 | PgDecoder::Int8 | PgDecoder::Oid => Kind::Integer,
            PgDecoder::Float4 | PgDecoder::Float8 => Kind::Float,
            PgDecoder::Numeric | PgDecoder::Money => Kind::Decimal,
            PgDecoder::Text | PgDecoder::Char => Kind::Text,
            PgDecoder::Json | PgDecoder::Jsonb | PgDecoder::TextJson => Kind::Json,
            PgDecoder::Bytea => Kind::Bytes,
            PgDecoder::Uuid => Kind::Uuid,
            PgDecoder::Date => Kind::Date,
            PgDecoder::Time | PgDecoder::TimeTz => Kind::Time,
            PgDecoder::Timestamp => Kind::Timestamp { naive: true },
            PgDecoder::TimestampTz => Kind::Timestamp { naive: false },
            PgDecoder::Interval => Kind::Interval,
            PgDecoder::Inet | PgDecoder::MacAddr | PgDecoder::MacAddr8 | PgDecoder::Bit => {
                Kind::Network
            }
            PgDecoder::Void => Kind::Null,
            PgDecoder::Array(e) => Kind::Array(Box::new(e.kind())),
        }
    }

    /// The JSON of one non-null value in binary format.
    pub fn decode(&self, b: &[u8], zone: &Zone) -> Result<Value, String> {
        Ok(match self {
            PgDecoder::Bool => Value::Bool(*b.first().ok_or("empty bool")? != 0),
            PgDecoder::Int2 => Value::from(i16::from_be_bytes(fixed(b)?)),
            PgDecoder::Int4 => Value::from(i32::from_be_bytes(fixed(b)?)),
            PgDecoder::Int8 => Value::from(i64::from_be_bytes(fixed(b)?)),
            PgDecoder::Oid => Value::from(u32::from_be_bytes(fixed(b)?)),
            PgDecoder::Float4 => value::float4(f32::from_be_bytes(fixed(b)?)),
            PgDecoder::Float8 => value::float(f64::from_be_bytes(fixed(b)?)),
            PgDecoder::Numeric => Value::String(numeric(b)?),
            PgDecoder::Money => Value::String(money(i64::from_be_bytes(fixed(b)?))),
            PgDecoder::Text => Value::String(text(b)?.to_string()),
            PgDecoder::Char => Value::String(match b.first() {
                None | Some(0) => String::new(),
                Some(c) => (*c as char).to_string(),
            }),
            PgDecoder::Json | PgDecoder::TextJson => json(b)?,
            PgDecoder::Jsonb => match b.split_first() {
                Some((1, rest)) => json(rest)?,
                _ => return Err("unknown jsonb format version".into()),
            },
            PgDecoder::Bytea => value::base64(b),
            PgDecoder::Uuid => value::uuid(b)?,
            PgDecoder::Date => Value::String(date(i32::from_be_bytes(fixed(b)?))?),
            PgDecoder::Time => Value::String(time(i64::from_be_bytes(fixed(b)?))?),
            PgDecoder::TimeTz => {
                if b.len() != 12 {
                    return Err(format!("timetz has 12 bytes, got {}", b.len()));
                }
                let us = i64::from_be_bytes(fixed(&b[..8])?);
                let west = i32::from_be_bytes(fixed(&b[8..])?);
                let mut s = time(us)?;
                s.push_str(&offset(-west));
                Value::String(s)
            }
            PgDecoder::Timestamp => match timestamp(i64::from_be_bytes(fixed(b)?))? {
                Stamp::Finite(t) => Value::String(value::fmt_utc(zone.to_utc(t))),
                Stamp::Infinite(s) => Value::String(s.into()),
            },
            PgDecoder::TimestampTz => match timestamp(i64::from_be_bytes(fixed(b)?))? {
                Stamp::Finite(t) => Value::String(value::fmt_utc(t.and_utc())),
                Stamp::Infinite(s) => Value::String(s.into()),
            },
            PgDecoder::Interval => {
                if b.len() != 16 {
                    return Err(format!("interval has 16 bytes, got {}", b.len()));
                }
                Value::String(interval(
                    i64::from_be_bytes(fixed(&b[..8])?),
                    i32::from_be_bytes(fixed(&b[8..12])?),
                    i32::from_be_bytes(fixed(&b[12..])?),
                ))
            }
            PgDecoder::Inet => Value::String(inet(b)?),
            PgDecoder::MacAddr | PgDecoder::MacAddr8 => {
                let mut s = String::with_capacity(b.len() * 3);
                for (i, x) in b.iter().enumerate() {
                    if i > 0 {
                        s.push(':');
                    }
                    let _ = write!(s, "{x:02x}");
                }
                Value::String(s)
            }
            PgDecoder::Bit => Value::String(bits(b)?),
            PgDecoder::Void => Value::Null,
            PgDecoder::Array(elem) => array(b, elem, zone)?,
        })
    }

    /// Appends the JSON text of one non-null value: what [`PgDecoder::decode`]
    /// gives, serialized, without building it for the common types.
    pub fn write(&self, b: &[u8], zone: &Zone, out: &mut BytesMut) -> Result<(), String> {
        let mut w = out.writer();
        // Writing to memory cannot fail; only decoding can.
        let _ = match self {
            PgDecoder::Bool => {
                let t = *b.first().ok_or("empty bool")? != 0;
                w.get_mut()
                    .extend_from_slice(if t { b"true" } else { b"false" });
                Ok(())
            }
            PgDecoder::Int2 => {
                write_int(i16::from_be_bytes(fixed(b)?), w.get_mut());
                Ok(())
            }
            PgDecoder::Int4 => {
                write_int(i32::from_be_bytes(fixed(b)?), w.get_mut());
                Ok(())
            }
            PgDecoder::Int8 => {
                write_int(i64::from_be_bytes(fixed(b)?), w.get_mut());
                Ok(())
            }
            PgDecoder::Text => {
                crate::object_text::write_utf8_str(text(b)?.as_bytes(), w.get_mut());
                Ok(())
            }
            PgDecoder::Numeric => {
                // Digits, a sign and a point, or NaN/Infinity: nothing to escape.
                let out = w.get_mut();
                let start = out.len();
                out.put_u8(b'"');
                if let Err(e) = write_numeric(b, out) {
                    out.truncate(start);
                    return Err(e);
                }
                out.put_u8(b'"');
                Ok(())
            }
            PgDecoder::TimestampTz | PgDecoder::Timestamp => {
                match timestamp(i64::from_be_bytes(fixed(b)?))? {
                    Stamp::Finite(t) => {
                        let t = match self {
                            PgDecoder::Timestamp => zone.to_utc(t),
                            _ => t.and_utc(),
                        };
                        value::write_utc(t, w.get_mut());
                        Ok(())
                    }
                    Stamp::Infinite(s) => serde_json::to_writer(w, s),
                }
            }
            other => serde_json::to_writer(w, &other.decode(b, zone)?),
        };
        Ok(())
    }

    /// The value kept in a checkpoint for a keyset column: the JSON value,
    /// except that a `timestamp` without time zone stays a wall-clock time
    /// (converting it to UTC and back is not exact across DST changes).
    pub fn key(&self, b: &[u8], zone: &Zone, decoded: &Value) -> Result<Value, String> {
        match self {
            PgDecoder::Timestamp => match timestamp(i64::from_be_bytes(fixed(b)?))? {
                Stamp::Finite(t) => Ok(Value::String(value::fmt_naive(t))),
                Stamp::Infinite(s) => Ok(Value::String(s.into())),
            },
            _ => {
                let _ = zone;
                Ok(decoded.clone())
            }
        }
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn text(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| format!("invalid UTF-8: {e}"))
}

fn json(b: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(b).map_err(|e| format!("invalid JSON: {e}"))
}

/// PostgreSQL's binary `numeric`: base-10000 digits, a weight, a sign and
/// the display scale, written out exactly as PostgreSQL prints it.
pub fn numeric(b: &[u8]) -> Result<String, String> {
    let mut out = BytesMut::new();
    write_numeric(b, &mut out)?;
    // Only ASCII digits, signs and points are written.
    String::from_utf8(Vec::from(out)).map_err(|e| e.to_string())
}

/// [`numeric`], appended to `out` (nothing on error), its digits written
/// four at a time: formatting each through `std::fmt` was a tenth of
/// decoding a row with a `numeric` column.
fn write_numeric(b: &[u8], out: &mut BytesMut) -> Result<(), String> {
    if b.len() < 8 {
        return Err("numeric shorter than its header".into());
    }
    let ndigits = i16::from_be_bytes([b[0], b[1]]).max(0) as usize;
    let weight = i16::from_be_bytes([b[2], b[3]]) as i64;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = u16::from_be_bytes([b[6], b[7]]) as usize;
    let special: &[u8] = match sign {
        0xC000 => b"NaN",
        0xD000 => b"Infinity",
        0xF000 => b"-Infinity",
        0x0000 | 0x4000 => b"",
        other => return Err(format!("unknown numeric sign {other:#x}")),
    };
    if !special.is_empty() {
        out.extend_from_slice(special);
        return Ok(());
    }
    if b.len() != 8 + 2 * ndigits {
        return Err("numeric length does not match its digit count".into());
    }
    let digit = |i: i64| -> u16 {
        if i < 0 || i >= ndigits as i64 {
            0
        } else {
            let at = 8 + 2 * i as usize;
            // A base-10000 digit is 0..=9999; anything else is clamped
            // rather than trusted.
            i16::from_be_bytes([b[at], b[at + 1]]).clamp(0, 9999) as u16
        }
    };
    let four = |d: u16| -> [u8; 4] {
        [
            b'0' + (d / 1000) as u8,
            b'0' + (d / 100 % 10) as u8,
            b'0' + (d / 10 % 10) as u8,
            b'0' + (d % 10) as u8,
        ]
    };
    if sign == 0x4000 {
        out.put_u8(b'-');
    }
    if weight < 0 {
        out.put_u8(b'0');
    } else {
        for i in 0..=weight {
            let d = four(digit(i));
            if i == 0 {
                // The leading digit without its zeros.
                let skip = d.iter().take(3).take_while(|c| **c == b'0').count();
                out.extend_from_slice(&d[skip..]);
            } else {
                out.extend_from_slice(&d);
            }
        }
    }
    if dscale > 0 {
        out.put_u8(b'.');
        let mut left = dscale;
        let mut i = weight + 1;
        while left > 0 {
            let d = four(digit(i));
            let n = left.min(4);
            out.extend_from_slice(&d[..n]);
            left -= n;
            i += 1;
        }
    }
    Ok(())
}

fn write_int(v: impl itoa::Integer, out: &mut BytesMut) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

fn date(days: i32) -> Result<String, String> {
    match days {
        i32::MAX => Ok("infinity".into()),
        i32::MIN => Ok("-infinity".into()),
        d => epoch()
            .date()
            .checked_add_signed(chrono::Duration::days(d as i64))
            .map(|d| d.format("%Y-%m-%d").to_string())
            .ok_or_else(|| format!("date out of range ({d} days from 2000-01-01)")),
    }
}

fn time(us: i64) -> Result<String, String> {
    if us == 86_400_000_000 {
        return Ok("24:00:00".into());
    }
    let secs = u32::try_from(us.div_euclid(1_000_000)).map_err(|_| "time out of range")?;
    let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
    let t = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .ok_or_else(|| format!("time out of range ({us} µs)"))?;
    let mut s = t.format("%H:%M:%S").to_string();
    let frac = us.rem_euclid(1_000_000);
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    Ok(s)
}

fn offset(east_secs: i32) -> String {
    let sign = if east_secs < 0 { '-' } else { '+' };
    let a = east_secs.unsigned_abs();
    let (h, m, s) = (a / 3600, (a / 60) % 60, a % 60);
    if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

enum Stamp {
    Finite(NaiveDateTime),
    Infinite(&'static str),
}

fn timestamp(us: i64) -> Result<Stamp, String> {
    match us {
        i64::MAX => Ok(Stamp::Infinite("infinity")),
        i64::MIN => Ok(Stamp::Infinite("-infinity")),
        us => epoch()
            .checked_add_signed(chrono::Duration::microseconds(us))
            .map(Stamp::Finite)
            .ok_or_else(|| format!("timestamp out of range ({us} µs from 2000-01-01)")),
    }
}

/// ISO 8601, with PostgreSQL's `iso_8601` style signs per component.
fn interval(us: i64, days: i32, months: i32) -> String {
    let mut s = String::from("P");
    let (years, months) = (months / 12, months % 12);
    if years != 0 {
        let _ = write!(s, "{years}Y");
    }
    if months != 0 {
        let _ = write!(s, "{months}M");
    }
    if days != 0 {
        let _ = write!(s, "{days}D");
    }
    if us != 0 {
        s.push('T');
        let neg = us < 0;
        let a = us.unsigned_abs();
        let (h, m, sec, frac) = (
            a / 3_600_000_000,
            (a / 60_000_000) % 60,
            (a / 1_000_000) % 60,
            a % 1_000_000,
        );
        let sign = if neg { "-" } else { "" };
        if h != 0 {
            let _ = write!(s, "{sign}{h}H");
        }
        if m != 0 {
            let _ = write!(s, "{sign}{m}M");
        }
        if sec != 0 || frac != 0 {
            let _ = write!(s, "{sign}{sec}");
            if frac != 0 {
                let f = format!("{frac:06}");
                let _ = write!(s, ".{}", f.trim_end_matches('0'));
            }
            s.push('S');
        }
    }
    if s == "P" {
        s.push_str("T0S");
    }
    s
}

fn inet(b: &[u8]) -> Result<String, String> {
    if b.len() < 4 {
        return Err("inet shorter than its header".into());
    }
    let (family, bits, is_cidr, n) = (b[0], b[1], b[2] != 0, b[3] as usize);
    let addr = &b[4..];
    if addr.len() != n {
        return Err("inet length does not match its header".into());
    }
    let (text, max) = match (family, n) {
        (2, 4) => (
            std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
            32,
        ),
        (3, 16) => {
            let a: [u8; 16] = fixed(addr)?;
            (std::net::Ipv6Addr::from(a).to_string(), 128)
        }
        _ => return Err(format!("unknown inet family {family}")),
    };
    Ok(if is_cidr || bits != max {
        format!("{text}/{bits}")
    } else {
        text
    })
}

fn bits(b: &[u8]) -> Result<String, String> {
    if b.len() < 4 {
        return Err("bit string shorter than its header".into());
    }
    let n = i32::from_be_bytes(fixed(&b[..4])?).max(0) as usize;
    let data = &b[4..];
    if data.len() * 8 < n {
        return Err("bit string shorter than its length".into());
    }
    Ok((0..n)
        .map(|i| {
            if data[i / 8] & (0x80 >> (i % 8)) != 0 {
                '1'
            } else {
                '0'
            }
        })
        .collect())
}

/// A binary array of any dimensionality as nested JSON arrays.
fn array(b: &[u8], elem: &PgDecoder, zone: &Zone) -> Result<Value, String> {
    let mut r = Reader { b, at: 0 };
    let ndim = r.i32()?;
    let _has_null = r.i32()?;
    let _elem_oid = r.i32()?;
    if ndim == 0 {
        return Ok(Value::Array(Vec::new()));
    }
    if !(1..=6).contains(&ndim) {
        return Err(format!("array with {ndim} dimensions"));
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    for _ in 0..ndim {
        let len = r.i32()?;
        let _lower_bound = r.i32()?;
        dims.push(usize::try_from(len).map_err(|_| "negative array dimension")?);
    }
    nested(&mut r, &dims, elem, zone)
}

fn nested(
    r: &mut Reader<'_>,
    dims: &[usize],
    elem: &PgDecoder,
    zone: &Zone,
) -> Result<Value, String> {
    let (&n, rest) = dims.split_first().ok_or("array without dimensions")?;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        if rest.is_empty() {
            let len = r.i32()?;
            if len < 0 {
                out.push(Value::Null);
            } else {
                let bytes = r.take(len as usize)?;
                out.push(elem.decode(bytes, zone)?);
            }
        } else {
            out.push(nested(r, rest, elem, zone)?);
        }
    }
    Ok(Value::Array(out))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("array element too long")?;
        let s = self.b.get(self.at..end).ok_or("array data truncated")?;
        self.at = end;
        Ok(s)
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> String {
        let mut b = Vec::new();
        b.extend(ndigits.to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(sign.to_be_bytes());
        b.extend(dscale.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        numeric(&b).unwrap()
    }

    #[test]
    fn numerics_keep_their_scale() {
        assert_eq!(num(2, 0, 0, 2, &[1, 5000]), "1.50");
        assert_eq!(num(0, 0, 0, 0, &[]), "0");
        assert_eq!(num(0, 0, 0, 3, &[]), "0.000");
        assert_eq!(num(1, -2, 0, 8, &[1234]), "0.00001234");
        assert_eq!(num(3, 1, 0x4000, 1, &[12, 3456, 7000]), "-123456.7");
        assert_eq!(num(1, 2, 0, 0, &[1]), "100000000");
        assert_eq!(num(0, 0, 0xC000, 0, &[]), "NaN");
        assert_eq!(num(0, 0, 0xF000, 0, &[]), "-Infinity");
    }

    #[test]
    fn intervals_times_and_networks() {
        assert_eq!(interval(0, 0, 0), "PT0S");
        assert_eq!(interval(14_706_500_000, 3, 14), "P1Y2M3DT4H5M6.5S");
        assert_eq!(interval(-60_000_000, -1, 0), "P-1DT-1M");
        assert_eq!(time(3_723_000_001).unwrap(), "01:02:03.000001");
        assert_eq!(time(86_400_000_000).unwrap(), "24:00:00");
        assert_eq!(offset(19_800), "+05:30");
        assert_eq!(offset(-3600), "-01:00");
        assert_eq!(inet(&[2, 32, 0, 4, 10, 0, 0, 1]).unwrap(), "10.0.0.1");
        assert_eq!(inet(&[2, 8, 1, 4, 10, 0, 0, 0]).unwrap(), "10.0.0.0/8");
        assert_eq!(bits(&[0, 0, 0, 5, 0b1010_1000]).unwrap(), "10101");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(date(0).unwrap(), "2000-01-01");
        assert_eq!(date(i32::MAX).unwrap(), "infinity");
    }

    #[test]
    fn two_dimensional_arrays_with_nulls() {
        let mut b = Vec::new();
        for x in [2i32, 1, 23, 2, 1, 2, 1] {
            b.extend(x.to_be_bytes());
        }
        for v in [Some(1i32), None, Some(3), Some(4)] {
            match v {
                Some(v) => {
                    b.extend(4i32.to_be_bytes());
                    b.extend(v.to_be_bytes());
                }
                None => b.extend((-1i32).to_be_bytes()),
            }
        }
        let zone = Zone::new(chrono_tz::UTC);
        assert_eq!(
            array(&b, &PgDecoder::Int4, &zone).unwrap(),
            serde_json::json!([[1, null], [3, 4]])
        );
    }
}
